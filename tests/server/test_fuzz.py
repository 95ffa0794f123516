"""The API fuzzed against its own OpenAPI document (schemathesis, in process): with a valid
token, no answer is a 5xx and every answer matches the document (status, media type, body);
requests the document calls invalid are refused (a number is not a time, false is not 0),
and a method a path lacks is 405 with that path's methods in ``Allow``.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import schemathesis
    from hypothesis import HealthCheck, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        allow_header_conformance,
        content_type_conformance,
        negative_data_rejection,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
        unsupported_method,
    )

from runce.api.app import create_app
from runce.config import resolve_config
from runce.runs.tokens import create_token

CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    unsupported_method,
    allow_header_conformance,
)
# The schema is made at collection (schemathesis' lazy fixture loader does not work with
# this pytest): a server on a SQLite file in a folder of its own, removed at exit.
ROOT = Path(tempfile.mkdtemp(prefix="runce-fuzz-"))
atexit.register(shutil.rmtree, ROOT, ignore_errors=True)
(ROOT / "tasks").mkdir()
CONFIG = resolve_config(
    {
        "store": f"sqlite:///{ROOT}/runce.db",
        "tasks_dir": str(ROOT / "tasks"),
        # The fuzzer's bursts should reach the routes, not the rate limiter.
        "api": {"rate_limit": {"enqueue": "off", "cancel": "off"}},
    }
)
TOKEN = {
    "Authorization": "Bearer "
    + create_token("fuzz", ["runs:read", "runs:write", "runs:work"], config=CONFIG).text
}
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(CONFIG))


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    derandomize=True,  # the same examples every run: CI never flakes on a new draw
)
def test_no_5xx_and_every_answer_matches_the_document(case: Any) -> None:
    wait = case.body.get("wait") if isinstance(case.body, dict) else None
    if type(wait) in (int, float) and 0 < wait <= 30:
        case.body["wait"] = 0  # a long poll holds its request; test_routes covers it
    case.call_and_validate(headers=TOKEN, checks=CHECKS)

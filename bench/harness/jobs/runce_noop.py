"""runce's no-op job; the bench's runce.toml names this module in ``worker.handlers``.

``params`` is annotated ``Any``: the job gets the stored JSON as it is, with no validation,
like the peers' handlers (a ``dict`` annotation would make it a typed job, validated by
pydantic at both ends).
"""

from typing import Any

import runce
from harness import probe


@runce.job("bench.noop")
def noop(params: Any, ctx: runce.JobContext) -> None:
    probe.hit(params["t"])

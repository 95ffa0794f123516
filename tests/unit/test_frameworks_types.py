"""A user's code on the framework, async and own-connection APIs type-checks under
``mypy --strict --disallow-any-expr``: no Any leaks into code written against them."""

from __future__ import annotations

from pathlib import Path

import mypy.api
import pytest

MODULE = Path(__file__).parents[1] / "typecheck" / "frameworks_module.py"


@pytest.mark.slow
def test_the_framework_and_async_apis_type_check_strictly(tmp_path: Path) -> None:
    (tmp_path / "none.toml").write_text("")  # not the project's settings: a user's defaults
    out, err, status = mypy.api.run(
        [
            "--config-file",
            str(tmp_path / "none.toml"),
            "--strict",
            "--disallow-any-expr",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(MODULE),
        ]
    )
    assert status == 0, out + err

"""A job's ``.later``, ``.now`` and ``.batch`` reach the library's entry points through
runce.runs.dispatch, also in a fresh process that never imported them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys

import runce


@runce.job("dispatch.echo")
def echo(params):
    return params


assert "runce.runs.library" not in sys.modules, "defining a job loads no entry points"
config = {"store": "sqlite:///%(db)s"}
run = echo.later({"n": 1}, config=config)
print(run.state, run.kind, run.input)
print(echo.now({"n": 2}, config=config))
print([item.result for item in echo.batch([3, 4], persist=False, config=config)])
"""


def test_a_job_used_first_loads_what_it_dispatches_to(tmp_path: Path) -> None:
    script = tmp_path / "use_a_job.py"
    script.write_text(SCRIPT % {"db": tmp_path / "runce.db"}, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "queued dispatch.echo {'n': 1}",
        "{'n': 2}",
        "[3, 4]",
    ]

"""``runce make``: a new task file named ``<UTC yyyy-mm-ddTHHMMSS>.<slug>.py``."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from pathlib import Path

from runce.errors import UsageError
from runce.timeutil import utcnow

TEMPLATE = '''\
"""{heading}

A once task: runce runs it once per environment and records that it succeeded.
If it fails, or its runner dies half way, it runs again on the next `runce run`,
so write it to be safe to re-run: check before you create, upsert rather than
insert, and work in batches that can resume.
"""

import runce


def already_done(ctx: runce.TaskContext) -> bool:
    """Optional: return True when the work is already there (the task is then recorded
    as skipped and applied without running). Delete it if there is nothing to check."""
    return False


@runce.task(title={title!r}, already_done=already_done)
def run(ctx: runce.TaskContext) -> None:
    ctx.log.info("nothing to do yet: write the one-time work here")
    # For long work, report progress: ctx.progress(done, total)
    # Services from the `services` factory in the configuration: ctx.services
'''


def _docstring_safe(text: str) -> str:
    """The title as it may stand inside a triple-quoted docstring."""
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")


def task_file_name(name: str, now: datetime | None = None) -> str:
    slug = slugify(name)
    if not slug:
        raise UsageError(f"cannot make a task file name from {name!r}; use letters or digits")
    return f"{(now or utcnow()):%Y-%m-%dT%H%M%S}.{slug}.py"


def write_task(tasks_dir: Path, name: str, now: datetime | None = None) -> Path:
    path = tasks_dir / task_file_name(name, now)
    tasks_dir.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("x", encoding="utf-8") as handle:
            handle.write(TEMPLATE.format(title=name.strip(), heading=_docstring_safe(name.strip())))
    except FileExistsError:
        raise UsageError(f"{path} already exists; wait a second or pick another name") from None
    return path

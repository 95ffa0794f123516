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


# Keeps the file name (and the task id) well under the 255 bytes file systems allow.
MAX_SLUG = 80


def slugify(name: str) -> str:
    """Lower-case ASCII letters and digits joined by hyphens, at most 80 characters."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:MAX_SLUG].rstrip("-")


def task_file_name(name: str, now: datetime | None = None) -> str:
    shown = repr(name) if len(name) <= 60 else repr(name[:60]) + "…"
    if "\x00" in name or re.search("[\ud800-\udfff]", name):
        raise UsageError(f"the task name {shown} is not printable text; use letters or digits")
    slug = slugify(name)
    if not slug:
        raise UsageError(f"cannot make a task file name from {shown}; use letters or digits")
    return f"{(now or utcnow()):%Y-%m-%dT%H%M%S}.{slug}.py"


def write_task(tasks_dir: Path, name: str, now: datetime | None = None) -> Path:
    path = tasks_dir / task_file_name(name, now)
    if tasks_dir.exists() and not tasks_dir.is_dir():
        raise UsageError(
            f"tasks folder {tasks_dir} is a file, not a folder; set tasks_dir to a folder"
        )
    try:
        tasks_dir.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as handle:
            handle.write(TEMPLATE.format(title=name.strip(), heading=_docstring_safe(name.strip())))
    except FileExistsError:
        raise UsageError(f"{path} already exists; wait a second or pick another name") from None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path

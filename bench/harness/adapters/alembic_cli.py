"""Alembic with nothing to do: ``alembic upgrade head`` (and ``alembic current``, its status
view) over N applied no-op revisions on SQLite, timed as whole processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from harness import timing
from harness.workload import Workload, work_dir

NAME = "alembic"
BACKEND = "sqlite"
PACKAGE = "alembic"
SETTINGS = {"database": "sqlite:///alembic.db", "revisions": "N files, upgrade() `pass`"}

INI = """[alembic]
script_location = migrations
sqlalchemy.url = sqlite:///alembic.db
"""

ENV = """from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
engine = engine_from_config(
    config.get_section(config.config_ini_section), prefix="sqlalchemy.", poolclass=pool.NullPool
)
with engine.connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
"""

REVISION = '''"""No-op {n}."""

revision = "r{n:04d}"
down_revision = {down}
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
'''


def _alembic() -> str:
    return str(Path(sys.executable).parent / "alembic")


def _project(count: int) -> Path:
    root = work_dir(f"once-alembic-{count}")
    marker = root / ".applied"
    if marker.exists():
        return root
    (root / "alembic.ini").write_text(INI)
    versions = root / "migrations" / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    (root / "migrations" / "env.py").write_text(ENV)
    for n in range(1, count + 1):
        down = repr(f"r{n - 1:04d}") if n > 1 else "None"
        (versions / f"r{n:04d}_noop.py").write_text(REVISION.format(n=n, down=down))
    subprocess.run([_alembic(), "upgrade", "head"], cwd=root, check=True, capture_output=True)
    marker.write_text(str(count))
    return root


def once_run(w: Workload) -> dict[str, Any]:
    return timing.time_command([_alembic(), "upgrade", "head"], cwd=_project(w.tasks))


def once_status(w: Workload) -> dict[str, Any]:
    return timing.time_command([_alembic(), "current"], cwd=_project(w.tasks))

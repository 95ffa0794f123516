"""A backfill over a million PostgreSQL rows, killed with SIGKILL at five random moments.

Run from the repository's root with runce's environment::

    .venv/bin/python bench/backfill_crash.py                 # 1,000,000 rows, both modes
    .venv/bin/python bench/backfill_crash.py --rows 200000 --mode transactional
    .venv/bin/python bench/backfill_crash.py --store sqlite --rows 100000
    .venv/bin/python bench/backfill_crash.py --store mongo --rows 100000

Afterwards a transactional backfill must have processed every row exactly once, and one
that is not transactional at most one batch twice per kill. Prints one line per mode and
exits 1 when either promise is broken. PostgreSQL: ``RUNCE_TEST_POSTGRES_URL`` as the test
suite reads it (default the local server); MongoDB: ``RUNCE_TEST_MONGODB_URL``, or a
SecantusDB started from ``.venv-mongo`` as the tests do.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import services
from tests.acceptance.backfill_crash import (
    MongoRows,
    PostgresRows,
    Rows,
    SQLiteRows,
    kill_and_finish,
)
from tests.acceptance.conftest import Workspace


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--mode", choices=["transactional", "plain", "both"], default="both")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--store", choices=["postgres", "sqlite", "mongo"], default="postgres")
    args = parser.parse_args()
    modes = ["transactional", "plain"] if args.mode == "both" else [args.mode]
    return max(_one(args, mode == "transactional") for mode in modes)


@contextmanager
def _place(store: str, root: Path) -> Iterator[tuple[Workspace, Rows]]:
    """A workspace on a fresh store of that kind, and the table the backfill works on."""
    if store == "sqlite":
        yield Workspace(root, "sqlite:///.runce/runce.db"), SQLiteRows(root / ".runce" / "runce.db")
    elif store == "mongo":
        servers = services.mongo_server()
        server = next(servers)
        url = f"{server.rstrip('/')}/runce_bench_{uuid.uuid4().hex[:10]}"
        try:
            yield Workspace(root, url), MongoRows(url)
        finally:
            servers.close()  # stops the SecantusDB it started, if any
    else:
        url = services.postgres_url()
        services.check_postgres(url)
        schema = f"runce_bench_{uuid.uuid4().hex[:10]}"
        try:
            yield Workspace(root, url, f'schema = "{schema}"\n'), PostgresRows(url)
        finally:
            services.drop_schema(url, schema)


def _one(args: argparse.Namespace, transactional: bool) -> int:
    with tempfile.TemporaryDirectory() as tmp, _place(args.store, Path(tmp)) as (workspace, rows):
        try:
            outcome = kill_and_finish(
                workspace,
                rows,
                args.rows,
                batch_size=args.batch_size,
                transactional=transactional,
                kills=args.kills,
                seed=args.seed,
                timeout=1800,
            )
        finally:
            workspace.reap()
            rows.drop()
    mode = "transactional" if transactional else "plain"
    exact = outcome.hits == {1: args.rows}
    allowed = outcome.kills * args.batch_size
    ok = exact if transactional else (outcome.hits[0] == 0 and outcome.processed_twice <= allowed)
    resumed = sum("resuming from cursor" in text for text in outcome.outputs)
    print(
        f"{args.store:8} {mode:13} rows={args.rows:,} batch={args.batch_size} "
        f"kills={outcome.kills} "
        f"resumed={resumed} processed twice={outcome.processed_twice:,} "
        f"(allowed {0 if transactional else allowed:,}) hits={dict(sorted(outcome.hits.items()))} "
        f"{outcome.seconds:.1f}s {'OK' if ok else 'BROKEN'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

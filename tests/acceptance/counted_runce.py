"""``python counted_runce.py COUNTS ARGS...``: the ``runce`` command (``runce ARGS...``), with
everything it asks its store counted into the JSON file COUNTS (rewritten every 50 ms).

Counted as PostgreSQL's ``pg_stat_database`` counts transactions: on SQLite, every
transaction (``BEGIN`` … ``COMMIT``, however many statements it holds) and every statement
outside one (``"queries"``; ``"statements"`` counts each statement); on MongoDB every
command the driver sends for runce (``"commands"``; the driver's own monitoring of the
server, its ``hello`` heartbeats, is not runce's and not counted). ``"at"`` is
``time.monotonic()`` of the count, comparable across processes on one machine.
"""

from __future__ import annotations

import collections
import json
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

counts: collections.Counter[str] = collections.Counter()
guard = threading.Lock()
_connect = sqlite3.connect


def counting_connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
    conn = _connect(database, *args, **kwargs)
    if str(database) == ":memory:":  # runce reads SQLite's clock there: not the file
        return conn

    def trace(sql: str) -> None:
        if sql.lstrip().startswith("--"):  # a trigger's body, part of its statement
            return
        with guard:
            counts["statements"] += 1
            if not conn.in_transaction:  # BEGIN, or a statement on its own
                counts["queries"] += 1

    conn.set_trace_callback(trace)
    return conn


def count_mongo_commands() -> None:
    try:
        from pymongo import monitoring
    except ImportError:
        return

    class Commands(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            with guard:
                counts["commands"] += 1
                counts[f"command.{event.command_name}"] += 1

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    monitoring.register(Commands())


def write_counts(path: Path) -> None:
    while True:
        with guard:
            text = json.dumps({"at": time.monotonic(), **counts})
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(text)
        temporary.replace(path)
        time.sleep(0.05)


if __name__ == "__main__":
    sqlite3.connect = counting_connect  # type: ignore[assignment]
    count_mongo_commands()
    threading.Thread(target=write_counts, args=(Path(sys.argv[1]),), daemon=True).start()
    from runce.cli import main

    main(sys.argv[2:])

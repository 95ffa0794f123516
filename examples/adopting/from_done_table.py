# examples/adopting/from_done_table.py
"""Baseline the tasks a hand-made "done" table lists, then run the rest."""

import sqlite3

import runce
from runce.tasks.library import baseline

with sqlite3.connect("app.db") as db:
    done = [name for (name,) in db.execute("SELECT name FROM done_jobs")]

baseline("runce.toml", done)
report = runce.run_tasks("runce.toml")
print(f"baselined {len(done)}, ran {report.counts['ok']}")

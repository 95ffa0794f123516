# examples/transactional/archive.py
"""A transactional job on SQLite: its insert and its run's success commit together."""

import sqlite3

import runce

CONFIG = {"store": "sqlite:///shop.db"}


@runce.job("orders.archive", transactional=True)
def archive(params: dict, ctx: runce.JobContext) -> None:
    ctx.db.execute("INSERT INTO archived (order_id) VALUES (?)", (params["order_id"],))
    # No commit here: runce commits the insert with the run's success, or neither.


if __name__ == "__main__":
    run = archive.later({"order_id": 7}, config=CONFIG)  # creates runce's tables too
    with sqlite3.connect("shop.db") as db:
        db.execute("CREATE TABLE IF NOT EXISTS archived (order_id INTEGER)")
    runce.worker(CONFIG, drain=True).run()
    with sqlite3.connect("shop.db") as db:
        (count,) = db.execute("SELECT count(*) FROM archived").fetchone()
    print(f"run {run.id}: {runce.get_run(run.id, config=CONFIG).state}, {count} row")

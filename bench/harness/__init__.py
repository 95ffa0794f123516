"""runce's benchmark harness: runce and its peers on the same workloads, side by side.

Layout:

* ``main``: the command behind ``bench/run``; runs every measurement in a fresh process of
  the right virtualenv, takes medians, prints the table and writes JSON lines.
* ``measure``: one measurement of one implementation, in its own process.
* ``adapters/``: one module per implementation (runce on SQLite and PostgreSQL, the peers,
  the pgbench ceiling, the once-task tools).
* ``jobs/``: the no-op handlers the worker processes import, each calling ``probe.hit``.
* ``probe``, ``procs``, ``stats``, ``timing``, ``report``: shared pieces; standard library
  only, so both virtualenvs import them.
"""

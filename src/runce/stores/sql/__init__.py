"""What the SQL backends (SQLite, PostgreSQL) share, and no backend owns.

The SQL itself stays with each backend, in its ``.sql`` files. This package holds the code
that reads such files (:mod:`runce.stores.sql.files`, which imports nothing but the
standard library, so the command line's fast path may use it too), and the stores'
schedules and tokens (:mod:`~runce.stores.sql.schedules`, :mod:`~runce.stores.sql.tokens`),
written once over each backend's side of a small seam (:mod:`runce.stores.sql.dialect`),
what their run queues share (:mod:`~runce.stores.sql.runs`: pages of runs, heartbeat
beats, attempt and worker rows), and their once-task trackers (:mod:`~runce.stores.sql.tracker`:
every read and fenced write but a transactional task's transaction).
MongoDB takes no SQL and uses none of it.
"""

"""What the SQL backends (SQLite, PostgreSQL) share, and no backend owns.

The SQL itself stays with each backend, in its ``.sql`` files; this package holds the
code that reads such files (:mod:`runce.stores.sql.files`). MongoDB takes no SQL and uses
none of it. It imports nothing but the standard library, so the command line's fast path
may use it too.
"""

"""The PostgreSQL store (``postgresql://user:password@host:5432/db``), on psycopg 3.

runce's tables live in their own schema (``schema``, default ``runce``), created and
upgraded by versioned migrations; user tables are never touched. The global lock is a
session-level advisory lock held on a dedicated connection for as long as a runner works,
and transactional tasks get a psycopg connection inside a transaction.

PgBouncer and other poolers: the lock needs a real session for its whole life. Point runce
at the server directly, or at a pool in *session* mode; in *transaction* mode the advisory
lock would be taken on one server connection and checked on another, and runce could not
tell who holds it.
"""

from runce.stores.postgres.store import PostgresStore, open_store

__all__ = ["PostgresStore", "open_store"]

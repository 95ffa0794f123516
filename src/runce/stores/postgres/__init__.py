"""The PostgreSQL store (``postgresql://user:password@host:5432/db``), on psycopg 3.

runce's tables live in their own schema (``schema``, default ``runce``), created and
upgraded by versioned migrations; user tables are never touched. The global lock is a
session-level advisory lock held on a dedicated connection for as long as a runner works,
and transactional tasks get a psycopg connection inside a transaction. The run queue
claims with ``FOR UPDATE SKIP LOCKED`` and announces new work with ``NOTIFY`` to workers
that ``LISTEN`` (see :mod:`runce.stores.postgres.queue`).

PgBouncer and other poolers: the lock and ``LISTEN`` need a real session for their whole
life. Point runce at the server directly, or at a pool in *session* mode; in
*transaction* mode the advisory lock would be taken on one server connection and checked
on another (runce could not tell who holds it), a worker's ``LISTEN`` would hear nothing
(it would still find new work, by polling every ``worker.poll`` seconds), and the settings
a worker's connection makes (``SET plan_cache_mode ...``) would land on a server connection
other clients then get.
"""

from runce.stores.postgres.store import PostgresStore, open_store

__all__ = ["PostgresStore", "open_store"]

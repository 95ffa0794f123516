"""runce in a Django project: add ``"runce.contrib.django"`` to ``INSTALLED_APPS``.

The store is Django's ``DATABASES["default"]`` (PostgreSQL or SQLite), with no second
configuration: runce's keys may be set in a ``RUNCE = {...}`` setting (``database`` picks
another alias; ``store``, ``tasks_dir``, ``worker``, ``services``, ... as in
``runce.toml``). ``python manage.py runce <command>`` runs every runce command with that
configuration, and ``runce.enqueue(..., connection=django.db.connection)`` inside
``transaction.atomic()`` inserts the run in Django's transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runce.config import ConfigArg


def enqueue_on_commit(
    kind: str,
    input: object = None,
    *,
    using: str | None = None,
    idempotency_key: str | None = None,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
    priority: int = 0,
    project_id: str | None = None,
    correlation_id: str | None = None,
    config: ConfigArg = None,
    concurrency_key: str | None = None,
) -> None:
    """Enqueue a run once the current transaction (of database ``using``) commits; nothing
    if it rolls back. Outside ``transaction.atomic()`` the run is enqueued at once.

    Takes :func:`runce.enqueue`'s arguments but ``connection``. Works with any store (the
    run is enqueued on runce's own connection after the commit); with the store on the same
    database, ``runce.enqueue(..., connection=connection)`` makes the run part of the
    transaction itself.
    """
    from django.db import transaction

    from runce.runs.library import enqueue

    def send() -> None:
        enqueue(
            kind,
            input,
            idempotency_key=idempotency_key,
            run_at=run_at,
            max_attempts=max_attempts,
            priority=priority,
            project_id=project_id,
            correlation_id=correlation_id,
            config=config,
            concurrency_key=concurrency_key,
        )

    transaction.on_commit(send, using=using)

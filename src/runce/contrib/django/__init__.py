"""runce in a Django project: add ``"runce.contrib.django"`` to ``INSTALLED_APPS``.

The store is Django's ``DATABASES["default"]`` (PostgreSQL or SQLite), with no second
configuration: runce's keys may be set in a ``RUNCE = {...}`` setting (``database`` picks
another alias; ``store``, ``tasks_dir``, ``worker``, ``services``, ... as in
``runce.toml``). ``python manage.py runce <command>`` runs every runce command with that
configuration, and ``runce.enqueue(..., connection=django.db.connection)`` inside
``transaction.atomic()`` inserts the run in Django's transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Unpack

from runce.domain.runs import check_enqueue_options

if TYPE_CHECKING:
    from runce.config import ConfigArg
    from runce.domain.runs import EnqueueOptions


def enqueue_on_commit(
    kind: str,
    input: object = None,
    *,
    using: str | None = None,
    idempotency_key: str | None = None,
    config: ConfigArg = None,
    **options: Unpack[EnqueueOptions],
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

    check_enqueue_options(options, "enqueue_on_commit")

    def send() -> None:
        enqueue(kind, input, idempotency_key=idempotency_key, config=config, **options)

    transaction.on_commit(send, using=using)

"""Placing an order: the welcome email's run is part of the order's transaction."""

from __future__ import annotations

from django.db import connection, transaction

import runce
from runce.contrib.django import enqueue_on_commit


def place_order(email: str, *, declined: bool = False) -> str:
    """The run exists only if the transaction commits."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")  # the order's own writes go here
        run = runce.enqueue("djshop.welcome", {"email": email}, connection=connection)
        if declined:
            raise PaymentDeclined(email)
    return run.id


def place_order_then_enqueue(email: str, *, declined: bool = False) -> None:
    """The run is enqueued after the commit (any store), never after a rollback."""
    with transaction.atomic():
        enqueue_on_commit("djshop.welcome", {"email": email})
        if declined:
            raise PaymentDeclined(email)


class PaymentDeclined(Exception):
    pass

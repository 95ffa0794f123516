"""The shop's tests (``python manage.py test``): runce's store is the test database too, so
an order's run commits and rolls back with the order in the tests as in production."""

from __future__ import annotations

from contextlib import suppress

from django.db import connection
from django.test import TransactionTestCase

import runce
from djshop.orders import PaymentDeclined, place_order


class PlaceOrderTests(TransactionTestCase):
    # Transactions that really commit: a TestCase would roll every test's work back.

    def test_the_welcome_run_commits_with_the_order(self) -> None:
        run_id = place_order("kept@example.com")
        assert runce.get_run(run_id).input == {"email": "kept@example.com"}

    def test_a_declined_order_leaves_no_run(self) -> None:
        with suppress(PaymentDeclined):
            place_order("declined@example.com", declined=True)
        emails = [run.input["email"] for run in runce.list_runs(kind="djshop.welcome").runs]
        assert "declined@example.com" not in emails

    def test_the_store_is_the_test_database(self) -> None:
        assert str(connection.settings_dict["NAME"]) in runce.task_status().store

"""The Django app: runce's configuration comes from Django's settings, read each time it is
resolved, so the store follows the database's settings (the test database during tests)."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class RunceConfig(AppConfig):  # type: ignore[misc]  # Django ships no type information
    name = "runce.contrib.django"
    label = "runce"
    verbose_name = "runce"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from runce.config import use_framework_config
        from runce.contrib.django.settings import config_values, project_dir

        config_values()  # a bad RUNCE setting stops the start-up
        use_framework_config(config_values, project_dir())
        connection_created.connect(release_stores, dispatch_uid="runce.release_stores")


def release_stores(sender: object, connection: Any, **kwargs: object) -> None:
    """Django connects to no database in particular to create or drop one (the test
    database): runce closes its stores' connections first, or PostgreSQL would refuse to
    drop a database runce is still connected to. They connect again when next used."""
    from django.db.backends.base.base import NO_DB_ALIAS

    from runce.runs.library import close_stores

    if connection.alias == NO_DB_ALIAS:
        close_stores()

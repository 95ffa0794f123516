"""The Django app: on start-up, runce's configuration comes from Django's settings."""

from __future__ import annotations

from django.apps import AppConfig


class RunceConfig(AppConfig):  # type: ignore[misc]  # Django ships no type information
    name = "runce.contrib.django"
    label = "runce"
    verbose_name = "runce"

    def ready(self) -> None:
        from runce.config import use_framework_config
        from runce.contrib.django.settings import config_values, project_dir

        use_framework_config(config_values(), project_dir())

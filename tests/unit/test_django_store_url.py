"""The store URL runce takes from a Django ``DATABASES`` entry."""

from __future__ import annotations

from pathlib import Path

import psycopg.conninfo
import pytest

from runce.contrib.django.settings import store_url
from runce.errors import ConfigError


def test_a_postgresql_database_with_every_part() -> None:
    url = store_url(
        {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "shop db",
            "USER": "app",
            "PASSWORD": "p@ss:word/",
            "HOST": "db.internal",
            "PORT": 6432,
            "OPTIONS": {"sslmode": "require", "server_side_binding": True, "pool": True},
        },
        "default",
    )
    assert psycopg.conninfo.conninfo_to_dict(url) == {
        "dbname": "shop db",
        "user": "app",
        "password": "p@ss:word/",
        "host": "db.internal",
        "port": "6432",
        "sslmode": "require",
    }


def test_a_postgresql_database_on_a_unix_socket() -> None:
    url = store_url(
        {"ENGINE": "django.db.backends.postgresql", "NAME": "shop", "HOST": "/run/postgresql"},
        "default",
    )
    assert psycopg.conninfo.conninfo_to_dict(url) == {"dbname": "shop", "host": "/run/postgresql"}


def test_an_sqlite_file_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = store_url({"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}, "default")
    assert url == f"sqlite:///{tmp_path / 'db.sqlite3'}"


@pytest.mark.parametrize(
    ("database", "words"),
    [
        ({"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}, "in-memory SQLite"),
        ({"ENGINE": "django.db.backends.mysql", "NAME": "shop"}, "uses django.db.backends.mysql"),
    ],
)
def test_databases_runce_cannot_keep_records_in(database: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        store_url(database, "default")

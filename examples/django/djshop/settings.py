"""The example shop's settings: runce needs only its app in INSTALLED_APPS.

The database is an SQLite file beside manage.py, or PostgreSQL when DJSHOP_POSTGRES_URL
is set (``postgresql://user@host:5432/name``).
"""

import os
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "the-example-shop-only"
USE_TZ = True
INSTALLED_APPS = ["runce.contrib.django"]


def _database() -> dict[str, object]:
    url = os.environ.get("DJSHOP_POSTGRES_URL")
    if not url:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": BASE_DIR / "db.sqlite3",
            # A file for `manage.py test` too: runce keeps its runs in the test database,
            # and cannot in Django's default one, in memory.
            "TEST": {"NAME": BASE_DIR / "test_db.sqlite3"},
        }
    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": parts.username or "",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "",
        "PORT": parts.port or "",
    }


DATABASES = {"default": _database()}

# runce's keys, as in runce.toml; the store is DATABASES["default"].
RUNCE = {
    "worker": {"handlers": ["djshop.jobs"]},
    "services": "djshop.services:make_services",
}

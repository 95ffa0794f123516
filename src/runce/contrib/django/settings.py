"""runce's configuration from Django's settings: the store from ``DATABASES`` (PostgreSQL or
SQLite), other keys from ``RUNCE``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from runce.errors import ConfigError

# Django's OPTIONS that are libpq connection parameters (the rest are Django's own).
_LIBPQ_OPTIONS = frozenset(
    {
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslpassword",
        "connect_timeout",
        "application_name",
        "options",
        "service",
        "passfile",
        "target_session_attrs",
        "keepalives",
        "keepalives_idle",
    }
)


def config_values() -> dict[str, object]:
    """The keys of a ``runce.toml``, from ``settings.RUNCE`` and the database's settings as
    Django's connection has them now: while Django's test runner runs, its test database."""
    from django.conf import settings

    raw: Any = getattr(settings, "RUNCE", {})
    if not isinstance(raw, Mapping):
        raise ConfigError("the Django setting RUNCE must be a dict of runce's configuration keys")
    values: dict[str, object] = dict(raw)
    alias = str(values.pop("database", "default"))
    if "store" not in values and "tracker" not in values:
        values["store"] = store_url(database_settings(alias), alias)
    return values


def database_settings(alias: str) -> Mapping[str, object]:
    """Django's connection's settings of database ``alias`` (the test runner renames it)."""
    from django.conf import settings
    from django.db import connections

    if alias not in settings.DATABASES:
        raise ConfigError(f"RUNCE['database'] names {alias!r}, which is not in DATABASES")
    found: Mapping[str, object] = connections[alias].settings_dict
    return found


def project_dir() -> Path:
    """Where relative paths (``tasks_dir``) start: ``BASE_DIR`` when set, else here."""
    from django.conf import settings

    base = getattr(settings, "BASE_DIR", None)
    return Path(base).resolve() if base else Path.cwd()


def store_url(database: Mapping[str, object], alias: str) -> str:
    """The store URL of a Django database (PostgreSQL or an SQLite file)."""
    engine = str(database.get("ENGINE", ""))
    if engine.endswith("sqlite3"):
        return _sqlite_url(database, alias)
    if engine.rsplit(".", 1)[-1] in ("postgresql", "postgis"):
        return _postgres_url(database)
    raise ConfigError(
        f"DATABASES[{alias!r}] uses {engine or 'no ENGINE'}; runce keeps its records in "
        "PostgreSQL or SQLite: set RUNCE = {'store': ...} to use another store"
    )


def _sqlite_url(database: Mapping[str, object], alias: str) -> str:
    name = str(database.get("NAME") or "")
    if not name or name == ":memory:" or name.startswith("file:"):
        raise ConfigError(
            f"DATABASES[{alias!r}] is an in-memory SQLite database; runce needs a file "
            "(or set RUNCE = {'store': ...}); for Django's test database, which is in "
            f"memory unless named, set DATABASES[{alias!r}]['TEST'] = {{'NAME': ...}}"
        )
    return "sqlite:///" + quote(str(Path(name).resolve()))


def _postgres_url(database: Mapping[str, object]) -> str:
    user = str(database.get("USER") or "")
    password = str(database.get("PASSWORD") or "")
    host = str(database.get("HOST") or "")
    port = str(database.get("PORT") or "")
    options = database.get("OPTIONS")
    given = options.items() if isinstance(options, Mapping) else ()
    query = {str(k): str(v) for k, v in given if k in _LIBPQ_OPTIONS}
    if host.startswith("/"):  # a Unix socket's folder
        query["host"], host = host, ""
    credentials = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    netloc = (credentials + "@" if credentials else "") + host + (":" + port if port else "")
    name = quote(str(database.get("NAME") or ""), safe="")
    return f"postgresql://{netloc}/{name}" + ("?" + urlencode(query) if query else "")

"""Where a PostgreSQL store lives: its URL, the schema holding runce's tables, the advisory
lock keys derived from that schema, and the host, port and database named in messages."""

from __future__ import annotations

import getpass
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from runce.errors import ConfigError
from runce.stores.base import StoreSpec
from runce.stores.registry import mask_url

KNOWN_OPTIONS = frozenset({"uri", "url", "schema", "connect_timeout", "pool"})
CONNECT_TIMEOUT = 10
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_KEY_MASK = (1 << 63) - 1  # positive keys: pg_locks shows them as (classid, objid) < 2**31


@dataclass(frozen=True)
class Target:
    """One schema in one database; every message about the store names it the same way."""

    url: str
    schema: str
    host: str
    port: str
    database: str

    @property
    def description(self) -> str:
        return f"{mask_url(self.url)} (schema {self.schema})"

    @property
    def where(self) -> str:
        """``host h, port p, database d``: the words every error about this store carries."""
        return f"host {self.host}, port {self.port}, database {self.database}"

    @property
    def lock_key(self) -> int:
        """The session-level advisory lock key of the global lock (docs/once-tasks.md#the-lock)."""
        return advisory_key("runce.lock", self.schema)

    @property
    def migration_key(self) -> int:
        """The transaction-level advisory lock key that serialises migrations (docs/stores.md)."""
        return advisory_key("runce.migrate", self.schema)


def target_of(spec: StoreSpec) -> Target:
    """The store a spec names; raises ConfigError for a missing URL or a bad schema name."""
    _check_options(spec.options)
    url = spec.url or spec.options.get("uri") or spec.options.get("url")
    if not isinstance(url, str) or not url:
        raise ConfigError(
            "the postgresql store needs a URL such as postgresql://user@host:5432/db "
            "(`store` in the config, RUNCE_STORE_URL, or tracker.options.uri)"
        )
    schema = _schema_name(str(spec.options.get("schema", spec.schema)))
    host, port, database = _address(url)
    return Target(url=url, schema=schema, host=host, port=port, database=database)


def connect_timeout(spec: StoreSpec) -> int:
    value = spec.options.get("connect_timeout", CONNECT_TIMEOUT)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(
            "the postgresql store's connect_timeout option must be a positive number of "
            f"seconds, not {value!r}"
        )
    return max(2, round(value))  # libpq treats anything under 2 seconds as 2


def advisory_key(purpose: str, schema: str) -> int:
    """A stable 63-bit key: the same schema gives the same key in every process and version."""
    digest = hashlib.sha256(f"{purpose}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & _KEY_MASK


def _schema_name(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name) or name.lower().startswith("pg_"):
        raise ConfigError(
            f"the schema name {name!r} is not usable for the postgresql store: use letters, "
            "digits and _ (not starting with a digit or pg_, at most 63 characters)"
        )
    return name


def _address(url: str) -> tuple[str, str, str]:
    """Host, port and database as libpq would pick them, for messages only."""
    try:
        params: Mapping[str, Any] = conninfo_to_dict(url)
    except Exception as exc:  # psycopg.ProgrammingError for a malformed URL
        raise ConfigError(
            f"the postgresql store URL {mask_url(url)!r} is not valid: {exc}"
        ) from None
    user = params.get("user") or os.environ.get("PGUSER") or _login()
    host = params.get("host") or os.environ.get("PGHOST") or "localhost (local socket)"
    port = params.get("port") or os.environ.get("PGPORT") or "5432"
    database = params.get("dbname") or os.environ.get("PGDATABASE") or user
    return str(host), str(port), str(database)


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "postgres"


def _check_options(options: Mapping[str, Any]) -> None:
    unknown = sorted(set(options) - KNOWN_OPTIONS)
    if unknown:
        raise ConfigError(
            f"unknown option(s) for the postgresql store: {', '.join(unknown)}; "
            f"known: {', '.join(sorted(KNOWN_OPTIONS))}"
        )

"""Where a MongoDB store lives: its URL, database and collection names, from a StoreSpec.

The URL comes from ``store = "mongodb://…"`` or from the seed's table form
``tracker = { type = "mongo", options = { uri, db, appliedCollection, lockCollection } }``;
the run queue's collections are ``runsCollection``, ``runAttemptsCollection``,
``workersCollection`` and ``schedulesCollection``; the HTTP API's tokens are in
``tokensCollection``; backfills' checkpoints and pause requests in ``checkpointsCollection``
and ``controlsCollection``.
The database is the ``db`` option, else the URL's path; one of them is required.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

from runce.errors import ConfigError
from runce.stores.base import StoreSpec

DEFAULT_PORT = 27017
COLLECTION_OPTIONS: dict[str, str] = {
    "appliedCollection": "runce.applied",
    "historyCollection": "runce.history",
    "lockCollection": "runce.lock",
    "runsCollection": "runce.runs",
    "runAttemptsCollection": "runce.run_attempts",
    "workersCollection": "runce.workers",
    "schedulesCollection": "runce.schedules",
    "tokensCollection": "runce.tokens",
    "checkpointsCollection": "runce.checkpoints",
    "controlsCollection": "runce.controls",
}
KNOWN_OPTIONS = frozenset({"uri", "url", "db", "client", *COLLECTION_OPTIONS})
# MongoDB refuses these in database names (and "." is taken by collection namespaces).
_BAD_DATABASE_CHARACTERS = re.compile(r'[/\\. "$\x00]')
_PASSWORD = re.compile(r"^([^:@/]*):[^@]*@")


@dataclass(frozen=True)
class Location:
    url: str
    database: str
    applied: str
    history: str
    lock: str
    runs: str = COLLECTION_OPTIONS["runsCollection"]
    run_attempts: str = COLLECTION_OPTIONS["runAttemptsCollection"]
    workers: str = COLLECTION_OPTIONS["workersCollection"]
    schedules: str = COLLECTION_OPTIONS["schedulesCollection"]
    tokens: str = COLLECTION_OPTIONS["tokensCollection"]
    checkpoints: str = COLLECTION_OPTIONS["checkpointsCollection"]
    controls: str = COLLECTION_OPTIONS["controlsCollection"]

    @property
    def description(self) -> str:
        """The URL with its password masked, and the database when the URL does not say it."""
        masked = mask_password(self.url)
        if _url_database(self.url) == self.database:
            return masked
        return f"{masked} (database {self.database})"

    @property
    def servers(self) -> str:
        """The hosts and ports of the URL, as ``host:port[,host:port]``."""
        hosts = _netloc(self.url).rpartition("@")[2]
        if self.url.startswith("mongodb+srv://"):
            return f"{hosts} (SRV)"
        return ",".join(_with_port(host) for host in hosts.split(",") if host)

    @property
    def url_options(self) -> set[str]:
        """The URL's connection options, lower-cased (MongoDB's are case-insensitive)."""
        return {name.lower() for name, _ in parse_qsl(self.url.partition("?")[2])}


def location_of(spec: StoreSpec) -> Location:
    _refuse_unknown(spec.options)
    url = spec.url or _text_option(spec.options, "uri") or _text_option(spec.options, "url")
    if not url:
        raise ConfigError(
            'the MongoDB store needs a URL: store = "mongodb://host:port/database", or '
            "uri in the tracker's options"
        )
    database = _text_option(spec.options, "db") or _url_database(url)
    if not database:
        raise ConfigError(
            f"the MongoDB store {mask_password(url)} names no database: put it in the URL's "
            '(mongodb://host:port/DATABASE) or set db in the tracker\'s options (db = "infra")'
        )
    _check_database(database)
    names = {
        key: _collection(_text_option(spec.options, key) or default, key)
        for key, default in COLLECTION_OPTIONS.items()
    }
    return Location(
        url=url,
        database=database,
        applied=names["appliedCollection"],
        history=names["historyCollection"],
        lock=names["lockCollection"],
        runs=names["runsCollection"],
        run_attempts=names["runAttemptsCollection"],
        workers=names["workersCollection"],
        schedules=names["schedulesCollection"],
        tokens=names["tokensCollection"],
        checkpoints=names["checkpointsCollection"],
        controls=names["controlsCollection"],
    )


def mask_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    return f"{scheme}://" + _PASSWORD.sub(r"\1:***@", rest, count=1)


def _refuse_unknown(options: Mapping[str, Any]) -> None:
    unknown = sorted(set(options) - KNOWN_OPTIONS)
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        raise ConfigError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {names} for the MongoDB store "
            f"(known: {', '.join(sorted(KNOWN_OPTIONS))})"
        )


def _text_option(options: Mapping[str, Any], key: str) -> str | None:
    value = options.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"the MongoDB store's option {key} must be a non-empty string")
    return value


def _check_database(name: str) -> None:
    if _BAD_DATABASE_CHARACTERS.search(name) or len(name) > 63:
        raise ConfigError(
            f"{name!r} cannot be a MongoDB database name (at most 63 characters, none of "
            '/ \\ . " $ or spaces)'
        )


def _collection(name: str, key: str) -> str:
    if "$" in name or "\x00" in name or name.startswith((".", "system.")) or name.endswith("."):
        raise ConfigError(
            f"the MongoDB store's option {key} = {name!r} cannot be a collection name "
            "(no $, not starting with . or system., not ending with .)"
        )
    return name


def _netloc(url: str) -> str:
    rest = url.partition("://")[2]
    return re.split(r"[/?]", rest, maxsplit=1)[0]


def _url_database(url: str) -> str:
    rest = url.partition("://")[2]
    after_hosts = rest[len(_netloc(url)) :]
    if not after_hosts.startswith("/"):
        return ""
    return unquote(after_hosts[1:].partition("?")[0])


def _with_port(host: str) -> str:
    if host.startswith("["):  # an IPv6 literal: the port follows the bracket
        return host if "]:" in host else f"{host}:{DEFAULT_PORT}"
    return host if ":" in host else f"{host}:{DEFAULT_PORT}"

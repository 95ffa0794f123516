"""Where a SQLite store's file is, from its URL or its ``path`` option."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from runce.errors import ConfigError
from runce.stores.base import StoreSpec

DEFAULT_URL = "sqlite:///.runce/runce.db"
KNOWN_OPTIONS = frozenset({"path", "busy_timeout", "synchronous"})
SYNCHRONOUS = ("full", "normal")  # PRAGMA synchronous levels a store may ask for


def database_path(spec: StoreSpec) -> Path:
    """The absolute path of the file; relative paths are relative to ``spec.base_dir``."""
    _check_options(spec.options)
    if spec.url is None and "path" in spec.options:
        raw = Path(str(spec.options["path"])).expanduser()
    else:
        raw = _path_in_url(spec.url or DEFAULT_URL)
    return (spec.base_dir / raw).resolve()


def busy_timeout(spec: StoreSpec, default: float) -> float:
    value = spec.options.get("busy_timeout", default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(
            f"the sqlite store's busy_timeout option must be a number of seconds, not {value!r}"
        )
    return float(value)


def synchronous(spec: StoreSpec) -> str:
    """``full`` (the default: every commit is on disk before it returns) or ``normal`` (in
    WAL mode, commits survive a crash of the process but not of the machine)."""
    value = spec.options.get("synchronous", "full")
    if not isinstance(value, str) or value.lower() not in SYNCHRONOUS:
        raise ConfigError(
            f"the sqlite store's synchronous option must be 'full' or 'normal', not {value!r}"
        )
    return value.lower()


def url_of(path: Path) -> str:
    """``sqlite:///`` followed by the absolute path (so four slashes on POSIX)."""
    return f"sqlite:///{path}"


def _path_in_url(url: str) -> Path:
    # sqlite:///relative/x.db -> "/relative/x.db" -> relative; sqlite:////abs/x.db -> absolute.
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite" or parts.netloc or not parts.path.startswith("/"):
        raise ConfigError(
            f"{url!r} is not a SQLite store URL; use sqlite:///relative/path.db "
            "(relative to the config file) or sqlite:////absolute/path.db"
        )
    path = unquote(parts.path[1:])
    if not path or path.endswith("/"):
        raise ConfigError(f"the SQLite store URL {url!r} names no file")
    return Path(path)


def _check_options(options: Mapping[str, Any]) -> None:
    unknown = sorted(set(options) - KNOWN_OPTIONS)
    if unknown:
        raise ConfigError(
            f"unknown option(s) for the sqlite store: {', '.join(unknown)}; "
            f"known: {', '.join(sorted(KNOWN_OPTIONS))}"
        )

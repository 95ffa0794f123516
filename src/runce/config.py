"""Finding, reading and validating configuration (docs/configuration.md).

A configuration is found in the current directory or a parent, in this order:
``runce.toml``, ``[tool.runce]`` in ``pyproject.toml``, ``runce_config.py`` (exporting
``config = runce.define_config(...)``). Two candidates in one directory is an error. With
none, runce uses its defaults relative to the current directory.

Values come from, strongest first: arguments (CLI flags), environment variables, the file,
the defaults. Every key is described once, in :data:`KEYS`; the docs' table is made from it.
Validation is hand-written rather than pydantic so that ``runce run`` starts fast.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import sys
import threading
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from runce.defaults import CONFIG_FILES, DEFAULT_STORE_URL, DEFAULT_TASKS_DIR
from runce.errors import ConfigError, UsageError
from runce.stores.base import StoreSpec
from runce.stores.registry import is_builtin, known_types, scheme_of

# Keys masked in runce's logs and run errors unless worker.redact says otherwise
# (docs/runs.md#secrets).
DEFAULT_REDACT: tuple[str, ...] = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "access_key",
    "private_key",
    "credentials",
)

# ---------------------------------------------------------------------------------------
# Value parsers: each takes the raw value and returns the clean one or raises ValueError
# with the part of a sentence that follows "KEY must be".
# ---------------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object) -> float:
    """Seconds from a number, or from a string like ``"500ms"``, ``"90s"``, ``"5m"``, ``"30d"``."""
    if isinstance(value, bool):
        raise ValueError("a duration in seconds or a string like '90s', '5m' or '30d'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError("a duration in seconds or a string like '90s', '5m' or '30d'")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("a finite duration that is not negative")
    return seconds


def _millis(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("a number of milliseconds")
    if not math.isfinite(value) or value < 0:
        raise ValueError("a finite number of milliseconds that is not negative")
    return float(value) / 1000


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a non-empty string")
    return value


def _identifier(value: object) -> str:
    text = _text(value)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", text):
        raise ValueError("a name of letters, digits and _ (not starting with a digit)")
    return text


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
        return _BOOL_WORDS[value.strip().lower()]
    raise ValueError("true or false")


_BOOL_WORDS = {"1": True, "true": True, "yes": True, "on": True}
_BOOL_WORDS.update({"0": False, "false": False, "no": False, "off": False})


def _positive_int(value: object) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("a whole number of at least 1")
    return value


def _port(value: object) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError("a TCP port number from 1 to 65535")
    return value


_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KB": 1000, "KiB": 1024, "MB": 1000**2, "MiB": 1024**2}


def _byte_size(value: object) -> int:
    """Bytes from a whole number or a string like ``"512KiB"`` or ``"2MiB"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None or int(match.group(1)) < 1:
        raise ValueError("a size in bytes of at least 1, or a string like '512KiB' or '2MiB'")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


@dataclass(frozen=True)
class Rate:
    """A token bucket: ``count`` requests per ``per`` seconds, up to ``count`` at once."""

    count: int
    per: float

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "m", 3600.0: "h"}[self.per]
        return f"{self.count}/{unit}"


_RATE = re.compile(r"^\s*(\d+)\s*/\s*(s|m|h)\s*$")


def _rate(value: object) -> Rate | None:
    """``"20/s"``, ``"600/m"`` or ``"5000/h"``; ``"off"`` for no limit."""
    if isinstance(value, str) and value.strip().lower() == "off":
        return None
    match = _RATE.match(value) if isinstance(value, str) else None
    if match is None or int(match.group(1)) < 1:
        raise ValueError("a rate like '20/s', '600/m' or '5000/h', or 'off'")
    return Rate(int(match.group(1)), {"s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2)])


def _import_paths(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError("a list of module import paths")
    return tuple(value)


def _words(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("a list of names")
    return tuple(v.strip() for v in value if v.strip())


def _choice(*options: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if value not in options:
            raise ValueError(" or ".join(repr(o) for o in options))
        return str(value)

    return parse


def _addresses(value: object) -> tuple[str, ...]:
    """IP addresses and networks, or ``*`` (any): the proxies whose forwarded headers count."""
    try:
        words = _words(value)
    except ValueError:
        words = ("not a list",)
    if not all(word == "*" or _is_address(word) for word in words):
        raise ValueError(
            "a list of IP addresses or networks (such as '10.0.0.7' or '10.0.0.0/8'), or '*'"
        )
    return words


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def _auto_or_true(value: object) -> str | bool:
    word = value.strip().lower() if isinstance(value, str) else value
    if word == "auto":
        return "auto"
    if word is True or word == "true":
        return True
    raise ValueError("'auto' (Secure when the request came over HTTPS) or true (always)")


def _import_path(value: object) -> str:
    text = _text(value)
    if not re.fullmatch(r"[\w.]+:[\w.]+", text):
        raise ValueError("an import path like 'myapp.runce:services'")
    return text


def _table(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("a table")
    return value


DAY = 86400.0
YEAR = 365 * DAY
# The ranges of the command-line options and keyword arguments that have no key of their own.
MAX_CONCURRENCY = 1000  # as worker.concurrency
MAX_WAIT = DAY  # `--wait` for the lock, run_pending_on_boot(wait=)
MAX_RUN_TIME = YEAR  # `runce worker --max-time`, `runce runs tail --timeout`, runce.wait()
MAX_ATTEMPTS = 1000  # as worker.max_attempts: @runce.job(max_attempts=)
MIN_TIMEOUT = 0.001  # @runce.job(timeout=): more than nothing, at most MAX_RUN_TIME


def format_span(seconds: float) -> str:
    """A duration in the largest unit that divides it: ``10ms``, ``90s``, ``1h``, ``30d``."""
    for unit, size in (("d", DAY), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{seconds / size:g}{unit}"
    if seconds == 0:
        return "0s"
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


def _show(kind: str) -> Callable[[float], str]:
    if kind == "duration":
        return format_span
    if kind == "size":
        return _bytes
    return lambda value: f"{value:g}"


def _bytes(value: float) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value >= size and (value / size).is_integer():
            return f"{value / size:g} {unit}"
    return f"{value:g} B"


def check_range(value: float, low: float, high: float, kind: str = "duration") -> None:
    """Raise ValueError (the part of a sentence after "must be") outside ``low`` … ``high``."""
    if not low <= value <= high:
        show = _show(kind)
        raise ValueError(f"between {show(low)} and {show(high)}")


def bounded(name: str, value: Any, low: float, high: float, duration: bool = True) -> Any:
    """A keyword argument or option of the library checked against its range: a number of
    seconds (``duration``) or a whole number from ``low`` to ``high``, else a UsageError."""
    what = "a number of seconds" if duration else "a whole number"
    allowed = (int, float) if duration else (int,)
    if (
        isinstance(value, bool)
        or not isinstance(value, allowed)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        show = _show("duration" if duration else "integer")
        raise UsageError(f"{name} must be {what} from {show(low)} to {show(high)}, got {value!r}")
    return value


@dataclass(frozen=True)
class Key:
    """One configuration key, as the docs' table shows it."""

    name: str  # dotted: "lock.ttl"
    parse: Callable[[object], Any]
    default: Any
    kind: str
    env: str | None = None
    unit: str = ""
    aliases: tuple[str, ...] = ()
    help: str = ""
    # The valid range of a duration (seconds) or count, both ends included.
    low: float | None = None
    high: float | None = None

    @property
    def range_text(self) -> str:
        """The range as the docs' table shows it, e.g. ``1s to 1d``."""
        if self.low is None or self.high is None:
            return ""
        show = _show(self.kind)
        return f"{show(self.low)} to {show(self.high)}"

    def check(self, value: Any) -> None:
        """Raise ValueError when a parsed value lies outside the key's range."""
        if self.low is not None and self.high is not None:
            check_range(value, self.low, self.high, self.kind)


KEYS: tuple[Key, ...] = (
    Key(
        "tasks_dir",
        _text,
        DEFAULT_TASKS_DIR,
        "path",
        "RUNCE_TASKS_DIR",
        aliases=("tasksDir",),
        help="Folder of task files, relative to the config file.",
    ),
    Key(
        "store",
        _text,
        DEFAULT_STORE_URL,
        "URL",
        "RUNCE_STORE_URL",
        help="Where records live: sqlite://, postgresql://, mongodb://, file://, memory://.",
    ),
    Key(
        "tracker",
        _table,
        None,
        "table",
        None,
        help='The seed\'s form of `store`: { type = "mongo", options = { uri, db, ... } }.',
    ),
    Key(
        "auto_migrate",
        _boolean,
        True,
        "bool",
        "RUNCE_AUTO_MIGRATE",
        aliases=("autoMigrate",),
        help="Create or upgrade runce's schema on the first write.",
    ),
    Key(
        "schema",
        _identifier,
        "runce",
        "string",
        "RUNCE_SCHEMA",
        help="PostgreSQL schema that holds runce's tables (created if missing).",
    ),
    Key(
        "lock.enabled",
        _boolean,
        True,
        "bool",
        "RUNCE_LOCK_ENABLED",
        help="Take the global lock while running tasks.",
    ),
    Key(
        "lock.ttl",
        parse_duration,
        60.0,
        "duration",
        "RUNCE_LOCK_TTL",
        "seconds",
        aliases=("ttlMs",),
        help="Lease length; renewed every ttl/3 while a runner works. `ttlMs` is in milliseconds.",
        low=1.0,
        high=DAY,
    ),
    Key(
        "lock.owner",
        _text,
        None,
        "string",
        "RUNCE_LOCK_OWNER",
        help="A label for the lock holder shown to people (default: the host name).",
    ),
    Key(
        "on_drift",
        _choice("fail", "warn"),
        "fail",
        "`fail` or `warn`",
        "RUNCE_ON_DRIFT",
        aliases=("onDrift",),
        help="What `run` does when an applied task's file changed.",
    ),
    Key(
        "on_out_of_order",
        _choice("run", "fail"),
        "run",
        "`run` or `fail`",
        "RUNCE_ON_OUT_OF_ORDER",
        aliases=("onOutOfOrder",),
        help="What `run` does with a pending task older than an applied one.",
    ),
    Key(
        "services",
        _import_path,
        None,
        "import path",
        "RUNCE_SERVICES",
        help="A factory whose result tasks and jobs get as ctx.services.",
    ),
    Key(
        "dry_run",
        _boolean,
        False,
        "bool",
        "RUNCE_DRY_RUN",
        aliases=("dryRun",),
        help="Make every `run` a dry run.",
    ),
    Key(
        "worker.handlers",
        _import_paths,
        (),
        "list of modules",
        "RUNCE_WORKER_HANDLERS",
        help="Modules that define jobs (comma-separated in the variable).",
    ),
    Key(
        "worker.concurrency",
        _positive_int,
        5,
        "integer",
        "RUNCE_WORKER_CONCURRENCY",
        help="Jobs a worker runs at once.",
        low=1,
        high=MAX_CONCURRENCY,
    ),
    Key(
        "worker.lease",
        parse_duration,
        30.0,
        "duration",
        "RUNCE_WORKER_LEASE",
        "seconds",
        help="How long a claimed run stays reserved without a heartbeat (renewed every lease/3).",
        low=1.0,
        high=DAY,
    ),
    Key(
        "worker.poll",
        parse_duration,
        1.0,
        "duration",
        "RUNCE_WORKER_POLL",
        "seconds",
        help="Longest wait between looks for due runs (new work wakes a worker sooner; an idle "
        "worker, woken by new work, looks every two polls).",
        low=0.01,
        high=3600.0,
    ),
    Key(
        "worker.max_attempts",
        _positive_int,
        3,
        "integer",
        "RUNCE_WORKER_MAX_ATTEMPTS",
        help="Attempts for runs whose enqueue and job do not say.",
        low=1,
        high=MAX_ATTEMPTS,
    ),
    Key(
        "worker.backoff_base",
        parse_duration,
        60.0,
        "duration",
        "RUNCE_WORKER_BACKOFF_BASE",
        "seconds",
        help="Retry delay after the first failure; doubles per attempt, jittered.",
        low=0.0,
        high=DAY,
    ),
    Key(
        "worker.shutdown_timeout",
        parse_duration,
        30.0,
        "duration",
        "RUNCE_WORKER_SHUTDOWN_TIMEOUT",
        "seconds",
        help="How long a stopping worker lets running jobs finish before handing them back.",
        low=0.0,
        high=DAY,
    ),
    Key(
        "worker.secrets",
        _import_path,
        None,
        "import path",
        "RUNCE_WORKER_SECRETS",
        help="A function NAME -> value (or None) resolving secret references; "
        "default: the worker's environment.",
    ),
    Key(
        "worker.redact",
        _words,
        DEFAULT_REDACT,
        "list of keys",
        "RUNCE_WORKER_REDACT",
        help="Keys whose values are masked in runce's logs and run errors (case-insensitive).",
    ),
    Key(
        "worker.metrics_port",
        _port,
        None,
        "integer",
        "RUNCE_WORKER_METRICS_PORT",
        help="Serve the worker's Prometheus metrics on this port (needs `nurv-runce[metrics]`).",
    ),
    Key(
        "runs.retention.succeeded",
        parse_duration,
        30 * 86400.0,
        "duration",
        None,
        "seconds",
        help="Pruning (workers, `runce runs prune`) deletes succeeded runs finished before.",
        low=1.0,
        high=100 * YEAR,
    ),
    Key(
        "runs.retention.failed",
        parse_duration,
        90 * 86400.0,
        "duration",
        None,
        "seconds",
        help="Pruning deletes failed and canceled runs finished longer ago than this.",
        low=1.0,
        high=100 * YEAR,
    ),
    Key(
        "runs.retention.auto",
        _boolean,
        True,
        "bool",
        "RUNCE_RUNS_RETENTION_AUTO",
        help="Workers prune by `runs.retention` on `runs.retention.schedule`, one per tick.",
    ),
    Key(
        "runs.retention.schedule",
        _text,
        "@hourly",
        "cron",
        "RUNCE_RUNS_RETENTION_SCHEDULE",
        help="When workers prune (a cron expression in UTC; checked when a worker starts).",
    ),
    Key(
        "runs.retention.batch",
        _positive_int,
        1000,
        "integer",
        None,
        help="Runs one prune transaction deletes at most; a prune loops in such batches.",
        low=1,
        high=100_000,
    ),
    Key(
        "api.host",
        _text,
        "127.0.0.1",
        "string",
        "RUNCE_API_HOST",
        help="The address `runce serve` listens on (`0.0.0.0` for every interface).",
    ),
    Key(
        "api.port",
        _port,
        8080,
        "integer",
        "RUNCE_API_PORT",
        help="The TCP port `runce serve` listens on.",
        low=1,
        high=65535,
    ),
    Key(
        "api.max_body",
        _byte_size,
        1024 * 1024,
        "size",
        "RUNCE_API_MAX_BODY",
        "bytes",
        help='Largest request body the HTTP API reads (larger: 413); `"512KiB"`, `"2MiB"`.',
        low=1,
        high=1024**3,
    ),
    Key(
        "api.rate_limit.enqueue",
        _rate,
        Rate(50, 1.0),
        "rate",
        "RUNCE_API_RATE_LIMIT_ENQUEUE",
        help='Enqueues per token: `"N/s"`, `"N/m"` or `"N/h"` (bursts up to N), or `"off"`.',
    ),
    Key(
        "api.rate_limit.cancel",
        _rate,
        Rate(10, 1.0),
        "rate",
        "RUNCE_API_RATE_LIMIT_CANCEL",
        help="Cancels per token, in the same form; over the limit: 429 with `Retry-After`.",
    ),
    Key(
        "api.header_timeout",
        parse_duration,
        10.0,
        "duration",
        "RUNCE_API_HEADER_TIMEOUT",
        "seconds",
        help="Time a connection has to send a request's head (then closed, 408).",
        low=0.01,
        high=3600.0,
    ),
    Key(
        "api.body_timeout",
        parse_duration,
        30.0,
        "duration",
        "RUNCE_API_BODY_TIMEOUT",
        "seconds",
        help="Time a request's body has to arrive after its head (then 408).",
        low=0.01,
        high=3600.0,
    ),
    Key(
        "api.max_connections",
        _positive_int,
        1000,
        "integer",
        "RUNCE_API_MAX_CONNECTIONS",
        help="Open connections `runce serve` keeps; requests past it get 503 at once.",
        low=1,
        high=1_000_000,
    ),
    Key(
        "api.public_metrics",
        _boolean,
        False,
        "bool",
        "RUNCE_API_PUBLIC_METRICS",
        help="Serve `GET /metrics` without a token (else: a token with `runs:read`).",
    ),
    Key(
        "api.forwarded_allow_ips",
        _addresses,
        ("127.0.0.1", "::1"),
        "list of addresses",
        "RUNCE_API_FORWARDED_ALLOW_IPS",
        help="Proxies (IP addresses or networks, or `*`) whose `X-Forwarded-Proto` and "
        "`X-Forwarded-For` `runce serve` believes.",
    ),
    Key(
        "api.secure_cookies",
        _auto_or_true,
        "auto",
        "auto or true",
        "RUNCE_API_SECURE_COOKIES",
        help="The dashboard's cookies are `Secure`: `auto` when the request came over HTTPS "
        "(as a trusted proxy says), `true` always.",
    ),
)
_BY_NAME = {key.name: key for key in KEYS}
_ALIASES = {
    f"{key.name.rpartition('.')[0]}.{a}".lstrip("."): key.name for key in KEYS for a in key.aliases
}
_TABLES = {"lock", "worker", "runs", "runs.retention", "api", "api.rate_limit"}
# Aliases whose value is in milliseconds (the seed's `ttlMs`), converted as they are read.
_MILLISECOND_ALIASES = {"lock.ttlMs"}


# ---------------------------------------------------------------------------------------
# The resolved configuration
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockSettings:
    enabled: bool = True
    ttl: float = 60.0
    owner: str | None = None


@dataclass(frozen=True)
class WorkerSettings:
    handlers: tuple[str, ...] = ()
    concurrency: int = 5
    lease: float = 30.0
    poll: float = 1.0
    max_attempts: int = 3
    backoff_base: float = 60.0
    shutdown_timeout: float = 30.0
    secrets: str | None = None
    redact: tuple[str, ...] = DEFAULT_REDACT
    metrics_port: int | None = None


@dataclass(frozen=True)
class RetentionSettings:
    succeeded: float = 30 * 86400.0
    failed: float = 90 * 86400.0
    auto: bool = True
    schedule: str = "@hourly"
    batch: int = 1000


@dataclass(frozen=True)
class ApiSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body: int = 1024 * 1024
    enqueue_rate: Rate | None = Rate(50, 1.0)
    cancel_rate: Rate | None = Rate(10, 1.0)
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1000
    public_metrics: bool = False
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1", "::1")
    secure_cookies: str | bool = "auto"  # "auto" or True


@dataclass(frozen=True)
class Config:
    """A validated configuration with every path resolved."""

    base_dir: Path
    tasks_dir: Path
    store: StoreSpec
    path: Path | None = None
    lock: LockSettings = field(default_factory=LockSettings)
    on_drift: Literal["fail", "warn"] = "fail"
    on_out_of_order: Literal["run", "fail"] = "run"
    services: str | None = None
    dry_run: bool = False
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    api: ApiSettings = field(default_factory=ApiSettings)

    @property
    def source(self) -> str:
        return str(self.path) if self.path else "defaults (no runce.toml found)"


@dataclass(frozen=True)
class ConfigValues:
    """What ``runce_config.py`` exports: the keys of a config file, as Python values."""

    values: Mapping[str, Any]


def define_config(**values: Any) -> ConfigValues:
    """Declare configuration in ``runce_config.py``: ``config = runce.define_config(...)``.

    Takes the same keys as ``runce.toml``. Keys are checked when the file is loaded, so an
    error names the file.
    """
    return ConfigValues(values)


# ---------------------------------------------------------------------------------------
# Finding and loading
# ---------------------------------------------------------------------------------------


def find_config_file(start: Path | None = None) -> Path | None:
    """The config file for ``start`` (default: the current directory) or a parent."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        found = [p for p in (directory / name for name in CONFIG_FILES) if _is_candidate(p)]
        if len(found) > 1:
            names = " and ".join(p.name for p in found)
            raise ConfigError(
                f"{directory} has two runce configurations ({names}); keep one, "
                "or pick one with --config"
            )
        if found:
            return found[0]
    return None


def _is_candidate(path: Path) -> bool:
    if not path.is_file():
        return False
    if path.name != "pyproject.toml":
        return True
    try:
        return "runce" in _read_toml(path).get("tool", {})
    except ConfigError:
        return False


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    start: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    values: ConfigValues | Mapping[str, Any] | None = None,
) -> Config:
    """Find (or read ``path``), validate and resolve a configuration.

    ``overrides`` are dotted keys from the command line and win over everything;
    ``values`` stand in for a file (resolved against ``start``).
    """
    env = os.environ if env is None else env
    if values is not None:
        file_path, raw = None, _values_of(values)
    else:
        file_path = Path(path).resolve() if path is not None else find_config_file(start)
        raw = _read_file(file_path) if file_path is not None else {}
    where = file_path.name if file_path else "configuration"
    base_dir = file_path.parent if file_path else (start or Path.cwd()).resolve()
    flat = _flatten(_interpolate(raw, where, env), where)
    settings = _merge(flat, env, dict(overrides or {}), where)
    _put_first_on_path(base_dir)
    return _build(settings, base_dir, file_path, where)


def _values_of(values: ConfigValues | Mapping[str, Any]) -> dict[str, Any]:
    return dict(values.values if isinstance(values, ConfigValues) else values)


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    if path.suffix == ".py":
        return _read_python(path)
    data = _read_toml(path)
    if path.name == "pyproject.toml":
        tool = data.get("tool", {}).get("runce")
        if not isinstance(tool, dict):
            raise ConfigError(f"{path} has no [tool.runce] table")
        return tool
    return data


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML: byte {exc.start} is not UTF-8 (TOML files are UTF-8)"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc


def _read_python(path: Path) -> dict[str, Any]:
    import runpy

    _put_first_on_path(path.parent)
    try:
        namespace = runpy.run_path(str(path))
    except Exception as exc:
        raise ConfigError(f"{path} raised {type(exc).__name__} while loading: {exc}") from exc
    found = namespace.get("config")
    if isinstance(found, ConfigValues):
        return dict(found.values)
    if isinstance(found, dict):
        return found
    raise ConfigError(f"{path} must export `config = runce.define_config(...)`")


_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def resolution_key(config: ConfigArg) -> tuple[object, ...] | None:
    """What :func:`resolve_config` makes of ``config`` depends on, as a key to keep the
    result by; None when that cannot be told without resolving it (None, a ``Config``, keys
    that are not plain data, a file that cannot be read).

    For keys (a dict or a ``define_config`` result) or a file: the keys or the file's
    bytes, the current directory (relative paths resolve against it), the ``RUNCE_``
    environment variables and those that ``${NAME}`` references name. What a Python config
    file reads from elsewhere is not in the key, as for the file found when none is given.
    """
    path: str | None = None
    if isinstance(config, ConfigValues | Mapping):
        text = _plain_repr(config.values if isinstance(config, ConfigValues) else config)
        if text is None:
            return None
        given: str | bytes = text
    elif isinstance(config, str | os.PathLike):
        path = os.fspath(config)
        try:
            with open(path, "rb") as handle:
                given = handle.read()
        except OSError:
            return None  # resolving it says what is wrong
        text = given.decode("utf-8", "replace")
    else:
        return None
    named = sorted({m.group(1) for m in _ENV_REF.finditer(text) if m.group(1)})
    referenced = tuple((name, os.environ.get(name)) for name in named)
    return (path, given, os.getcwd(), referenced, runce_environment())


# The types whose repr says all a value holds (a str subclass may hide a secret in its repr).
_PLAIN = frozenset({str, int, float, bool, type(None), type(Path())})


def _plain_repr(values: Mapping[str, Any]) -> str | None:
    """``repr`` of configuration keys made only of strings, numbers, paths, and lists and
    tables of them (what a TOML file can say); None for anything else (a services factory,
    a ``StoreSpec``), whose repr may not tell two values apart."""
    values = dict(values)
    return repr(values) if _plain(values, 0) else None


def _plain(value: object, depth: int) -> bool:
    kind = type(value)
    if kind in _PLAIN:
        return True
    if depth > 32:
        return False
    if isinstance(value, dict) and kind is dict:
        return all(type(k) is str and _plain(v, depth + 1) for k, v in value.items())
    if isinstance(value, list | tuple) and kind in (list, tuple):
        return all(_plain(v, depth + 1) for v in value)
    if isinstance(value, StoreSpec) and kind is StoreSpec:  # runce.stores.from_*(...)
        return _plain(dict(value.options), depth + 1) and type(value.base_dir) in _PLAIN
    return False


def runce_environment() -> tuple[tuple[Any, Any], ...]:
    """The ``RUNCE_`` environment variables, as a key for the configuration they shape.

    Read on every enqueue: CPython keeps the variables encoded in ``os.environ._data``, and
    looking at those skips decoding all of them (ten times faster than ``os.environ.items``).
    """
    data = getattr(os.environ, "_data", None)
    if isinstance(data, dict):
        prefix = os.environ.encodekey("RUNCE_")
        return tuple(sorted(item for item in data.items() if item[0][:6] == prefix))
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("RUNCE_")))


def _interpolate(value: Any, where: str, env: Mapping[str, str], key: str = "") -> Any:
    """Replace ``${NAME}`` and ``${NAME:-default}`` in strings; ``$$`` is a literal ``$``."""
    if isinstance(value, dict):
        return {k: _interpolate(v, where, env, f"{key}.{k}".lstrip(".")) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, where, env, key) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if default is not None:  # as in the shell, `:-` also covers a set but empty variable
            return env.get(name) or default
        if name in env:
            return env[name]
        raise ConfigError(f"{where}: {key} uses ${{{name}}}, which is not set in the environment")

    return _ENV_REF.sub(substitute, value)


def _flatten(raw: Mapping[str, Any], where: str, prefix: str = "") -> dict[str, Any]:
    """Dotted keys from nested tables, with aliases mapped and unknown keys refused."""
    flat: dict[str, Any] = {}
    for name, value in raw.items():
        given = f"{prefix}{name}"
        dotted = _ALIASES.get(given, given)
        if given in _MILLISECOND_ALIASES:
            value = _from_millis(value, where, given)
        if dotted in _TABLES:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {dotted} must be a table")
            flat.update(_flatten(value, where, f"{dotted}."))
        elif dotted in _BY_NAME:
            flat[dotted] = value
        else:
            raise ConfigError(f"{where}: unknown key {dotted!r}{_known_hint(prefix)}")
    return flat


def _from_millis(value: object, where: str, key: str) -> float:
    try:
        return _millis(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {key} must be {exc}, got {value!r}") from None


def _known_hint(prefix: str) -> str:
    names = sorted({k.name[len(prefix) :].split(".")[0] for k in KEYS if k.name.startswith(prefix)})
    return f" (known keys{' in ' + prefix.rstrip('.') if prefix else ''}: {', '.join(names)})"


def _merge(
    flat: dict[str, Any], env: Mapping[str, str], overrides: dict[str, Any], where: str
) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for key in KEYS:
        source, raw = where, flat.get(key.name)
        if key.env and env.get(key.env):
            source, raw = f"environment variable {key.env}", env[key.env]
        if overrides.get(key.name) is not None:
            source, raw = "the command line", overrides[key.name]
        if raw is None:
            settings[key.name] = key.default
            continue
        if isinstance(raw, StoreSpec) and key.name == "store":  # runce.stores.from_*(...)
            settings[key.name] = raw
            continue
        try:
            settings[key.name] = key.parse(raw)
            key.check(settings[key.name])
        except ValueError as exc:
            raise ConfigError(f"{source}: {key.name} must be {exc}, got {raw!r}") from None
        if key.name == "store" and "tracker" in flat and source == where:
            raise ConfigError(f"{where}: set either store or tracker, not both")
    return settings


def _build(settings: dict[str, Any], base_dir: Path, path: Path | None, where: str) -> Config:
    return Config(
        base_dir=base_dir,
        tasks_dir=(base_dir / settings["tasks_dir"]).resolve(),
        store=_store_spec(settings, base_dir, where),
        path=path,
        lock=LockSettings(settings["lock.enabled"], settings["lock.ttl"], settings["lock.owner"]),
        on_drift=settings["on_drift"],
        on_out_of_order=settings["on_out_of_order"],
        services=settings["services"],
        dry_run=settings["dry_run"],
        worker=WorkerSettings(
            **{k.partition(".")[2]: v for k, v in settings.items() if k.startswith("worker.")}
        ),
        retention=RetentionSettings(
            **{
                k.rpartition(".")[2]: v
                for k, v in settings.items()
                if k.startswith("runs.retention.")
            }
        ),
        api=ApiSettings(
            settings["api.host"],
            settings["api.port"],
            settings["api.max_body"],
            settings["api.rate_limit.enqueue"],
            settings["api.rate_limit.cancel"],
            settings["api.header_timeout"],
            settings["api.body_timeout"],
            settings["api.max_connections"],
            settings["api.public_metrics"],
            settings["api.forwarded_allow_ips"],
            settings["api.secure_cookies"],
        ),
    )


def _store_spec(settings: dict[str, Any], base_dir: Path, where: str) -> StoreSpec:
    tracker = settings["tracker"]
    common = {
        "base_dir": base_dir,
        "auto_migrate": settings["auto_migrate"],
        "schema": settings["schema"],
    }
    if tracker is not None and settings["store"] == DEFAULT_STORE_URL:
        return _tracker_spec(tracker, where, common)
    if isinstance(settings["store"], StoreSpec):
        return replace(settings["store"], **common)
    url = settings["store"]
    try:
        type_name = scheme_of(url)
    except Exception as exc:
        raise ConfigError(f"{where}: store: {exc}") from None
    _check_type(type_name, where, "store")
    return StoreSpec(type=type_name, url=url, **common)


def _tracker_spec(tracker: dict[str, Any], where: str, common: dict[str, Any]) -> StoreSpec:
    unknown = set(tracker) - {"type", "options"}
    if unknown:
        raise ConfigError(
            f"{where}: unknown key 'tracker.{sorted(unknown)[0]}' "
            "(known keys in tracker: options, type)"
        )
    type_name = tracker.get("type")
    options = tracker.get("options", {})
    if not isinstance(type_name, str) or not type_name:
        raise ConfigError(f"{where}: tracker.type must be a store type such as 'mongo' or 'sqlite'")
    if not isinstance(options, dict):
        raise ConfigError(f"{where}: tracker.options must be a table")
    _check_type(type_name, where, "tracker.type")
    url = options.get("uri") or options.get("url")
    return StoreSpec(type=type_name.lower(), url=url, options=options, **common)


def _check_type(type_name: str, where: str, key: str) -> None:
    if is_builtin(type_name):
        return  # without reading every installed package's entry points
    known = known_types()
    if type_name.lower() not in known:
        raise ConfigError(
            f"{where}: {key}: no store is registered for {type_name!r} (known: {', '.join(known)})"
        )


def _put_first_on_path(directory: Path) -> None:
    """Console scripts do not put the current directory on sys.path; the config's dir goes first."""
    text = str(directory)
    if not sys.path or sys.path[0] != text:
        if text in sys.path:
            sys.path.remove(text)
        sys.path.insert(0, text)


def load_services(config: Config) -> Any:
    """Call the ``services`` factory (docs/configuration.md); None when none is configured."""
    if config.services is None:
        return None
    target = import_object(config.services, f"{config.source}: services")
    return target() if callable(target) else target


def import_object(path: str, where: str) -> Any:
    """The object an import path ``module:attr.attr`` names; ``where`` prefixes an error."""
    import importlib

    module_name, _, attr = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{where} {path!r} cannot be imported: {exc}") from exc
    return target


ConfigArg = Config | str | os.PathLike[str] | ConfigValues | Mapping[str, Any] | None

# What a framework set as the configuration used when none is given (use_framework_config).
FrameworkConfig = Config | Mapping[str, Any] | Callable[[], Mapping[str, Any]]
_framework: tuple[FrameworkConfig, Path] | None = None


def use_framework_config(config: FrameworkConfig | None, start: Path | None = None) -> None:
    """Make ``config`` the configuration used when none is given, instead of looking for a
    file: a :class:`Config` (an ASGI app's lifespan), the keys of one resolved against
    ``start``, or a function giving those keys, called each time the configuration is
    resolved (the Django app's: its store follows ``DATABASES``, the test database
    included). None looks for a file again."""
    global _framework
    _framework = None if config is None else (config, start or Path.cwd())


@contextmanager
def framework_config_in_use(config: Config) -> Iterator[None]:
    """:func:`use_framework_config` for the block; then back to what was set before (unless
    something else set another configuration in the meantime)."""
    global _framework
    before = _framework
    use_framework_config(config)
    mine = _framework
    try:
        yield
    finally:
        if _framework is mine:
            _framework = before


def framework_config() -> Config | tuple[dict[str, Any], Path] | None:
    """The configuration a framework set, as it is now: a :class:`Config`, or the keys of
    one with the folder they are resolved against; None when no framework set one."""
    if _framework is None:
        return None
    config, start = _framework
    if isinstance(config, Config):
        return config
    return dict(config() if callable(config) else config), start


def resolve_config(config: ConfigArg = None, **overrides: Any) -> Config:
    """Turn any accepted ``config`` argument into a validated :class:`Config`."""
    cleaned = {k: v for k, v in overrides.items() if v is not None}
    if config is None:
        framework = framework_config()
        if isinstance(framework, Config):
            config = framework
        elif framework is not None:
            values, start = framework
            return load_config(values=values, start=start, overrides=cleaned)
    if isinstance(config, Config):
        if not cleaned:
            return config
        return load_config(config.path, start=config.base_dir, overrides=cleaned)
    if isinstance(config, ConfigValues | Mapping):
        return load_config(values=config, overrides=cleaned)
    return load_config(config, overrides=cleaned)


class ServiceFactory:
    """Makes ``ctx.services`` once, on first use, from whichever thread asks first
    (docs/configuration.md)."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._mutex = threading.Lock()
        self._made = False
        self._value: Any = None

    def get(self) -> Any:
        with self._mutex:
            if not self._made:
                self._value = load_services(self._config)
                self._made = True
            return self._value

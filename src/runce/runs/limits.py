"""The limits a run meets before any store sees it, the same on every store
(docs/runs.md#enqueueing).

Text is valid Unicode (no lone surrogates) without NUL characters; names and ids (kind,
project id, correlation id) are 1 to 200 characters without control characters. An input
or result is JSON nested at most :data:`MAX_DEPTH` levels whose integers fit in signed 64
bits. Priorities lie in ±1,000,000, ``max_attempts`` in 1 to 1,000, times in the UTC years
1970 to 9999. A store could keep some of the rest and not the others; refusing it at the
boundary keeps every store's answer the same, and keeps out rows no store can read back.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any

from runce.errors import InvalidInput, UsageError

MAX_TEXT = 200
MAX_DEPTH = 64
MIN_INT, MAX_INT = -(2**63), 2**63 - 1
MIN_PRIORITY, MAX_PRIORITY = -1_000_000, 1_000_000
MAX_ATTEMPTS = 1000
FIRST_YEAR, LAST_YEAR = 1970, 9999

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Candidates only: a long run of digits may sit in a string; the walk decides.
_LONG_DIGITS = re.compile(r"\d{19}")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = {"[": 1, "{": 1, "]": -1, "}": -1}
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


def check_text(value: Any, field: str, *, optional: bool = True) -> str | None:
    """A name or id (kind, project id, correlation id): 1 to 200 printable characters."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise UsageError(f"{field} is text, not {type(value).__name__}")
    shown = repr(value) if len(value) <= 40 else repr(value[:40]) + "…"
    if not 1 <= len(value) <= MAX_TEXT:
        raise UsageError(
            f"{field} {shown} must be 1 to {MAX_TEXT} characters (it has {len(value)})"
        )
    control = _CONTROL.search(value)
    if control is not None:
        raise UsageError(
            f"{field} {shown} holds the control character U+{ord(control.group()):04X}; "
            "it must be printable text"
        )
    surrogate = _SURROGATE.search(value)
    if surrogate is not None:
        raise UsageError(
            f"{field} {shown} is not valid Unicode text "
            f"(it holds a lone surrogate, U+{ord(surrogate.group()):04X})"
        )
    return value


def check_lookup(value: str | None, field: str) -> str | None:
    """Text a read looks for (a run id, a filter): none that a store cannot even be asked
    about, lone surrogates and NUL. Longer or odd text simply matches nothing."""
    if value is None:
        return None
    shown = repr(value) if len(value) <= 40 else repr(value[:40]) + "…"
    if _SURROGATE.search(value) is not None or "\x00" in value:
        raise UsageError(f"{field} {shown} is not valid text (a lone surrogate or a NUL)")
    return value


def check_priority(value: Any) -> int:
    return _whole_number(value, "priority", MIN_PRIORITY, MAX_PRIORITY)


def check_max_attempts(value: Any) -> int:
    return _whole_number(value, "max_attempts", 1, MAX_ATTEMPTS)


def _whole_number(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{field} must be a whole number, not {type(value).__name__}")
    if not low <= value <= high:
        raise UsageError(f"{field} must be between {low:,} and {high:,} (it is {value:,})")
    return value


def check_time(moment: datetime | None, field: str) -> datetime | None:
    """A time a store can keep and order: aware, within the UTC years 1970 to 9999."""
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        raise UsageError(f"{field} must be a datetime, not {type(moment).__name__}")
    try:
        utc = moment.astimezone(UTC) if moment.tzinfo is not None else moment
    except OverflowError:
        utc = None
    if utc is None or not FIRST_YEAR <= utc.year <= LAST_YEAR:
        raise UsageError(
            f"{field} {moment.isoformat()} is out of range "
            f"(times lie within the UTC years {FIRST_YEAR} to {LAST_YEAR})"
        )
    return moment


def check_json(text: str, value: Any, what: str) -> None:
    """Refuse an input or result (``value``, encoded as ``text``) that breaks a limit.

    Cheap looks at the text pick out the few values that may break one; only those are
    walked, which also names the place at fault.
    """
    suspect = (
        _SURROGATE.search(text) is not None
        or "\\u0000" in text
        or _LONG_DIGITS.search(text) is not None
        or (text.count("[") + text.count("{") > MAX_DEPTH and _depth(text) > MAX_DEPTH)
    )
    if not suspect:
        return
    problem = _problem(value, what, 0)
    if problem is not None:
        raise InvalidInput(f"the run's {problem}")


def _depth(text: str) -> int:
    """How deeply the JSON ``text`` nests, strings aside."""
    brackets = _NOT_BRACKETS.sub("", _STRING.sub("", text))
    return max(accumulate(map(_BRACKETS.__getitem__, brackets)), default=0)


def _problem(value: Any, where: str, depth: int) -> str | None:
    """What breaks a limit first in ``value`` (at ``where``), or None."""
    if isinstance(value, str):
        return _text_problem(value, where)
    if isinstance(value, bool) or not isinstance(value, int | dict | list | tuple):
        return None
    if isinstance(value, int):
        if MIN_INT <= value <= MAX_INT:
            return None
        shown = f"the integer {value}" if value.bit_length() < 200 else "an integer"
        return (
            f"{where} holds {shown}, outside the signed 64-bit range every "
            "store keeps (-2^63 to 2^63-1)"
        )
    if depth >= MAX_DEPTH:
        return f"{where} is nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, dict):
        for key, item in value.items():
            problem = _text_problem(key, f"{where} (a key)") if isinstance(key, str) else None
            problem = problem or _problem(item, f"{where}[{key!r}]", depth + 1)
            if problem is not None:
                return problem
        return None
    for index, item in enumerate(value):
        problem = _problem(item, f"{where}[{index}]", depth + 1)
        if problem is not None:
            return problem
    return None


def _text_problem(text: str, where: str) -> str | None:
    surrogate = _SURROGATE.search(text)
    if surrogate is not None:
        return (
            f"{where} is not valid Unicode text "
            f"(it holds a lone surrogate, U+{ord(surrogate.group()):04X})"
        )
    if "\x00" in text:
        return f"{where} holds a NUL character (\\u0000), which the stores cannot keep"
    return None

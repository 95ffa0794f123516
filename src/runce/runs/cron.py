"""Cron expressions: checking them and finding their next tick, in a schedule's timezone.

Five fields (minute hour day-of-month month day-of-week) as in crontab, the ``@hourly`` /
``@daily`` / ``@weekly`` / ``@monthly`` / ``@yearly`` shorthands, or six fields whose first
is the second (``*/10 * * * * *``: every ten seconds). Ticks are computed in the
schedule's IANA timezone, so ``0 9 * * *`` in ``Europe/Berlin`` stays at 09:00 local time
across daylight-saving changes, and are returned in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from runce.errors import UsageError

_FIELDS = (5, 6)


def check(expression: str, timezone: str) -> None:
    """Refuse an expression or timezone that cannot schedule anything, saying why."""
    next_tick(expression, timezone, datetime.now(UTC))


def next_tick(expression: str, timezone: str, after: datetime) -> datetime:
    """The first tick strictly after ``after``, in UTC."""
    from croniter import CroniterBadDateError

    start = after.astimezone(zone_of(timezone))
    try:
        tick: datetime = _iterator(expression, start).get_next(datetime)
    except CroniterBadDateError:
        raise UsageError(f"cron expression {expression!r} never fires") from None
    return tick.astimezone(UTC)


@cache
def zone_of(timezone: str) -> tzinfo:
    """The IANA timezone named ``timezone``; an unknown name is a UsageError."""
    if not isinstance(timezone, str) or not timezone:
        raise UsageError(f"timezone {timezone!r} must be an IANA name such as 'Europe/Berlin'")
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"unknown timezone {timezone!r}: use an IANA name such as 'UTC' or 'Europe/Berlin'"
        ) from None


def _fields_of(expression: str) -> list[str]:
    if not isinstance(expression, str) or not expression.strip():
        raise UsageError(f"cron expression {expression!r} is empty")
    fields = expression.split()
    if fields[0].startswith("@"):
        return fields
    if len(fields) not in _FIELDS:
        count = f"{len(fields)} field{'s' if len(fields) > 1 else ''}"
        raise UsageError(
            f"cron expression {expression!r} has {count}; expected 5 "
            "(minute hour day month weekday) or 6 (second first)"
        )
    return fields


def _iterator(expression: str, start: datetime) -> Any:
    from croniter import CroniterError, croniter

    seconds_first = len(_fields_of(expression)) == 6
    try:
        return croniter(expression, start, second_at_beginning=seconds_first)
    except CroniterError as exc:
        reason = str(exc).replace(f"[{expression}] ", "").removeprefix("is not acceptable")
        detail = f": {reason.strip(' ,')}" if reason.strip(" ,") else ""
        raise UsageError(f"cron expression {expression!r} is not valid{detail}") from None

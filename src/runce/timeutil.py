"""Times are timezone-aware UTC everywhere; stores that keep text use one ISO-8601 form."""

from __future__ import annotations

from datetime import UTC, datetime

# Fixed width with milliseconds and a "Z", so text comparison orders like time does
# (SQLite's ``strftime('%Y-%m-%dT%H:%M:%fZ', 'now')`` produces the same shape).
ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_iso(moment: datetime) -> str:
    """Format an aware datetime as fixed-width ISO-8601 UTC text with milliseconds."""
    text = moment.astimezone(UTC).strftime(ISO_FORMAT)
    return text[:-4] + "Z"  # microseconds -> milliseconds


def json_time(moment: datetime) -> str:
    """RFC 3339 UTC text ending in ``Z``, as every ``--json`` output and the HTTP API write
    times (a naive time is taken as UTC)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def from_iso(text: str) -> datetime:
    """Parse text written by :func:`to_iso` (or any ISO-8601 form) into an aware UTC datetime."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


# A stored time written around runce that is not one (hand-edited text in SQLite, a string
# in a MongoDB date field) reads as this, so that its record is shown, never a failure.
UNREADABLE_TIME = datetime(1970, 1, 1, tzinfo=UTC)


def stored_time(text: str) -> datetime:
    """:func:`from_iso` for a time read back from a store: one that is not a time reads as
    :data:`UNREADABLE_TIME` (docs/runs.md)."""
    try:
        return from_iso(text)
    except (TypeError, ValueError, AttributeError):
        return UNREADABLE_TIME

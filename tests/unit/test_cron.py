"""Cron expressions and schedule declarations: ticks in a timezone, and refusals with reasons."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

import runce
from runce.errors import UsageError
from runce.runs import cron
from runce.runs.jobs import registry as jobs
from runce.runs.schedules import ScheduleSpec, registry


@pytest.fixture(autouse=True)
def forget() -> Iterator[None]:
    yield
    for spec in registry.all():
        registry.forget(spec.name)
    for kind in jobs.kinds():
        if kind.startswith("cron."):
            jobs.forget(kind)


@pytest.mark.parametrize(
    ("expression", "timezone", "after", "expected"),
    [
        ("* * * * *", "UTC", datetime(2026, 1, 1, 0, 1, tzinfo=UTC), "2026-01-01T00:02:00"),
        ("*/10 * * * * *", "UTC", datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC), "2026-01-01T00:00:10"),
        ("@hourly", "UTC", datetime(2026, 1, 1, 0, 1, tzinfo=UTC), "2026-01-01T01:00:00"),
        # 09:00 in Berlin: 08:00 UTC in winter, 07:00 UTC once summer time starts.
        (
            "0 9 * * *",
            "Europe/Berlin",
            datetime(2026, 3, 28, 12, tzinfo=UTC),
            "2026-03-29T07:00:00",
        ),
        ("0 9 * * *", "Europe/Berlin", datetime(2026, 1, 5, 12, tzinfo=UTC), "2026-01-06T08:00:00"),
    ],
)
def test_next_tick_is_strictly_after_and_in_utc(
    expression: str, timezone: str, after: datetime, expected: str
) -> None:
    tick = cron.next_tick(expression, timezone, after)
    assert tick.tzinfo == UTC
    assert tick.replace(tzinfo=None).isoformat().endswith(expected)


@pytest.mark.parametrize(
    ("expression", "timezone", "reason"),
    [
        ("61 * * * *", "UTC", "cron expression '61 * * * *' is not valid: out of range"),
        ("* * * *", "UTC", "has 4 fields; expected 5"),
        ("", "UTC", "is empty"),
        ("every day", "UTC", "has 2 fields"),
        ("0 0 30 2 *", "UTC", "never fires"),
        ("* * * * *", "Mars/Olympus", "unknown timezone 'Mars/Olympus'"),
        ("* * * * *", "", "must be an IANA name"),
    ],
)
def test_bad_expressions_and_timezones_are_refused_with_the_reason(
    expression: str, timezone: str, reason: str
) -> None:
    with pytest.raises(UsageError, match=None) as caught:
        runce.schedule(expression, "cron.report", timezone=timezone)
    assert reason in str(caught.value)
    assert str(caught.value).startswith("schedule 'cron.report': ")
    assert registry.all() == []


def test_a_schedule_is_named_after_its_kind_unless_named() -> None:
    first = runce.schedule("0 3 * * *", "cron.report", {"days": 1})
    second = runce.schedule("0 4 * * *", "cron.report", {"days": 7}, name="cron.weekly")
    assert [s.name for s in registry.all()] == ["cron.report", "cron.weekly"]
    assert (first.input, second.timezone) == ({"days": 1}, "UTC")
    assert runce.schedule("0 3 * * *", "cron.report", {"days": 1}) == first  # re-import
    with pytest.raises(UsageError, match=r"two schedules are named 'cron\.report'"):
        runce.schedule("0 5 * * *", "cron.report")
    with pytest.raises(UsageError, match=r"schedule name 'bad name'"):
        runce.schedule("0 5 * * *", "cron.report", name="bad name")


def test_job_cron_declares_a_schedule_named_after_the_job() -> None:
    @runce.job("cron.cleanup", cron="*/5 * * * *", cron_timezone="Europe/Paris")
    def cleanup(params: None) -> None:
        del params

    assert registry.all() == [
        ScheduleSpec("cron.cleanup", "cron.cleanup", "*/5 * * * *", "Europe/Paris", None)
    ]


class Needs(BaseModel):
    to: str


def test_job_cron_refuses_a_job_that_needs_an_input() -> None:
    with pytest.raises(UsageError, match=r"cron= runs it with no input.*runce.schedule"):

        @runce.job("cron.mail", cron="0 * * * *")
        def mail(params: Needs) -> None:
            del params

    with pytest.raises(
        UsageError, match=r"schedule 'cron\.bad': cron expression 'nope' has 1 field;"
    ):
        runce.job("cron.bad", cron="nope")

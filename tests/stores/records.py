"""Builders for the records the contract suite writes."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

from runce._version import __version__
from runce.domain.locks import Owner
from runce.domain.tasks import AppliedRecord, Attempt
from runce.stores.liveness import current_owner
from runce.timeutil import utcnow


def started(task_id: str, *, token: str | None = None, owner: Owner | None = None) -> Attempt:
    who = owner or current_owner("tester")
    return Attempt(
        attempt_id=uuid.uuid4().hex,
        task_id=task_id,
        title=f"title of {task_id}",
        checksum="sha256:" + "ab" * 32,
        status="started",
        started_at=utcnow(),
        applied_by="cli",
        owner=who.label,
        host=who.host,
        pid=who.pid,
        machine=who.machine,
        runce_version=__version__,
        lock_token=token,
    )


def finished(attempt: Attempt, status: str = "succeeded", **changes: object) -> Attempt:
    end = attempt.started_at + timedelta(milliseconds=1500)
    values: dict[str, object] = {"finished_at": end, "duration_ms": 1500, **changes}
    return replace(attempt, status=status, **values)  # type: ignore[arg-type]


def applied_for(attempt: Attempt, status: str = "success") -> AppliedRecord:
    assert attempt.finished_at is not None
    return AppliedRecord(
        id=attempt.task_id,
        name=attempt.title,
        checksum=attempt.checksum,
        applied_at=attempt.finished_at,
        duration_ms=attempt.duration_ms or 0,
        status=status,  # type: ignore[arg-type]
        attempt_id=attempt.attempt_id,
        error=attempt.error_message,
    )

"""What the SQL stores' trackers share: their reads, and the check on finished attempts.

Every SQL store ships the named queries ``applied``, ``history``, ``history_of_task``,
``latest_attempts`` and ``open_attempts``; a tracker built on :class:`TrackerReads` provides
``_select`` (run a named query), the two row converters for its dialect and how it passes a
list of task ids to a query.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runce.domain.tasks import AppliedRecord, Attempt
from runce.errors import UsageError


class TrackerReads:
    def _select(self, name: str, params: dict[str, Any] | None = None, *, what: str) -> list[Any]:
        raise NotImplementedError

    def _to_applied(self, row: Any) -> AppliedRecord:
        raise NotImplementedError

    def _to_attempt(self, row: Any) -> Attempt:
        raise NotImplementedError

    def applied(self) -> dict[str, AppliedRecord]:
        rows = self._select("applied", what="read the applied tasks")
        return {record.id: record for record in map(self._to_applied, rows)}

    def history(self, task_id: str | None = None) -> list[Attempt]:
        if task_id is None:
            rows = self._select("history", what="read the history")
        else:
            params = {"task_id": task_id}
            rows = self._select("history_of_task", params, what=f"read the history of {task_id}")
        return [self._to_attempt(row) for row in rows]

    def _task_ids(self, task_ids: list[str]) -> Any:
        raise NotImplementedError

    def latest_attempts(self, task_ids: Sequence[str], per_task: int) -> dict[str, list[Attempt]]:
        wanted = list(dict.fromkeys(task_ids))  # a task named twice is read once
        if not wanted or per_task <= 0:
            return {}
        params = {"task_ids": self._task_ids(wanted), "per_task": per_task}
        rows = self._select("latest_attempts", params, what="read the latest attempts")
        found: dict[str, list[Attempt]] = {}
        for attempt in map(self._to_attempt, rows):  # by task, oldest first
            found.setdefault(attempt.task_id, []).append(attempt)
        return found

    def open_attempts(self) -> list[Attempt]:
        rows = self._select("open_attempts", what="read the open attempts")
        return [self._to_attempt(row) for row in rows]


def must_be_finished(attempt: Attempt) -> None:
    """``record`` and ``finish`` take an attempt with its outcome, never a started one."""
    if not attempt.finished:
        raise UsageError(
            f"attempt {attempt.attempt_id} of {attempt.task_id} is still 'started'; "
            "only a finished attempt can be recorded as its outcome"
        )

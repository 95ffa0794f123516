"""runce's exceptions: one root, a branch per concern.

::

    RunceError                      every error runce raises on purpose
    ├── ConfigError                 bad or missing configuration (exit 2)
    ├── UsageError                  a command asked for something impossible (exit 2)
    │   └── UnknownTask             no task file has that id (exit 5)
    ├── TaskLoadError               a task file cannot be found, imported or understood (exit 2)
    ├── StoreError                  the store failed; the driver's exception is ``__cause__``
    │   ├── StoreUnavailable        cannot connect, open or write the store (exit 2)
    │   │   └── ServerUnavailable   the runce server cannot be reached, or failed (5xx)
    │   ├── UnknownStore            no backend for a URL scheme or ``type`` (exit 2)
    │   ├── UnsupportedFeature      the store cannot do what was asked (exit 2)
    │   ├── TransactionConflict     a transaction met another's writes and was rolled back whole
    │   └── SchemaError             schema missing, too old for a read, or newer than runce (exit 2)
    ├── LockError                   the global lock (exit 1)
    │   ├── LockHeld                another runner holds it
    │   └── LockLost                this runner's lease was taken or could not be renewed
    ├── TaskRunError                a run did not complete (exit 1)
    │   ├── DriftError              an applied task's file changed
    │   ├── OutOfOrderError         a pending task sorts before an applied one
    │   └── TasksFailed             a task failed; carries the report
    ├── RunError                    the job queue refused a request (exit 1)
    │   ├── UnknownRun              no run has that id (exit 5)
    │   ├── IllegalTransition       the run's state does not allow it (cancel a succeeded run)
    │   ├── IdempotencyConflict     a key reused with another kind, input or project
    │   ├── InvalidInput            a run's input or result is not valid (exit 2)
    │   ├── UnknownSchedule         no cron schedule has that name (exit 5)
    │   └── JobFailed               a job called in-process (``.now()``) failed; carries the run id
    └── RemoteError                 the runce server refused a request (exit 2)
        ├── AuthError               no token, an unknown or revoked one (401), or no right (403)
        └── RateLimited             too many requests (429); ``retry_after`` says when to retry

The client of the HTTP API (``runce.Client``) raises the error a local call would raise
(UnknownRun for a 404, IllegalTransition for an illegal cancel, ...); only what has no
local counterpart is a RemoteError.

NonRetryable is not an error of runce's: a job raises it to fail its run without retries.

Every error's ``str()`` is one sentence a user can act on, naming the file, key or store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runce.tasks.report import RunReport


# The exit code of a command that names a run, schedule or task that does not exist, so
# that a script tells "not there" from "failed" (1) and "bad request" (2).
EXIT_NOT_FOUND = 5


class RunceError(Exception):
    """Root of every error runce raises on purpose."""

    exit_code = 1


class ConfigError(RunceError):
    """The configuration is missing, unreadable or invalid."""

    exit_code = 2


class UsageError(RunceError):
    """A command or function was asked for something it cannot do."""

    exit_code = 2


class UnknownTask(UsageError):
    """No task file has that id."""

    exit_code = EXIT_NOT_FOUND


class TaskLoadError(RunceError):
    """A task file could not be found, imported or understood."""

    exit_code = 2


class StoreError(RunceError):
    """The store failed; the driver's own exception is kept as ``__cause__``."""

    exit_code = 2


class StoreUnavailable(StoreError):
    """The store cannot be reached, opened or written."""


class ServerUnavailable(StoreUnavailable):
    """The runce server (``runce serve``) cannot be reached, or it failed to answer.

    A store error, because for a remote worker the server *is* its store: the worker rides
    it out and retries, as it does when a database goes away.
    """


class UnknownStore(StoreError):
    """No backend is registered for the configured URL scheme or ``type``."""


class UnsupportedFeature(StoreError):
    """The configured store does not support the requested feature."""


class TransactionConflict(StoreError):
    """A transaction met another transaction's writes and was rolled back whole: nothing of
    it was committed, so running it again is safe (MongoDB's TransientTransactionError)."""


class SchemaError(StoreError):
    """The store's schema is missing, out of date for this command, or newer than runce."""


class LockError(RunceError):
    """The global lock could not be had or was lost."""

    exit_code = 1


class LockHeld(LockError):
    """Another runner holds the lock."""

    # Set by run_pending_on_boot: how many pending tasks this start-up did not attempt.
    not_attempted: int | None = None


class LockLost(LockError):
    """This runner's lease was taken by another owner or could not be renewed."""


class ClaimLost(LockError):
    """This process's claim on a backfill's key range was taken over (it expired) or the range
    was finished by another: nothing was written, and the range is no longer this process's."""


class TaskRunError(RunceError):
    """A run of once tasks did not complete."""

    exit_code = 1


class DriftError(TaskRunError):
    """An applied task's file has changed since it was applied."""

    not_attempted: int | None = None  # as LockHeld's


class OutOfOrderError(TaskRunError):
    """A pending task sorts before an applied one and ``on_out_of_order`` is ``fail``."""

    not_attempted: int | None = None  # as LockHeld's


class TasksFailed(TaskRunError):
    """A task failed (or a started task was refused); the report says which."""

    def __init__(self, message: str, report: RunReport) -> None:
        super().__init__(message)
        self.report = report

    @property
    def failed(self) -> list[str]:
        """The ids of the tasks that failed."""
        return [result.id for result in self.report.failed]

    @property
    def not_attempted(self) -> int:
        """How many pending tasks were not attempted (after the failure, or the lost lock)."""
        return self.report.counts["not-run"]


class RunError(RunceError):
    """The job queue refused a request."""

    exit_code = 1


class UnknownRun(RunError):
    """No run has that id."""

    exit_code = EXIT_NOT_FOUND


class IllegalTransition(RunError):
    """The run's state does not allow the requested change; nothing was written."""


class IdempotencyConflict(RunError):
    """An idempotency key was used again with another kind, input or project."""


class InvalidInput(RunError):
    """A run's input (or a job's result) is not valid; nothing was stored.

    ``errors`` lists the fields at fault as ``{"loc": [...], "msg": ...}`` when known.
    """

    exit_code = 2

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class RemoteError(RunceError):
    """The runce server refused a request (a 4xx answer runce has no closer error for)."""

    exit_code = 2

    def __init__(self, message: str, status: int = 0, problem_type: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.problem_type = problem_type


class AuthError(RemoteError):
    """The server did not accept the token: missing, unknown or revoked (401), or it lacks
    the scope or project the request needs (403)."""


class RateLimited(RemoteError):
    """Too many requests with this token; ``retry_after`` is the server's wait in seconds."""

    def __init__(
        self, message: str, status: int = 429, problem_type: str = "", retry_after: float = 1.0
    ) -> None:
        super().__init__(message, status, problem_type)
        self.retry_after = retry_after


class UnknownSchedule(RunError):
    """No stored cron schedule has that name."""

    exit_code = EXIT_NOT_FOUND


class JobFailed(RunError):
    """A job called in-process with ``.now()`` failed; ``run_id`` names its run (None when
    it was not recorded), and the job's exception is ``__cause__``."""

    def __init__(self, message: str, run_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id


class NonRetryable(Exception):
    """Raise from a job to fail its run at once, without the retries left."""

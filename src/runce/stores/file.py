"""The file store (``file:///path/applied.jsonl``): once tasks on one box with no database.

The data file holds one JSON object per line, only ever appended to. Every line carries the
format version ``v`` and an ``event``:

* ``begin``: a ``started`` attempt, with every attempt field;
* ``progress``: ``attempt_id``, ``done`` and ``total`` of a running attempt;
* ``finish``: the attempt's final fields, and ``applied`` (the new applied record, or null);
* ``record``: an already finished attempt (repair, baseline) and ``applied``;
* ``checkpoint`` (format 2): a backfill's checkpoint of one key range, replacing the last;
* ``control`` (format 2): a pause or cancel request for a task id, or its withdrawal
  (``command`` null).

Reading replays the lines into history rows and the applied state (the last applied record
per task id). A crash mid-append can leave a torn last line (no newline, or not JSON): reads
ignore it, and the next writer truncates it before appending. A bad line anywhere else is
corruption and is reported with its line number.

Two ``flock`` locks, both freed by the kernel when their process dies:

* the global lock is an exclusive ``flock`` on ``<path>.lock``, held for as long as a runner
  runs; the file holds the holder's details as JSON so others can show them;
* every append takes a brief exclusive ``flock`` on the data file itself, so writers never
  interleave and a torn tail is repaired by exactly one of them. It is separate from the
  global lock so that a write with no lease never waits for a long run to end.

Runs (the job queue) and transactional tasks need a database; this store refuses them.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from runce.domain.locks import Lease, LockHolder, Owner
from runce.domain.schema import SchemaStatus
from runce.domain.tasks import (
    AppliedRecord,
    Attempt,
    Checkpoint,
    ControlCommand,
    RangeClaim,
    TaskControl,
    latest_of,
)
from runce.errors import (
    ConfigError,
    LockHeld,
    LockLost,
    SchemaError,
    StoreError,
    StoreUnavailable,
    UnsupportedFeature,
)
from runce.stores.base import StoreSpec, Transaction
from runce.timeutil import from_iso, to_iso, utcnow

FORMAT_VERSION = 2  # the newest format this runce reads
# Lines an older runce can read keep format 1; backfills' lines are format 2, so an older
# runce meeting one says it needs upgrading instead of calling the file corrupt.
_BASE_FORMAT = 1
# How long an append waits for another writer's append (each lasts about one fsync).
APPEND_WAIT = 10.0
# How long a failed try_acquire keeps trying, in case it met a holder() probe (seconds).
_PROBE_GRACE = 0.05
_READ_CHUNK = 1 << 20

Event = dict[str, Any]


# --- where the file is ---------------------------------------------------------------------


def resolve_path(spec: StoreSpec) -> Path:
    """The data file a spec names: ``file:///abs``, ``file://rel``, ``file:rel`` or options."""
    url_path = None if spec.url is None else _path_in_url(spec.url)
    text = url_path if url_path is not None else str(spec.options.get("path") or "")
    if not text:
        raise ConfigError(
            f"the file store needs a path, like file:///var/lib/app/applied.jsonl "
            f"(got {spec.url or spec.options!r})"
        )
    return Path(os.path.abspath(spec.base_dir / text))


def _path_in_url(url: str) -> str:
    parts = urlsplit(url)
    # file://relative/path puts the first segment in the netloc; it is part of the path here.
    return unquote(parts.netloc + parts.path)


# --- records as JSON ------------------------------------------------------------------------

_ATTEMPT_FIELDS = tuple(f.name for f in fields(Attempt))
_APPLIED_FIELDS = tuple(f.name for f in fields(AppliedRecord))
_TIME_FIELDS = frozenset({"started_at", "finished_at", "applied_at"})


def _to_json(record: Attempt | AppliedRecord, names: tuple[str, ...]) -> Event:
    values = {name: getattr(record, name) for name in names}
    for name in _TIME_FIELDS.intersection(values):
        values[name] = _iso_or_none(values[name])
    return values


def _from_json(event: Event, names: tuple[str, ...]) -> dict[str, Any]:
    # Keys this runce does not know are ignored; missing optional ones take their defaults.
    values = {name: event[name] for name in names if name in event}
    for name in _TIME_FIELDS.intersection(values):
        values[name] = None if values[name] is None else from_iso(values[name])
    return values


def _iso_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else to_iso(moment)


def _attempt_event(kind: str, attempt: Attempt, applied: AppliedRecord | None) -> Event:
    event: Event = {"v": _BASE_FORMAT, "event": kind, **_to_json(attempt, _ATTEMPT_FIELDS)}
    if kind != "begin":
        event["applied"] = None if applied is None else _to_json(applied, _APPLIED_FIELDS)
    return event


def _progress_event(attempt_id: str, done: int, total: int | None) -> Event:
    return {
        "v": _BASE_FORMAT,
        "event": "progress",
        "attempt_id": attempt_id,
        "done": done,
        "total": total,
    }


_CLAIM_FIELDS = frozenset({"claim_owner", "claim_until"})


def _checkpoint_event(checkpoint: Checkpoint) -> Event:
    values = {
        f.name: getattr(checkpoint, f.name)
        for f in fields(Checkpoint)
        if f.name not in _CLAIM_FIELDS  # ranges are not claimed in the file store
    }
    values["updated_at"] = to_iso(checkpoint.updated_at)
    return {"v": FORMAT_VERSION, "event": "checkpoint", **values}


def _control_event(task_id: str, command: ControlCommand | None, requested_by: str) -> Event:
    return {
        "v": FORMAT_VERSION,
        "event": "control",
        "task_id": task_id,
        "command": command,
        "requested_at": to_iso(utcnow()),
        "requested_by": requested_by,
    }


def _encode(event: Event) -> bytes:
    # ensure_ascii keeps every line valid UTF-8 whatever a traceback holds; json escapes
    # newlines inside strings, so the only newline is the one that ends the line.
    return (json.dumps(event, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")


# --- replaying the file ---------------------------------------------------------------------


class _Invalid(ValueError):
    """A line that parses but cannot be applied; the caller adds where it came from."""


class _Replay:
    """The file's lines applied in order, kept between reads and fed only what was appended."""

    def __init__(self, path: Path, identity: tuple[int, int] | None) -> None:
        self.path = path
        self.identity = identity  # (st_dev, st_ino) of the file replayed
        self.offset = 0  # where the last good line ends: everything after it is unread or torn
        self.lines = 0
        self.history: list[Attempt] = []
        self.index: dict[str, int] = {}  # attempt_id -> position in history
        self.applied: dict[str, AppliedRecord] = {}
        self.checkpoints: dict[tuple[str, int], Checkpoint] = {}
        self.controls: dict[str, TaskControl] = {}

    def feed(self, data: bytes) -> None:
        """Apply the complete lines of ``data``, the bytes from :attr:`offset` to the end."""
        complete = data.split(b"\n")[:-1]  # what follows the last newline is torn or unfinished
        for position, raw in enumerate(complete):
            if raw.strip():
                try:
                    event = json.loads(raw)
                except ValueError as exc:
                    if position == len(complete) - 1:
                        return  # a torn last line, left unconsumed for the next writer to cut
                    raise StoreError(
                        f"{self.path} line {self.lines + 1} is not valid JSON; fix or remove "
                        "that line (only a torn last line is ignored)"
                    ) from exc
                self._apply_line(event)
            self.offset += len(raw) + 1
            self.lines += 1

    def apply(self, event: Event) -> None:
        """Apply one event, or raise :class:`_Invalid` having changed nothing."""
        kind = event.get("event")
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            raise _Invalid(f"unknown event {kind!r}")
        try:
            handler(self, event)
        except _Invalid:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise _Invalid(f"missing or malformed field ({exc!r})") from exc

    def _apply_line(self, event: Any) -> None:
        where = f"{self.path} line {self.lines + 1}"
        if not isinstance(event, dict):
            raise StoreError(f"{where} is not a JSON object")
        version = event.get("v")
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise SchemaError(
                f"{where} was written by a newer runce (format v{version}; this runce reads "
                f"v{FORMAT_VERSION}): upgrade runce"
            )
        if not isinstance(version, int) or not _BASE_FORMAT <= version <= FORMAT_VERSION:
            raise StoreError(f"{where} has no known format version (v={version!r})")
        try:
            self.apply(event)
        except _Invalid as exc:
            raise StoreError(f"{where} is not a valid runce record: {exc}") from exc

    def _started_index(self, attempt_id: str) -> int:
        index = self.index.get(attempt_id)
        if index is None or self.history[index].status != "started":
            raise _Invalid(f"attempt {attempt_id!r} is not a started attempt")
        return index

    def _new_row(self, attempt: Attempt) -> None:
        if attempt.attempt_id in self.index:
            raise _Invalid(f"attempt {attempt.attempt_id!r} is already recorded")
        self.index[attempt.attempt_id] = len(self.history)
        self.history.append(attempt)

    def _set_applied(self, record: AppliedRecord | None) -> None:
        if record is not None:
            self.applied[record.id] = record

    def _begin(self, event: Event) -> None:
        self._new_row(replace(_attempt_from(event), status="started"))

    def _progress(self, event: Event) -> None:
        index = self._started_index(event["attempt_id"])
        done, total = int(event["done"]), event["total"]
        row = replace(self.history[index], progress_done=done, progress_total=total)
        self.history[index] = row

    def _finish(self, event: Event) -> None:
        # Everything is decoded before anything changes, so a bad line changes nothing.
        attempt, applied = _attempt_from(event), _applied_from(event["applied"])
        self.history[self._started_index(attempt.attempt_id)] = attempt
        self._set_applied(applied)

    def _record(self, event: Event) -> None:
        attempt, applied = _attempt_from(event), _applied_from(event["applied"])
        self._new_row(attempt)
        self._set_applied(applied)

    def _checkpoint(self, event: Event) -> None:
        values = {
            f.name: event[f.name]
            for f in fields(Checkpoint)
            if f.name in event and f.name not in _CLAIM_FIELDS
        }
        values["updated_at"] = from_iso(values["updated_at"])
        checkpoint = Checkpoint(**values)
        self.checkpoints[(checkpoint.task_id, checkpoint.part)] = checkpoint

    def _control(self, event: Event) -> None:
        task_id, command = str(event["task_id"]), event["command"]
        if command is None:
            self.controls.pop(task_id, None)
            return
        if command not in ("pause", "cancel"):
            raise _Invalid(f"unknown control command {command!r}")
        at, by = from_iso(event["requested_at"]), str(event["requested_by"])
        self.controls[task_id] = TaskControl(task_id, command, at, by)


def _attempt_from(event: Event) -> Attempt:
    return Attempt(**_from_json(event, _ATTEMPT_FIELDS))


def _applied_from(value: Event | None) -> AppliedRecord | None:
    return None if value is None else AppliedRecord(**_from_json(value, _APPLIED_FIELDS))


_HANDLERS: dict[str, Callable[[_Replay, Event], None]] = {
    "begin": _Replay._begin,
    "progress": _Replay._progress,
    "finish": _Replay._finish,
    "record": _Replay._record,
    "checkpoint": _Replay._checkpoint,
    "control": _Replay._control,
}


# --- the operating system -------------------------------------------------------------------


def _unavailable(action: str, path: Path, exc: OSError) -> StoreUnavailable:
    reason = exc.strerror or str(exc)
    return StoreUnavailable(f"cannot {action} the file store at {path}: {reason}")


def _open_for_write(path: Path, flags: int) -> int:
    """Open ``path`` for writing, creating it and its directories on the first write."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise _unavailable("write", path, exc) from exc


def _open_for_read(path: Path) -> int | None:
    """A read-only descriptor, or None when the file does not exist (reads create nothing)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _unavailable("read", path, exc) from exc


def _read_from(fd: int, offset: int) -> bytes:
    chunks: list[bytes] = []
    while chunk := os.pread(fd, _READ_CHUNK, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _try_flock(fd: int, mode: int, path: Path) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        raise _unavailable("lock", path, exc) from exc
    return True


def _flock_within(fd: int, path: Path, wait: float) -> None:
    """Take an exclusive flock, polling: a blocking wait would hang on a stopped process."""
    deadline = time.monotonic() + wait
    delay = 0.001
    while not _try_flock(fd, fcntl.LOCK_EX, path):
        if time.monotonic() >= deadline:
            raise StoreUnavailable(
                f"another process kept the file store at {path} locked for an append for "
                f"more than {wait:g} s; is a runce process stopped mid-write?"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _fsync_dir(path: Path) -> None:
    """Make a new file's directory entry durable too; best effort, as not every fs allows it."""
    with suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- the tracker ----------------------------------------------------------------------------


class FileTracker:
    def __init__(self, path: Path, lock: FileLock, mutex: threading.RLock) -> None:
        self._path = path
        self._lock = lock
        self._mutex = mutex
        self._replay: _Replay | None = None

    def applied(self) -> dict[str, AppliedRecord]:
        with self._mutex:
            return dict(self._read().applied)

    def history(self, task_id: str | None = None) -> list[Attempt]:
        with self._mutex:
            rows = self._read().history
            return [a for a in rows if task_id is None or a.task_id == task_id]

    def latest_attempts(self, task_ids: Sequence[str], per_task: int) -> dict[str, list[Attempt]]:
        with self._mutex:
            return latest_of(self._read().history, task_ids, per_task)

    def open_attempts(self) -> list[Attempt]:
        with self._mutex:
            return [a for a in self._read().history if a.status == "started"]

    def begin(self, attempt: Attempt, lease: Lease | None) -> None:
        self._append(_attempt_event("begin", attempt, None), lease)

    def progress(self, attempt_id: str, done: int, total: int | None, lease: Lease | None) -> None:
        self._append(_progress_event(attempt_id, done, total), lease)

    def finish(self, attempt: Attempt, applied: AppliedRecord | None, lease: Lease | None) -> None:
        self._append(_attempt_event("finish", attempt, applied), lease)

    def record(self, attempt: Attempt, applied: AppliedRecord | None, lease: Lease | None) -> None:
        self._append(_attempt_event("record", attempt, applied), lease)

    def checkpoints(self, task_id: str) -> list[Checkpoint]:
        return [c for c in self.all_checkpoints() if c.task_id == task_id]

    def all_checkpoints(self) -> list[Checkpoint]:
        with self._mutex:
            kept = self._read().checkpoints
            return [kept[key] for key in sorted(kept)]

    def save_checkpoint(self, checkpoint: Checkpoint, lease: Lease | None) -> None:
        self._append(_checkpoint_event(checkpoint), lease)

    def controls(self) -> dict[str, TaskControl]:
        with self._mutex:
            return dict(self._read().controls)

    def set_control(self, task_id: str, command: ControlCommand | None, requested_by: str) -> None:
        self._append(_control_event(task_id, command, requested_by), None)

    def transaction(
        self, lease: Lease | None, claim: RangeClaim | None = None
    ) -> AbstractContextManager[Transaction]:
        raise UnsupportedFeature(
            f"the file store at {self._path} cannot run transactional tasks, as it has no "
            "database to hold a transaction; use the sqlite or postgresql store for them"
        )

    def _read(self) -> _Replay:
        fd = _open_for_read(self._path)
        if fd is None:
            self._replay = None
            return _Replay(self._path, None)
        try:
            return self._sync(fd)
        finally:
            os.close(fd)

    def _sync(self, fd: int) -> _Replay:
        """Bring the kept replay up to date with the file behind ``fd``."""
        try:
            stat = os.fstat(fd)
            replay = self._replay
            identity = (stat.st_dev, stat.st_ino)
            # A replaced or shortened file (edited by hand) is replayed from its start.
            if replay is None or replay.identity != identity or stat.st_size < replay.offset:
                replay = self._replay = _Replay(self._path, identity)
            data = _read_from(fd, replay.offset)
        except OSError as exc:
            raise _unavailable("read", self._path, exc) from exc
        replay.feed(data)
        return replay

    def _append(self, event: Event, lease: Lease | None) -> None:
        with self._mutex:
            if lease is not None and not self._lock.holds(lease):
                raise LockLost(
                    f"this runner no longer holds the lock {self._lock.path}; nothing was written"
                )
            with self._append_lock() as fd:
                replay = self._sync(fd)
                self._cut_torn_tail(fd, replay)
                line = _encode(event)
                try:
                    replay.apply(event)
                except _Invalid as exc:
                    raise StoreError(f"cannot write to {self._path}: {exc}") from exc
                self._write(fd, line, replay)

    @contextmanager
    def _append_lock(self) -> Iterator[int]:
        fd = _open_for_write(self._path, os.O_RDWR | os.O_APPEND)
        try:
            _flock_within(fd, self._path, APPEND_WAIT)
            yield fd
        finally:
            os.close(fd)  # the only descriptor with the flock: closing it unlocks

    def _cut_torn_tail(self, fd: int, replay: _Replay) -> None:
        try:
            if os.fstat(fd).st_size > replay.offset:
                os.ftruncate(fd, replay.offset)
        except OSError as exc:
            raise _unavailable("repair", self._path, exc) from exc

    def _write(self, fd: int, line: bytes, replay: _Replay) -> None:
        # One write of the whole line under the append lock, so no reader or writer ever
        # sees two lines interleaved; the replay already holds the event.
        try:
            if os.write(fd, line) != len(line):
                raise OSError(0, "the disk took only part of the line")
            os.fsync(fd)
        except OSError as exc:
            self._replay = None  # it holds the event that did not make it to disk
            with suppress(OSError):
                os.ftruncate(fd, replay.offset)
            raise _unavailable("write", self._path, exc) from exc
        if replay.offset == 0:
            _fsync_dir(self._path.parent)
        replay.offset += len(line)
        replay.lines += 1


# --- the lock -------------------------------------------------------------------------------


class FileLock:
    """An exclusive ``flock`` on ``<path>.lock``; the kernel frees it when the holder dies."""

    def __init__(self, path: Path, mutex: threading.RLock) -> None:
        self.path = path
        self._mutex = mutex
        self._fd: int | None = None  # the descriptor holding the flock, while held
        self._lease: Lease | None = None

    def try_acquire(self, owner: Owner, ttl: float) -> Lease | None:
        with self._mutex:
            if self._fd is not None:
                return None  # held through this very object
            fd = _open_for_write(self.path, os.O_RDWR)
            try:
                lease = self._take(fd, owner, ttl)
            except BaseException:
                os.close(fd)
                raise
            if lease is None:
                os.close(fd)
                return None
            self._fd, self._lease = fd, lease
            return lease

    def holds(self, lease: Lease) -> bool:
        """Whether this object holds the flock for ``lease``, on the file now at the path."""
        with self._mutex:
            if self._fd is None or self._lease is None or self._lease.token != lease.token:
                return False
            return self._still_linked(self._fd)

    def renew(self, lease: Lease) -> bool:
        # A kernel lock does not lapse; renewing only checks that it is still this lease's.
        return self.holds(lease)

    def release(self, lease: Lease) -> None:
        with self._mutex:
            if self._lease is not None and self._lease.token == lease.token:
                self._let_go()

    def holder(self) -> LockHolder | None:
        fd = _open_for_read(self.path)
        if fd is None:
            return None
        try:
            # A shared probe fails only while someone holds the exclusive lock.
            if _try_flock(fd, fcntl.LOCK_SH, self.path):
                return None
            return _holder_from(_read_from(fd, 0))
        except OSError as exc:
            raise _unavailable("read", self.path, exc) from exc
        finally:
            os.close(fd)

    def clear(self, *, force: bool = False) -> LockHolder | None:
        holder = self.holder()
        if holder is None:
            return None  # a dead holder's flock is already gone with its process
        if not force:
            raise LockHeld(f"the lock {self.path} is held by {holder.describe()}")
        where = f"{holder.host or 'an unknown host'}, pid {holder.pid or 'unknown'}"
        raise LockHeld(
            f"the lock {self.path} is a file lock held by the process {holder.describe()} "
            f"itself; it cannot be cleared and ends only when that process ({where}) exits"
        )

    def close(self) -> None:
        with self._mutex:
            if self._fd is not None:
                self._let_go()

    def _take(self, fd: int, owner: Owner, ttl: float) -> Lease | None:
        # A holder() probe elsewhere holds a shared flock for an instant; a real holder
        # still holds the lock when the short grace ends.
        deadline = time.monotonic() + _PROBE_GRACE
        while not _try_flock(fd, fcntl.LOCK_EX, self.path):
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.002)
        return self._write_holder(fd, owner, ttl)

    def _write_holder(self, fd: int, owner: Owner, ttl: float) -> Lease:
        lease = Lease(token=secrets.token_hex(16), owner=owner, acquired_at=utcnow(), ttl=ttl)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, _holder_json(lease), 0)
            os.fsync(fd)
        except OSError as exc:
            raise _unavailable("write", self.path, exc) from exc
        return lease

    def _still_linked(self, fd: int) -> bool:
        # If the lock file was deleted or replaced, another process can flock the new one.
        try:
            mine, current = os.fstat(fd), os.stat(self.path)
        except OSError:
            return False
        return (mine.st_dev, mine.st_ino) == (current.st_dev, current.st_ino)

    def _let_go(self) -> None:
        assert self._fd is not None
        try:
            # Stale details would only mislead; the flock itself is what others test.
            with suppress(OSError):
                os.ftruncate(self._fd, 0)
        finally:
            os.close(self._fd)
            self._fd, self._lease = None, None


def _holder_json(lease: Lease) -> bytes:
    owner = lease.owner
    info = {
        "v": _BASE_FORMAT,
        "owner": owner.label,
        "host": owner.host,
        "pid": owner.pid,
        "machine": owner.machine,
        "since": to_iso(lease.acquired_at),
        "token": lease.token,
        "ttl": lease.ttl,
    }
    return json.dumps(info).encode("ascii")


def _holder_from(data: bytes) -> LockHolder:
    """The live holder's details; partly unknown when caught between its flock and its write."""
    try:
        info = json.loads(data)
        return LockHolder(
            owner=str(info["owner"]),
            host=info.get("host"),
            pid=info.get("pid"),
            since=from_iso(info["since"]) if info.get("since") else None,
            state="live",
            token=info.get("token"),
            machine=info.get("machine"),
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return LockHolder(owner="unknown", host=None, pid=None, since=None, state="live")


# --- the store ------------------------------------------------------------------------------


class FileStore:
    """A JSON-lines file and its lock file; once tasks only."""

    def __init__(self, path: Path) -> None:
        self._path = path
        # One mutex for both halves: a write under a lease must not race its own release.
        mutex = threading.RLock()
        self.lock = FileLock(path.with_name(path.name + ".lock"), mutex)
        self.tracker = FileTracker(path, self.lock, mutex)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def description(self) -> str:
        return f"file://{self._path}"

    @property
    def supports_transactions(self) -> bool:
        return False

    # Once tasks only: no job queue, so no schedules and no API tokens either.
    @property
    def runs(self) -> None:
        return None

    @property
    def schedules(self) -> None:
        return None

    @property
    def tokens(self) -> None:
        return None

    def schema_status(self) -> SchemaStatus:
        # Each line carries its format version; there is nothing to migrate.
        return SchemaStatus(current=FORMAT_VERSION, latest=FORMAT_VERSION)

    def upgrade(self) -> list[str]:
        return []

    def schema_sql(self) -> str:
        return f"-- the file store keeps no schema: one JSON object per line in {self._path}\n"

    def close(self) -> None:
        self.lock.close()


def open_store(spec: StoreSpec) -> FileStore:
    return FileStore(resolve_path(spec))

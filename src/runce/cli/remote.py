"""``--remote [URL]``: the runs and schedules commands, ``runce workers`` and ``runce worker``
against a runce server (``runce serve``) instead of the store (docs/remote.md).

The commands talk to one object with the library's method names (:class:`Runs`): on the
store it is :class:`LocalRuns`, the library's entry points bound to the configuration;
remotely it is :class:`runce.Client`. Nothing else in a command knows which it has, so
output and exit codes cannot drift apart between the two.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, Unpack

import click

from runce.config import Config
from runce.errors import UsageError

if TYPE_CHECKING:
    from runce.api.client import Client
    from runce.api.remote_queue import HttpRunQueue
    from runce.domain.runs import (
        AttemptRecord,
        EnqueueOptions,
        Run,
        RunQuery,
        WorkerInfo,
    )
    from runce.domain.schedules import Schedule
    from runce.runs.service import FlowStatus, RunPage

F = TypeVar("F", bound=Callable[..., Any])

URL_ENV = "RUNCE_API_URL"
TOKEN_ENV = "RUNCE_API_TOKEN"
API_EXTRA = "--remote needs the HTTP client: pip install 'nurv-runce[api]'"
_BARE = "\x00bare"  # what click passes for a --remote given without a URL
_EXTRA_MODULES = {"httpx", "httpcore", "anyio"}
# What --remote takes as its URL when a word follows it: a URL, or a server without its
# scheme (which remote_url then refuses with its sentence). Run ids and kinds are neither.
_URL_LIKE = re.compile(r"[^/\s]*://.*|[\w.-]+:\d+(/.*)?")


def remote_options(fn: F) -> F:
    """``--remote [URL]`` and ``--token``, on every command that can use a server."""
    fn = click.option(
        "--token",
        metavar="TOKEN",
        envvar=TOKEN_ENV,
        show_envvar=True,
        help="Bearer token for --remote (from `runce tokens create`).",
    )(fn)
    fn = click.option(
        "--remote",
        is_flag=False,
        flag_value=_BARE,
        default=None,
        metavar="[URL]",
        help=f"Use the runce server at URL instead of the store (bare --remote: ${URL_ENV}).",
    )(fn)
    return fn


class Command(click.Command):
    """A command of runce's: a bare ``--remote`` may come before its arguments too."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, bare_remote_first(self.params, args))


def bare_remote_first(params: Sequence[click.Parameter], args: list[str]) -> list[str]:
    """``args`` with ``--remote WORD`` read as a bare ``--remote`` then the argument WORD
    when WORD is not a URL, for commands with arguments: click alone would take the run id
    of ``runce runs status --remote ID`` as the URL. Options' values are skipped."""
    if not any(isinstance(p, click.Argument) for p in params):
        return args
    valued = {
        name
        for p in params
        if isinstance(p, click.Option) and not (p.is_flag or p.count)
        for name in p.opts
    }
    found = list(args)
    index = 0
    while index < len(found) - 1 and found[index] != "--":
        word, following = found[index], found[index + 1]
        if word == "--remote" and "--remote" in valued and not _URL_LIKE.fullmatch(following):
            found[index] = f"--remote={_BARE}"
        elif word in valued:
            index += 1  # its value, which may look like anything
        index += 1
    return found


class Runs(Protocol):
    """What the commands do with runs and schedules: the library's names, on a store or on
    a server."""

    def enqueue(
        self,
        kind: str,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> Run: ...

    def get_run(self, run_id: str) -> Run: ...

    def list_runs(self, **query: Unpack[RunQuery]) -> RunPage: ...

    def attempts(self, run_id: str) -> list[AttemptRecord]: ...

    def flow(self, run: Run) -> FlowStatus: ...

    def limits(self) -> dict[str, str]: ...

    def cancel_run(self, run_id: str) -> Run: ...

    def retry_run(self, run_id: str) -> Run: ...

    def prune_runs(self) -> int: ...

    def workers(self) -> list[WorkerInfo]: ...

    def list_schedules(self) -> list[Schedule]: ...

    def enable_schedule(self, name: str) -> Schedule: ...

    def disable_schedule(self, name: str) -> Schedule: ...


class LocalRuns:
    """The library's entry points (:mod:`runce.runs.library`) on the configured store."""

    def __init__(self, config: Config) -> None:
        from runce.runs import library

        self._library = library
        self._config = config
        self._runtime = library.runtime(config)
        self.description = self._runtime.description

    def enqueue(
        self,
        kind: str,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> Run:
        return self._library.enqueue(
            kind, input, idempotency_key=idempotency_key, config=self._config, **options
        )

    def get_run(self, run_id: str) -> Run:
        return self._library.get_run(run_id, config=self._config)

    def list_runs(self, **query: Unpack[RunQuery]) -> RunPage:
        return self._library.list_runs(config=self._config, **query)

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        return self._runtime.part(self._library.run_service).attempts(run_id)

    def flow(self, run: Run) -> FlowStatus:
        return self._runtime.part(self._library.run_service).flow(run)

    def limits(self) -> dict[str, str]:
        """The flow-control limit of each job of worker.handlers that has one, by kind."""
        from runce.errors import ConfigError

        try:
            return self._runtime.part(self._library.run_service).limits()
        except ConfigError:  # job modules this machine cannot import: no limits to show
            return {}

    def cancel_run(self, run_id: str) -> Run:
        return self._library.cancel_run(run_id, config=self._config)

    def retry_run(self, run_id: str) -> Run:
        return self._library.retry_run(run_id, config=self._config)

    def prune_runs(self) -> int:
        return self._library.prune_runs(config=self._config)

    def workers(self) -> list[WorkerInfo]:
        return self._library.queue_of(self._runtime.store).workers()

    def list_schedules(self) -> list[Schedule]:
        return self._library.list_schedules(config=self._config)

    def enable_schedule(self, name: str) -> Schedule:
        return self._library.enable_schedule(name, config=self._config)

    def disable_schedule(self, name: str) -> Schedule:
        return self._library.disable_schedule(name, config=self._config)


def open_runs(config: Config, remote: str | None, token: str | None) -> Runs:
    """The store's runs, or the server's with ``--remote``; says which on stderr (stdout
    stays the command's own)."""
    if remote is None:
        local = LocalRuns(config)
        _note(f"store: {local.description}")
        return local
    client = open_client(remote, token)
    _note(f"server: {client.url}")
    return client


def open_client(remote: str, token: str | None) -> Client:
    url = remote_url(remote)
    try:
        from runce.api.client import Client
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] in _EXTRA_MODULES:
            raise UsageError(API_EXTRA) from None
        raise
    # httpx logs every request at info, which the CLI's own log lines would drown in.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return Client(url, token)


def remote_queue(config: Config, remote: str, token: str | None, drain: bool) -> HttpRunQueue:
    """A remote worker's queue. An idle claim waits on the server for work up to a third
    of the lease (at most 2 s, so a stop is quick); with ``--drain`` it does not wait."""
    client = open_client(remote, token)
    _note(f"server: {client.url}")
    from runce.api.remote_queue import HttpRunQueue

    long_poll = 0.0 if drain else min(2.0, config.worker.lease / 3)
    return HttpRunQueue(client, long_poll=long_poll)


def remote_url(value: str) -> str:
    """The server's URL from ``--remote URL``, or from ``RUNCE_API_URL`` for a bare one."""
    if value != _BARE:
        if "://" not in value:
            raise UsageError(
                f"--remote {value!r} is not a URL like http://127.0.0.1:8080 "
                f"(a bare --remote uses {URL_ENV})"
            )
        return value
    url = os.environ.get(URL_ENV, "").strip()
    if not url:
        raise UsageError(
            f"--remote without a URL uses {URL_ENV}, which is not set; "
            "give one: --remote http://127.0.0.1:8080"
        )
    return url


def _note(text: str) -> None:
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.params.get("as_json"):
        return  # under --json, stderr carries only an error's JSON object
    click.echo(click.style(text, dim=True), err=True)

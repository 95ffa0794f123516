"""``runce serve``: the HTTP API (docs/http-api.md) under uvicorn."""

from __future__ import annotations

import signal
import socket
from pathlib import Path
from typing import Any

import click

from runce.cli.logs import log_format_option, use_format
from runce.cli.root import cli, config_options
from runce.config import resolve_config
from runce.errors import UsageError

API_EXTRA = "runce serve needs the HTTP extra: pip install 'nurv-runce[api]'"
_EXTRA_MODULES = {"fastapi", "starlette", "uvicorn", "httpx"}


def _create_app() -> Any:
    try:
        import uvicorn  # noqa: F401

        from runce.api.app import create_app
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] in _EXTRA_MODULES:
            raise UsageError(API_EXTRA) from None
        raise
    return create_app


@cli.command()
@config_options
@click.option(
    "--host",
    envvar="RUNCE_API_HOST",
    show_envvar=True,
    help="Address to listen on (default: api.host, 127.0.0.1).",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    envvar="RUNCE_API_PORT",
    show_envvar=True,
    help="TCP port (default: api.port, 8080).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    envvar="RUNCE_LOG_LEVEL",
    show_envvar=True,
    help="info logs one line per request.",
)
@log_format_option
def serve(
    config_path: Path | None,
    tasks_dir: Path | None,
    host: str | None,
    port: int | None,
    log_level: str,
    log_format: str,
) -> None:
    """Serve the HTTP API: runs, worker endpoints, /healthz, /openapi.json.

    Every /v1 route needs a token from `runce tokens create`. SIGTERM or Ctrl-C stops
    taking requests, lets the ones in flight finish, and exits 0.
    """
    overrides = {"api.host": host, "api.port": port}
    if tasks_dir is not None:
        overrides["tasks_dir"] = str(tasks_dir.resolve())
    cfg = resolve_config(config_path, **overrides)
    use_format(log_format)
    app = _create_app()(cfg)
    import uvicorn

    from runce.api.connections import ConnectionLimits, protocol

    listener = _listen(cfg.api.host, cfg.api.port)
    limits = ConnectionLimits(cfg.api.header_timeout, cfg.api.max_connections)
    config = uvicorn.Config(
        app,
        http=protocol(limits),
        log_level=log_level,
        log_config=None,  # uvicorn's lines go through runce's handler, in the chosen format
        timeout_graceful_shutdown=30,
        # The scheme and client a trusted proxy forwards (X-Forwarded-Proto, -For): behind
        # a TLS proxy the request counts as HTTPS, so the dashboard's cookies are Secure.
        proxy_headers=True,
        forwarded_allow_ips=list(cfg.api.forwarded_allow_ips),
    )
    where = f"http://{_shown(cfg.api.host)}:{cfg.api.port}"
    click.echo(f"runce serve: {where} on {app.state.runce.store.description}", err=True)
    _quiet_after_shutdown()
    uvicorn.Server(config).run(sockets=[listener])
    click.echo("runce serve: stopped", err=True)


def _quiet_after_shutdown() -> None:
    """uvicorn handles SIGTERM and SIGINT itself (finishing requests in flight), then raises
    the signal again for the handler it found: let that one do nothing, so a clean stop
    exits 0 instead of reading as an interrupted command."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, frame: None)


def _listen(host: str, port: int) -> socket.socket:
    """Bind here, so a taken port or a bad address is one sentence (exit 2)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        listener = socket.socket(family, kind, proto)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
    except OSError as exc:
        raise UsageError(
            f"runce serve cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    listener.set_inheritable(True)
    return listener


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host

"""The database servers the tests need: PostgreSQL and a MongoDB-compatible server.

In CI a server that cannot be reached (or started) fails the run; elsewhere the tests that
need it are skipped with the reason. ``RUNCE_TEST_POSTGRES_URL`` and
``RUNCE_TEST_MONGODB_URL`` point the tests at servers of your own; without the latter, a
SecantusDB server (installed by ``scripts/test`` into ``.venv-mongo``) is started per
test session.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
SECANTUS = ROOT / ".venv-mongo" / "bin" / "secantusd-py"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> None:
    """Fail in CI, skip elsewhere: a missing service is never silently skipped in CI."""
    if in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def postgres_url() -> str:
    return os.environ.get("RUNCE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def check_postgres(url: str) -> None:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        unavailable(
            f"PostgreSQL at {url} is not reachable ({exc}); start it or set RUNCE_TEST_POSTGRES_URL"
        )


def with_database(url: str, database: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts._replace(path=f"/{database}").geturl()


def create_database(url: str) -> str:
    """A new empty database on the server of ``url``; returns its URL."""
    import psycopg

    name = f"runce_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(url, name)


def drop_database(url: str, database_url: str) -> None:
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_mongo(url: str, timeout: float) -> None:
    import pymongo

    deadline = time.monotonic() + timeout
    while True:
        try:
            client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
                url, serverSelectionTimeoutMS=500
            )
            client.admin.command("ping")
            client.close()
            return
        except pymongo.errors.PyMongoError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def mongo_server() -> Iterator[str]:
    """A MongoDB URL for the session: the configured one, or a SecantusDB we start."""
    configured = os.environ.get("RUNCE_TEST_MONGODB_URL")
    if configured:
        yield configured
        return
    binary = SECANTUS if SECANTUS.exists() else shutil.which("secantusd-py")
    if binary is None:
        unavailable(
            "no MongoDB server: scripts/test installs SecantusDB into .venv-mongo, "
            "or set RUNCE_TEST_MONGODB_URL"
        )
        return
    port = _free_port()
    process = subprocess.Popen(
        [str(binary), "--host", "127.0.0.1", "--port", str(port), "--storage-path", ":memory:"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"mongodb://127.0.0.1:{port}"
    try:
        _wait_for_mongo(url, timeout=30)
    except Exception as exc:
        process.kill()
        unavailable(f"SecantusDB did not start on port {port}: {exc}")
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()

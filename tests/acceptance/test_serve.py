"""`runce serve` and `runce tokens` as users run them: real processes, requests with httpx."""

from __future__ import annotations

import json
import selectors
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.acceptance.conftest import RUNCE, Workspace, clean_env

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Server:
    """`runce serve` in a subprocess of a workspace, on a port of its own."""

    def __init__(self, space: Workspace) -> None:
        self.space = space
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = space.start("serve", "--port", str(self.port), "--log-level", "warning")
        deadline = time.monotonic() + 60
        while not self._healthy():
            assert self.proc.poll() is None, self.proc.communicate()
            assert time.monotonic() < deadline, "runce serve did not start"
            time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def token(self, *scopes: str, name: str = "t") -> str:
        args = [arg for scope in scopes for arg in ("--scope", scope)]
        made = self.space.runce("tokens", "create", name, *args)
        assert made.returncode == 0, made.stderr
        return made.stdout.strip()

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        _out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, err


@pytest.fixture
def sqlite_space(tmp_path: Path) -> Iterator[Workspace]:
    space = Workspace(tmp_path, "sqlite:///.runce/runce.db")
    yield space
    space.reap()


@pytest.fixture
def postgres_space(postgres_server: str, tmp_path: Path) -> Iterator[Workspace]:
    from tests import services

    schema = f"runce_t_{uuid.uuid4().hex[:12]}"
    space = Workspace(tmp_path, postgres_server, f'schema = "{schema}"\n')
    yield space
    space.reap()
    services.drop_schema(postgres_server, schema)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_serve_with_a_token_from_the_cli_then_stop_on_sigterm(sqlite_space: Workspace) -> None:
    server = Server(sqlite_space)
    token = server.token("runs:read", "runs:write", name="ci")
    assert token.startswith("rnc_")
    with httpx.Client(base_url=server.url, headers=_bearer(token), timeout=10) as client:
        made = client.post("/v1/runs", json={"kind": "email.send", "input": {"to": "a@b"}})
        assert made.status_code == 201
        run = made.json()
        assert client.get(f"/v1/runs/{run['id']}").json() == run
        assert client.get("/v1/runs").json()["runs"] == [run]
        assert httpx.get(f"{server.url}/v1/runs", timeout=10).status_code == 401
        assert client.post("/v1/runs:claim", json={"worker_id": "w", "lease": 5}).status_code == 403
        health = httpx.get(f"{server.url}/healthz", timeout=10).json()
        assert health["status"] == "ok"
        assert health["store"].endswith(".runce/runce.db")
    # The same run, read by the library from the same store.
    listed = sqlite_space.runce("runs", "list", "--json")
    assert [r["id"] for r in json.loads(listed.stdout)["runs"]] == [run["id"]]
    code, err = server.stop()
    assert code == 0, err
    assert "runce serve: stopped" in err


def test_tokens_are_listed_without_secrets_and_revoked_at_once(sqlite_space: Workspace) -> None:
    server = Server(sqlite_space)
    token = server.token("runs:read", name="reader")
    made = sqlite_space.runce(
        "tokens", "create", "shop", "--scope", "runs:write", "--project", "shop", "--json"
    )
    shop = json.loads(made.stdout)
    assert (shop["scopes"], shop["projects"], shop["token"][:4]) == (
        ["runs:write"],
        ["shop"],
        "rnc_",
    )
    assert httpx.get(f"{server.url}/v1/runs", headers=_bearer(token), timeout=10).status_code == 200
    listed = sqlite_space.runce("tokens", "list", "--json")
    assert listed.returncode == 0
    assert token.split("_", 2)[2] not in listed.stdout
    assert "secret" not in listed.stdout
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["reader"]["last_used_at"] is not None
    assert rows["shop"]["projects"] == ["shop"]
    table = sqlite_space.runce("tokens", "list")
    assert "reader" in table.stdout
    assert "runs:read" in table.stdout
    token_id = token.split("_")[1]
    revoked = sqlite_space.runce("tokens", "revoke", token_id)
    assert revoked.returncode == 0
    assert f"revoked token {token_id}" in revoked.stdout
    answer = httpx.get(f"{server.url}/v1/runs", headers=_bearer(token), timeout=10)
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    unknown = sqlite_space.runce("tokens", "revoke", "ffffffffffff")
    assert unknown.returncode == 2
    assert unknown.stderr.count("\n") == 1
    server.stop()


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("[api]\nport = 70000\n", "api.port must be a TCP port"),
        ('[api.rate_limit]\nenqueue = "fast"\n', "api.rate_limit.enqueue must be a rate"),
        ('[api]\nmax_body = "lots"\n', "api.max_body must be a size"),
        ("[api]\nheader_timeout = 0\n", "api.header_timeout must be between 10ms and 1h"),
        ('[api]\nbody_timeout = "2h"\n', "api.body_timeout must be between 10ms and 1h"),
        ("[api]\nmax_connections = 0\n", "api.max_connections must be a whole number"),
        (
            '[api]\nforwarded_allow_ips = ["proxy.local"]\n',
            "api.forwarded_allow_ips must be a list of IP addresses or networks",
        ),
        ('[api]\nsecure_cookies = "yes"\n', "api.secure_cookies must be 'auto'"),
    ],
)
def test_bad_config_is_one_sentence_and_exit_2(
    sqlite_space: Workspace, setting: str, words: str
) -> None:
    sqlite_space.write_config(setting)
    result = sqlite_space.runce("serve")
    assert result.returncode == 2
    assert words in result.stderr
    assert result.stderr.count("\n") == 1


def _sign_in_cookie(server: Server, source: str, proto: str) -> str:
    """The Set-Cookie of the sign-in form asked from ``source`` (a loopback address) with
    ``X-Forwarded-Proto: proto``."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=10) as client:
        form = client.get(f"{server.url}/ui/login", headers={"X-Forwarded-Proto": proto})
    assert form.status_code == 200, form.text
    return form.headers["set-cookie"].lower()


def test_behind_a_trusted_proxy_on_another_host_the_dashboard_cookies_are_secure(
    tmp_path: Path,
) -> None:
    # 127.0.0.2 stands for the proxy's host; 127.0.0.1, trusted by default, is not named.
    space = Workspace(
        tmp_path, "sqlite:///.runce/runce.db", '[api]\nforwarded_allow_ips = ["127.0.0.2"]\n'
    )
    try:
        server = Server(space)
        assert "secure" in _sign_in_cookie(server, "127.0.0.2", "https")
        assert "secure" not in _sign_in_cookie(server, "127.0.0.2", "http")
        assert "secure" not in _sign_in_cookie(server, "127.0.0.1", "https")
        # The session cookie too: signed in through the proxy over HTTPS.
        token = server.token("runs:read", name="viewer")
        with httpx.Client(
            transport=httpx.HTTPTransport(local_address="127.0.0.2"),
            headers={"X-Forwarded-Proto": "https"},
            timeout=10,
        ) as client:
            form = client.get(f"{server.url}/ui/login")
            csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            signed = client.post(
                f"{server.url}/ui/login",
                data={"csrf": csrf, "token": token},
                headers={"Cookie": f"runce_sign_in={form.cookies['runce_sign_in']}"},
            )
        assert signed.status_code == 303, signed.text
        assert "runce_session=" in signed.headers["set-cookie"]
        assert "secure" in signed.headers["set-cookie"].lower()
        code, err = server.stop()
        assert code == 0, err
    finally:
        space.reap()


def test_a_port_in_use_is_one_sentence_and_exit_2(sqlite_space: Workspace) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = sqlite_space.runce("serve", "--port", port)
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert result.stderr.count("\n") == 1


def _race(server: Server, token: str) -> list[tuple[int, Any]]:
    """20 concurrent enqueues with one Idempotency-Key, released together."""
    barrier = threading.Barrier(20)
    answers: list[tuple[int, Any]] = []
    mutex = threading.Lock()
    headers = {**_bearer(token), "Idempotency-Key": "order-4711"}
    body = {"kind": "invoice.send", "input": {"order": 4711}}

    def post() -> None:
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
            barrier.wait()
            answer = client.post("/v1/runs", json=body)
        with mutex:
            answers.append((answer.status_code, answer.json()))

    threads = [threading.Thread(target=post) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def _check_one_run(server: Server, token: str, answers: list[tuple[int, Any]]) -> None:
    assert sorted(code for code, _ in answers) == [200] * 19 + [201]
    bodies = {json.dumps(body, sort_keys=True) for _, body in answers}
    assert len(bodies) == 1, bodies
    [run] = [json.loads(b) for b in bodies]
    listed = httpx.get(f"{server.url}/v1/runs", headers=_bearer(token), timeout=10).json()
    assert [r["id"] for r in listed["runs"]] == [run["id"]]


def test_twenty_concurrent_enqueues_with_one_key_make_one_run_on_sqlite(
    sqlite_space: Workspace,
) -> None:
    sqlite_space.write_config('[api.rate_limit]\nenqueue = "100/s"\n')
    server = Server(sqlite_space)
    token = server.token("runs:read", "runs:write")
    _check_one_run(server, token, _race(server, token))
    server.stop()


@pytest.mark.postgres
def test_twenty_concurrent_enqueues_with_one_key_make_one_run_on_postgres(
    postgres_space: Workspace,
) -> None:
    postgres_space.write_config('[api.rate_limit]\nenqueue = "100/s"\n')
    server = Server(postgres_space)
    token = server.token("runs:read", "runs:write")
    _check_one_run(server, token, _race(server, token))
    server.stop()


def test_without_the_http_extra_serve_says_what_to_install(sqlite_space: Workspace) -> None:
    # A module named like the extra's that cannot be imported stands in for a missing extra.
    blocker = sqlite_space.root / "blocked"
    blocker.mkdir()
    (blocker / "uvicorn.py").write_text("raise ModuleNotFoundError(name='uvicorn')\n")
    result = subprocess.run(
        [RUNCE, "serve"],
        cwd=sqlite_space.root,
        env=clean_env(PYTHONPATH=str(blocker)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "pip install 'nurv-runce[api]'" in result.stderr
    assert result.stderr.count("\n") == 1


# -- slow clients --------------------------------------------------------------------------


def _open(port: int, count: int, payload: bytes) -> list[socket.socket]:
    """``count`` connections that each send ``payload`` and then nothing more."""
    opened = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if payload:
            sock.sendall(payload)
        opened.append(sock)
    return opened


def _until_closed(socks: list[socket.socket], deadline: float) -> dict[socket.socket, bytes]:
    """What each connection received until the server closed it (the test fails at
    ``deadline`` if one is still open)."""
    received = dict.fromkeys(socks, b"")
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        while selector.get_map():
            left = deadline - time.monotonic()
            assert left > 0, f"{len(selector.get_map())} slow connections are still open"
            for key, _ in selector.select(timeout=min(left, 1.0)):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                received[sock] += chunk
                if not chunk:
                    selector.unregister(sock)
    for sock in socks:
        sock.close()
    return received


def _answered_then_partial(port: int) -> socket.socket:
    """A connection whose first request is answered, then sends half of a second one."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: runce\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65536)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
    return sock


def _healthz_answer(server: Server) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    answer = httpx.get(f"{server.url}/healthz", timeout=30)
    return answer, time.monotonic() - started


# A request is "answered promptly" within this many seconds, on a busy machine too.
PROMPT = 3.0


def test_slow_request_heads_are_closed_while_other_requests_are_answered(
    sqlite_space: Workspace,
) -> None:
    timeout = 6.0
    sqlite_space.write_config(f'[api]\nheader_timeout = "{timeout}s"\n')
    server = Server(sqlite_space)
    opened_at = time.monotonic()
    partial = _open(server.port, 150, b"GET /healthz HTTP/1.1\r\nHost: runce\r\nX-Slow: ")
    silent = _open(server.port, 50, b"")
    # On a kept-alive connection the clock starts again with the next request's first byte.
    partial += [_answered_then_partial(server.port)]
    answer, took = _healthz_answer(server)
    assert answer.status_code == 200
    # Answered while the slow ones hang (their clock had not run out yet).
    assert time.monotonic() - opened_at < timeout, "the machine is too slow to tell"
    assert took < PROMPT
    received = _until_closed(partial + silent, time.monotonic() + timeout + 20)
    assert time.monotonic() - opened_at >= timeout
    for sock in partial:
        head, _, body = received[sock].partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 "), received[sock]
        assert b"content-type: application/problem+json" in head
        problem = json.loads(body)
        assert problem["type"].endswith("/request-timeout")
        assert "api.header_timeout" in problem["detail"]
    assert all(received[sock] == b"" for sock in silent)
    assert _healthz_answer(server)[0].status_code == 200
    code, err = server.stop()
    assert code == 0, err


def test_slow_request_bodies_are_answered_408_and_closed(sqlite_space: Workspace) -> None:
    timeout = 4.0
    sqlite_space.write_config(f'[api]\nbody_timeout = "{timeout}s"\n')
    server = Server(sqlite_space)
    token = server.token("runs:write")
    head = (
        "POST /v1/runs HTTP/1.1\r\nHost: runce\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: 100\r\n\r\n"
    ).encode()
    opened_at = time.monotonic()
    stalled = _open(server.port, 50, head + b'{"kind": "a')
    trickling = _open(server.port, 5, head)
    answer, took = _healthz_answer(server)
    assert answer.status_code == 200
    assert took < PROMPT
    # A byte at a time does not move the deadline.
    while time.monotonic() - opened_at < timeout - 0.5:
        for sock in trickling:
            sock.sendall(b" ")
        time.sleep(0.2)
    received = _until_closed(stalled + trickling, time.monotonic() + timeout + 20)
    for sock in stalled + trickling:
        head_seen, _, body = received[sock].partition(b"\r\n\r\n")
        assert head_seen.startswith(b"HTTP/1.1 408 "), received[sock]
        assert b"connection: close" in head_seen
        assert json.loads(body)["type"].endswith("/request-timeout")
    listed = sqlite_space.runce("runs", "list", "--json")
    assert json.loads(listed.stdout)["runs"] == []
    server.stop()


def test_connections_past_the_bound_get_503_at_once(sqlite_space: Workspace) -> None:
    sqlite_space.write_config('[api]\nmax_connections = 20\nheader_timeout = "6s"\n')
    server = Server(sqlite_space)
    slow = _open(server.port, 20, b"GET /healthz HTTP/1.1\r\n")
    answer, took = _healthz_answer(server)
    assert answer.status_code == 503
    assert took < PROMPT
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["retry-after"] == "1"
    assert answer.json()["type"].endswith("/server-busy")
    # Once the slow ones are closed, there is room again.
    _until_closed(slow, time.monotonic() + 6.0 + 20)
    deadline = time.monotonic() + 10
    while (answer := _healthz_answer(server)[0]).status_code != 200:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.1)
    server.stop()

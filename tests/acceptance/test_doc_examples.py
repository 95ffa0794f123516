"""Every code block in README.md and docs/ runs as written: a python block is either a
verbatim part of a file a test runs, a file README's quick start has the reader write, or
executed with the blocks before it on its page in a fresh project; toml, json and yaml
documents parse; every `runce` command shown parses with the CLI, and the console blocks
run, command by command, in a project, unless listed with the reason they are not."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import httpx
import pytest
import yaml

ROOT = Path(__file__).parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
MARKER = re.compile(r"<!--\s*example:\s*(\S+)\s*-->\s*\Z")
# A block the reader writes to a file of their project (README's quick start).
WRITTEN = re.compile(r"<!--\s*file:\s*(\S+)\s*-->\s*\Z")
RUNCE = Path(sys.executable).parent / "runce"

# A folder of examples and the test that runs its files: a block marked as part of a file
# there is only as true as that test.
TESTED_BY = {
    "examples/fastapi": "tests/acceptance/test_fastapi_example.py",
    "examples/django": "tests/acceptance/test_django_example.py",
    "examples/connections": "tests/acceptance/test_connection_examples.py",
    "examples/quickstart": "tests/acceptance/conftest.py",
    "examples/adopting": "tests/acceptance/test_adopting.py",
    "examples/transactional": "tests/acceptance/test_transactional_jobs.py",
    "tests/typecheck": "tests/unit/test_frameworks_types.py",
}

# Python blocks that are not executed, each with the reason. Keyed by page and the block's
# first line.
NOT_RUN: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    language: str
    text: str
    source: str | None  # the file this block is a verbatim part of
    written_to: str | None = None  # the file of the reader's project it is written to

    @property
    def first(self) -> str:
        return self.text.partition("\n")[0].strip()

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}"


def _blocks() -> list[Block]:
    found = []
    for path in DOCS:
        text = path.read_text()
        for match in FENCE.finditer(text):
            before = text[: match.start()].rstrip()
            marker = MARKER.search(before)
            written = WRITTEN.search(before)
            body = match[2]
            source = marker[1] if marker else None
            first = body.partition("\n")[0]
            named = first.removeprefix("# ").strip()
            if source is None and re.fullmatch(r"# (examples|tests)/[\w./-]+", first):
                source = named  # the older form: the block's first line names its file
                body = body.partition("\n")[2]
            found.append(
                Block(
                    str(path.relative_to(ROOT)),
                    text.count("\n", 0, match.start()) + 1,
                    match[1],
                    body,
                    source,
                    written[1] if written else None,
                )
            )
    return found


BLOCKS = _blocks()
PAGES = sorted({b.doc for b in BLOCKS if b.language == "python" and b.source is None})


def _ran_or_marked(block: Block) -> str:
    if block.source is not None:
        return "marked"
    if block.written_to is not None:
        return "written"  # by test_the_pip_quick_start_runs, which then runs its commands
    if (block.doc, block.first) in NOT_RUN:
        return "not run"
    return "run"


def test_the_blocks_are_found() -> None:
    python = [b for b in BLOCKS if b.language == "python"]
    assert len(python) >= 30
    assert len([b for b in python if b.source]) >= 10


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.source], ids=str)
def test_a_marked_block_is_part_of_a_tested_file(block: Block) -> None:
    assert block.source is not None
    path = ROOT / block.source
    assert path.is_file(), f"{block}: names {block.source!r}, which is not a file"
    assert block.text.strip() in path.read_text(), f"{block}: not a part of {block.source}"
    folder = next((f for f in TESTED_BY if block.source.startswith(f + "/")), None)
    assert folder is not None, f"{block}: no test runs the files of {block.source}'s folder"
    test = (ROOT / TESTED_BY[folder]).read_text()
    assert folder.split("/")[-1] in test, f"{TESTED_BY[folder]} does not use {folder}"


# How each kind of block is checked; a block in any other language fails until it is added.
LANGUAGES = {
    "python": "run, or a verbatim part of a tested file",
    "toml": "parsed",
    "json": "parsed when it is a whole document",
    "yaml": "parsed",
    "console": "its runce commands parsed by the CLI; run, or listed with a reason",
    "sh": "a verbatim part of a script a test runs",
    "text": "output shown, not code",
    "": "output shown, not code",
    "cron": "a crontab line, not code",
    "mermaid": "a diagram, not code",
    "sql": "settings an operator applies to the database, shown not run",
}


def test_every_block_is_in_a_language_that_is_checked() -> None:
    unchecked = [f"{b} ({b.language})" for b in BLOCKS if b.language not in LANGUAGES]
    assert not unchecked, f"blocks in a language no test checks: {unchecked}"
    unmarked = [str(b) for b in BLOCKS if b.language == "sh" and b.source is None]
    assert not unmarked, f"sh blocks must be a verbatim part of a tested script: {unmarked}"


def test_every_unrun_block_is_listed_with_a_reason() -> None:
    listed = {(b.doc, b.first) for b in BLOCKS if b.language == "python"}
    assert not set(NOT_RUN) - listed, "NOT_RUN names blocks that are gone"


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.language in ("toml", "json", "yaml")], ids=str
)
def test_a_config_block_parses(block: Block) -> None:
    if block.language == "toml":
        tomllib.loads(block.text)
    elif block.language == "yaml":
        assert yaml.safe_load(block.text) is not None
    elif block.text.lstrip()[:1] in "{[":  # a complete document, not a field of one
        json.loads(block.text)


def _project(tmp_path: Path, example: str, name: str = "project") -> tuple[Path, dict[str, str]]:
    project = tmp_path / name
    shutil.copytree(ROOT / "examples" / example, project)
    shutil.rmtree(project / ".runce", ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNCE_")}
    # ahead of where the test's own interpreter finds runce, if set
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(project), env.get("PYTHONPATH")]))
    return project, env


# What a page's blocks print when they worked: the run waited for through the server has
# succeeded, and the remote worker drained and summed up.
PRINTS = {"docs/remote.md": ("succeeded {'sent': True}", "'claimed': ")}


@pytest.fixture(autouse=True)
def _stop_started() -> Iterator[None]:
    yield
    while STARTED:
        proc = STARTED.pop()
        proc.terminate()
        proc.communicate(timeout=30)


STARTED: list[subprocess.Popen[str]] = []


def _server(root: Path) -> dict[str, str]:
    """`runce serve` and a worker for it in a copy of examples/quickstart: the URL and a
    token, as the reader's environment has them."""
    project, env = _project(root, "quickstart")
    client = _token(project, env, "runs:read", "runs:write", "runs:work")
    port = _free_port()
    for args in (["serve", "--port", str(port), "--log-level", "warning"], ["worker"]):
        STARTED.append(
            subprocess.Popen(
                [str(RUNCE), *args],
                cwd=project,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert STARTED[0].poll() is None, STARTED[0].communicate()
        assert time.monotonic() < deadline, "runce serve did not start"
        time.sleep(0.05)
    worker = _token(project, env, "runs:work")
    return {
        "RUNCE_API_URL": url,
        "RUNCE_API_TOKEN": client,
        "RUNCE_WORKER_TOKEN": worker,
        # the reader's remote worker has the server's jobs
        "RUNCE_WORKER_HANDLERS": "example_jobs",
        "PYTHONPATH": env["PYTHONPATH"],
    }


def _token(project: Path, env: dict[str, str], *scopes: str) -> str:
    made = subprocess.run(
        [
            str(RUNCE),
            "tokens",
            "create",
            "-".join(scopes),
            *(a for s in scopes for a in ("--scope", s)),
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


DRIVER = """
import json, sys, threading, traceback
import runce

blocks = json.load(open(sys.argv[1]))
namespace = {"__name__": "__main__"}
from runce.runs.jobs import registry

worker = thread = None
try:
    for block in blocks:
        if thread is None and registry.kinds():  # a worker needs a job to run
            worker = runce.worker()
            thread = threading.Thread(target=worker.run, daemon=True)
            thread.start()
        try:
            exec(compile(block["text"], block["where"], "exec"), namespace)
        except BaseException:
            traceback.print_exc()
            print(f"FAILED: {block['where']}")
            sys.exit(1)
finally:
    if worker is not None and thread is not None:
        worker.stop(30)
        thread.join(60)
if registry.kinds():
    runce.drain()
from runce.timeutil import utcnow
later = utcnow()  # a run a block queued to start later (debounced, say) is not due yet
failed = [
    r for r in runce.list_runs(limit=100).runs
    if r.state != "succeeded" and not (r.state == "queued" and r.run_at > later)
]
for run in failed:
    print(f"RUN NOT SUCCEEDED: {run.kind} {run.state} {run.error}")
sys.exit(1 if failed else 0)
"""


@pytest.mark.parametrize("doc", PAGES)
def test_the_python_blocks_of_a_page_run(tmp_path: Path, doc: str) -> None:
    """A page's blocks run in order in one namespace, as a reader pastes them into a
    project; a worker runs the runs they enqueue, and every run succeeds."""
    blocks = [b for b in BLOCKS if b.doc == doc and b.language == "python"]
    to_run = [b for b in blocks if _ran_or_marked(b) == "run"]
    project, env = _project(tmp_path, "docs")
    env["PAYMENTS_KEY"] = "sk-test"
    if any("runce.Client(" in b.text for b in to_run):
        server = _server(tmp_path / "server")
        env["PYTHONPATH"] += os.pathsep + server.pop("PYTHONPATH")
        env.update(server)
    script = project / "blocks.json"
    script.write_text(json.dumps([{"where": str(b), "text": b.text} for b in to_run]))
    (project / "driver.py").write_text(DRIVER)
    done = subprocess.run(
        [sys.executable, "driver.py", str(script)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    if doc in PRINTS:
        for printed in PRINTS[doc]:
            assert printed in done.stdout, done.stdout + done.stderr


# Console blocks are typed as a reader would, command by command, in order, in one project:
# each command must exit 0 (or with the code a following `echo $?` shows); what they print
# is not compared. `runce worker` without --drain and `runce serve` run on until the test
# ends (and must still be running then). The ids, tokens and server addresses commands
# print stand in for those a page shows; `export` sets what it names. Each block is named
# by its page and the start of its text.

# README's quick start after `pip install nurv-runce`, in an empty folder holding only the
# files README shows (the blocks marked `<!-- file: PATH -->`).
PIP_QUICK_START = [("README.md", "$ runce run\nstore: sqlite:////home/you/shop/")]

# In one copy of examples/quickstart with the jobs, schedule and tasks these pages name
# (CONSOLE_FILES): once tasks, backfill requests, the queue, workers, schedules, tokens and
# servers, in the order a reader could type them.
CONSOLE_RUN = [
    ("docs/backfills.md", "$ runce pause "),  # while the backfill is still pending
    ("README.md", '$ runce make "Init queues"'),
    ("README.md", "$ runce run "),
    ("docs/backfills.md", "$ runce run\nstore: postgresql://app@db/app\n2026-03-01T"),
    ("docs/once-tasks.md", "$ runce history "),
    ("README.md", "$ runce runs enqueue email.send"),
    ("docs/runs.md", "$ runce runs enqueue email.send"),
    ("docs/runs.md", "$ runce worker "),
    ("docs/runs.md", "$ runce runs status "),
    ("docs/runs.md", "$ runce runs enqueue payments.charge"),
    ("docs/runs.md", "$ runce schedules list"),
    ("docs/cli.md", "$ runce runs tail 0190f3d2-no-such-run --json"),
    ("README.md", "$ runce tokens create ops"),
    ("docs/remote.md", "$ runce tokens create ops"),
    ("docs/dashboard.md", "$ pip install 'nurv-runce[api]'\n$ runce tokens"),
    ("docs/http-api.md", "$ pip install 'nurv-runce[api]'"),
    ("docs/http-api.md", "$ runce tokens create ci"),
]

# In a project that has the jobs' code and reaches a server only over HTTP (the "anywhere
# else" of remote.md).
REMOTE_RUN = [
    ("docs/remote.md", "$ export RUNCE_API_URL="),
    ("docs/remote.md", "$ runce worker --remote http://jobs.internal:8080"),
]

# Console blocks no test runs, each with the reason.
CONSOLE_NOT_RUN = {
    ("README.md", "$ pip install nurv-runce"): "installs runce, which the tests run installed",
    ("docs/remote.md", "$ pip install 'nurv-runce[api]'"): "installs runce's [api] extra, "
    "which the tests run installed",
    ("README.md", "$ bash scripts/quickstart"): "installs into the clone's .venv: "
    "scripts/quickstart runs README's quick start's commands in examples/quickstart, run "
    "here too, and scripts/test is the suite itself (.ci/run)",
    ("docs/backfills.md", "# host a: "): "joins a parallel backfill while another "
    "process's `runce run` runs it: tests/acceptance/test_backfill_join.py",
    ("docs/once-tasks.md", "$ runce run\nstore: sqlite"): "shows a task failing (exit 1) "
    "and the tasks after it not attempted: tests/acceptance/test_commands.py",
    ("docs/once-tasks.md", "$ runce run\nrunce: tasks/"): "shows a changed task refused "
    "(exit 1): tests/acceptance/test_commands.py",
    ("docs/dashboard.md", "$ createdb -h 127.0.0.1"): "a benchmark on a "
    "PostgreSQL database of a million runs, from a clone (bench/README.md)",
    ("docs/scaling.md", "$ .venv/bin/python bench/large_tables.py"): "a benchmark on "
    "millions of runs, from a clone (bench/README.md)",
    ("docs/http-api.md", "$ export URL="): "curl calls of the HTTP API: tests/server/ "
    "calls each route (test_contract.py, test_auth_matrix.py)",
}


# What the console blocks of docs/ name beyond examples/quickstart: a job for each kind
# they enqueue or name, the schedule they switch, and tasks with the ids they show.
CONSOLE_FILES = {
    "console_jobs.py": """
        import runce

        runce.schedule(
            "0 3 * * *", "report.build", {"days": 1}, name="report.nightly",
            timezone="Europe/Berlin",
        )


        @runce.job("report.build")
        def build_report(params, ctx):
            return {"days": params["days"]}


        @runce.job("payments.charge")
        def charge(params, ctx):
            return {"charged": params["amount"], "with_key": bool(params["api_key"])}
        """,
    "tasks/2025-10-01T120000.init-queues.py": """
        import runce


        @runce.task(title="Create the message queues")
        def run(ctx):
            ctx.log.info("queues ready")
        """,
    "tasks/2026-03-01T090000.backfill-totals.py": """
        import runce


        def fetch(ctx, cursor, size):
            start = cursor or 0
            batch = list(range(start, min(start + size, 100)))
            return batch, (start + size if start + size < 100 else None)


        def process(ctx, batch):
            pass


        task = runce.Backfill(
            title="Fill invoices.total", fetch=fetch, process=process, batch_size=10
        )
        """,
}

# What a reader types in place of a placeholder.
TYPED = {"ID": "2025-01-10T090000.create-queues"}
RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SHORT_RUN_ID = re.compile(r"\b[0-9a-f]{8}-…")  # a run id a page shortens
TOKEN = re.compile(r"rnc_([0-9a-f]{12})_[A-Za-z0-9_-]+")
TOKEN_ID = "3f9c0a1b2c3d"  # the id of the token the pages show
SERVER = re.compile(r"http://[\w.-]+:8080")  # where a page's server listens


def _console(doc: str, start: str) -> Block:
    [block] = [b for b in BLOCKS if b.doc == doc and b.text.startswith(start)]
    return block


def _console_blocks() -> list[Block]:
    return [b for b in BLOCKS if b.language == "console"]


def test_every_console_block_is_run_or_listed_with_a_reason() -> None:
    run = [*PIP_QUICK_START, *CONSOLE_RUN, *REMOTE_RUN]
    named = [_console(doc, start) for doc, start in [*run, *CONSOLE_NOT_RUN]]
    assert len(named) == len(set(named)), "a console block is named twice"
    assert all(CONSOLE_NOT_RUN.values()), "a console block not run needs its reason"
    unnamed = [str(b) for b in _console_blocks() if b not in named]
    assert not unnamed, f"console blocks neither run nor listed in CONSOLE_NOT_RUN: {unnamed}"


def test_the_pip_quick_start_runs(tmp_path: Path) -> None:
    """README's quick start as someone who ran `pip install nurv-runce` follows it: its files
    written as shown into an empty folder (nothing else, no PYTHONPATH to it), then its
    commands; the run it enqueued succeeded."""
    project = tmp_path / "shop"
    written = [b for b in BLOCKS if b.doc == "README.md" and b.written_to]
    assert {b.written_to for b in written} >= {"runce.toml", "jobs.py"}, written
    for block in written:
        assert block.written_to is not None
        path = project / block.written_to
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block.text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNCE_")}
    console = _run_blocks(project, env, tmp_path / "logs", PIP_QUICK_START)
    listed = console.runce("runs", "list", "--json")
    assert [r["state"] for r in json.loads(listed)["runs"]] == ["succeeded"], listed


def _run_blocks(
    project: Path, env: dict[str, str], logs: Path, blocks: list[tuple[str, str]]
) -> Console:
    """Run the console ``blocks`` (doc, first line) in ``project``, in order, as one
    reader's shell; whatever they left running is stopped after the last (or a failure)."""
    console = Console(project, env, logs)
    try:
        for doc, start in blocks:
            console.run(_console(doc, start))
    finally:
        console.stop()
    return console


def test_the_console_blocks_run_in_one_project(tmp_path: Path) -> None:
    project, env = _project(tmp_path, "quickstart")
    shutil.rmtree(project / "var", ignore_errors=True)
    for name, text in CONSOLE_FILES.items():
        (project / name).write_text(textwrap.dedent(text).lstrip())
    config = project / "runce.toml"
    handlers = 'handlers = ["example_jobs"]'
    assert handlers in config.read_text()
    config.write_text(
        config.read_text().replace(handlers, 'handlers = ["example_jobs", "console_jobs"]')
    )
    env["PAYMENTS_KEY"] = "sk-test"  # the secret docs/runs.md's run refers to
    _run_blocks(project, env, tmp_path / "logs", CONSOLE_RUN)


def test_the_remote_commands_run(tmp_path: Path) -> None:
    """remote.md's commands "anywhere else", against a real server, with the environment
    they export: enqueue, remote workers, and the run followed to its end."""
    env = _server(tmp_path)
    project = tmp_path / "elsewhere"
    shutil.copytree(ROOT / "examples" / "quickstart", project)  # the jobs' code, no store
    (project / "runce.toml").write_text('[worker]\nhandlers = ["example_jobs"]\n')
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RUNCE_")}, **env}
    _run_blocks(project, env, tmp_path / "logs", REMOTE_RUN)


class Console:
    """A reader's shell in ``project``: runs the commands of console blocks, and keeps
    what they printed that later commands name (a run id, a token, a server's address)."""

    def __init__(self, project: Path, env: dict[str, str], logs: Path) -> None:
        self.project = project
        self.env = dict(env)
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.run_id: str | None = None
        self.token: str | None = None
        self.server: str | None = env.get("RUNCE_API_URL")
        self.started: list[tuple[subprocess.Popen[bytes], Path, str]] = []

    def run(self, block: Block) -> None:
        for command, code in _steps(block):
            where = f"{block}: {command}"
            if command.startswith("pip install "):
                continue  # the tests' environment has runce and its extras
            if command.startswith("export "):
                self._export(where, command)
                continue
            argv = shlex.split(self._typed(where, command))
            assert argv[0] == "runce", f"{where}: not a runce command"
            if argv[1] == "serve" or (argv[1] == "worker" and "--drain" not in argv):
                self._start(where, argv[1:])
            else:
                self._note(argv[1:], self.runce(*argv[1:], code=code, where=where))

    def runce(self, *args: str, code: int = 0, where: str = "") -> str:
        done = subprocess.run(
            [str(RUNCE), *args],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        said = f"{where or ' '.join(args)} exited {done.returncode}\n{done.stdout}{done.stderr}"
        assert done.returncode == code, said
        return done.stdout

    def stop(self) -> None:
        """Stop what runs on, each of which must have run until now."""
        ended = [
            f"{where}\n{log.read_text()}"
            for proc, log, where in self.started
            if proc.poll() is not None
        ]
        for proc, _, _ in self.started:
            if proc.poll() is None:
                proc.terminate()
        for proc, _, _ in self.started:
            proc.wait(timeout=60)
        assert not ended, f"ended before the test did: {ended}"

    def _typed(self, where: str, command: str) -> str:
        """The command as the reader types it, with what earlier commands printed."""
        for typed, instead in TYPED.items():
            command = re.sub(rf"(?<![\w-]){re.escape(typed)}(?![\w-])", instead, command)
        command = self._expanded(command)
        if "<id>" in command or RUN_ID.search(command) or SHORT_RUN_ID.search(command):
            assert self.run_id is not None, f"{where}: needs a run enqueued before it"
            command = command.replace("<id>", self.run_id)
            command = SHORT_RUN_ID.sub(self.run_id, RUN_ID.sub(self.run_id, command))
        if TOKEN_ID in command:
            assert self.token is not None, f"{where}: needs a token created before it"
            command = command.replace(TOKEN_ID, self.token[4:16])
        if SERVER.search(command):
            assert self.server is not None, f"{where}: needs a server started before it"
            command = SERVER.sub(self.server, command)
        # a synopsis's optional parts ([--json], [--project shop ...]) are typed as given
        return command.replace("[", "").replace("]", "").replace(" ...", "")

    def _expanded(self, command: str) -> str:
        """``$NAME`` replaced by its value, as a shell does outside single quotes."""
        parts = re.split(r"('[^']*')", command)
        for i in range(0, len(parts), 2):
            parts[i] = re.sub(r"\$(\w+)", lambda name: self.env[name[1]], parts[i])
        return "".join(parts)

    def _export(self, where: str, command: str) -> None:
        for word in shlex.split(command)[1:]:
            name, _, value = word.partition("=")
            if name == "RUNCE_API_URL" and self.server is not None:
                value = self.server
            elif name == "RUNCE_API_TOKEN" and self.token is not None:
                value = self.token
            elif name in ("RUNCE_API_URL", "RUNCE_API_TOKEN"):
                assert name in self.env, f"{where}: {name} is nothing this test made"
                continue
            self.env[name] = value

    def _start(self, where: str, args: list[str]) -> None:
        """A command that runs until stopped: started, and waited for until it serves."""
        url = None
        if args[0] == "serve":
            port = _free_port()
            args = [str(port) if arg == "8080" else arg for arg in args]
            url = f"http://127.0.0.1:{port}"
        log = self.logs / f"{len(self.started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(RUNCE), *args], cwd=self.project, env=self.env, stdout=out, stderr=out
            )
        self.started.append((proc, log, where))
        deadline = time.monotonic() + 60
        while not self._ready(url, log):
            assert proc.poll() is None, f"{where} ended:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"{where} never started:\n{log.read_text()}"
            time.sleep(0.05)
        if url is not None:
            self.server = url

    @staticmethod
    def _ready(url: str | None, log: Path) -> bool:
        if url is None:  # a worker: once it said which kinds it runs
            return re.search(r"^worker \S+: ", log.read_text(), re.MULTILINE) is not None
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def _note(self, args: list[str], stdout: str) -> None:
        if args[:2] == ["runs", "enqueue"]:
            found = RUN_ID.search(stdout)
            assert found is not None, f"runce {' '.join(args)} printed no run id"
            self.run_id = found[0]
        elif args[:2] == ["tokens", "create"]:
            token = TOKEN.search(stdout)
            assert token is not None, f"runce {' '.join(args)} printed no token"
            self.token = token[0]


def _steps(block: Block) -> list[tuple[str, int]]:
    """A block's commands, each with the exit code it must give: 0, or what an `echo $?`
    after it prints."""
    steps: list[tuple[str, int]] = []
    lines = block.text.splitlines()
    for line, after in zip(lines, [*lines[1:], ""], strict=True):
        if not line.startswith("$ "):
            continue  # what the command prints
        command = line[2:].split("  #")[0].strip()
        if command == "echo $?":
            steps[-1] = (steps[-1][0], int(after))
        else:
            steps.append((command, 0))
    return steps


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _commands(block: Block) -> list[str]:
    """The runce commands of a console block, continuation lines joined, comments dropped."""
    text = block.text.replace("\\\n", " ")
    lines = [line[2:] for line in text.splitlines() if line.startswith("$ ")]
    commands = [line.split("  #")[0].strip() for line in lines]
    # a synopsis's optional parts ([--json], [--project shop ...]) are parsed as given
    return [
        c.replace("[", "").replace("]", "").replace(" ...", "")
        for c in commands
        if c.startswith("runce ")
    ]


def _parse(argv: list[str]) -> None:
    """Parse a command line as the CLI would, down to its last subcommand, running nothing."""
    from runce.cli.main import cli

    ctx = cli.make_context("runce", argv)
    command: click.Command = cli
    while isinstance(command, click.Group):
        given = [*getattr(ctx, "_protected_args", []), *ctx.args]  # click 9: all in args
        name, sub, rest = command.resolve_command(ctx, given)
        assert sub is not None
        assert name is not None
        ctx = sub.make_context(name, rest, parent=ctx)
        command = sub


CONSOLE = [b for b in BLOCKS if b.language == "console" and _commands(b)]


@pytest.mark.parametrize("block", CONSOLE, ids=str)
def test_a_console_block_names_real_commands_and_options(block: Block) -> None:
    for command in _commands(block):
        try:
            _parse(shlex.split(command)[1:])
        except click.ClickException as exc:
            pytest.fail(f"{block}: {command!r}: {exc.format_message()}")

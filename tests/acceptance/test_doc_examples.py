"""Every code block in README.md and docs/ runs as written: a python block is either a
verbatim part of a file a test runs, or executed with the blocks before it on its page in a
fresh project; toml, json and yaml documents parse; every `runce` command shown parses with
the CLI, and README's once-task and job-queue commands run."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
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
                )
            )
    return found


BLOCKS = _blocks()
PAGES = sorted({b.doc for b in BLOCKS if b.language == "python" and b.source is None})


def _ran_or_marked(block: Block) -> str:
    if block.source is not None:
        return "marked"
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
    "console": "its runce commands parsed by the CLI; README's quick start run",
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
    env["PYTHONPATH"] = str(project)
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
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
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
        "PYTHONPATH": str(project),
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


# Console blocks run as commands, in order, in a copy of examples/quickstart: README's once
# tasks and job queue. Each is named by its page and the start of its first line.
CONSOLE_RUN = [
    ("README.md", '$ runce make "Init queues"'),
    ("README.md", "$ runce run "),
    ("README.md", "$ runce runs enqueue email.send"),
]
# What a reader types in place of a placeholder, or instead of a command that runs on.
TYPED = {"ID": "2025-01-10T090000.create-queues", "runce worker": "runce worker --drain"}
RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _console(doc: str, start: str) -> Block:
    [block] = [b for b in BLOCKS if b.doc == doc and b.text.startswith(start)]
    return block


def test_the_quick_start_commands_run(tmp_path: Path) -> None:
    project, env = _project(tmp_path, "quickstart")
    shutil.rmtree(project / "var", ignore_errors=True)
    _run_console([_console(doc, start) for doc, start in CONSOLE_RUN], project, env)


def test_the_remote_commands_run(tmp_path: Path) -> None:
    """remote.md's commands "anywhere else", against a real server, with the environment
    they export: enqueue, a remote worker, and the run followed to its end."""
    env = _server(tmp_path)
    project = tmp_path / "elsewhere"
    shutil.copytree(ROOT / "examples" / "quickstart", project)  # the jobs' code, no store
    (project / "runce.toml").write_text('[worker]\nhandlers = ["example_jobs"]\n')
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RUNCE_")}, **env}
    block = _console("docs/remote.md", "$ export RUNCE_API_URL=")
    _run_console([block], project, env)


def _run_console(blocks: list[Block], project: Path, env: dict[str, str]) -> None:
    """Run the blocks' commands in order; the ids of runs they enqueue replace the ids the
    page shows."""
    run_id = None
    for block in blocks:
        for line in block.text.splitlines():
            if not line.startswith("$ "):
                continue  # what the command prints
            command = line[2:].split("  #")[0].strip()
            if command.startswith("export "):  # the test's environment has these set
                names = [word.split("=")[0] for word in shlex.split(command)[1:]]
                assert all(name in env for name in names), f"{block}: {command!r}"
                continue
            for typed, instead in TYPED.items():
                command = re.sub(rf"(?<![\w-]){re.escape(typed)}(?![\w-])", instead, command)
            if "<id>" in command or RUN_ID.search(command):
                assert run_id is not None, f"{block}: {command!r} needs a run enqueued before it"
                command = RUN_ID.sub(run_id, command.replace("<id>", run_id))
            argv = shlex.split(command)
            assert argv[0] == "runce", f"{block}: {command!r} is not a runce command"
            done = subprocess.run(
                [str(RUNCE), *argv[1:]],
                cwd=project,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, f"{block}: {command}\n{done.stdout}{done.stderr}"
            if argv[1:3] == ["runs", "enqueue"]:
                found = RUN_ID.search(done.stdout)
                assert found is not None, f"{block}: {command!r} printed no run id"
                run_id = found[0]


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

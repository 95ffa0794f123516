"""``--remote`` where no server is needed: without the HTTP extra, and what importing costs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest

from runce.cli.main import main
from runce.cli.remote import bare_remote_first


def test_remote_without_the_http_extra_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "runce.toml").write_text('store = "sqlite:///runce.db"\n')
    monkeypatch.setitem(sys.modules, "httpx", None)  # what a missing package looks like
    monkeypatch.delitem(sys.modules, "runce.api.client", raising=False)
    monkeypatch.delitem(sys.modules, "runce.api.remote_queue", raising=False)
    config = str(tmp_path / "runce.toml")
    for args in (["runs", "list"], ["worker", "--drain"]):
        with pytest.raises(SystemExit) as exited:
            main([*args, "--remote", "http://127.0.0.1:9", "--config", config])
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert err.strip() == "runce: --remote needs the HTTP client: pip install 'nurv-runce[api]'"


def test_runce_and_its_help_load_no_http_library() -> None:
    script = (
        "import sys, runce\n"
        "from runce.cli import main\n"
        "try:\n"
        "    main(['runs', 'list', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "loaded = sorted(m for m in ('httpx', 'fastapi', 'uvicorn') if m in sys.modules)\n"
        "print(','.join(loaded) or 'none')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert "--remote [URL]" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "none"


BARE = "--remote=\x00bare"


@pytest.mark.parametrize(
    ("args", "read_as"),
    [
        (["--remote", "0193-id"], [BARE, "0193-id"]),
        (["--remote", "0193-id", "--json"], [BARE, "0193-id", "--json"]),
        (["0193-id", "--remote"], ["0193-id", "--remote"]),
        (["--remote", "http://h:1", "0193-id"], ["--remote", "http://h:1", "0193-id"]),
        (["--remote", "h.example:8080", "0193-id"], ["--remote", "h.example:8080", "0193-id"]),
        (["--remote=x", "0193-id"], ["--remote=x", "0193-id"]),
        (["--input", "--remote", "k", "--remote", "k"], ["--input", "--remote", "k", BARE, "k"]),
        (["--", "--remote", "k"], ["--", "--remote", "k"]),
    ],
)
def test_a_word_after_remote_that_is_no_url_stays_the_argument(
    args: list[str], read_as: list[str]
) -> None:
    params = [
        click.Option(["--remote"], is_flag=False, flag_value="\x00bare"),
        click.Option(["--input"]),
        click.Option(["--json"], is_flag=True),
        click.Argument(["run_id"]),
    ]
    assert bare_remote_first(params, args) == read_as
    without_arguments = [p for p in params if isinstance(p, click.Option)]
    assert bare_remote_first(without_arguments, args) == args

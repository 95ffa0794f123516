"""Secrets (R-8): references stored, values resolved only where the job runs, and masked in
runce's logs and the errors it stores."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

import runce
from runce.errors import InvalidInput
from runce.runs import redact, secrets
from runce.runs.events import EventBus
from runce.runs.jobs import Job, JobRegistry
from runce.runs.service import RunService, cap_error
from runce.runs.worker import Worker, WorkerOptions
from runce.stores import memory


class Charge(BaseModel):
    amount: int
    api_key: runce.Secret  # type: ignore[valid-type]


seen: dict[str, Any] = {}


def charge(params: Charge) -> dict[str, Any]:
    seen["params"] = params
    return {"charged": params.amount, "key": params.api_key}


def untyped(params: Any) -> None:
    seen["params"] = params


@pytest.fixture
def setup(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[memory.MemoryStore, RunService]]:
    monkeypatch.setenv("PAYMENTS_KEY", "sk_live_abcdef")
    store = memory.MemoryStore(uuid.uuid4().hex)
    jobs = JobRegistry()
    jobs.register(Job("payments.charge", charge))
    jobs.register(Job("untyped", untyped))
    seen.clear()
    yield store, RunService(store.runs, jobs=jobs, bus=EventBus())
    memory.reset()
    secrets.use_resolver(None)
    redact.install(runce.config.DEFAULT_REDACT)


def _drain(store: memory.MemoryStore, service: RunService) -> None:
    Worker(store.runs, WorkerOptions(drain=True, poll=0.05, max_time=10), jobs=service.jobs).run()


def test_a_secret_field_refuses_a_plain_value_at_enqueue(
    setup: tuple[memory.MemoryStore, RunService],
) -> None:
    _store, service = setup
    with pytest.raises(InvalidInput, match=r"api_key: .*must be a secret reference"):
        service.enqueue("payments.charge", {"amount": 5, "api_key": "sk_live_abcdef"})
    assert service.page().runs == []


def test_only_the_reference_is_stored_and_the_job_gets_the_value(
    setup: tuple[memory.MemoryStore, RunService],
) -> None:
    store, service = setup
    run = service.enqueue("payments.charge", {"amount": 5, "api_key": {"$secret": "PAYMENTS_KEY"}})
    assert run.input == {"amount": 5, "api_key": {"$secret": "PAYMENTS_KEY"}}
    _drain(store, service)
    params = seen["params"]
    assert isinstance(params.api_key, SecretStr)
    assert params.api_key.get_secret_value() == "sk_live_abcdef"
    assert "sk_live" not in repr(params)
    done = service.get(run.id)
    assert done.state == "succeeded"
    assert done.result == {"charged": 5, "key": "**********"}  # never dumped as itself


def test_a_missing_secret_fails_the_run_at_once_with_its_name(
    setup: tuple[memory.MemoryStore, RunService],
) -> None:
    store, service = setup
    run = service.enqueue("payments.charge", {"amount": 1, "api_key": {"$secret": "NOT_SET"}})
    _drain(store, service)
    failed = service.get(run.id)
    assert (failed.state, failed.attempt) == ("failed", 1)
    assert "secret 'NOT_SET' is not set where the job runs" in (failed.error or "")


def test_untyped_jobs_get_their_references_resolved(
    setup: tuple[memory.MemoryStore, RunService],
) -> None:
    store, service = setup
    value = {"auth": {"$secret": "PAYMENTS_KEY"}, "list": [{"$secret": "PAYMENTS_KEY"}], "n": 1}
    service.enqueue("untyped", value)
    _drain(store, service)
    params = seen["params"]
    assert params["auth"].get_secret_value() == "sk_live_abcdef"
    assert params["list"][0].get_secret_value() == "sk_live_abcdef"
    assert params["n"] == 1


def test_a_configured_resolver_replaces_the_environment(
    setup: tuple[memory.MemoryStore, RunService],
) -> None:
    store, service = setup
    secrets.use_resolver(lambda name: f"vault:{name}")
    service.enqueue("payments.charge", {"amount": 2, "api_key": {"$secret": "stripe"}})
    _drain(store, service)
    assert seen["params"].api_key.get_secret_value() == "vault:stripe"


def test_runs_api_installs_the_resolver_named_in_the_config(tmp_path: Any) -> None:
    from runce.errors import ConfigError
    from runce.runs.library import prepare_secrets

    base = {"store": f"sqlite:///{tmp_path / 'r.db'}"}
    prepare_secrets(runce.config.resolve_config({**base, "worker": {"secrets": "os:getenv"}}))
    with pytest.raises(ConfigError, match=r"worker\.secrets .os:sep. is not a function"):
        prepare_secrets(runce.config.resolve_config({**base, "worker": {"secrets": "os:sep"}}))
    with pytest.raises(ConfigError, match="cannot be imported"):
        prepare_secrets(runce.config.resolve_config({**base, "worker": {"secrets": "nope:x"}}))
    secrets.use_resolver(None)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("password=hunter2 user=ada", "password=*** user=ada"),
        ('{"Token": "abc def", "n": 1}', '{"Token": "***", "n": 1}'),
        ("{'api_key': 'k-1', 'amount': 5}", "{'api_key': '***', 'amount': 5}"),
        ("Authorization: Bearer", "Authorization: ***"),
        ("tokens are fine, keys too", "tokens are fine, keys too"),
    ],
)
def test_configured_keys_are_masked(text: str, masked: str) -> None:
    assert redact.Redactor().scrub(text) == masked


def test_runce_logs_and_stored_errors_mask_keys_and_resolved_secrets(
    setup: tuple[memory.MemoryStore, RunService], caplog: pytest.LogCaptureFixture
) -> None:
    redact.install(["pin"])
    secrets.resolve("PAYMENTS_KEY")
    with caplog.at_level(logging.INFO, logger="runce.job"):
        logging.getLogger("runce.job").info("pin=1234 with %s", "sk_live_abcdef")
    assert caplog.records[-1].getMessage() == "pin=*** with ***"
    assert cap_error("RuntimeError: refused sk_live_abcdef") == "RuntimeError: refused ***"


def test_an_input_is_shown_with_redacted_keys_and_secret_references_masked() -> None:
    shown = redact.masked_input(
        {
            "to": "ada@example.com",
            "Password": "hunter2",
            "api": {"$secret": "MAIL_KEY"},
            "items": [{"token": "t0k3n", "n": 1}, {"$secret": ""}],
        },
        ["password", "TOKEN"],
    )
    assert shown == {
        "to": "ada@example.com",
        "Password": "***",
        "api": "*** (secret MAIL_KEY)",
        "items": [{"token": "***", "n": 1}, {"$secret": ""}],  # not a reference: no name
    }

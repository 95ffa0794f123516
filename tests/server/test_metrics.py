"""``GET /metrics``: who may read it, what it holds, and the trace context of enqueues."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from runce import tracing
from runce.api.metrics import StoreCollector
from runce.runs import api as runs_api
from tests.server.conftest import Api, make_api

PARENT = "00-" + "4bf92f3577b34da6a3ce929d0e0e4736" + "-" + "00f067aa0ba902b7" + "-01"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.parametrize(
    ("role", "status"),
    [("reader", 200), ("all", 200), (None, 401), ("writer", 403), ("shop", 403)],
)
def test_metrics_need_a_reading_token_bound_to_no_project(
    api: Api, role: str | None, status: int
) -> None:
    answer = api.call("GET", "/metrics", role)
    assert answer.status_code == status, answer.text
    if status != 200:
        assert answer.headers["content-type"] == "application/problem+json"


def test_public_metrics_need_no_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    api = make_api(tmp_path, {"api": {"public_metrics": True}})
    api.enqueue(kind="email.send")
    answer = api.call("GET", "/metrics", None)
    assert answer.status_code == 200
    samples = _samples(answer.text)
    assert samples["runce_runs", (("kind", "email.send"), ("state", "queued"))] == 1
    assert samples["runce_runs", (("kind", "email.send"), ("state", "failed"))] == 0
    assert samples["runce_workers", (("state", "live"),)] == 0
    assert not (tmp_path / "tasks").exists()
    assert not [name for name, _ in samples if name.startswith("runce_task")]
    api.client.close()


def test_a_reading_is_shared_by_scrapes_within_the_cache(api: Api) -> None:
    store = runs_api.shared_store(api.config.store)
    collector = StoreCollector(api.config, store, cache_seconds=3600)
    first = collector.reading()
    runs_api.service(api.config).enqueue("email.send", {})
    assert collector.reading() is first
    assert dict(StoreCollector(api.config, store).reading().runs.counts) == {
        ("email.send", "queued"): 1
    }


def test_a_callers_traceparent_is_kept_with_the_run(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracing, "_api", False)  # as on a server without OpenTelemetry
    headers = {"traceparent": PARENT, "tracestate": "vendor=1"}
    answer = api.call("POST", "/v1/runs", json={"kind": "email.send"}, headers=headers)
    assert answer.status_code == 201
    assert answer.json()["trace_context"] == {"traceparent": PARENT, "tracestate": "vendor=1"}
    broken = api.call(
        "POST", "/v1/runs", json={"kind": "email.send"}, headers={"traceparent": "nonsense"}
    )
    assert broken.status_code == 201
    assert broken.json()["trace_context"] is None
    plain = api.enqueue(kind="email.send")
    assert plain["trace_context"] is None

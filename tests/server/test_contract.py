"""The limits the OpenAPI document declares are the ones the server keeps: nothing is
coerced (false is not 0, a number is not a time), text and JSON a store cannot hold are
refused, and a method a path lacks is 405 with that path's own methods."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.server.conftest import Api

WORKER = {"worker_id": "w1", "attempt": 1, "lease": 5}


def _refused(response: Any, *words: str) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    problem: dict[str, Any] = response.json()
    assert problem["type"].endswith("/invalid-request"), problem
    for word in words:
        assert word in problem["detail"], problem["detail"]
    return problem


def _raw(api: Api, path: str, text: str, **kwargs: Any) -> Any:
    """A body sent as written (httpx cannot encode a lone surrogate itself)."""
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    return api.call("POST", path, content=text.encode(), headers=headers, **kwargs)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/v1/runs/x:cancel", "POST"),
        ("GET", "/v1/runs/x:cancel", "POST"),
        ("DELETE", "/v1/runs", "GET, POST"),
        ("POST", "/v1/runs/x", "GET"),
        ("GET", "/v1/workers/w1", "PUT"),
        ("GET", "/v1/schedules/nightly:enable", "POST"),
    ],
)
def test_a_method_a_path_lacks_is_405_with_the_paths_methods(
    api: Api, method: str, path: str, allowed: str
) -> None:
    response = api.call(method, path)
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allowed
    assert response.json()["type"].endswith("/method-not-allowed")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("priority", False),
        ("priority", 1.0),
        ("priority", "3"),
        ("max_attempts", True),
        ("priority", 1_000_001),
        ("priority", -1_000_001),
        ("max_attempts", 1001),
        ("run_at", 0.5),
        ("run_at", 1_900_000_000),
        ("run_at", "2030-01-01T00:00:00"),
        ("run_at", "1969-12-31T23:59:59Z"),
        ("run_at", "2030-01-01"),
        ("kind", ""),
    ],
)
def test_enqueue_coerces_nothing(api: Api, field: str, value: Any) -> None:
    body = {"kind": "email.send", field: value}
    _refused(api.call("POST", "/v1/runs", json=body), field)


def test_the_limits_themselves_are_accepted(api: Api) -> None:
    run = api.enqueue(priority=1_000_000, max_attempts=1000, run_at="9999-12-30T00:00:00Z")
    assert (run["priority"], run["max_attempts"]) == (1_000_000, 1000)
    assert api.enqueue(priority=-1_000_000, input=_nested(64))["priority"] == -1_000_000


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/runs:claim", {"worker_id": "w1", "lease": True}, "lease"),
        ("/v1/runs:claim", {"worker_id": "w1", "lease": "5"}, "lease"),
        ("/v1/runs:claim", {"worker_id": "w1", "lease": 5, "limit": 1.0}, "limit"),
        ("/v1/runs/r1:heartbeat", {**WORKER, "attempt": False}, "attempt"),
        ("/v1/runs/r1:progress", {**WORKER, "percent": True}, "percent"),
        ("/v1/runs:prune", {"failed_after": False}, "failed_after"),
        ("/v1/runs/r1:fail", {**WORKER, "error": "x", "outcome": "retry", "run_at": 0}, "run_at"),
    ],
)
def test_worker_and_prune_bodies_coerce_nothing(
    api: Api, path: str, body: dict[str, Any], field: str
) -> None:
    _refused(api.call("POST", path, json=body), field)


@pytest.mark.parametrize(
    "query",
    [
        "since=0.5",
        "before=1700000000",
        "since=2026-01-01",
        "limit=1.0",
        "limit=1_0",
        "limit=%201",
        "limit=0",
        "kind=",
        "project_id=",
        "cursor=not%20a%20cursor",
        "limt=5",
    ],
)
def test_list_queries_are_read_strictly(api: Api, query: str) -> None:
    _refused(api.call("GET", f"/v1/runs?{query}"))


def test_a_misspelt_query_parameter_is_named(api: Api) -> None:
    _refused(api.call("GET", "/v1/runs?stat=failed"), "'stat'", "state")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"kind": "a", "input": {"a": "\\ud800"}}', ["lone surrogate"]),
        ('{"kind": "a", "input": {"\\udfff": 1}}', ["lone surrogate"]),
        ('{"kind": "a\\ud800"}', ["kind", "lone surrogate"]),
        ('{"kind": "a", "input": ["\\u0000"]}', ["NUL"]),
        ('{"kind": "a", "input": 9223372036854775808}', ["64 bits"]),
        ('{"kind": "a", "input": [-9223372036854775809]}', ["64 bits"]),
        ('{"kind": "a", "project_id": "p\\ud800"}', ["project_id", "lone surrogate"]),
        ('{"kind": "a", "correlation_id": "c\\u0000"}', ["correlation_id", "NUL"]),
    ],
)
def test_text_and_numbers_no_store_holds_are_refused(api: Api, text: str, words: list[str]) -> None:
    _refused(_raw(api, "/v1/runs", text), *words)
    assert api.call("GET", "/v1/runs").json()["runs"] == []


def test_input_nested_deeper_than_64_levels_is_refused(api: Api) -> None:
    _refused(_raw(api, "/v1/runs", json.dumps({"kind": "a", "input": _nested(65)})), "64 levels")
    _refused(_raw(api, "/v1/runs", '{"kind": "a", "input": ' + "[" * 1000 + "]" * 1000 + "}"))
    assert api.call("GET", "/v1/runs").json()["runs"] == []


def test_a_worker_outcome_no_store_holds_is_refused(api: Api) -> None:
    body = '{"worker_id": "w1", "attempt": 1, "error": "bad \\ud800", "outcome": "failed"}'
    _refused(_raw(api, "/v1/runs/r1:fail", body), "error", "lone surrogate")
    body = '{"worker_id": "w1", "attempt": 1, "result": {"x": "\\u0000"}}'
    _refused(_raw(api, "/v1/runs/r1:succeed", body), "result", "NUL")


@pytest.mark.parametrize("key", ["%00", "%7F", "a%0Ab", "%ED%A0%80"])
def test_an_idempotency_key_with_a_control_character_or_surrogate_is_refused(
    api: Api, key: str
) -> None:
    headers = {"Idempotency-Key": key}
    response = api.call("POST", "/v1/runs", json={"kind": "a"}, headers=headers)
    _refused(response, "Idempotency-Key" if key == "%ED%A0%80" else "control character")


def test_the_document_declares_the_limits(api: Api) -> None:
    document = api.call("GET", "/openapi.json", role=None).json()
    schemas = document["components"]["schemas"]
    enqueue = schemas["EnqueueRequest"]["properties"]
    assert (enqueue["priority"]["minimum"], enqueue["priority"]["maximum"]) == (
        -1_000_000,
        1_000_000,
    )
    assert enqueue["max_attempts"]["anyOf"][0]["maximum"] == 1000
    assert enqueue["kind"]["minLength"] == 1
    assert enqueue["run_at"]["anyOf"][0]["pattern"].startswith("^(19[7-9][0-9]|[2-9][0-9]{3})-")
    assert "64 levels" in enqueue["input"]["description"]
    listing = {p["name"]: p for p in document["paths"]["/v1/runs"]["get"]["parameters"]}
    assert listing["cursor"]["schema"]["anyOf"][0]["pattern"] == "^[A-Za-z0-9_-]+$"
    post = document["paths"]["/v1/runs"]["post"]["parameters"]
    [key] = [p for p in post if p["name"] == "Idempotency-Key"]
    assert (key["schema"]["minLength"], key["schema"]["maxLength"]) == (1, 255 * 12)


def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value

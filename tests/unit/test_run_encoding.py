"""The run service's canonical JSON and run ids: the text idempotency compares, the ids that
order runs."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any

import pytest

from runce.errors import InvalidInput
from runce.runs.service import canonical_json, new_run_id, new_run_ids
from runce.stores.queue import trace_context_of, trace_contexts

VALUES: list[Any] = [
    None,
    0,
    -7,
    2**63 - 1,
    -(2**63),
    '"\\\\u0000" [[[[1]]]] 12345678901234567890',
    1.5,
    1e16,
    -0.0,
    True,
    "",
    'é \n \u2028 \\ "',
    [],
    {},
    [1, [2, [3, {"z": None}]]],
    {"b": 1, "a": {"d": [1.25, "x"], "c": False}},
    OrderedDict([("y", 1), ("x", 2)]),
    {2: "b", 1: "a"},
    (1, 2),
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_canonical_json_is_the_standard_encoding_with_sorted_keys_and_no_spaces(
    value: Any,
) -> None:
    standard = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    assert canonical_json(value) == standard


def test_equal_values_give_equal_text_whatever_the_key_order() -> None:
    assert canonical_json({"a": 1, "b": [1, {"d": 2, "c": 3}]}) == canonical_json(
        {"b": [1, {"c": 3, "d": 2}], "a": 1}
    )


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ({"at": object()}, "Object of type object is not JSON serializable"),
        (float("nan"), "Out of range float values"),
        ({"x": float("inf")}, "Out of range float values"),
        ({1: "a", "b": 2}, "not supported between"),
    ],
    ids=["object", "nan", "inf", "mixed keys"],
)
def test_a_value_that_is_not_json_is_invalid_input(value: Any, says: str) -> None:
    with pytest.raises(InvalidInput, match="the run's input is not JSON") as caught:
        canonical_json(value)
    assert says in str(caught.value)


def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (
            {"a": "\ud800"},
            "input['a'] is not valid Unicode text (it holds a lone surrogate, U+D800)",
        ),
        ({"\udfff": 1}, "input (a key) is not valid Unicode text"),
        (["ok", "x\x00y"], "input[1] holds a NUL character"),
        ({"n": 2**63}, "input['n'] holds the integer 9223372036854775808, outside the signed 64"),
        ([-(2**63) - 1], "input[0] holds the integer -9223372036854775809"),
        (2**5000, "input holds an integer, outside the signed 64-bit range"),
        (_nested(65), "is nested deeper than 64 levels"),
        ({"deep": _nested(1000)}, "nested deeper than 64 levels"),
    ],
    ids=["surrogate", "surrogate key", "nul", "2^63", "-2^63-1", "huge", "65 deep", "1000 deep"],
)
def test_a_value_no_store_can_keep_is_refused_naming_the_place(value: Any, says: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        canonical_json(value)
    assert says in str(caught.value)
    assert str(caught.value).startswith("the run's input")


def test_the_limits_let_through_what_only_looks_like_breaking_them() -> None:
    near = [*["x"] * 100, _nested(63), {"[[[[": "{{{{" * 50}, "12345678901234567890123"]
    assert json.loads(canonical_json(near)) == near
    assert canonical_json([[]] * 200) == "[" + ",".join(["[]"] * 200) + "]"


def test_a_value_that_contains_itself_is_invalid_input_and_leaves_the_encoder_usable() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    with pytest.raises(InvalidInput, match="contains itself"):
        canonical_json(loop, "result")
    # A failed call leaves nothing behind: the same objects encode once the loop is cut.
    loop.pop()
    assert canonical_json({"again": loop}) == '{"again":[1]}'


def test_an_unserializable_value_inside_a_list_leaves_the_encoder_usable() -> None:
    inner = [1, 2]
    with pytest.raises(InvalidInput):
        canonical_json([inner, object()])
    assert canonical_json([inner, inner]) == "[[1,2],[1,2]]"  # a shared list is no loop


def test_run_ids_are_uuid7_with_the_current_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    ids = new_run_ids(500)
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == 500
    for text in ids:
        value = uuid.UUID(text)
        assert str(value) == text  # lower-case, canonical hyphens
        assert value.version == 7
        assert value.variant == uuid.RFC_4122
        assert before <= value.int >> 80 <= after


def test_run_ids_spread_their_random_bits() -> None:
    ids = [uuid.UUID(text).int for text in new_run_ids(400)]
    # Every random bit (the 62 after the variant) takes both values.
    for bit in range(62):
        seen = {value >> bit & 1 for value in ids}
        assert seen == {0, 1}, f"bit {bit} never changes"
    # The variant digit takes all four of its values.
    assert {str(uuid.UUID(int=value))[19] for value in ids} == set("89ab")


def test_run_ids_strictly_increase_in_a_tight_loop_and_in_one_batch() -> None:
    one_by_one = [new_run_id() for _ in range(5000)]
    assert one_by_one == sorted(one_by_one)
    assert len(set(one_by_one)) == 5000
    batch = new_run_ids(5000)
    assert batch == sorted(batch)
    assert len(set(batch)) == 5000
    assert batch[0] > one_by_one[-1]


def test_run_ids_count_within_a_millisecond_and_borrow_the_next_when_the_counter_is_spent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frozen = time.time_ns() + 10**12  # later than any id made so far: a new millisecond
    monkeypatch.setattr(time, "time_ns", lambda: frozen)
    ids = new_run_ids(3000) + [new_run_id() for _ in range(3000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 6000
    millis = [uuid.UUID(text).int >> 80 for text in ids]
    assert millis[0] == frozen // 1_000_000
    assert millis[-1] > millis[0]  # 6000 ids do not fit one millisecond's 4096 counters
    assert all(0 <= m - millis[0] <= 3 for m in millis)


def test_run_ids_do_not_follow_a_clock_that_steps_back(monkeypatch: pytest.MonkeyPatch) -> None:
    first = new_run_id()
    monkeypatch.setattr(time, "time_ns", lambda: 0)
    assert new_run_ids(3) > [first] * 3


def test_run_ids_made_on_many_threads_are_unique_and_increase_on_each() -> None:
    made: list[list[str]] = [[] for _ in range(8)]

    def make(mine: list[str]) -> None:
        for _ in range(1000):
            mine.extend(new_run_ids(2))

    threads = [threading.Thread(target=make, args=(mine,)) for mine in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for mine in made:
        assert mine == sorted(mine)
    assert len({text for mine in made for text in mine}) == 16000


def test_run_ids_made_later_sort_later() -> None:
    first = new_run_id()
    time.sleep(0.002)
    assert new_run_ids(3) > [first] * 3
    assert new_run_ids(0) == []


def test_stored_trace_contexts_are_read_once_each_run_getting_its_own_table() -> None:
    read = trace_contexts(json.loads)
    text = '{"traceparent":"00-' + "ab" * 16 + "-" + "cd" * 8 + '-01"}'
    first, second = read(text), read(text)
    assert first == second == json.loads(text)
    assert first is not second  # a caller changing one run's table changes no other's
    assert read("{not json") is None
    assert read("[1, 2]") is None
    assert read('{"traceparent": 5}') == {"traceparent": "5"}
    assert read(text) == first
    assert trace_context_of({"a": "b"}) == {"a": "b"}
    assert trace_context_of("00-x") is None

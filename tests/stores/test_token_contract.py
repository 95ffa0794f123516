"""The token-store contract: every store with a run queue keeps the HTTP API's tokens."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from runce.domain.tokens import NewToken
from runce.errors import UsageError
from runce.stores.registry import open_store
from runce.stores.tokens import TokenStore
from tests.stores.conftest import BACKENDS, StoreMaker
from tests.stores.test_queue_contract import QUEUE_BACKENDS


@pytest.fixture(params=QUEUE_BACKENDS)
def tmaker(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[StoreMaker]:
    from runce.stores import memory

    made = BACKENDS[request.param](request, tmp_path)
    yield made
    made.close_all()
    memory.reset()


@pytest.fixture
def tokens(tmaker: StoreMaker) -> TokenStore:
    return _tokens(tmaker.open())


def _tokens(store: Any) -> TokenStore:
    found: TokenStore = store.tokens
    assert isinstance(found, TokenStore)
    return found


def new(token_id: str = "0123456789ab", **changes: Any) -> NewToken:
    fields: dict[str, Any] = {
        "name": "ci",
        "secret_hash": "ab" * 32,
        "scopes": ("runs:read", "runs:write"),
        "projects": (),
        **changes,
    }
    return NewToken(id=token_id, **fields)


def test_a_created_token_is_found_by_its_id_with_every_field(tokens: TokenStore) -> None:
    made = tokens.create(new(projects=("shop", "blog"), scopes=("runs:work",)))
    assert (made.id, made.name, made.secret_hash) == ("0123456789ab", "ci", "ab" * 32)
    assert (made.scopes, made.projects) == (("runs:work",), ("shop", "blog"))
    assert made.created_at.utcoffset() is not None
    assert (made.revoked_at, made.last_used_at, made.revoked) == (None, None, False)
    assert tokens.find("0123456789ab") == made
    assert tokens.find("ffffffffffff") is None


def test_an_id_that_exists_is_refused_and_the_first_token_kept(tokens: TokenStore) -> None:
    tokens.create(new(name="first"))
    with pytest.raises(UsageError, match="exists already"):
        tokens.create(new(name="second", secret_hash="cd" * 32))
    found = tokens.find("0123456789ab")
    assert found is not None
    assert (found.name, found.secret_hash) == ("first", "ab" * 32)


def test_the_list_holds_every_token_oldest_first_revoked_ones_too(tokens: TokenStore) -> None:
    assert tokens.list() == []
    for token_id in ("bbbbbbbbbbbb", "aaaaaaaaaaaa", "cccccccccccc"):
        tokens.create(new(token_id))
    tokens.revoke("aaaaaaaaaaaa")
    listed = tokens.list()
    assert {t.id for t in listed} == {"aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"}
    order = [(t.created_at, t.id) for t in listed]
    assert order == sorted(order)
    assert [t.id for t in listed if t.revoked] == ["aaaaaaaaaaaa"]


def test_revoking_is_final_and_keeps_the_first_time(tokens: TokenStore) -> None:
    tokens.create(new())
    first = tokens.revoke("0123456789ab")
    assert first is not None
    assert first.revoked
    assert first.revoked_at is not None
    again = tokens.revoke("0123456789ab")
    assert again is not None
    assert again.revoked_at == first.revoked_at
    assert tokens.find("0123456789ab") == again
    assert tokens.revoke("ffffffffffff") is None


def test_touch_records_the_last_use_and_changes_nothing_else(tokens: TokenStore) -> None:
    made = tokens.create(new())
    tokens.touch("0123456789ab")
    used = tokens.find("0123456789ab")
    assert used is not None
    assert used.last_used_at is not None
    assert used.last_used_at >= made.created_at
    assert (used.name, used.scopes, used.revoked_at) == (made.name, made.scopes, None)
    tokens.touch("ffffffffffff")  # an unknown id is no error
    assert tokens.find("ffffffffffff") is None


def test_a_second_store_object_sees_the_same_tokens(tmaker: StoreMaker) -> None:
    _tokens(tmaker.open()).create(new())
    other = _tokens(tmaker.open())
    found = other.find("0123456789ab")
    assert found is not None
    assert found.name == "ci"
    other.revoke("0123456789ab")
    again = _tokens(tmaker.open()).find("0123456789ab")
    assert again is not None
    assert again.revoked


def test_concurrent_creates_of_one_id_keep_exactly_one(tmaker: StoreMaker) -> None:
    outcomes: list[str] = []
    mutex = threading.Lock()

    def create(n: int) -> None:
        try:
            _tokens(tmaker.open()).create(new(name=f"t{n}"))
            result = "made"
        except UsageError:
            result = "refused"
        with mutex:
            outcomes.append(result)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["made"] + ["refused"] * 5
    assert len(_tokens(tmaker.open()).list()) == 1


def test_reads_on_an_empty_store_create_nothing(tmaker: StoreMaker) -> None:
    store = tmaker.open()
    tokens = _tokens(store)
    assert tokens.find("0123456789ab") is None
    assert tokens.list() == []
    assert store.schema_status().current == 0


def test_the_file_store_keeps_no_tokens(tmp_path: Any) -> None:
    from runce.stores.base import StoreSpec

    store = open_store(StoreSpec(type="file", url=f"file://{tmp_path / 'a.jsonl'}"))
    assert store.tokens is None
    assert store.runs is None
    assert store.schedules is None

"""The server's small parts on their own: token text and hashes, rate buckets, config keys."""

from __future__ import annotations

import pytest

from runce.api.ratelimit import RateLimiter
from runce.config import Rate, load_config
from runce.domain.tokens import Token
from runce.errors import ConfigError, UsageError
from runce.runs import tokens
from runce.timeutil import utcnow


def test_token_text_parses_only_in_its_own_shape() -> None:
    secret = "a" * 43
    assert tokens.parse(f"rnc_0123456789ab_{secret}") == ("0123456789ab", secret)
    for bad in ("", "rnc_0123456789ab", f"rnc_0123456789AB_{secret}", f"xyz_0123456789ab_{secret}"):
        assert tokens.parse(bad) is None
    assert tokens.parse("rnc_0123456789ab_short") is None


def test_a_secret_matches_only_its_own_hash() -> None:
    token = Token("0123456789ab", "t", tokens.hash_secret("s3cret"), ("runs:read",), (), utcnow())
    assert tokens.matches(token, "s3cret")
    assert not tokens.matches(token, "s3cret!")
    assert not tokens.matches(None, "s3cret")
    assert len(token.secret_hash) == 64


def test_scopes_and_projects_are_checked() -> None:
    assert tokens.check_scopes(["runs:work", "runs:read", "runs:read"]) == (
        "runs:read",
        "runs:work",
    )
    with pytest.raises(UsageError, match="'runs:admin' is unknown"):
        tokens.check_scopes(["runs:admin"])
    with pytest.raises(UsageError, match="at least one scope"):
        tokens.check_scopes([])
    assert tokens.check_projects(["shop", "blog", "shop"]) == ("shop", "blog")
    with pytest.raises(UsageError, match="not a project id"):
        tokens.check_projects(["two words"])


def test_a_name_must_be_given() -> None:
    with pytest.raises(UsageError, match="1-200 characters"):
        tokens.create_token(" ", ["runs:read"], config={"store": "memory://names"})


def test_the_file_store_keeps_no_tokens(tmp_path: object) -> None:
    with pytest.raises(Exception, match="keeps no API tokens"):
        tokens.list_tokens(config={"store": f"file://{tmp_path}/applied.jsonl"})


def test_last_used_is_written_at_most_once_a_minute_per_token() -> None:
    last = tokens.LastUsed()
    assert last.due("a")
    assert not last.due("a")
    assert last.due("b")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_bursts_to_its_size_then_refills_at_its_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(Rate(3, 60.0), clock)  # 3 a minute: one every 20 s
    assert [limiter.take("t") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("t") == 20
    clock.now += 10
    assert limiter.take("t") == 10
    clock.now += 10
    assert limiter.take("t") == 0
    assert limiter.take("other") == 0  # buckets are per key


def test_idle_buckets_are_forgotten_full() -> None:
    clock = Clock()
    limiter = RateLimiter(Rate(1, 3600.0), clock)
    assert limiter.take("t") == 0
    assert limiter.take("t") == 3600
    clock.now += 7200
    assert limiter.take("x") == 0  # sweeps "t", idle for two hours
    assert limiter.take("t") == 0


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, (8080, 1024 * 1024, Rate(50, 1.0), Rate(10, 1.0))),
        (
            {
                "port": "9000",
                "max_body": "512KiB",
                "rate_limit": {"enqueue": "5/m", "cancel": "off"},
            },
            (9000, 512 * 1024, Rate(5, 60.0), None),
        ),
        (
            {"max_body": 2000, "rate_limit": {"enqueue": "7/h"}},
            (8080, 2000, Rate(7, 3600.0), Rate(10, 1.0)),
        ),
    ],
)
def test_the_api_keys(values: dict[str, object], expected: tuple[object, ...]) -> None:
    api = load_config(values={"api": values}).api
    assert (api.port, api.max_body, api.enqueue_rate, api.cancel_rate) == expected
    assert str(Rate(5, 60.0)) == "5/m"


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"port": 0}, "api.port must be a TCP port"),
        ({"port": True}, "api.port must be a TCP port"),
        ({"max_body": "0"}, "api.max_body must be a size"),
        ({"max_body": 1.5}, "api.max_body must be a size"),
        ({"rate_limit": {"cancel": "0/s"}}, "api.rate_limit.cancel must be a rate"),
        ({"rate_limit": {"cancel": 5}}, "api.rate_limit.cancel must be a rate"),
        ({"host": ""}, "api.host must be a non-empty string"),
        (
            {"forwarded_allow_ips": ["10.0.0.1", "proxy.local"]},
            "^configuration: api.forwarded_allow_ips must be a list of IP addresses or networks "
            r"\(such as '10.0.0.7' or '10.0.0.0/8'\), or '\*', got \['10.0.0.1', 'proxy.local'\]$",
        ),
        ({"forwarded_allow_ips": 7}, "api.forwarded_allow_ips must be a list of IP addresses"),
        ({"secure_cookies": False}, "api.secure_cookies must be 'auto' .* or true .*, got False"),
        ({"secure_cookies": "yes"}, "api.secure_cookies must be 'auto'"),
    ],
)
def test_bad_api_keys_are_one_sentence(values: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_config(values={"api": values})


def test_the_environment_sets_the_api_keys() -> None:
    env = {"RUNCE_API_PORT": "9100", "RUNCE_API_RATE_LIMIT_ENQUEUE": "off"}
    api = load_config(values={}, env=env).api
    assert (api.port, api.enqueue_rate) == (9100, None)
    assert (api.forwarded_allow_ips, api.secure_cookies) == (("127.0.0.1", "::1"), "auto")
    env = {
        "RUNCE_API_FORWARDED_ALLOW_IPS": "10.0.4.12, 10.1.0.0/16,::1",
        "RUNCE_API_SECURE_COOKIES": "true",
    }
    api = load_config(values={}, env=env).api
    assert api.forwarded_allow_ips == ("10.0.4.12", "10.1.0.0/16", "::1")
    assert api.secure_cookies is True

"""The token cache and validator on a controlled clock: how long answers are trusted, how
many questions reach the identity service, and Keystone's token body read into an identity.

The identity service here is a stand-in (``Directory``): the real one is exercised by
``tests/functional/test_auth.py``."""

from __future__ import annotations

import asyncio
import threading

import pytest

from alcor.identity import (
    Identity,
    IdentityUnavailable,
    InvalidToken,
    TokenCache,
    TokenValidator,
    parse_token,
)

NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class Directory:
    """Answers like an identity service: known tokens, counted questions; ``gate`` holds
    every answer until set (to have many requests wait at once)."""

    def __init__(self, tokens: dict[str, Identity]) -> None:
        self.tokens = tokens
        self.asked: list[str] = []
        self.gate = threading.Event()
        self.gate.set()

    def validate(self, token: str) -> Identity:
        self.asked.append(token)
        self.gate.wait(timeout=10)
        if token not in self.tokens:
            raise InvalidToken()
        return self.tokens[token]


def identity(expires_in: float = 3600.0) -> Identity:
    return Identity(user_id="u1", project_id="p1", roles=("member", "reader"),
                    expires_at=NOW + expires_in)


def test_cache_trusts_an_answer_for_the_ttl_then_forgets_it() -> None:
    clock = Clock()
    cache = TokenCache(ttl=300, negative_ttl=2, size=10, clock=clock)
    cache.put("k", identity())
    clock.now += 299
    assert cache.get("k") == identity()
    clock.now += 1
    assert cache.get("k") is None
    assert len(cache) == 0


def test_cache_never_trusts_a_token_past_its_expiry() -> None:
    clock = Clock()
    cache = TokenCache(ttl=300, negative_ttl=2, size=10, clock=clock)
    cache.put("k", identity(expires_in=60))
    clock.now += 59
    assert cache.get("k") is not None
    clock.now += 1
    assert cache.get("k") is None
    cache.put("gone", identity(expires_in=-1))
    assert cache.get("gone") is None


def test_cache_refuses_a_refused_token_only_briefly() -> None:
    clock = Clock()
    cache = TokenCache(ttl=300, negative_ttl=2, size=10, clock=clock)
    cache.refuse("bad")
    with pytest.raises(InvalidToken):
        cache.get("bad")
    clock.now += 2
    assert cache.get("bad") is None


def test_cache_forgets_the_least_recently_used_beyond_its_size() -> None:
    cache = TokenCache(ttl=300, negative_ttl=2, size=2, clock=Clock())
    cache.put("a", identity())
    cache.put("b", identity())
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("c", identity())
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("c") is not None


def test_validator_asks_once_within_the_ttl_and_again_after() -> None:
    clock = Clock()
    directory = Directory({"t1": identity()})
    validator = TokenValidator(directory, TokenCache(300, 2, 10, clock))

    async def main() -> None:
        assert await validator.identity("t1") == identity()
        assert await validator.identity("t1") == identity()
        assert directory.asked == ["t1"]
        clock.now += 301
        assert await validator.identity("t1") == identity()
        assert directory.asked == ["t1", "t1"]

    asyncio.run(main())


def test_validator_asks_once_for_many_concurrent_requests() -> None:
    directory = Directory({"t1": identity()})
    directory.gate.clear()
    validator = TokenValidator(directory, TokenCache(300, 2, 10, Clock()))

    async def main() -> list[Identity]:
        waiting = [asyncio.create_task(validator.identity("t1")) for _ in range(20)]
        while not directory.asked:
            await asyncio.sleep(0)  # yield until the one question is under way
        directory.gate.set()
        return await asyncio.gather(*waiting)

    assert asyncio.run(main()) == [identity()] * 20
    assert directory.asked == ["t1"]


def test_validator_remembers_a_refusal_briefly() -> None:
    clock = Clock()
    directory = Directory({})
    validator = TokenValidator(directory, TokenCache(300, 2, 10, clock))

    async def main() -> None:
        for _ in range(2):
            with pytest.raises(InvalidToken):
                await validator.identity("nope")
        assert directory.asked == ["nope"]
        clock.now += 2
        with pytest.raises(InvalidToken):
            await validator.identity("nope")
        assert directory.asked == ["nope", "nope"]

    asyncio.run(main())


def test_validator_does_not_remember_an_unavailable_service() -> None:
    class Down:
        asked = 0

        def validate(self, token: str) -> Identity:
            self.asked += 1
            raise IdentityUnavailable("down")

    down = Down()
    validator = TokenValidator(down, TokenCache(300, 2, 10, Clock()))

    async def main() -> None:
        for _ in range(2):
            with pytest.raises(IdentityUnavailable):
                await validator.identity("t1")

    asyncio.run(main())
    assert down.asked == 2


def test_parse_token_reads_keystone_v3_token_body() -> None:
    body = {"token": {
        "methods": ["password"],
        "user": {"domain": {"id": "default", "name": "Default"}, "id": "u-1", "name": "alice"},
        "audit_ids": ["x"], "expires_at": "2027-01-15T08:30:00.000000Z",
        "issued_at": "2027-01-15T07:30:00.000000Z",
        "project": {"domain": {"id": "default", "name": "Default"}, "id": "p-1",
                    "name": "alpha"},
        "is_domain": False,
        "roles": [{"id": "r1", "name": "member"}, {"id": "r2", "name": "reader"}],
    }}
    got = parse_token(body)
    assert got == Identity(user_id="u-1", project_id="p-1", roles=("member", "reader"),
                           expires_at=1_800_001_800.0)


def test_parse_token_of_an_unscoped_token_has_no_project() -> None:
    body = {"token": {"user": {"id": "u-1"}, "expires_at": "2027-01-15T08:30:00Z"}}
    assert parse_token(body) == Identity("u-1", "", (), 1_800_001_800.0)


def test_parse_token_refuses_a_body_without_expiry() -> None:
    with pytest.raises(IdentityUnavailable):
        parse_token({"token": {"user": {"id": "u"}}})

"""Keystone v3 tokens: whom a token speaks for, asked of the identity service and remembered.

``KeystoneClient`` validates a user's token with ``GET /v3/auth/tokens`` (``X-Auth-Token``:
Alcor's own service token, got by password authentication and renewed before it expires or
when refused; ``X-Subject-Token``: the user's).  ``TokenCache`` remembers the answers: a valid
token until the cache TTL or the token's own ``expires_at``, whichever comes first; a refused
one for a few seconds only.  ``TokenValidator`` joins them for the async edge: one question to
the identity service per token, however many requests carry it at once.

No Starlette here: the edge (``alcor.api.auth``) turns ``InvalidToken`` into 401 and
``IdentityUnavailable`` into 503.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import httpx

from alcor.config import AuthSettings

Clock = Callable[[], float]
"""Seconds since the epoch (token expiry is wall-clock time)."""

SERVICE_TOKEN_MARGIN = 60.0
"""Seconds before its expiry the service token is renewed."""


class InvalidToken(Exception):
    """The identity service does not recognize the token (unknown, expired or revoked)."""


class IdentityUnavailable(Exception):
    """The identity service could not be asked, or answered something unexpected."""


@dataclass(frozen=True, slots=True)
class Identity:
    """What a valid token says: its user, project (empty when not project-scoped), role names
    and expiry (epoch seconds)."""

    user_id: str
    project_id: str
    roles: tuple[str, ...]
    expires_at: float


def epoch(timestamp: str) -> float:
    """Keystone's ``2026-01-02T03:04:05.000000Z`` as epoch seconds."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def parse_token(body: Any) -> Identity:
    """The identity in a ``{"token": {...}}`` body of ``/v3/auth/tokens``."""
    try:
        token = body["token"]
        project = token.get("project") or {}
        return Identity(
            user_id=str((token.get("user") or {}).get("id", "")),
            project_id=str(project.get("id", "")),
            roles=tuple(str(r["name"]) for r in token.get("roles") or ()),
            expires_at=epoch(token["expires_at"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IdentityUnavailable(f"unexpected token body from the identity service: {exc!r}") \
            from None


class TokenSource(Protocol):
    """Anything that turns a token into an identity, blocking (``KeystoneClient``)."""

    def validate(self, token: str) -> Identity:
        """The token's identity; raises InvalidToken or IdentityUnavailable."""


class KeystoneClient:
    """Blocking client of one identity service's v3 API (thread-safe)."""

    def __init__(
        self, settings: AuthSettings, *, clock: Clock = time.time,
        http: httpx.Client | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.base = settings.keystone_url.rstrip("/")
        self.http = http or httpx.Client(timeout=settings.timeout)
        self.validations = 0
        """Questions asked of the identity service about users' tokens."""
        self._lock = threading.Lock()
        self._service: tuple[str, float] | None = None

    def close(self) -> None:
        self.http.close()

    def validate(self, token: str) -> Identity:
        stale = None
        for _ in range(2):
            service = self._service_token(stale)
            self.validations += 1
            resp = self._send("GET", "/auth/tokens",
                              headers={"X-Auth-Token": service, "X-Subject-Token": token})
            if resp.status_code == 200:
                return parse_token(resp.json())
            if resp.status_code == 404:
                raise InvalidToken()
            if resp.status_code != 401 or self.settings.service_token:
                break
            stale = service
        raise IdentityUnavailable(
            f"the identity service answered {resp.status_code} to a token validation")

    def password_token(self, username: str, password: str, project: str) -> tuple[str, Any]:
        """A project-scoped token by password (users and projects in the configured domains):
        the token and the answer's body."""
        s = self.settings
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": username, "domain": {"name": s.user_domain_name}, "password": password,
            }}},
            "scope": {"project": {"name": project, "domain": {"name": s.project_domain_name}}},
        }}
        resp = self._send("POST", "/auth/tokens", json=body)
        if resp.status_code != 201:
            raise IdentityUnavailable(
                f"password authentication of {username!r} answered {resp.status_code}")
        return resp.headers["X-Subject-Token"], resp.json()

    def service_token(self) -> str:
        """Alcor's own token (renewed when close to its expiry): what the agent presents to
        an API behind Keystone."""
        return self._service_token(None)

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.request(method, self.base + path, params={"nocatalog": ""},
                                     **kwargs)
        except httpx.HTTPError as exc:
            raise IdentityUnavailable(f"identity service unreachable: {exc!r}") from None

    def _service_token(self, stale: str | None) -> str:
        """Alcor's own token: the configured one, or the service user's, renewed when close to
        its expiry or when ``stale`` (just refused) is still the one held."""
        if self.settings.service_token:
            return self.settings.service_token
        with self._lock:
            held = self._service
            if (held is None or held[0] == stale
                    or held[1] - SERVICE_TOKEN_MARGIN <= self.clock()):
                s = self.settings
                token, body = self.password_token(s.username, s.password, s.project_name)
                held = self._service = (token, parse_token(body).expires_at)
            return held[0]


class TokenCache:
    """Answers about tokens (keyed by a digest, never the token), bounded in size."""

    def __init__(self, ttl: float, negative_ttl: float, size: int, clock: Clock = time.time
                 ) -> None:
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.size = size
        self.clock = clock
        self._entries: OrderedDict[str, tuple[Identity | None, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Identity | None:
        """The remembered identity, None when nothing (still) holds; raises InvalidToken when
        the token was refused moments ago."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            identity, until = entry
            if until <= self.clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
        if identity is None:
            raise InvalidToken()
        return identity

    def put(self, key: str, identity: Identity) -> None:
        self._store(key, identity, min(self.clock() + self.ttl, identity.expires_at))

    def refuse(self, key: str) -> None:
        self._store(key, None, self.clock() + self.negative_ttl)

    def _store(self, key: str, identity: Identity | None, until: float) -> None:
        if until <= self.clock() or self.size <= 0:
            return
        with self._lock:
            self._entries[key] = (identity, until)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenValidator:
    """Tokens to identities for the event loop: the cache first, then one blocking question
    (in a worker thread) per token however many requests wait for it."""

    def __init__(self, source: TokenSource, cache: TokenCache) -> None:
        self.source = source
        self.cache = cache
        self._pending: dict[str, asyncio.Task[Identity]] = {}

    @classmethod
    def for_settings(cls, settings: AuthSettings, clock: Clock = time.time) -> TokenValidator:
        cache = TokenCache(settings.cache_ttl, settings.negative_cache_ttl, settings.cache_size,
                           clock)
        return cls(KeystoneClient(settings, clock=clock), cache)

    async def identity(self, token: str) -> Identity:
        key = token_key(token)
        found = self.cache.get(key)
        if found is not None:
            return found
        loop = asyncio.get_running_loop()
        task = self._pending.get(key)
        if task is None or task.get_loop() is not loop:
            task = loop.create_task(self._ask(key, token))
            self._pending[key] = task
            task.add_done_callback(functools.partial(self._done, key))
        return await asyncio.shield(task)

    async def _ask(self, key: str, token: str) -> Identity:
        try:
            identity = await asyncio.to_thread(self.source.validate, token)
        except InvalidToken:
            self.cache.refuse(key)
            raise
        self.cache.put(key, identity)
        return identity

    def _done(self, key: str, task: asyncio.Task[Identity]) -> None:
        if self._pending.get(key) is task:
            del self._pending[key]
        if not task.cancelled():
            task.exception()  # retrieved: a waiter that went away leaves no warning

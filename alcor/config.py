"""Typed, frozen settings and the one place that reads the environment.

``load()`` builds a ``Settings`` tree from defaults overridden by ``ALCOR_<SECTION>__<FIELD>``
environment variables; everything else receives the tree (or a section) explicitly.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ApiSettings:
    host: str = "127.0.0.1"
    """Address the Neutron-compatible API listens on."""
    port: int = 9696
    """TCP port of the API (Neutron's default)."""
    default_project_id: str = "admin"
    """Project used when a noauth request names none (no X-Project-Id, no project_id)."""
    max_request_bytes: int = 64 * 1024 * 1024
    """Requests with a larger body are refused with 413."""
    pagination_max_limit: int = 0
    """Upper bound on ``limit`` (0 means unbounded, as Neutron's default)."""


@dataclass(frozen=True, slots=True)
class DbSettings:
    url: str = "sqlite:///var/alcor.db"
    """SQLAlchemy URL: ``sqlite:///path`` (default) or ``postgresql+psycopg://...``."""
    sqlite_synchronous: str = "FULL"
    """SQLite PRAGMA synchronous: FULL survives power loss, NORMAL survives a crash."""
    sqlite_cache_mib: int = 256
    """SQLite page cache and memory map per connection, in MiB."""
    pool_size: int = 8
    """Connections per process for PostgreSQL."""
    max_retries: int = 20
    """Times a transaction is retried after losing a race on a unique constraint."""


@dataclass(frozen=True, slots=True)
class IpamSettings:
    mac_oui: str = "fa:16:3e"
    """Prefix of generated MAC addresses (three octets)."""
    vni_min: int = 1
    """Lowest VXLAN VNI handed to tenant networks."""
    vni_max: int = 16_000_000
    """Highest VXLAN VNI handed to tenant networks (VXLAN allows up to 16,777,215)."""
    network_mtu: int = 1450
    """MTU of VXLAN tenant networks (1500 minus the 50-byte VXLAN overhead)."""
    dns_domain: str = "openstacklocal."
    """Domain of the fqdn reported in a port's dns_assignment."""


@dataclass(frozen=True, slots=True)
class DpmSettings:
    grpc_listen: str = "127.0.0.1:9016"
    """Address of the controller's GoalStateProvisioner gRPC server (RequestGoalStates)."""
    push_deadline: float = 10.0
    """Seconds one goal-state push may take before it counts as a transport failure."""
    push_concurrency: int = 64
    """Goal-state pushes under way at once, per controller."""
    compile_concurrency: int = 1
    """Goal states compiled at once, per controller (compiling is CPU-bound: more only helps
    when the database is remote)."""
    backoff_initial: float = 0.5
    """Seconds before the first retry of a host that could not be reached."""
    backoff_max: float = 30.0
    """Cap of the exponential backoff between retries of an unreachable host."""
    reconcile_interval: float = 5.0
    """Seconds between reconciler passes (re-push lagging or failed hosts)."""
    poll_interval: float = 0.2
    """Seconds between outbox polls for changes committed by other processes."""
    claim_batch: int = 20_000
    """Most outbox rows claimed (and coalesced per host) in one transaction."""
    wait_timeout: float = 30.0
    """Seconds ``X-Alcor-Wait`` holds a response when it names no number of seconds."""
    wait_timeout_max: float = 300.0
    """Longest ``X-Alcor-Wait`` honoured; larger values are capped."""


@dataclass(frozen=True, slots=True)
class QuotaSettings:
    """How many of each resource a project may hold unless ``PUT /v2.0/quotas/{project}`` set
    its own limit (Neutron's defaults); -1 means unlimited."""

    network: int = 100
    """Networks per project."""
    subnet: int = 100
    """Subnets per project."""
    port: int = 500
    """Ports per project."""
    router: int = 10
    """Routers per project."""
    floatingip: int = 50
    """Floating IPs per project."""
    security_group: int = 10
    """Security groups per project (its ``default`` group counts)."""
    security_group_rule: int = 100
    """Security group rules per project (the rules every new group gets count)."""


AUTH_STRATEGIES = ("noauth", "keystone")


@dataclass(frozen=True, slots=True)
class AuthSettings:
    strategy: str = "noauth"
    """``noauth`` (every request is an admin of X-Project-Id's project) or ``keystone``
    (X-Auth-Token validated against the identity service; roles decide what a project may do)."""
    keystone_url: str = "http://127.0.0.1:5000/v3"
    """The identity service's v3 endpoint that validates tokens."""
    public_url: str = ""
    """Where clients authenticate, named in 401 answers' WWW-Authenticate (default:
    ``keystone_url``)."""
    username: str = "alcor"
    """Service user whose token validates users' tokens (password authentication)."""
    password: str = ""
    user_domain_name: str = "Default"
    project_name: str = "service"
    """Project the service user's token is scoped to."""
    project_domain_name: str = "Default"
    service_token: str = ""
    """A ready token to validate with instead of the service user's password (not renewed)."""
    cache_ttl: float = 300.0
    """Seconds a validated token is trusted without asking again (never past its expiry)."""
    negative_cache_ttl: float = 2.0
    """Seconds a token the identity service refused is refused without asking again."""
    cache_size: int = 10_000
    """Tokens remembered at most (least recently used ones are forgotten first)."""
    timeout: float = 5.0
    """Seconds one request to the identity service may take before answering 503."""
    admin_role: str = "admin"
    """Role that sees and changes every project's resources and admin-only attributes."""
    member_role: str = "member"
    """Role that reads and writes its project's resources."""
    reader_role: str = "reader"
    """Role that only reads its project's (and shared) resources."""

    def __post_init__(self) -> None:
        if self.strategy not in AUTH_STRATEGIES:
            raise ValueError(f"auth strategy {self.strategy!r} is not one of {AUTH_STRATEGIES}")


@dataclass(frozen=True, slots=True)
class Settings:
    api: ApiSettings = field(default_factory=ApiSettings)
    db: DbSettings = field(default_factory=DbSettings)
    ipam: IpamSettings = field(default_factory=IpamSettings)
    dpm: DpmSettings = field(default_factory=DpmSettings)
    quotas: QuotaSettings = field(default_factory=QuotaSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)


_SECTIONS = {"api": ApiSettings, "db": DbSettings, "ipam": IpamSettings, "dpm": DpmSettings,
             "quotas": QuotaSettings, "auth": AuthSettings}


def _coerce(value: str, current: Any) -> Any:
    if isinstance(current, bool):
        return value.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(current, int):
        return int(value)
    if isinstance(current, float):
        return float(value)
    return value


def load(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from defaults, then ``ALCOR_<SECTION>__<FIELD>`` variables, then overrides.

    ``overrides`` take ``section__field=value`` keywords, e.g. ``db__url="sqlite://"``.
    """
    env = os.environ if environ is None else environ
    values: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    for name, cls in _SECTIONS.items():
        defaults = cls()
        for f in dataclasses.fields(cls):
            key = f"ALCOR_{name.upper()}__{f.name.upper()}"
            if key in env:
                values[name][f.name] = _coerce(env[key], getattr(defaults, f.name))
    for key, value in overrides.items():
        section, _, fname = key.partition("__")
        if section not in _SECTIONS or not fname:
            raise ValueError(f"unknown setting {key!r}")
        values[section][fname] = value
    return Settings(**{name: cls(**values[name]) for name, cls in _SECTIONS.items()})

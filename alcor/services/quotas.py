"""Quotas: how many networks, subnets, ports, routers, floating IPs, security groups and rules
a project may hold; its limits, their defaults, its usage, and the check every create runs.

A project's limit is its row in ``quotas`` if an admin set one, else the configured default
(``QuotaSettings``, Neutron's defaults); -1 means unlimited.

What counts is what Neutron counts: every row of the resource's table whose ``project_id`` is
the project's, however it came to be (the project's ``default`` security group and its rules,
the egress rules each new group gets, router interface ports).  What is checked is what
Neutron checks: the resources a client asks to create (``ResourceService.create_txn`` calls
``enforce``); what a create makes on the side is counted but never refused.  A bulk create is
checked as a whole, per project, before anything is inserted, so a bulk over quota creates
nothing.

Concurrency: the check runs in the create's own transaction.  Before counting, a create
updates its (project, resource) row in ``quota_locks``; a concurrent create of the same
resource for the same project then waits on that row until the first commits and counts
afresh (PostgreSQL, READ COMMITTED), or fails to serialize and is run again by the store
(REPEATABLE READ).  On SQLite the database write lock already serializes writers.  Unlimited
resources take no lock and count nothing.
"""

from __future__ import annotations

import builtins
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from alcor import errors
from alcor.config import QuotaSettings
from alcor.context import RequestContext
from alcor.db.store import Store, Transaction
from alcor.timestamps import utcnow

RESOURCES: dict[str, str] = {
    "network": "networks",
    "subnet": "subnets",
    "port": "ports",
    "router": "routers",
    "floatingip": "floatingips",
    "security_group": "security_groups",
    "security_group_rule": "security_group_rules",
}
"""Each resource under quota, by Neutron's quota name, and the table its usage is counted in."""

UNLIMITED = -1
LIMIT_MAX = 2**31 - 1
"""Largest limit stored (Neutron's DB_INTEGER_MAX_VALUE)."""

Limits = dict[str, int]


def default_limits(settings: QuotaSettings) -> Limits:
    return {name: int(getattr(settings, name)) for name in RESOURCES}


def project_limits(txn: Transaction, settings: QuotaSettings, project_id: str) -> Limits:
    """The project's limit on every resource: its own where set, else the default."""
    limits = default_limits(settings)
    for row in txn.select("quotas", {"project_id": project_id}):
        if row["resource"] in limits:
            limits[row["resource"]] = row["limit"]
    return limits


def usage(txn: Transaction, project_id: str) -> Limits:
    """How many of each resource the project holds."""
    return {name: txn.count(table, {"project_id": project_id})
            for name, table in RESOURCES.items()}


def _limit(txn: Transaction, settings: QuotaSettings, project_id: str, resource: str) -> int:
    own = txn.scalars("quotas", "limit", {"project_id": project_id, "resource": resource})
    return int(own[0]) if own else int(getattr(settings, resource))


def _lock(txn: Transaction, project_id: str, resource: str) -> None:
    """Take the project's lock on creating ``resource`` until this transaction ends."""
    key = {"project_id": project_id, "resource": resource}
    if not txn.update("quota_locks", key, {"checked_at": utcnow()}):
        # First create of its kind: two racing inserts collide on the key and the loser's
        # transaction is run again by the store, then finds the row.
        txn.insert("quota_locks", {**key, "checked_at": utcnow()})


def enforce(
    txn: Transaction, settings: QuotaSettings, resource: str, items: Iterable[Mapping[str, Any]]
) -> None:
    """Refuse (OverQuota) creating ``items`` of ``resource`` if any of their projects would
    go over its limit; resources without a quota pass.  Runs before anything is inserted."""
    table = RESOURCES.get(resource)
    if table is None:
        return
    wanted = Counter(str(item["project_id"]) for item in items)
    for project_id in sorted(wanted):  # one lock order, so bulk creates do not deadlock
        limit = _limit(txn, settings, project_id, resource)
        if limit < 0:
            continue
        _lock(txn, project_id, resource)
        if txn.count(table, {"project_id": project_id}) + wanted[project_id] > limit:
            raise errors.OverQuota(overs=[resource])


def require_admin(ctx: RequestContext, action: str) -> None:
    """Neutron's quota policies: ``get_quota`` (of another project), ``update_quota`` and
    ``delete_quota`` are admin-only; others get 403."""
    if not ctx.is_admin:
        raise errors.PolicyNotAuthorized(action=f"rule:{action}")


def require_reader(ctx: RequestContext, project_id: str) -> None:
    """Anyone reads their own project's quota; another project's takes an admin."""
    if project_id != ctx.project_id:
        require_admin(ctx, "get_quota")


class QuotaService:
    """The quota API's use cases; each public method is one transaction."""

    def __init__(self, store: Store, settings: QuotaSettings) -> None:
        self.store = store
        self.settings = settings

    def defaults(self, ctx: RequestContext, project_id: str) -> Limits:
        require_reader(ctx, project_id)
        return default_limits(self.settings)

    def get(self, ctx: RequestContext, project_id: str) -> Limits:
        require_reader(ctx, project_id)
        return self.store.read(project_limits, self.settings, project_id)

    def details(self, ctx: RequestContext, project_id: str) -> dict[str, dict[str, int]]:
        """Each resource's limit, usage and reservations (always 0: creates reserve nothing
        beyond their own transaction)."""
        require_reader(ctx, project_id)
        return self.store.read(self._details_txn, project_id)

    def _details_txn(self, txn: Transaction, project_id: str) -> dict[str, dict[str, int]]:
        limits = project_limits(txn, self.settings, project_id)
        used = usage(txn, project_id)
        return {name: {"limit": limits[name], "used": used[name], "reserved": 0}
                for name in RESOURCES}

    def list(self, ctx: RequestContext) -> list[dict[str, Any]]:
        """Every project with a limit of its own: all its limits and its ``project_id``."""
        require_admin(ctx, "get_quota")
        return self.store.read(self._list_txn)

    def _list_txn(self, txn: Transaction) -> builtins.list[dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for row in txn.select("quotas", order_by=("project_id", "resource")):
            if row["resource"] not in RESOURCES:
                continue
            project = found.setdefault(
                row["project_id"],
                {**default_limits(self.settings), "project_id": row["project_id"]})
            project[row["resource"]] = row["limit"]
        return list(found.values())

    def update(
        self, ctx: RequestContext, project_id: str, limits: Mapping[str, int], force: bool = False
    ) -> Limits:
        """Set the project's own limits; all its limits after.  Unless ``force``, a limit below
        what the project already holds is refused (Neutron's quota-check-limit-default)."""
        require_admin(ctx, "update_quota")
        for name, limit in limits.items():
            _check_limit(name, limit)
        return self.store.write(self._update_txn, project_id, dict(limits), force)

    def _update_txn(
        self, txn: Transaction, project_id: str, limits: Limits, force: bool
    ) -> Limits:
        if not force:
            _check_usage(txn, project_id, limits)
        for name, limit in sorted(limits.items()):
            key = {"project_id": project_id, "resource": name}
            if not txn.update("quotas", key, {"limit": limit}):
                txn.insert("quotas", {**key, "limit": limit})
        return project_limits(txn, self.settings, project_id)

    def delete(self, ctx: RequestContext, project_id: str) -> None:
        """Drop the project's own limits (back to the defaults); 404 if it had none."""
        require_admin(ctx, "delete_quota")
        self.store.write(self._delete_txn, project_id)

    @staticmethod
    def _delete_txn(txn: Transaction, project_id: str) -> None:
        if not txn.delete("quotas", {"project_id": project_id}):
            raise errors.TenantQuotaNotFound(tenant_id=project_id)


def _check_limit(name: str, limit: int) -> None:
    """Neutron's checks of one limit (``type:range`` [-1, DB_INTEGER_MAX_VALUE])."""
    if name not in RESOURCES:
        raise errors.QuotaResourceUnknown(unknown=[name])
    if limit < UNLIMITED:
        raise errors.InvalidInput(
            attribute=name, reason=f"'{limit}' is too small - must be at least '{UNLIMITED}'")
    if limit > LIMIT_MAX:
        raise errors.InvalidInput(
            attribute=name, reason=f"'{limit}' is too large - must be no larger than '{LIMIT_MAX}'")


def _check_usage(txn: Transaction, project_id: str, limits: Limits) -> None:
    for name, limit in sorted(limits.items()):
        if limit < 0:
            continue
        used = txn.count(RESOURCES[name], {"project_id": project_id})
        if used > limit:
            raise errors.BadRequest(
                resource="quota",
                msg=f"Quota limit {limit} for {name} must be greater than or equal to "
                    f"already used {used}")

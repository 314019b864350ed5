"""What a non-admin's lists hold, on SQLite and PostgreSQL: its project's rows plus the shared
ones (shared and external networks, their subnets, the rules of its groups), the same page by
page as in one go, and the same rows as ``visible`` lets it show one by one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alcor import errors
from alcor.api.app import Services
from alcor.api.attributes import apply_create
from alcor.api.definitions import RESOURCES
from alcor.cli.wiring import build_services
from alcor.config import load
from alcor.context import RequestContext
from alcor.db.migrate import upgrade
from alcor.db.store import Store
from alcor.query import ListQuery

ADMIN = RequestContext.admin("admin")
ALPHA = RequestContext(project_id="alpha", is_admin=False, roles=("member", "reader"))
BETA = RequestContext(project_id="beta", is_admin=False, roles=("member", "reader"))
BETA_READER = RequestContext(project_id="beta", is_admin=False, roles=("reader",),
                             can_write=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/visibility.db"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def services(backend_url: str) -> Iterator[Services]:
    settings = load({}, db__url=backend_url)
    store = Store.connect(settings.db)
    upgrade(store)
    yield build_services(settings, store)
    store.dispose()


def make(services: Services, ctx: RequestContext, collection: str, **body: Any
         ) -> dict[str, Any]:
    item = apply_create(RESOURCES[collection], body, ctx.project_id, is_admin=ctx.is_admin)
    return services.by_collection[collection].create(ctx, [item])[0]


def listed(services: Services, ctx: RequestContext, collection: str, limit: int | None = None
           ) -> list[str]:
    """Every id ``ctx`` lists, one page of ``limit`` at a time."""
    service = services.by_collection[collection]
    ids: list[str] = []
    marker = None
    while True:
        page = service.list(ctx, ListQuery(limit=limit, marker=marker))
        ids += [r["id"] for r in page.items]
        if not page.has_more:
            return ids
        marker = ids[-1]


@pytest.fixture
def world(services: Services) -> dict[str, dict[str, Any]]:
    made: dict[str, dict[str, Any]] = {}
    for name, ctx, extra in (("alpha", ALPHA, {}), ("beta", BETA, {}),
                             ("shared", ADMIN, {"shared": True}),
                             ("external", ADMIN, {"router:external": True}),
                             ("private", ADMIN, {})):
        made[name] = make(services, ctx, "networks", name=name, **extra)
        made[f"{name}-subnet"] = make(services, ctx, "subnets", network_id=made[name]["id"],
                                      ip_version=4, cidr="10.0.0.0/24")
    made["alpha-group"] = make(services, ALPHA, "security-groups", name="g")
    made["admin-rule"] = make(services, ADMIN, "security-group-rules",
                              security_group_id=made["alpha-group"]["id"],
                              direction="ingress", protocol="tcp")
    return made


@pytest.mark.parametrize("limit", [None, 1, 2])
def test_a_member_lists_its_own_and_the_shared(services: Services,
                                               world: dict[str, dict[str, Any]],
                                               limit: int | None) -> None:
    ids = {k: v["id"] for k, v in world.items()}
    assert sorted(listed(services, BETA, "networks", limit)) == sorted(
        [ids["beta"], ids["shared"], ids["external"]])
    assert sorted(listed(services, BETA, "subnets", limit)) == sorted(
        [ids["beta-subnet"], ids["shared-subnet"], ids["external-subnet"]])
    alpha_rules = listed(services, ALPHA, "security-group-rules", limit)
    assert ids["admin-rule"] in alpha_rules
    beta_rules = listed(services, BETA, "security-group-rules", limit)
    assert ids["admin-rule"] not in beta_rules
    assert ids["alpha-group"] not in listed(services, BETA, "security-groups", limit)
    assert len(listed(services, ADMIN, "networks", limit)) == 5


def test_lists_and_shows_agree(services: Services, world: dict[str, dict[str, Any]]) -> None:
    for ctx in (ALPHA, BETA, BETA_READER):
        for collection in ("networks", "subnets", "security-groups", "security-group-rules"):
            service = services.by_collection[collection]
            shown = set(listed(services, ctx, collection))
            for row in world.values():
                if collection != _collection_of(row, world):
                    continue
                try:
                    service.get(ctx, row["id"])
                    visible = True
                except errors.NotFound:
                    visible = False
                assert visible == (row["id"] in shown), (ctx.project_id, collection, row)


def _collection_of(row: dict[str, Any], world: dict[str, dict[str, Any]]) -> str:
    name = next(k for k, v in world.items() if v is row)
    if name.endswith("-subnet"):
        return "subnets"
    if name.endswith("-group"):
        return "security-groups"
    if name.endswith("-rule"):
        return "security-group-rules"
    return "networks"


def test_a_reader_changes_nothing_a_member_only_its_own(services: Services,
                                                       world: dict[str, dict[str, Any]]
                                                       ) -> None:
    networks = services.by_collection["networks"]
    with pytest.raises(errors.PolicyNotAuthorized, match="rule:update_network"):
        networks.update(BETA_READER, world["beta"]["id"], {"name": "x"})
    with pytest.raises(errors.PolicyNotAuthorized, match="rule:delete_network"):
        networks.delete(BETA, world["shared"]["id"])
    with pytest.raises(errors.NetworkNotFound):
        networks.update(BETA, world["alpha"]["id"], {"name": "x"})
    assert networks.update(BETA, world["beta"]["id"], {"name": "x"})["name"] == "x"


def test_a_marker_the_caller_cannot_see_places_nothing(services: Services,
                                                       world: dict[str, dict[str, Any]]) -> None:
    """Paging from another project's row would tell where it sorts: it is ignored instead."""
    networks = services.by_collection["networks"]
    everything = [r["id"] for r in networks.list(BETA, ListQuery()).items]
    for hidden in ("alpha", "private"):
        query = ListQuery(marker=world[hidden]["id"], sorts=[("name", True)])
        from_hidden = [r["id"] for r in networks.list(BETA, query).items]
        assert sorted(from_hidden) == sorted(everything)

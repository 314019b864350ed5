"""Quotas on a real SQLite store: limits and their defaults, what counts toward usage, the
check every create runs (each resource type, bulks, other projects, unlimited), and who may
read and change a project's quota."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alcor import errors
from alcor.api.app import Services
from alcor.api.attributes import apply_create
from alcor.api.definitions import RESOURCES
from alcor.cli.wiring import build_services, open_store
from alcor.config import QuotaSettings, Settings, load
from alcor.context import RequestContext
from alcor.db.store import Store
from alcor.services import quotas
from alcor.services.quotas import QuotaService

ADMIN = RequestContext.admin("proj-a")
MEMBER = RequestContext(project_id="proj-a", is_admin=False, roles=("member",))
SMALL = {"network": 2, "subnet": 2, "port": 3, "router": 1, "floatingip": 1,
         "security_group": 2, "security_group_rule": 8}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load({}, db__url=f"sqlite:///{tmp_path}/alcor.db",
                **{f"quotas__{name}": limit for name, limit in SMALL.items()})


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = open_store(settings)
    yield s
    s.dispose()


@pytest.fixture
def services(settings: Settings, store: Store) -> Services:
    return build_services(settings, store)


@pytest.fixture
def quota(settings: Settings, store: Store) -> QuotaService:
    return QuotaService(store, settings.quotas)


def create(services: Services, collection: str, *bodies: dict[str, Any],
           ctx: RequestContext = ADMIN) -> list[dict[str, Any]]:
    checked = [apply_create(RESOURCES[collection], b, ctx.project_id) for b in bodies]
    service = services.by_collection[collection]
    return service.create(ctx, service.prepare_create(ctx, checked))


def count(store: Store, table: str, project: str = "proj-a") -> int:
    return store.read(lambda txn: int(txn.count(table, {"project_id": project})))


def network(services: Services, name: str = "n") -> dict[str, Any]:
    return create(services, "networks", {"name": name})[0]


# --- limits ------------------------------------------------------------------------------


def test_neutron_defaults_and_their_environment_overrides() -> None:
    assert quotas.default_limits(QuotaSettings()) == {
        "network": 100, "subnet": 100, "port": 500, "router": 10, "floatingip": 50,
        "security_group": 10, "security_group_rule": 100}
    env = {"ALCOR_QUOTAS__PORT": "-1", "ALCOR_QUOTAS__NETWORK": "7"}
    loaded = load(env).quotas
    assert (loaded.port, loaded.network, loaded.subnet) == (-1, 7, 100)


def test_a_project_sees_the_defaults_until_its_own_limits_are_set(quota: QuotaService) -> None:
    assert quota.get(ADMIN, "proj-b") == SMALL
    after = quota.update(ADMIN, "proj-b", {"port": 40, "router": -1})
    assert after == {**SMALL, "port": 40, "router": -1}
    assert quota.get(ADMIN, "proj-b") == after
    assert quota.get(ADMIN, "proj-c") == SMALL
    assert quota.defaults(ADMIN, "proj-b") == SMALL
    assert quota.list(ADMIN) == [{**after, "project_id": "proj-b"}]


def test_delete_returns_a_project_to_the_defaults(quota: QuotaService) -> None:
    quota.update(ADMIN, "proj-b", {"network": 9})
    quota.delete(ADMIN, "proj-b")
    assert quota.get(ADMIN, "proj-b") == SMALL
    assert quota.list(ADMIN) == []
    with pytest.raises(errors.TenantQuotaNotFound, match="Quota for tenant proj-b could not"):
        quota.delete(ADMIN, "proj-b")


@pytest.mark.parametrize(("limits", "error", "message"), [
    ({"network": -2}, errors.InvalidInput,
     "Invalid input for network. Reason: '-2' is too small - must be at least '-1'."),
    ({"port": 2**31}, errors.InvalidInput, f"'{2**31}' is too large"),
    ({"subnetpool": 1}, errors.QuotaResourceUnknown, "Unknown quota resources ['subnetpool']."),
])
def test_limits_out_of_range_or_unknown_are_refused(
    quota: QuotaService, limits: dict[str, int], error: type[Exception], message: str,
) -> None:
    with pytest.raises(error) as caught:
        quota.update(ADMIN, "proj-a", limits)
    assert message in str(caught.value)
    assert quota.list(ADMIN) == []


def test_a_limit_below_usage_needs_force(services: Services, quota: QuotaService) -> None:
    network(services, "a")
    network(services, "b")
    with pytest.raises(errors.BadRequest) as caught:
        quota.update(ADMIN, "proj-a", {"network": 1, "port": 10})
    assert str(caught.value) == ("Bad quota request: Quota limit 1 for network must be greater "
                                 "than or equal to already used 2.")
    assert quota.get(ADMIN, "proj-a") == SMALL  # nothing set, not even the port limit
    assert quota.update(ADMIN, "proj-a", {"network": 1}, force=True)["network"] == 1
    assert quota.update(ADMIN, "proj-a", {"network": -1})["network"] == -1


def test_details_report_limit_usage_and_no_reservations(
    services: Services, quota: QuotaService,
) -> None:
    net = network(services)
    create(services, "subnets", {"network_id": net["id"], "cidr": "10.0.0.0/24",
                                 "ip_version": 4})
    create(services, "ports", {"network_id": net["id"]})
    got = quota.details(ADMIN, "proj-a")
    assert got["network"] == {"limit": 2, "used": 1, "reserved": 0}
    assert got["subnet"] == {"limit": 2, "used": 1, "reserved": 0}
    assert got["port"] == {"limit": 3, "used": 1, "reserved": 0}
    # the port brought the project's default group along, with its four rules
    assert got["security_group"] == {"limit": 2, "used": 1, "reserved": 0}
    assert got["security_group_rule"] == {"limit": 8, "used": 4, "reserved": 0}
    assert quota.details(ADMIN, "proj-b")["port"] == {"limit": 3, "used": 0, "reserved": 0}


# --- enforcement --------------------------------------------------------------------------


def test_over_quota_names_the_resource_as_neutron_does(services: Services) -> None:
    network(services, "a")
    network(services, "b")
    with pytest.raises(errors.OverQuota) as caught:
        network(services, "c")
    assert str(caught.value) == "Quota exceeded for resources: ['network']."


def test_a_bulk_over_quota_creates_nothing(services: Services, store: Store) -> None:
    network(services, "a")
    with pytest.raises(errors.OverQuota):
        create(services, "networks", {"name": "b"}, {"name": "c"})
    assert count(store, "networks") == 1
    assert len(create(services, "networks", {"name": "b"})) == 1


def test_each_resource_type_is_enforced(services: Services, store: Store) -> None:
    net = network(services)
    create(services, "subnets", *({"network_id": net["id"], "cidr": f"10.{i}.0.0/24",
                                   "ip_version": 4} for i in range(2)))
    with pytest.raises(errors.OverQuota, match=r"\['subnet'\]"):
        create(services, "subnets", {"network_id": net["id"], "cidr": "10.9.0.0/24",
                                     "ip_version": 4})

    create(services, "ports", *({"network_id": net["id"]} for _ in range(3)))
    with pytest.raises(errors.OverQuota, match=r"\['port'\]"):
        create(services, "ports", {"network_id": net["id"]})

    # the ports made the default group (1 group, 4 rules); one more group (+2 rules) fits
    group = create(services, "security-groups", {"name": "web"})[0]
    with pytest.raises(errors.OverQuota, match=r"\['security_group'\]"):
        create(services, "security-groups", {"name": "db"})

    rule = {"security_group_id": group["id"], "direction": "ingress", "protocol": "tcp"}
    create(services, "security-group-rules", {**rule, "port_range_min": 22,
                                              "port_range_max": 22},
           {**rule, "port_range_min": 80, "port_range_max": 80})
    with pytest.raises(errors.OverQuota, match=r"\['security_group_rule'\]"):
        create(services, "security-group-rules", {**rule, "port_range_min": 443,
                                                  "port_range_max": 443})
    assert [count(store, t) for t in ("subnets", "ports", "security_groups",
                                      "security_group_rules")] == [2, 3, 2, 8]


@pytest.mark.parametrize("resource", ["router", "floatingip"])
def test_routers_and_floating_ips_count_their_tables(store: Store, resource: str) -> None:
    """Their services (``resource_type`` router / floatingip) get this check in create_txn."""
    limits = QuotaSettings(router=0, floatingip=0)
    with pytest.raises(errors.OverQuota, match=rf"\['{resource}'\]"):
        store.write(quotas.enforce, limits, resource, [{"project_id": "proj-a"}])
    store.write(quotas.enforce, QuotaSettings(), resource, [{"project_id": "proj-a"}])


def test_resources_without_a_quota_pass(store: Store) -> None:
    store.write(quotas.enforce, QuotaSettings(), "segment", [{"project_id": "proj-a"}] * 9)


def test_other_projects_do_not_count(services: Services, store: Store) -> None:
    network(services, "a")
    network(services, "b")
    other = RequestContext.admin("proj-b")
    create(services, "networks", {"name": "c"}, {"name": "d"}, ctx=other)
    assert count(store, "networks", "proj-b") == 2


def test_a_bulk_for_two_projects_is_checked_per_project(services: Services,
                                                        store: Store) -> None:
    network(services, "a")
    bodies = [{"name": "b"}, {"name": "c", "project_id": "proj-b"},
              {"name": "d", "project_id": "proj-b"}]
    create(services, "networks", *bodies)
    with pytest.raises(errors.OverQuota):
        create(services, "networks", {"name": "e", "project_id": "proj-b"}, {"name": "f"})
    assert (count(store, "networks"), count(store, "networks", "proj-b")) == (2, 2)


def test_unlimited_and_raised_limits(services: Services, quota: QuotaService,
                                     store: Store) -> None:
    quota.update(ADMIN, "proj-a", {"network": -1})
    create(services, "networks", *({"name": f"n{i}"} for i in range(5)))
    quota.update(ADMIN, "proj-a", {"network": 6})
    network(services, "six")
    with pytest.raises(errors.OverQuota):
        network(services, "seven")
    assert count(store, "networks") == 6


def test_a_zero_limit_forbids_and_resources_made_on_the_side_are_not_refused(
    services: Services, quota: QuotaService, store: Store,
) -> None:
    quota.update(ADMIN, "proj-a", {"security_group": 0, "security_group_rule": 0})
    with pytest.raises(errors.OverQuota):
        create(services, "security-groups", {"name": "web"})
    net = network(services)
    create(services, "ports", {"network_id": net["id"]})  # brings the default group along
    assert (count(store, "security_groups"), count(store, "security_group_rules")) == (1, 4)


def test_deleting_frees_quota(services: Services) -> None:
    first = network(services, "a")
    network(services, "b")
    services.by_collection["networks"].delete(ADMIN, first["id"])
    network(services, "c")


# --- who may do what ----------------------------------------------------------------------


def test_a_member_reads_its_own_quota_only(services: Services, quota: QuotaService) -> None:
    assert quota.get(MEMBER, "proj-a") == SMALL
    assert quota.defaults(MEMBER, "proj-a") == SMALL
    assert quota.details(MEMBER, "proj-a")["network"]["limit"] == 2
    for read in (quota.get, quota.defaults, quota.details):
        with pytest.raises(errors.PolicyNotAuthorized,
                           match="rule:get_quota is disallowed by policy"):
            read(MEMBER, "proj-b")
    with pytest.raises(errors.PolicyNotAuthorized, match="rule:get_quota"):
        quota.list(MEMBER)


def test_only_an_admin_changes_a_quota(quota: QuotaService) -> None:
    with pytest.raises(errors.PolicyNotAuthorized, match="rule:update_quota"):
        quota.update(MEMBER, "proj-a", {"network": 50})
    quota.update(ADMIN, "proj-a", {"network": 50})
    with pytest.raises(errors.PolicyNotAuthorized, match="rule:delete_quota"):
        quota.delete(MEMBER, "proj-a")
    assert quota.get(MEMBER, "proj-a")["network"] == 50
    assert quota.get(RequestContext.admin("proj-z"), "proj-a")["network"] == 50

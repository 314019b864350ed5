"""The subnet service on a real store: bulk atomicity, outbox records, visibility,
router:external in one query per page, and the delete rules over ip_allocations and
ports (rows written straight into the tables, so only subnet code is under test)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from alcor import errors
from alcor.api.app import Services
from alcor.api.attributes import apply_create
from alcor.api.definitions import network as network_def
from alcor.api.definitions import subnet as subnet_def
from alcor.context import RequestContext
from alcor.db.store import Store, Transaction
from alcor.query import ListQuery
from alcor.services.resource import ResourceService, new_id, stamp_new
from alcor.services.subnets import delete_network_subnets

Row = dict[str, Any]


@pytest.fixture
def subnets(services: Services) -> ResourceService:
    return services.by_collection["subnets"]


@pytest.fixture
def networks(services: Services) -> ResourceService:
    return services.by_collection["networks"]


def make_network(networks: ResourceService, ctx: RequestContext, **attrs: Any) -> Row:
    body = apply_create(network_def.RESOURCE, {"name": "n", **attrs}, ctx.project_id)
    return networks.create(ctx, [body])[0]


def subnet_body(network_id: str, cidr: str = "10.0.0.0/24", **attrs: Any) -> Row:
    version = 6 if ":" in cidr else 4
    body = {"network_id": network_id, "ip_version": version, "cidr": cidr, **attrs}
    return apply_create(subnet_def.RESOURCE, body, "proj-a")


def outbox(store: Store, resource_type: str) -> list[tuple[str, str, int]]:
    rows = store.read(lambda txn: txn.select("outbox", {"resource_type": resource_type},
                                             order_by=("seq",)))
    return [(r["operation"], r["resource_id"], r["revision_number"]) for r in rows]


def add_port(store: Store, subnet: Row, ip: str, owner: str) -> str:
    """A port row holding ``ip`` from ``subnet``, as the port service would store it."""
    port_id = new_id()
    mac = ":".join(f"{b:02x}" for b in bytes.fromhex(port_id[:6]))
    port = stamp_new({
        "id": port_id, "project_id": "proj-a", "name": "", "description": "",
        "network_id": subnet["network_id"], "admin_state_up": True, "status": "DOWN",
        "mac_address": f"fa:16:3e:{mac}", "device_id": "",
        "device_owner": owner, "port_security_enabled": True, "binding:host_id": "",
        "binding:vif_type": "unbound", "binding:vnic_type": "normal", "binding:profile": {},
        "binding:vif_details": {}, "security_groups": [], "allowed_address_pairs": [],
        "extra_dhcp_opts": [], "dns_name": "", "ip_allocation": "immediate",
        "fixed_ips": [{"subnet_id": subnet["id"], "ip_address": ip},
                      {"subnet_id": "other-subnet", "ip_address": "192.0.2.1"}],
    })

    def write(txn: Transaction) -> None:
        txn.insert("ports", port)
        txn.insert("ip_allocations", {"subnet_id": subnet["id"], "ip_address": ip,
                                      "network_id": subnet["network_id"], "port_id": port_id})

    store.write(write)
    return port_id


def get_row(store: Store, table: str, id_: str) -> Row | None:
    row: Row | None = store.read(lambda txn: txn.get(table, id_))
    return row


# --- create -------------------------------------------------------------------------------


def test_create_stores_defaults_and_records_outbox(
    store: Store, subnets: ResourceService, networks: ResourceService, ctx: RequestContext
) -> None:
    net = make_network(networks, ctx)
    sub = subnets.create(ctx, [subnet_body(net["id"], "10.1.2.3/16", tags=["a"])])[0]
    stored = get_row(store, "subnets", sub["id"])
    assert stored is not None
    assert stored["cidr"] == "10.1.0.0/16"
    assert stored["gateway_ip"] == "10.1.0.1"
    assert stored["allocation_pools"] == [{"start": "10.1.0.2", "end": "10.1.255.254"}]
    assert stored["revision_number"] == 0
    assert stored["subnetpool_id"] is None
    assert sub["router:external"] is False
    assert outbox(store, "subnet") == [("create", sub["id"], 0)]


def test_bulk_create_is_all_or_nothing(
    store: Store, subnets: ResourceService, networks: ResourceService, ctx: RequestContext
) -> None:
    net = make_network(networks, ctx)
    bodies = [subnet_body(net["id"], "10.0.0.0/24"), subnet_body(net["id"], "10.0.1.0/24"),
              subnet_body(net["id"], "10.0.0.128/25")]
    with pytest.raises(errors.InvalidInput, match="overlaps with another subnet"):
        subnets.create(ctx, bodies)
    assert store.read(lambda txn: txn.count("subnets")) == 0
    assert outbox(store, "subnet") == []


def test_create_on_another_projects_private_network_is_not_found(
    subnets: ResourceService, networks: ResourceService, ctx: RequestContext
) -> None:
    net = make_network(networks, ctx)
    other = RequestContext(project_id="proj-b", is_admin=False, roles=("member",))
    with pytest.raises(errors.NetworkNotFound):
        subnets.create(other, [subnet_body(net["id"])])


# --- read ---------------------------------------------------------------------------------


def test_subnets_of_a_shared_network_are_visible_to_other_projects(
    subnets: ResourceService, networks: ResourceService, ctx: RequestContext
) -> None:
    private = make_network(networks, ctx)
    shared = make_network(networks, ctx, shared=True)
    hidden = subnets.create(ctx, [subnet_body(private["id"])])[0]
    seen = subnets.create(ctx, [subnet_body(shared["id"])])[0]
    other = RequestContext(project_id="proj-b", is_admin=False, roles=("member",))
    assert subnets.get(other, seen["id"])["id"] == seen["id"]
    with pytest.raises(errors.SubnetNotFound):
        subnets.get(other, hidden["id"])


@pytest.fixture
def statements(store: Store) -> Iterator[list[str]]:
    """The SQL the store's connection runs while the test watches (SQLite's trace hook)."""
    seen: list[str] = []
    raw = store.read(lambda txn: txn.conn.connection.driver_connection)
    raw.set_trace_callback(seen.append)
    yield seen
    raw.set_trace_callback(None)


def test_list_reads_router_external_in_one_query(
    subnets: ResourceService, networks: ResourceService, ctx: RequestContext,
    statements: list[str],
) -> None:
    external = make_network(networks, ctx, **{"router:external": True})
    internal = make_network(networks, ctx)
    for i in range(10):
        net = external if i % 2 else internal
        subnets.create(ctx, [subnet_body(net["id"], f"10.{i}.0.0/24")])
    statements.clear()
    page = subnets.list(ctx, ListQuery())
    assert len(page.items) == 10
    assert {r["network_id"]: r["router:external"] for r in page.items} == {
        external["id"]: True, internal["id"]: False}
    assert sum('FROM "networks"' in sql or "FROM networks" in sql for sql in statements) == 1


# --- delete -------------------------------------------------------------------------------


def test_delete_refused_while_a_compute_port_holds_an_address(
    store: Store, subnets: ResourceService, networks: ResourceService, ctx: RequestContext
) -> None:
    net = make_network(networks, ctx)
    sub = subnets.create(ctx, [subnet_body(net["id"])])[0]
    add_port(store, sub, "10.0.0.2", "network:dhcp")
    add_port(store, sub, "10.0.0.3", "compute:nova")
    with pytest.raises(errors.SubnetInUse):
        subnets.delete(ctx, sub["id"])
    assert get_row(store, "subnets", sub["id"]) is not None
    assert store.read(lambda txn: txn.count("ip_allocations")) == 2


def test_delete_releases_dhcp_addresses_and_updates_the_port(
    store: Store, subnets: ResourceService, networks: ResourceService, ctx: RequestContext
) -> None:
    net = make_network(networks, ctx)
    sub = subnets.create(ctx, [subnet_body(net["id"], tags=["t1", "t2"])])[0]
    keep = subnets.create(ctx, [subnet_body(net["id"], "10.9.0.0/24")])[0]
    dhcp = add_port(store, sub, "10.0.0.2", "network:dhcp")
    subnets.delete(ctx, sub["id"])
    assert get_row(store, "subnets", sub["id"]) is None
    assert store.read(lambda txn: txn.count("ip_allocations", {"subnet_id": sub["id"]})) == 0
    assert store.read(lambda txn: txn.count("tags", {"resource_id": sub["id"]})) == 0
    port = get_row(store, "ports", dhcp)
    assert port is not None
    assert port["fixed_ips"] == [{"subnet_id": "other-subnet", "ip_address": "192.0.2.1"}]
    assert port["revision_number"] == 1
    assert outbox(store, "port") == [("update", dhcp, 1)]
    assert outbox(store, "subnet")[-1] == ("delete", sub["id"], 0)
    assert get_row(store, "subnets", keep["id"]) is not None


def test_delete_of_slaac_subnet_releases_user_ports_but_not_routers(
    store: Store, subnets: ResourceService, networks: ResourceService, ctx: RequestContext
) -> None:
    net = make_network(networks, ctx)
    modes = {"ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"}
    sub = subnets.create(ctx, [subnet_body(net["id"], "2001:db8::/64", **modes)])[0]
    vm = add_port(store, sub, "2001:db8::f816:3eff:fe00:1", "compute:nova")
    subnets.delete(ctx, sub["id"])
    assert get_row(store, "subnets", sub["id"]) is None
    port = get_row(store, "ports", vm)
    assert port is not None and port["fixed_ips"] == [
        {"subnet_id": "other-subnet", "ip_address": "192.0.2.1"}]

    routed = subnets.create(ctx, [subnet_body(net["id"], "2001:db8:1::/64", **modes)])[0]
    add_port(store, routed, "2001:db8:1::1", "network:router_interface")
    with pytest.raises(errors.SubnetInUse):
        subnets.delete(ctx, routed["id"])


def test_delete_network_subnets_removes_tags_and_records_deletions(
    store: Store, subnets: ResourceService, networks: ResourceService, ctx: RequestContext
) -> None:
    net = make_network(networks, ctx)
    other = make_network(networks, ctx)
    gone = [subnets.create(ctx, [subnet_body(net["id"], f"10.{i}.0.0/24", tags=["x"])])[0]
            for i in range(3)]
    kept = subnets.create(ctx, [subnet_body(other["id"], tags=["x"])])[0]
    store.write(delete_network_subnets, net["id"])
    assert store.read(lambda txn: txn.scalars("subnets", "id")) == [kept["id"]]
    assert store.read(lambda txn: txn.scalars("tags", "resource_id")) == [kept["id"]]
    deletions = [r for r in outbox(store, "subnet") if r[0] == "delete"]
    assert sorted(deletions) == sorted(("delete", s["id"], 0) for s in gone)

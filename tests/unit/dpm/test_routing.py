"""Routing in the goal-state compiler, on intent stored through the services with routers and
floating IPs inserted as the design describes: router states per host (interfaces, extra and
default routes, external gateway, SNAT host, floating IPs), routed subnets, L3 neighbours,
infrastructure ports kept out, the derived MACs, the cached path against the ordinary build,
and deltas against full compiles."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from alcor.config import DpmSettings
from alcor.dpm.compiler import compile_host, compile_hosts, goal_state
from alcor.dpm.compiler.delta import compile_delta
from alcor.dpm.compiler.neighbors import NeighbourCache
from alcor.dpm.compiler.routers import (
    EXTERNAL_MAC_PREFIX,
    TRANSIT_MAC_PREFIX,
    external_mac,
    transit_mac,
)
from alcor.dpm.controller import Controller
from alcor.dpm.placement import affected_hosts, port_changes
from alcor.dpm.pusher import RecordingPusher
from alcor.rpc._generated import common_pb2, goalstate_pb2, neighbor_pb2, router_pb2
from tests.unit.dpm.conftest import World, readable

Row = dict[str, Any]
Golden = Callable[[str, Any], None]

DVR_A, DVR_B, DVR_C = "fe:16:11:00:00:0a", "fe:16:11:00:00:0b", "fe:16:11:00:00:0c"
GW_MAC = "fa:16:3e:00:99:01"


def compiled(world: World, node_id: str, cache: NeighbourCache | None = None
             ) -> goalstate_pb2.GoalStateV2:
    raw = world.read(compile_host, world.node_row(node_id), cache or NeighbourCache())
    return goalstate_pb2.GoalStateV2.FromString(raw)


def reference(world: World, node_id: str) -> bytes:
    return world.read(goal_state, world.node_row(node_id)).SerializeToString(deterministic=True)


class Routed:
    """Networks blue (10.0.0.0/24) and red (10.1.0.0/24) joined by router r1, which has a
    gateway on the external network public (203.0.113.0/24, flat on physnet1) and a floating
    IP for a1.  Host A has a1 on blue; host B has b1 on red and b2 on blue; host C has green
    (10.2.0.0/24, on no router) only; D nothing."""

    def __init__(self, world: World, gateway: bool = True) -> None:
        self.world = world
        world.node("node-a", "host-a", "192.0.2.1", "52:54:00:00:00:0a", DVR_A)
        world.node("node-b", "host-b", "192.0.2.2", "52:54:00:00:00:0b", DVR_B)
        world.node("node-c", "host-c", "192.0.2.3", "52:54:00:00:00:0c", DVR_C)
        world.node("node-d", "host-d", "192.0.2.4")
        self.blue = world.network("blue", 1001)
        self.blue_v4 = world.subnet(self.blue, "blue-v4", "10.0.0.0/24")
        self.red = world.network("red", 1002)
        self.red_v4 = world.subnet(self.red, "red-v4", "10.1.0.0/24")
        self.green = world.network("green", 1003)
        self.green_v4 = world.subnet(self.green, "green-v4", "10.2.0.0/24")
        self.public = world.network("public", None, **{
            "router:external": True, "provider:network_type": "flat",
            "provider:physical_network": "physnet1"})
        self.public_v4 = world.subnet(self.public, "public-v4", "203.0.113.0/24",
                                      enable_dhcp=False)
        self.a1 = self.port(self.blue, self.blue_v4, "a1", "host-a", "10.0.0.11", 1)
        self.b1 = self.port(self.red, self.red_v4, "b1", "host-b", "10.1.0.12", 2)
        self.b2 = self.port(self.blue, self.blue_v4, "b2", "host-b", "10.0.0.13", 3)
        self.c1 = self.port(self.green, self.green_v4, "c1", "host-c", "10.2.0.14", 4)
        self.router = world.router("r1", [
            {"destination": "172.16.0.0/16", "nexthop": "10.1.0.254"},
            {"destination": "192.168.7.0/24", "nexthop": "10.9.9.9"}])  # no subnet holds it
        self.blue_if = world.interface(self.router, self.blue, self.blue_v4,
                                       "fa:16:3e:00:88:01")
        self.red_if = world.interface(self.router, self.red, self.red_v4,
                                      "fa:16:3e:00:88:02")
        self.gw: Row | None = None
        self.fip: Row | None = None
        if gateway:
            self.gw = world.gateway(self.router, self.public, self.public_v4, GW_MAC,
                                    "203.0.113.10")
            self.fip = world.floating_ip(self.router, self.public, self.public_v4,
                                         "203.0.113.50", "fa:16:3e:00:99:50", self.a1)

    def port(self, network: Row, subnet: Row, name: str, host: str, ip: str, n: int) -> Row:
        return self.world.port(network, name, host, f"fa:16:3e:00:00:{n:02x}",
                               [{"subnet_id": subnet["id"], "ip_address": ip}])

    def router_config(self, node_id: str) -> router_pb2.RouterConfiguration:
        state = compiled(self.world, node_id).router_states[self.router["id"]]
        assert state.operation_type == common_pb2.CREATE
        return state.configuration


@pytest.fixture
def routed(world: World) -> Routed:
    return Routed(world)


def _types(message: goalstate_pb2.GoalStateV2, port: Row) -> list[int]:
    return [ip.neighbor_type for ip in
            message.neighbor_states["L2/" + port["id"]].configuration.fixed_ips]


# --- derived MACs ---------------------------------------------------------------------------


def test_derived_macs_are_stable_local_unicast_and_per_router_and_node() -> None:
    digest = hashlib.sha256(b"r-1/node-a").hexdigest()
    assert transit_mac("r-1", "node-a") == f"{TRANSIT_MAC_PREFIX}:{digest[0:2]}:" \
        f"{digest[2:4]}:{digest[4:6]}"
    assert external_mac("r-1", "node-a") == f"{EXTERNAL_MAC_PREFIX}:{digest[0:2]}:" \
        f"{digest[2:4]}:{digest[4:6]}"
    for mac in (transit_mac("r-1", "node-a"), external_mac("r-1", "node-a")):
        first = int(mac.split(":")[0], 16)
        assert first & 0b10 and not first & 0b01  # locally administered, unicast
        assert len(mac.split(":")) == 6
    assert transit_mac("r-1", "node-a") == transit_mac("r-1", "node-a")
    assert len({transit_mac(r, n) for r in ("r-1", "r-2") for n in ("node-a", "node-b")}) == 4


# --- router states ---------------------------------------------------------------------------


def test_routed_topology_golden(routed: Routed, golden: Golden) -> None:
    """The transit subnet is the first attached IPv4 subnet by id, and ids are random: the
    golden file names the rule, the test checks it."""
    symbols = routed.world.symbols()
    first = symbols[min(routed.blue_v4["id"], routed.red_v4["id"])]
    data = {node: readable(compiled(routed.world, node), symbols)
            for node in ("node-a", "node-b", "node-c")}
    for node in ("node-a", "node-b"):
        gateway = data[node]["router_states"]["router-r1"]["configuration"]["external_gateway"]
        assert gateway["transit_subnet_id"] == first
        gateway["transit_subnet_id"] = "<the first attached IPv4 subnet by id>"
    golden("routed_two_networks", data)


def test_router_state_carries_interfaces_routes_and_the_hosts_dvr_mac(routed: Routed) -> None:
    config = routed.router_config("node-a")
    assert (config.id, config.revision_number) == (
        routed.router["id"], routed.world.router_row(routed.router)["revision_number"])
    assert config.update_type == common_pb2.FULL
    assert config.host_dvr_mac_address == DVR_A
    assert config.project_id == routed.router["project_id"]
    tables = {t.subnet_id: t for t in config.subnet_routing_tables}
    assert [t.subnet_id for t in config.subnet_routing_tables] == sorted(tables)
    blue, red = tables[routed.blue_v4["id"]], tables[routed.red_v4["id"]]
    assert (blue.interface_ip, blue.interface_mac, blue.interface_port_id) == (
        "10.0.0.1/24", "fa:16:3e:00:88:01", routed.blue_if["id"])
    assert red.interface_ip == "10.1.0.1/24"
    rules = {(r.destination, r.next_hop_ip, r.routing_rule_extra_info.destination_type, r.id)
             for r in red.routing_rules}
    assert rules == {
        ("172.16.0.0/16", "10.1.0.254", router_pb2.VPC_GW, "172.16.0.0/16-10.1.0.254"),
        ("0.0.0.0/0", "203.0.113.1", router_pb2.INTERNET, "0.0.0.0/0-203.0.113.1")}
    assert [(r.destination, r.next_hop_ip) for r in blue.routing_rules] == [
        ("0.0.0.0/0", "203.0.113.1")]
    assert routed.router_config("node-b").host_dvr_mac_address == DVR_B


def test_external_gateway_and_snat_host_on_each_host(routed: Routed) -> None:
    assert routed.gw is not None
    router_id = routed.router["id"]
    a, b = routed.router_config("node-a"), routed.router_config("node-b")
    for config in (a, b):
        gw = config.external_gateway
        assert (gw.network_id, gw.physical_network, gw.segmentation_id) == (
            routed.public["id"], "physnet1", 0)
        assert (gw.ip_address, gw.gateway_ip, gw.mac_address, gw.enable_snat) == (
            "203.0.113.10/24", "203.0.113.1", GW_MAC, True)
        assert gw.snat_host_ip == "192.0.2.1"  # host-a: the smallest name among r1's hosts
        assert gw.snat_transit_mac == transit_mac(router_id, "node-a")
        assert gw.transit_subnet_id == min(routed.blue_v4["id"], routed.red_v4["id"])
    assert a.external_gateway.is_snat_host and not b.external_gateway.is_snat_host
    assert a.external_gateway.external_mac_address == GW_MAC
    assert b.external_gateway.external_mac_address == external_mac(router_id, "node-b")
    assert a.external_gateway.transit_mac == transit_mac(router_id, "node-a")
    assert b.external_gateway.transit_mac == transit_mac(router_id, "node-b")


def test_floating_ips_go_to_the_host_of_their_fixed_port(routed: Routed) -> None:
    assert routed.fip is not None
    a, b = routed.router_config("node-a"), routed.router_config("node-b")
    assert [(f.id, f.floating_ip_address, f.fixed_ip_address, f.port_id)
            for f in a.floating_ips] == [
        (routed.fip["id"], "203.0.113.50", "10.0.0.11", routed.a1["id"])]
    assert not b.floating_ips
    routed.world.associate(routed.fip, routed.router, routed.b1)
    assert not routed.router_config("node-a").floating_ips
    assert [f.fixed_ip_address for f in routed.router_config("node-b").floating_ips] == [
        "10.1.0.12"]
    routed.world.associate(routed.fip, None, None)
    assert not routed.router_config("node-b").floating_ips


def test_a_pinned_snat_host_holds_the_router_even_without_ports(world: World) -> None:
    routed = Routed(world, gateway=False)
    world.gateway(routed.router, routed.public, routed.public_v4, GW_MAC, "203.0.113.10",
                  host="host-c")
    c = compiled(world, "node-c")
    gw = c.router_states[routed.router["id"]].configuration.external_gateway
    assert gw.is_snat_host and gw.snat_host_ip == "192.0.2.3"
    assert gw.external_mac_address == GW_MAC
    b = compiled(world, "node-b")
    assert b.router_states[routed.router["id"]].configuration.external_gateway.snat_host_ip == (
        "192.0.2.3")
    # C has every port of r1's subnets as an L3 neighbour, and their subnets
    assert set(c.neighbor_states) == {"L2/" + p["id"] for p in (routed.a1, routed.b1,
                                                                 routed.b2)}
    assert {t for p in (routed.a1, routed.b1, routed.b2) for t in _types(c, p)} == {
        neighbor_pb2.L3}
    assert {routed.blue_v4["id"], routed.red_v4["id"]} <= set(c.subnet_states)
    # the gateway port bound to C is no workload: not C's port, nobody's neighbour
    assert set(c.port_states) == {routed.c1["id"]}
    assert all(f"L2/{routed.router['gw_port_id'] or ''}" not in compiled(world, n).neighbor_states
               for n in ("node-a", "node-b"))


def test_a_pin_to_an_unregistered_host_falls_back_to_the_smallest_name(world: World) -> None:
    routed = Routed(world, gateway=False)
    world.gateway(routed.router, routed.public, routed.public_v4, GW_MAC, "203.0.113.10",
                  host="nowhere")
    gw = routed.router_config("node-b").external_gateway
    assert gw.snat_host_ip == "192.0.2.1" and not gw.is_snat_host


def test_a_router_without_gateway_has_no_default_route_nor_floating_ips(world: World) -> None:
    routed = Routed(world, gateway=False)
    config = routed.router_config("node-a")
    assert not config.HasField("external_gateway")
    assert not config.floating_ips
    tables = {t.subnet_id: t for t in config.subnet_routing_tables}
    assert not tables[routed.blue_v4["id"]].routing_rules
    assert [r.destination for r in tables[routed.red_v4["id"]].routing_rules] == [
        "172.16.0.0/16"]


def test_the_default_route_goes_on_tables_of_the_gateways_ip_version(routed: Routed) -> None:
    world = routed.world
    blue_v6 = world.subnet(routed.blue, "blue-v6", "2001:db8:1::/64")
    world.interface(routed.router, routed.blue, blue_v6, "fa:16:3e:00:88:06")
    tables = {t.subnet_id: t for t in routed.router_config("node-a").subnet_routing_tables}
    assert tables[blue_v6["id"]].interface_ip == "2001:db8:1::1/64"
    assert not tables[blue_v6["id"]].routing_rules
    assert routed.router_config("node-a").external_gateway.transit_subnet_id != blue_v6["id"]


def test_only_hosts_with_a_port_in_a_routed_subnet_hold_the_router(routed: Routed) -> None:
    world = routed.world
    assert set(compiled(world, "node-a").router_states) == {routed.router["id"]}
    assert set(compiled(world, "node-b").router_states) == {routed.router["id"]}
    c, d = compiled(world, "node-c"), compiled(world, "node-d")
    assert not c.router_states and not d.router_states
    assert set(c.subnet_states) == {routed.green_v4["id"]}
    listed = {(r.type, r.id) for r in compiled(world, "node-a").host_resources[
        "192.0.2.1"].resources}
    assert (common_pb2.ROUTER, routed.router["id"]) in listed


def test_routed_subnets_and_networks_reach_hosts_without_ports_there(routed: Routed) -> None:
    a = compiled(routed.world, "node-a")
    assert set(a.subnet_states) == {routed.blue_v4["id"], routed.red_v4["id"]}
    assert set(a.vpc_states) == {routed.blue["id"], routed.red["id"]}
    red = a.subnet_states[routed.red_v4["id"]].configuration
    assert (red.cidr, red.tunnel_id) == ("10.1.0.0/24", 1002)
    assert a.vpc_states[routed.red["id"]].configuration.mtu == 1450
    assert not a.dhcp_states.keys() - {f"{routed.a1['id']}/{routed.blue_v4['id']}"}


def test_l3_neighbours_are_typed_by_the_hosts_networks(routed: Routed) -> None:
    world = routed.world
    a, b = compiled(world, "node-a"), compiled(world, "node-b")
    assert set(a.neighbor_states) == {"L2/" + routed.b1["id"], "L2/" + routed.b2["id"]}
    assert _types(a, routed.b1) == [neighbor_pb2.L3]
    assert _types(a, routed.b2) == [neighbor_pb2.L2]
    assert set(b.neighbor_states) == {"L2/" + routed.a1["id"]}
    assert _types(b, routed.a1) == [neighbor_pb2.L2]
    l3 = a.neighbor_states["L2/" + routed.b1["id"]].configuration
    assert (l3.host_ip_address, l3.mac_address, l3.fixed_ips[0].tunnel_id) == (
        "192.0.2.2", "fa:16:3e:00:00:02", 1002)


def test_a_port_in_an_unused_routed_subnet_of_the_hosts_network_is_l2(routed: Routed) -> None:
    world = routed.world
    blue_b = world.subnet(routed.blue, "blue-b", "10.0.5.0/24")
    world.interface(routed.router, routed.blue, blue_b, "fa:16:3e:00:88:05")
    far = world.port(routed.blue, "far", "host-b", "fa:16:3e:00:00:55",
                     [{"subnet_id": blue_b["id"], "ip_address": "10.0.5.5"}])
    a = compiled(world, "node-a")
    assert _types(a, far) == [neighbor_pb2.L2]
    assert blue_b["id"] in a.subnet_states


def test_infrastructure_ports_are_never_local_ports_nor_neighbours(routed: Routed) -> None:
    world = routed.world
    world.port(routed.blue, "dhcp", "host-b", "fa:16:3e:00:00:66",
               [{"subnet_id": routed.blue_v4["id"], "ip_address": "10.0.0.2"}],
               device_owner="network:dhcp")
    world.port(routed.red, "snat", "host-a", "fa:16:3e:00:00:67",
               [{"subnet_id": routed.red_v4["id"], "ip_address": "10.1.0.3"}],
               device_owner="network:router_centralized_snat")
    workloads = {p["id"] for p in (routed.a1, routed.b1, routed.b2, routed.c1)}
    for node in ("node-a", "node-b", "node-c", "node-d"):
        message = compiled(world, node)
        assert set(message.port_states) <= workloads
        assert {key[3:] for key in message.neighbor_states} <= workloads
    # The interface ports are unbound: they make no host hold the router on their own.
    bindings = world.read(lambda txn: [p["binding:host_id"] for p in txn.select(
        "ports", {"device_owner": "network:router_interface"})])
    assert bindings == ["", ""]


# --- the cached path, batches and deltas -------------------------------------------------------


def test_spliced_bytes_equal_the_ordinary_build(routed: Routed) -> None:
    cache = NeighbourCache()
    nodes = ("node-a", "node-b", "node-c", "node-d")
    for node in nodes:
        expected = reference(routed.world, node)
        assert routed.world.read(compile_host, routed.world.node_row(node), cache) == expected
        assert routed.world.read(compile_host, routed.world.node_row(node), cache) == expected
    rows = routed.world.read(lambda txn: txn.select("nodes", order_by=("node_id",)))
    together = routed.world.read(compile_hosts, rows, NeighbourCache())
    assert together == {n: reference(routed.world, n) for n in nodes}


def test_the_l3_cache_follows_revisions(routed: Routed) -> None:
    cache = NeighbourCache()
    compiled(routed.world, "node-a", cache)
    routed.world.update_port(routed.b1, name="renamed")
    assert routed.world.read(compile_host, routed.world.node_row("node-a"), cache) == (
        reference(routed.world, "node-a"))
    assert len(cache.routed) == 1


def _delta_matches_full(world: World, node_id: str, port_ids: list[str]) -> None:
    """The delta of ``port_ids`` for a host equals the full compile on those entries."""
    delta = goalstate_pb2.GoalStateV2.FromString(
        world.read(compile_delta, world.node_row(node_id), port_ids, NeighbourCache()))
    full = compiled(world, node_id)
    for port_id in port_ids:
        key = "L2/" + port_id
        if key in full.neighbor_states:
            assert delta.neighbor_states[key] == full.neighbor_states[key], (node_id, key)
        else:
            assert delta.neighbor_states[key].operation_type == common_pb2.DELETE, (node_id, key)


@pytest.mark.parametrize("gateway", [True, False])
def test_deltas_equal_full_compiles_on_a_routed_topology(world: World, gateway: bool) -> None:
    routed = Routed(world, gateway=gateway)
    blue_b = world.subnet(routed.blue, "blue-b", "10.0.5.0/24")
    world.interface(routed.router, routed.blue, blue_b, "fa:16:3e:00:88:05")
    ports = [routed.a1, routed.b1, routed.b2, routed.c1,
             world.port(routed.blue, "far", "host-c", "fa:16:3e:00:00:55",
                        [{"subnet_id": blue_b["id"], "ip_address": "10.0.5.5"}]),
             world.port(routed.red, "unbound", "", "fa:16:3e:00:00:56"),
             routed.blue_if]
    ids = [p["id"] for p in ports]
    nodes = ("node-a", "node-b", "node-c", "node-d")
    for node in nodes:
        _delta_matches_full(world, node, ids)
    world.update_port(routed.b1, **{"binding:host_id": "host-c"})
    world.delete_port(routed.b2)
    for node in nodes:
        _delta_matches_full(world, node, ids)


def test_a_delta_carries_l3_entries(routed: Routed) -> None:
    delta = goalstate_pb2.GoalStateV2.FromString(routed.world.read(
        compile_delta, routed.world.node_row("node-a"), [routed.b1["id"]], NeighbourCache()))
    assert _types(delta, routed.b1) == [neighbor_pb2.L3]


# --- placement -------------------------------------------------------------------------------


def placed(world: World, change: Callable[[], Any]) -> set[str]:
    """The hosts the outbox rows ``change()`` appends reach."""
    mark = max(world.read(lambda txn: txn.scalars("outbox", "seq")), default=0)
    change()
    rows = [r for r in world.read(lambda txn: txn.select("outbox")) if r["seq"] > mark]
    assert rows, "the change appended no outbox row"
    return set(world.read(affected_hosts, rows))


def split(world: World, change: Callable[[], Any]) -> tuple[set[str], set[str]] | None:
    """What ``port_changes`` makes of the rows ``change()`` appends."""
    mark = max(world.read(lambda txn: txn.scalars("outbox", "seq")), default=0)
    change()
    rows = [r for r in world.read(lambda txn: txn.select("outbox")) if r["seq"] > mark]
    found: tuple[set[str], set[str]] | None = world.read(port_changes, rows)
    return found


def test_a_port_in_a_routed_subnet_reaches_every_host_of_the_router(routed: Routed) -> None:
    world = routed.world
    assert placed(world, lambda: routed.port(routed.red, routed.red_v4, "d1", "host-d",
                                             "10.1.0.40", 0x40)) == {
        "node-a", "node-b", "node-d"}
    assert placed(world, lambda: world.update_port(routed.a1, name="renamed")) == {
        "node-a", "node-b", "node-d"}
    assert placed(world, lambda: routed.port(routed.green, routed.green_v4, "c2", "host-c",
                                             "10.2.0.41", 0x41)) == {"node-c"}


def test_router_changes_reach_its_hosts_before_and_after(routed: Routed) -> None:
    world = routed.world
    assert placed(world, lambda: world.interface(
        routed.router, routed.green, routed.green_v4, "fa:16:3e:00:88:03")) == {
        "node-a", "node-b", "node-c"}
    assert placed(world, lambda: world.routes(routed.router, [])) == {
        "node-a", "node-b", "node-c"}
    assert placed(world, lambda: world.remove_interface(routed.router, routed.red_if)) == {
        "node-a", "node-b", "node-c"}


def test_a_pinned_gateway_reaches_its_host(world: World) -> None:
    routed = Routed(world, gateway=False)
    assert placed(world, lambda: world.gateway(routed.router, routed.public, routed.public_v4,
                                               GW_MAC, "203.0.113.10", host="host-d")) == {
        "node-a", "node-b", "node-d"}


def test_floating_ip_changes_reach_the_router_and_the_ports_hosts(routed: Routed) -> None:
    assert routed.fip is not None
    world = routed.world
    assert placed(world, lambda: world.associate(routed.fip, routed.router, routed.b1)) == {
        "node-a", "node-b"}


def test_routed_subnet_and_node_changes_reach_the_routers_hosts(routed: Routed) -> None:
    world = routed.world
    subnets = world.services.by_collection["subnets"]
    assert placed(world, lambda: subnets.update(world.ctx, routed.red_v4["id"],
                                                {"dns_nameservers": ["10.1.0.53"]})) == {
        "node-a", "node-b"}
    assert placed(world, lambda: subnets.update(world.ctx, routed.public_v4["id"],
                                                {"name": "outside"})) == {"node-a", "node-b"}
    assert placed(world, lambda: world.store.write(world.nodes.update_txn, "node-b", {
        "local_ip": "198.51.100.2"})) == {"node-a", "node-b"}


def test_routed_port_changes_go_as_deltas_only_when_no_router_state_can_change(
        world: World) -> None:
    routed = Routed(world, gateway=False)
    change = split(world, lambda: world.update_port(routed.b1, name="renamed"))
    assert change == ({"node-b"}, {routed.b1["id"]})
    assert split(world, lambda: world.update_port(routed.red_if, name="renamed")) is None
    world.gateway(routed.router, routed.public, routed.public_v4, GW_MAC, "203.0.113.10")
    # The SNAT host is chosen among the router's hosts, which a port may change.
    assert split(world, lambda: world.update_port(routed.b1, name="again")) is None
    assert split(world, lambda: routed.port(routed.green, routed.green_v4, "c2", "host-c",
                                            "10.2.0.41", 0x41)) is not None


def test_a_pinned_snat_host_lets_routed_port_changes_go_as_deltas(world: World) -> None:
    routed = Routed(world, gateway=False)
    world.gateway(routed.router, routed.public, routed.public_v4, GW_MAC, "203.0.113.10",
                  host="host-d")
    assert split(world, lambda: world.update_port(routed.b1, name="renamed")) == (
        {"node-b"}, {routed.b1["id"]})


# --- the controller --------------------------------------------------------------------------


def _contents(message: goalstate_pb2.GoalStateV2) -> goalstate_pb2.GoalStateV2:
    """The message without its resource index (deltas do not rewrite a held one)."""
    copy = goalstate_pb2.GoalStateV2()
    copy.CopyFrom(message)
    copy.ClearField("host_resources")
    return copy


def _hold_full_compiles(world: World, pusher: RecordingPusher) -> None:
    for node in ("node-0", "node-a", "node-b", "node-c", "node-d"):
        held = pusher.holds(node)
        assert held is not None
        assert _contents(held) == _contents(compiled(world, node)), node


@pytest.mark.parametrize("gateway", [True, False])
def test_hosts_hold_what_a_full_compile_gives_after_routed_changes(world: World,
                                                                   gateway: bool) -> None:
    """After each change every host holds its full compile: with deltas where only
    neighbour entries change, whole goal states where a router's state may (a gateway whose
    SNAT host is chosen among the router's hosts: a new port on host-0 makes it the SNAT
    host)."""
    routed = Routed(world, gateway=gateway)
    world.node("node-0", "host-0", "192.0.2.10")  # its name sorts first
    pusher = RecordingPusher()
    settings = DpmSettings(backoff_initial=0.001, backoff_max=0.004, poll_interval=0.01,
                           reconcile_interval=3600.0)
    changes: list[Callable[[], Any]] = [
        lambda: routed.port(routed.red, routed.red_v4, "d1", "host-d", "10.1.0.40", 0x40),
        lambda: routed.port(routed.red, routed.red_v4, "z1", "host-0", "10.1.0.50", 0x50),
        lambda: world.update_port(routed.b1, **{"binding:host_id": "host-c"}),
        lambda: world.delete_port(routed.b2),
        lambda: world.routes(routed.router, [{"destination": "172.17.0.0/16",
                                              "nexthop": "10.0.0.254"}]),
    ]

    async def main() -> None:
        c = Controller(world.store, settings, pusher, compile_host=compile_host,
                       placement=affected_hosts)
        await c.quiesce()
        _hold_full_compiles(world, pusher)
        mark = len(pusher.pushes)
        world.update_port(routed.b1, name="renamed")
        await c.quiesce()
        to_a = [p for p in pusher.pushes[mark:] if p.node_id == "node-a"]
        assert to_a and all((p.base is None) == gateway for p in to_a)
        _hold_full_compiles(world, pusher)
        for change in changes:
            change()
            await c.quiesce()
            _hold_full_compiles(world, pusher)
        if not gateway:
            assert c.metrics.deltas > 0
        await c.stop()

    asyncio.run(asyncio.wait_for(main(), 60))
    c = compiled(world, "node-c")
    assert routed.router["id"] in c.router_states  # b1 moved there: r1 is present
    if gateway:
        snat = c.router_states[routed.router["id"]].configuration.external_gateway.snat_host_ip
        assert snat == "192.0.2.10"


def test_postgresql_gives_the_same_routed_goal_states_and_placement(pg_world: World) -> None:
    """The routing reads' plain SQL on PostgreSQL (joins, literals, JSON columns)."""
    routed = Routed(pg_world)
    cache = NeighbourCache()
    nodes = ("node-a", "node-b", "node-c", "node-d")
    for node in nodes:
        expected = reference(pg_world, node)
        assert pg_world.read(compile_host, pg_world.node_row(node), cache) == expected
    rows = pg_world.read(lambda txn: txn.select("nodes", order_by=("node_id",)))
    assert pg_world.read(compile_hosts, rows, cache) == {n: reference(pg_world, n)
                                                         for n in nodes}
    a = compiled(pg_world, "node-a")
    assert _types(a, routed.b1) == [neighbor_pb2.L3]
    assert a.router_states[routed.router["id"]].configuration.external_gateway.is_snat_host
    _delta_matches_full(pg_world, "node-a", [routed.b1["id"], routed.b2["id"]])
    assert placed(pg_world, lambda: pg_world.update_port(routed.a1, name="renamed")) == {
        "node-a", "node-b"}
    assert split(pg_world, lambda: pg_world.update_port(routed.b1, name="renamed")) is None

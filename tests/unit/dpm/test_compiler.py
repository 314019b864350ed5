"""The goal-state compiler on intent stored through the real services: golden files of whole
goal states, the cached byte-splicing path against the ordinary protobuf build, and the
neighbour cache's revision and address rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from alcor.dpm.compiler import compile_host, compile_hosts, goal_state
from alcor.dpm.compiler.delta import compile_delta
from alcor.dpm.compiler.neighbors import NeighbourCache
from alcor.dpm.compiler.subnets import gateway_mac
from alcor.dpm.placement import affected_hosts
from alcor.rpc._generated import common_pb2, goalstate_pb2
from tests.unit.dpm.conftest import World, readable

Row = dict[str, Any]
Golden = Callable[[str, Any], None]

MAC_A, MAC_B = "52:54:00:00:00:0a", "52:54:00:00:00:0b"


def compiled(world: World, node_id: str, cache: NeighbourCache | None = None
             ) -> goalstate_pb2.GoalStateV2:
    node = world.node_row(node_id)
    raw = world.read(compile_host, node, cache or NeighbourCache())
    message = goalstate_pb2.GoalStateV2()
    message.ParseFromString(raw)
    return message


def reference(world: World, node_id: str) -> bytes:
    return world.read(goal_state, world.node_row(node_id)).SerializeToString(deterministic=True)


def fast(world: World, node_id: str, cache: NeighbourCache) -> bytes:
    raw: bytes = world.read(compile_host, world.node_row(node_id), cache)
    return raw


# --- scenarios -------------------------------------------------------------------------------


def two_hosts(world: World) -> dict[str, Row]:
    """Ports a1 and a2 on host A (one named by node_name, one by node_id), b1 on host B, all
    in one subnet; a node C with no ports."""
    world.node("node-a", "host-a", "192.0.2.1", MAC_A)
    world.node("node-b", "host-b", "192.0.2.2", MAC_B)
    world.node("node-c", "host-c", "192.0.2.3")
    net = world.network("blue", 1001)
    sub = world.subnet(net, "blue-v4", "10.0.0.0/24", dns_nameservers=["10.0.0.2", "8.8.8.8"],
                       host_routes=[{"destination": "172.16.0.0/16", "nexthop": "10.0.0.254"}])
    ports = {
        "a1": world.port(net, "a1", "host-a", "fa:16:3e:00:00:01",
                         [{"subnet_id": sub["id"], "ip_address": "10.0.0.11"}],
                         device_id="vm-1", device_owner="compute:nova", dns_name="vm-one",
                         allowed_address_pairs=[{"ip_address": "10.0.0.100"}]),
        "a2": world.port(net, "a2", "node-a", "fa:16:3e:00:00:02",
                         [{"subnet_id": sub["id"], "ip_address": "10.0.0.12"}]),
        "b1": world.port(net, "b1", "host-b", "fa:16:3e:00:00:03",
                         [{"subnet_id": sub["id"], "ip_address": "10.0.0.13"}]),
    }
    return ports


def test_two_hosts_one_subnet_golden(world: World, golden: Golden) -> None:
    two_hosts(world)
    symbols = world.symbols()
    golden("two_hosts_one_subnet", {
        node: readable(compiled(world, node), symbols) for node in ("node-a", "node-b")
    })


def test_each_host_holds_its_ports_and_the_others_as_neighbours(world: World) -> None:
    ports = two_hosts(world)
    a, b = compiled(world, "node-a"), compiled(world, "node-b")
    assert set(a.port_states) == {ports["a1"]["id"], ports["a2"]["id"]}
    assert set(a.neighbor_states) == {"L2/" + ports["b1"]["id"]}
    assert set(b.port_states) == {ports["b1"]["id"]}
    assert set(b.neighbor_states) == {"L2/" + ports["a1"]["id"], "L2/" + ports["a2"]["id"]}
    neighbour = b.neighbor_states["L2/" + ports["a2"]["id"]].configuration
    assert (neighbour.host_ip_address, neighbour.host_mac_address) == ("192.0.2.1", MAC_A)
    assert [(ip.ip_address, ip.tunnel_id) for ip in neighbour.fixed_ips] == [("10.0.0.12", 1001)]
    port = a.port_states[ports["a1"]["id"]]
    assert port.operation_type == common_pb2.CREATE
    assert port.configuration.update_type == common_pb2.FULL
    assert port.configuration.host_info.ip_address == "192.0.2.1"
    listed = {(r.type, r.id) for r in a.host_resources["192.0.2.1"].resources}
    keys = {(common_pb2.PORT, k) for k in a.port_states} | {
        (common_pb2.NEIGHBOR, k) for k in a.neighbor_states} | {
        (common_pb2.VPC, k) for k in a.vpc_states} | {
        (common_pb2.SUBNET, k) for k in a.subnet_states} | {
        (common_pb2.DHCP, k) for k in a.dhcp_states} | {
        (common_pb2.SECURITYGROUP, k) for k in a.security_group_states}
    assert listed == keys
    assert list(a.host_resources) == ["192.0.2.1"]


def test_revision_numbers_are_the_resources_own(world: World) -> None:
    ports = two_hosts(world)
    updated = world.update_port(ports["a1"], name="renamed")
    world.update_port(updated, name="again")
    a = compiled(world, "node-a")
    assert a.port_states[ports["a1"]["id"]].configuration.revision_number == 2
    assert a.port_states[ports["a2"]["id"]].configuration.revision_number == 0
    b = compiled(world, "node-b")
    assert b.neighbor_states["L2/" + ports["a1"]["id"]].configuration.revision_number == 2


def test_a_host_without_ports_gets_an_empty_goal_state(world: World) -> None:
    two_hosts(world)
    c = compiled(world, "node-c")
    assert list(c.host_resources) == ["192.0.2.3"]
    assert not c.host_resources["192.0.2.3"].resources
    assert not c.port_states and not c.neighbor_states


def test_security_group_with_rules_and_remote_group_golden(world: World,
                                                           golden: Golden) -> None:
    world.node("node-a", "host-a", "192.0.2.1", MAC_A)
    net = world.network("green", 2002)
    sub = world.subnet(net, "green-v4", "10.1.0.0/24")
    web, db = world.group("web"), world.group("db")
    world.rule(web, direction="ingress", ethertype="IPv4", protocol="tcp",
               port_range_min=80, port_range_max=80, remote_group_id=db["id"])
    world.rule(web, direction="ingress", ethertype="IPv4", protocol="icmp",
               remote_ip_prefix="10.0.0.0/8")
    world.rule(web, direction="ingress", ethertype="IPv6", protocol="ipv6-icmp")
    world.rule(web, direction="ingress", ethertype="IPv4", protocol="sctp")
    world.port(net, "w1", "host-a", "fa:16:3e:00:01:01",
               [{"subnet_id": sub["id"], "ip_address": "10.1.0.5"}],
               security_groups=[web["id"]])
    message = compiled(world, "node-a")
    golden("security_group_remote_group", readable(message, world.symbols()))
    group = message.security_group_states[web["id"]].configuration
    rules = {(r.direction, r.ethertype, r.port_range_min, r.remote_group_id, r.remote_ip_prefix):
             r.protocol for r in group.security_group_rules}
    assert rules[(group.INGRESS, common_pb2.IPV4, 80, db["id"], "")] == common_pb2.TCP
    assert rules[(group.INGRESS, common_pb2.IPV4, 0, "", "10.0.0.0/8")] == common_pb2.ICMP
    assert rules[(group.INGRESS, common_pb2.IPV6, 0, "", "")] == common_pb2.ICMP
    assert len(group.security_group_rules) == 6  # two default egress rules + four
    assert group.revision_number == 5  # created at 1, bumped by each of four rules


def test_ipv6_subnet_golden(world: World, golden: Golden) -> None:
    world.node("node-a", "host-a", "2001:db8::1", MAC_A)
    world.node("node-b", "host-b", "2001:db8::2", MAC_B)
    net = world.network("six", 3003)
    sub = world.subnet(net, "six-v6", "2001:db8:1::/64", ipv6_ra_mode="dhcpv6-stateful",
                       ipv6_address_mode="dhcpv6-stateful", dns_nameservers=["2001:db8::53"])
    world.port(net, "s1", "host-a", "fa:16:3e:00:06:01",
               [{"subnet_id": sub["id"], "ip_address": "2001:db8:1::11"}])
    world.port(net, "s2", "host-b", "fa:16:3e:00:06:02",
               [{"subnet_id": sub["id"], "ip_address": "2001:db8:1::12"}])
    message = compiled(world, "node-a")
    golden("ipv6_subnet", readable(message, world.symbols()))
    (dhcp,) = message.dhcp_states.values()
    assert (dhcp.configuration.ipv6_address, dhcp.configuration.ipv4_address) == (
        "2001:db8:1::11", "")
    subnet = message.subnet_states[sub["id"]].configuration
    assert subnet.gateway.ip_address == "2001:db8:1::1"
    assert subnet.gateway.mac_address == gateway_mac(sub["id"])
    assert {(o.name, o.value) for o in subnet.extra_dhcp_options} == {
        ("ipv6-address-mode", "dhcpv6-stateful"), ("ipv6-ra-mode", "dhcpv6-stateful")}


def test_unbound_port_golden(world: World, golden: Golden) -> None:
    """A port without binding:host_id is on no host, and nobody's neighbour; nor is a port
    bound to a host that is not registered."""
    world.node("node-a", "host-a", "192.0.2.1", MAC_A)
    net = world.network("grey", 4004)
    sub = world.subnet(net, "grey-v4", "10.4.0.0/24")
    mine = world.port(net, "mine", "host-a", "fa:16:3e:00:04:01",
                      [{"subnet_id": sub["id"], "ip_address": "10.4.0.10"}])
    world.port(net, "loose", "", "fa:16:3e:00:04:02",
               [{"subnet_id": sub["id"], "ip_address": "10.4.0.11"}])
    world.port(net, "elsewhere", "unknown-host", "fa:16:3e:00:04:03",
               [{"subnet_id": sub["id"], "ip_address": "10.4.0.12"}])
    message = compiled(world, "node-a")
    golden("unbound_port", readable(message, world.symbols()))
    assert set(message.port_states) == {mine["id"]}
    assert not message.neighbor_states


def test_neighbours_are_limited_to_the_hosts_subnets(world: World) -> None:
    world.node("node-a", "host-a", "192.0.2.1")
    world.node("node-b", "host-b", "192.0.2.2")
    net = world.network("two", 5005)
    left = world.subnet(net, "left", "10.5.1.0/24")
    right = world.subnet(net, "right", "10.5.2.0/24")
    world.port(net, "a", "host-a", "fa:16:3e:00:05:01", [{"subnet_id": left["id"]}])
    same = world.port(net, "same", "host-b", "fa:16:3e:00:05:02", [{"subnet_id": left["id"]}])
    world.port(net, "other", "host-b", "fa:16:3e:00:05:03", [{"subnet_id": right["id"]}])
    world.port(net, "none", "host-b", "fa:16:3e:00:05:04", ips=[])
    message = compiled(world, "node-a")
    assert set(message.neighbor_states) == {"L2/" + same["id"]}
    assert set(message.subnet_states) == {left["id"]}


# --- the fast path ---------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["two_hosts", "groups", "ipv6"])
def test_spliced_bytes_equal_the_ordinary_build(world: World, scenario: str) -> None:
    if scenario == "two_hosts":
        two_hosts(world)
    elif scenario == "groups":
        test_security_group_with_rules_and_remote_group_golden(world, lambda *_: None)
    else:
        test_ipv6_subnet_golden(world, lambda *_: None)
    cache = NeighbourCache()
    for node in world.read(lambda txn: txn.scalars("nodes", "node_id")):
        expected = reference(world, node)
        assert fast(world, node, cache) == expected  # cold
        assert fast(world, node, cache) == expected  # warm: every neighbour from the cache


@pytest.mark.parametrize("scenario", ["two_hosts", "subnets", "unbound"])
def test_compiling_hosts_together_gives_each_ones_bytes(world: World, scenario: str) -> None:
    if scenario == "two_hosts":
        two_hosts(world)
    elif scenario == "subnets":
        test_neighbours_are_limited_to_the_hosts_subnets(world)
    else:
        test_unbound_port_golden(world, lambda *_: None)
    nodes = world.read(lambda txn: txn.select("nodes", order_by=("node_id",)))
    together = world.read(compile_hosts, nodes, NeighbourCache())
    assert together == {n["node_id"]: reference(world, n["node_id"]) for n in nodes}


def test_the_cache_serializes_each_neighbour_once_and_follows_revisions(world: World) -> None:
    ports = two_hosts(world)
    world.node("node-d", "host-d", "192.0.2.4")
    net_id = ports["a1"]["network_id"]
    world.port({"id": net_id}, "d1", "host-d", "fa:16:3e:00:00:04")
    cache = NeighbourCache()
    fast(world, "node-a", cache)
    fast(world, "node-b", cache)
    assert (cache.hits, cache.misses) == (1, 4)  # b1, d1 for A; a1, a2 for B; d1 again
    world.update_port(ports["b1"], name="renamed")
    assert fast(world, "node-a", cache) == reference(world, "node-a")
    assert cache.misses == 5
    assert len(cache) == 4  # one entry per port: b1's old revision is gone


def test_a_node_moving_changes_its_ports_entries(world: World) -> None:
    ports = two_hosts(world)
    cache = NeighbourCache()
    fast(world, "node-a", cache)
    world.store.write(world.nodes.update_txn, "node-b", {"local_ip": "198.51.100.2"})
    message = goalstate_pb2.GoalStateV2.FromString(fast(world, "node-a", cache))
    moved = message.neighbor_states["L2/" + ports["b1"]["id"]].configuration
    assert moved.host_ip_address == "198.51.100.2"
    assert fast(world, "node-a", cache) == reference(world, "node-a")


def test_a_deleted_node_takes_its_ports_out_of_every_goal_state(world: World) -> None:
    ports = two_hosts(world)
    world.store.write(world.nodes.delete_txn, "node-b")
    a = compiled(world, "node-a")
    assert "L2/" + ports["b1"]["id"] not in a.neighbor_states
    status = world.read(lambda txn: txn.get("ports", ports["b1"]["id"])["status"])
    assert status == "DOWN"


def test_the_cache_is_bounded(world: World) -> None:
    two_hosts(world)
    cache = NeighbourCache(capacity=1)
    assert fast(world, "node-b", cache) == reference(world, "node-b")
    assert len(cache) == 1
    assert fast(world, "node-b", cache) == reference(world, "node-b")


def test_output_is_deterministic(world: World) -> None:
    two_hosts(world)
    first = fast(world, "node-b", NeighbourCache())
    assert all(fast(world, "node-b", NeighbourCache()) == first for _ in range(3))


def test_postgresql_gives_the_same_goal_states_and_placement(pg_world: World) -> None:
    """The compiler's and placement's plain SQL on PostgreSQL (placeholders, JSON columns)."""
    ports = two_hosts(pg_world)
    cache = NeighbourCache()
    for node in ("node-a", "node-b", "node-c"):
        expected = reference(pg_world, node)
        assert fast(pg_world, node, cache) == expected
        assert fast(pg_world, node, cache) == expected
    nodes = pg_world.read(lambda txn: txn.select("nodes"))
    together = pg_world.read(compile_hosts, nodes, cache)
    assert together == {n["node_id"]: reference(pg_world, n["node_id"]) for n in nodes}
    b = compiled(pg_world, "node-b")
    assert set(b.neighbor_states) == {"L2/" + ports["a1"]["id"], "L2/" + ports["a2"]["id"]}
    rows = pg_world.read(lambda txn: txn.select("outbox"))
    assert pg_world.read(affected_hosts, rows) == {"node-a", "node-b", "node-c"}


def test_port_carries_its_workload_namespace_and_port_security(world: World) -> None:
    world.node("node-a", "host-a", "192.0.2.1", MAC_A)
    net = world.network("green", 2002)
    world.subnet(net, "green-v4", "10.1.0.0/24")
    pod = world.port(net, "pod", "host-a", "fa:16:3e:00:01:03", security_groups=[],
                     port_security_enabled=False,
                     **{"binding:profile": {"network_ns": "/proc/42/ns/net", "veth_name": "eth1"}})
    vm = world.port(net, "vm", "host-a", "fa:16:3e:00:01:04")
    message = compiled(world, "node-a")
    pod_config = message.port_states[pod["id"]].configuration
    assert (pod_config.network_ns, pod_config.veth_name) == ("/proc/42/ns/net", "eth1")
    assert pod_config.HasField("port_security_enabled")
    assert pod_config.port_security_enabled is False
    vm_config = message.port_states[vm["id"]].configuration
    assert (vm_config.network_ns, vm_config.veth_name) == ("", "")
    assert vm_config.port_security_enabled is True
    assert message.vpc_states[net["id"]].configuration.mtu == 1450


def test_neighbour_entries_carry_their_ports_security_groups(world: World) -> None:
    ports = two_hosts(world)
    web = world.group("web")
    world.update_port(ports["b1"], security_groups=[web["id"]])
    (default_id,) = ports["a1"]["security_groups"]
    a, b = compiled(world, "node-a"), compiled(world, "node-b")
    entry = a.neighbor_states["L2/" + ports["b1"]["id"]].configuration
    assert list(entry.security_group_ids) == [web["id"]]
    assert list(b.neighbor_states["L2/" + ports["a1"]["id"]].configuration
                .security_group_ids) == [default_id]


def test_a_delta_carries_neighbours_by_the_subnets_the_host_uses(world: World) -> None:
    world.node("node-a", "host-a", "192.0.2.1", MAC_A)
    world.node("node-b", "host-b", "192.0.2.2", MAC_B)
    net = world.network("two-subnets", 3003)
    used = world.subnet(net, "used", "10.3.0.0/24")
    other = world.subnet(net, "other", "10.3.1.0/24")
    world.port(net, "a1", "host-a", "fa:16:3e:00:03:01",
               [{"subnet_id": used["id"], "ip_address": "10.3.0.5"}])
    near = world.port(net, "b1", "host-b", "fa:16:3e:00:03:02",
                      [{"subnet_id": used["id"], "ip_address": "10.3.0.6"}])
    far = world.port(net, "b2", "host-b", "fa:16:3e:00:03:03",
                     [{"subnet_id": other["id"], "ip_address": "10.3.1.6"}])
    node = world.node_row("node-a")
    delta = goalstate_pb2.GoalStateV2.FromString(
        world.read(compile_delta, node, [near["id"], far["id"]], NeighbourCache()))
    ops = {key: state.operation_type for key, state in delta.neighbor_states.items()}
    assert ops == {f"L2/{near['id']}": common_pb2.CREATE, f"L2/{far['id']}": common_pb2.DELETE}
    full = compiled(world, "node-a")
    assert delta.neighbor_states[f"L2/{near['id']}"] == full.neighbor_states[f"L2/{near['id']}"]
    listed = {r.id for r in delta.host_resources["192.0.2.1"].resources}
    assert listed == set(ops)

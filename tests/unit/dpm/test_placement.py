"""Placement on real outbox rows: every kind of change reaches the hosts whose goal state it
alters (and, for ports on no registered node, none)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from alcor.dpm.placement import affected_hosts
from tests.unit.dpm.conftest import World

Row = dict[str, Any]


class Scene:
    """Hosts A and B share network blue; host C is alone on network red; D has no ports.

    Ports are in no security group unless a test says so."""

    def __init__(self, world: World) -> None:
        self.world = world
        for name in "abcd":
            world.node(f"node-{name}", f"host-{name}", f"192.0.2.{ord(name) - 96}")
        self.blue = world.network("blue", 101)
        self.blue_v4 = world.subnet(self.blue, "blue-v4", "10.0.0.0/24")
        self.red = world.network("red", 102)
        world.subnet(self.red, "red-v4", "10.9.0.0/24")
        self.a1 = self.port(self.blue, "a1", "host-a", "fa:16:3e:00:00:01")
        self.b1 = self.port(self.blue, "b1", "node-b", "fa:16:3e:00:00:02")  # by node_id
        self.c1 = self.port(self.red, "c1", "host-c", "fa:16:3e:00:00:03")

    def port(self, network: Row, name: str, host: str, mac: str, **body: Any) -> Row:
        body.setdefault("security_groups", [])
        return self.world.port(network, name, host, mac, **body)

    def placed(self, change: Callable[[], Any]) -> set[str]:
        """The hosts the outbox rows ``change()`` appends reach."""
        mark = self.last_seq()
        change()
        rows = [r for r in self.world.read(lambda txn: txn.select("outbox")) if r["seq"] > mark]
        assert rows, "the change appended no outbox row"
        return set(self.world.read(affected_hosts, rows))

    def last_seq(self) -> int:
        return max(self.world.read(lambda txn: txn.scalars("outbox", "seq")), default=0)


@pytest.fixture
def scene(world: World) -> Scene:
    return Scene(world)


def _service(world: World, collection: str) -> Any:
    return world.services.by_collection[collection]


# --- ports -----------------------------------------------------------------------------------


def test_new_port_reaches_its_host_and_its_network_neighbours(scene: Scene) -> None:
    placed = scene.placed(lambda: scene.port(scene.blue, "a2", "host-a",
                                                    "fa:16:3e:00:00:04"))
    assert placed == {"node-a", "node-b"}


def test_port_bound_by_node_id_is_placed_on_that_node(scene: Scene) -> None:
    placed = scene.placed(lambda: scene.port(scene.red, "c2", "node-c",
                                                    "fa:16:3e:00:00:05"))
    assert placed == {"node-c"}


def test_unbound_port_and_port_on_unknown_host_reach_nobody(scene: Scene) -> None:
    assert scene.placed(lambda: scene.port(scene.blue, "x", "", "fa:16:3e:00:00:06")) == set()
    assert scene.placed(lambda: scene.port(scene.blue, "y", "nowhere",
                                                 "fa:16:3e:00:00:07")) == set()


def test_moved_port_reaches_old_and_new_host(scene: Scene) -> None:
    placed = scene.placed(lambda: scene.world.update_port(scene.a1,
                                                          **{"binding:host_id": "host-d"}))
    assert placed == {"node-a", "node-b", "node-d"}


def test_unbinding_a_port_reaches_its_former_host_and_neighbours(scene: Scene) -> None:
    placed = scene.placed(lambda: scene.world.update_port(scene.a1, **{"binding:host_id": ""}))
    assert placed == {"node-a", "node-b"}


def test_deleted_port_is_placed_from_its_outbox_detail(scene: Scene) -> None:
    ports = _service(scene.world, "ports")
    placed = scene.placed(lambda: ports.delete(scene.world.ctx, scene.b1["id"]))
    assert placed == {"node-a", "node-b"}


def test_port_rows_carry_network_hosts_and_subnets(scene: Scene) -> None:
    mark = scene.last_seq()
    scene.world.update_port(scene.a1, **{"binding:host_id": "host-d"})
    (row,) = [r for r in scene.world.read(lambda txn: txn.select("outbox")) if r["seq"] > mark]
    expected = {
        "network_id": scene.blue["id"], "binding:host_id": "host-d", "old_host_id": "host-a",
        "subnet_ids": [scene.blue_v4["id"]], "old_subnet_ids": [scene.blue_v4["id"]],
    }
    assert {key: row["detail"].get(key) for key in expected} == expected


# --- subnets and networks ----------------------------------------------------------------------


def test_subnet_change_reaches_every_host_in_its_network(scene: Scene) -> None:
    subnets = _service(scene.world, "subnets")
    placed = scene.placed(lambda: subnets.update(scene.world.ctx, scene.blue_v4["id"],
                                                 {"dns_nameservers": ["10.0.0.53"]}))
    assert placed == {"node-a", "node-b"}


def test_subnet_delete_reaches_the_hosts_of_the_ports_it_releases(world: World) -> None:
    world.node("node-a", "host-a", "192.0.2.1")
    net = world.network("dhcp-only", 201)
    sub = world.subnet(net, "s", "10.2.0.0/24")
    world.port(net, "dhcp", "host-a", "fa:16:3e:00:02:01", device_owner="network:dhcp")
    scene = Scene.__new__(Scene)
    scene.world = world
    subnets = _service(world, "subnets")
    assert scene.placed(lambda: subnets.delete(world.ctx, sub["id"])) == {"node-a"}


def test_network_change_and_delete_reach_its_hosts(scene: Scene) -> None:
    networks = _service(scene.world, "networks")
    ctx = scene.world.ctx
    assert scene.placed(lambda: networks.update(ctx, scene.red["id"], {"name": "crimson"})) == {
        "node-c"}
    dhcp_net = scene.world.network("gone", 103)
    scene.world.subnet(dhcp_net, "gone-v4", "10.3.0.0/24")
    scene.port(dhcp_net, "dhcp", "host-d", "fa:16:3e:00:03:01",
                     device_owner="network:dhcp")
    assert scene.placed(lambda: networks.delete(ctx, dhcp_net["id"])) == {"node-d"}


# --- security groups -------------------------------------------------------------------------


def test_rule_change_reaches_hosts_of_the_group_and_of_groups_naming_it_remote(
        scene: Scene) -> None:
    world = scene.world
    web, db = world.group("web"), world.group("db")
    world.update_port(scene.a1, security_groups=[web["id"]])
    world.update_port(scene.c1, security_groups=[db["id"]])
    world.rule(web, direction="ingress", ethertype="IPv4", remote_group_id=db["id"])
    placed = scene.placed(lambda: world.rule(db, direction="ingress", ethertype="IPv4",
                                             protocol="tcp"))
    assert placed == {"node-a", "node-c"}
    rules = _service(world, "security-group-rules")
    (rule_id,) = [r["id"] for r in world.read(lambda txn: txn.select(
        "security_group_rules", {"security_group_id": web["id"], "direction": "ingress"}))]
    assert scene.placed(lambda: rules.delete(world.ctx, rule_id)) == {"node-a"}


def test_group_update_reaches_its_hosts(scene: Scene) -> None:
    groups = _service(scene.world, "security-groups")
    web = scene.world.group("web")
    scene.world.update_port(scene.b1, security_groups=[web["id"]])
    placed = scene.placed(lambda: groups.update(scene.world.ctx, web["id"],
                                                {"description": "front"}))
    assert placed == {"node-b"}


# --- nodes -----------------------------------------------------------------------------------


def test_node_registration_reaches_it_and_its_future_neighbours(world: World) -> None:
    world.node("node-a", "host-a", "192.0.2.1")
    net = world.network("blue", 301)
    world.subnet(net, "blue-v4", "10.0.0.0/24")
    world.port(net, "a1", "host-a", "fa:16:3e:00:00:01")
    world.port(net, "e1", "host-e", "fa:16:3e:00:00:02")
    scene = Scene.__new__(Scene)
    scene.world = world
    assert scene.placed(lambda: world.node("node-e", "host-e", "192.0.2.5")) == {
        "node-a", "node-e"}
    assert scene.placed(lambda: world.node("node-f", "host-f", "192.0.2.6")) == {"node-f"}


def test_node_move_and_delete_reach_its_neighbours(scene: Scene) -> None:
    nodes = scene.world.nodes
    store = scene.world.store
    assert scene.placed(lambda: store.write(nodes.update_txn, "node-b",
                                            {"local_ip": "198.51.100.2"})) == {
        "node-a", "node-b"}
    assert scene.placed(lambda: store.write(nodes.delete_txn, "node-b")) == {"node-a"}


def test_a_batch_is_placed_as_the_union_of_its_changes(scene: Scene) -> None:
    world = scene.world

    def several() -> None:
        world.port(scene.red, "c2", "host-c", "fa:16:3e:00:00:08")
        world.port(scene.blue, "b2", "host-b", "fa:16:3e:00:00:09")
        world.node("node-z", "host-z", "192.0.2.26")

    assert scene.placed(several) == {"node-a", "node-b", "node-c", "node-z"}


def test_node_rows_carry_names_and_addresses_before_and_after(world: World) -> None:
    world.node("node-1", "host-1", "192.0.2.1")
    world.store.write(world.nodes.update_txn, "node-1",
                      {"node_name": "h2", "local_ip": "192.0.2.2"})
    world.store.write(world.nodes.delete_txn, "node-1")
    rows = [r for r in world.read(lambda txn: txn.select("outbox", order_by=("seq",)))
            if r["resource_type"] == "node"]
    assert [(r["resource_id"], r["operation"], r["revision_number"]) for r in rows] == [
        ("node-1", "create", 0), ("node-1", "update", 0), ("node-1", "delete", 0)]
    update = rows[1]["detail"]
    assert (update["node_name"], update["old_node_name"]) == ("h2", "host-1")
    assert (update["local_ip"], update["old_local_ip"]) == ("192.0.2.2", "192.0.2.1")
    assert rows[2]["detail"]["node_name"] == "h2"

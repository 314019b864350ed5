"""Routing through real processes: ``alcor server`` (API and controller) and three recording
``alcor agent`` processes on loopback.  A router joining two networks reaches exactly the
hosts with ports on them: its RouterState, the routed subnets, and the other network's ports
as L3 neighbours; its gateway and a floating IP reach the fixed port's host; removing an
interface takes it all away again.  What the agents hold is checked by id (their state
files); the content by compiling the same database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from alcor.cli.wiring import open_store
from alcor.config import load
from alcor.dpm.compiler import compile_host
from alcor.dpm.compiler.neighbors import NeighbourCache
from alcor.rpc._generated import goalstate_pb2, neighbor_pb2, router_pb2
from tests.functional.server import AlcorServer, free_port
from tests.functional.test_dataplane import HEADERS, Agent, until

Json = dict[str, Any]
WAIT = {"X-Alcor-Wait": "10"}


class Cluster:
    """``alcor server`` on a SQLite file and agents for host-a, host-b and host-c."""

    def __init__(self, workdir: Path) -> None:
        self.db_url = f"sqlite:///{workdir}/alcor.db"
        grpc = f"127.0.0.1:{free_port()}"
        self.server = AlcorServer(self.db_url, port=free_port(), extra_args=["--grpc-listen",
                                                                              grpc])
        self.agents = {name: Agent(name, 20 + i, self.server.base_url, grpc, workdir)
                       for i, name in enumerate(("host-a", "host-b", "host-c"))}
        self.api = httpx.Client(base_url=self.server.base_url, headers=HEADERS, timeout=60)

    def post(self, collection: str, body: Json, headers: Json | None = None) -> Json:
        singular = collection[:-1]
        resp = self.api.post(f"/v2.0/{collection}", json={singular: body},
                             headers=headers or {})
        assert resp.status_code == 201, resp.text
        return dict(resp.json()[singular])

    def network(self, name: str, cidr: str, **attrs: Any) -> tuple[Json, Json]:
        net = self.post("networks", {"name": name, **attrs})
        sub = self.post("subnets", {"network_id": net["id"], "cidr": cidr, "ip_version": 4,
                                    "name": f"{name}-v4"})
        return net, sub

    def port(self, net: Json, host: str) -> Json:
        port = self.post("ports", {"network_id": net["id"], "binding:host_id": host}, WAIT)
        assert port["status"] == "ACTIVE"
        return port

    def router_action(self, router: Json, action: str, subnet: Json) -> None:
        resp = self.api.put(f"/v2.0/routers/{router['id']}/{action}",
                            json={"subnet_id": subnet["id"]})
        assert resp.status_code == 200, resp.text

    def compiled(self, node_id: str) -> goalstate_pb2.GoalStateV2:
        """The node's goal state compiled from the server's database now."""
        store = open_store(load({}, db__url=self.db_url))
        try:
            node = store.read(lambda txn: txn.select("nodes", {"node_id": node_id})[0])
            raw = store.read(compile_host, node, NeighbourCache())
        finally:
            store.dispose()
        return goalstate_pb2.GoalStateV2.FromString(raw)

    def close(self) -> None:
        self.api.close()
        for agent in self.agents.values():
            agent.stop()
        self.server.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        c.server.start()
        for agent in c.agents.values():
            agent.start()
        yield c
    finally:
        c.close()


def holds(agent: Agent, kind: str) -> set[str]:
    return agent.held().get(kind, set())


def test_a_router_reaches_the_hosts_of_its_subnets_with_l3_neighbours(cluster: Cluster) -> None:
    blue, blue_v4 = cluster.network("blue", "10.40.0.0/24")
    red, red_v4 = cluster.network("red", "10.41.0.0/24")
    green, _ = cluster.network("green", "10.42.0.0/24")
    a1, b1, c1 = cluster.port(blue, "host-a"), cluster.port(red, "host-b"), cluster.port(
        green, "host-c")
    a, b, c = (cluster.agents[h] for h in ("host-a", "host-b", "host-c"))
    assert not holds(a, "NEIGHBOR") and not holds(b, "NEIGHBOR")

    router = cluster.post("routers", {"name": "r1"})
    cluster.router_action(router, "add_router_interface", blue_v4)
    cluster.router_action(router, "add_router_interface", red_v4)
    until(lambda: holds(a, "ROUTER") == {router["id"]}
          and holds(a, "NEIGHBOR") == {f"L2/{b1['id']}"}, "host-a to hold r1 and b1")
    until(lambda: holds(b, "ROUTER") == {router["id"]}
          and holds(b, "NEIGHBOR") == {f"L2/{a1['id']}"}, "host-b to hold r1 and a1")
    assert holds(a, "SUBNET") == {blue_v4["id"], red_v4["id"]}
    assert holds(a, "VPC") == {blue["id"], red["id"]}
    assert holds(a, "PORT") == {a1["id"]}  # the interface ports are nobody's ports
    assert not holds(c, "ROUTER") and not holds(c, "NEIGHBOR")
    assert holds(c, "PORT") == {c1["id"]}

    goal = cluster.compiled("host-a")
    config = goal.router_states[router["id"]].configuration
    assert sorted((t.subnet_id, t.interface_ip) for t in config.subnet_routing_tables) == sorted(
        [(blue_v4["id"], "10.40.0.1/24"), (red_v4["id"], "10.41.0.1/24")])
    assert [ip.neighbor_type for ip in goal.neighbor_states[f"L2/{b1['id']}"]
            .configuration.fixed_ips] == [neighbor_pb2.L3]

    public, public_v4 = cluster.network("public", "203.0.113.0/24",
                                        **{"router:external": True})
    resp = cluster.api.put(f"/v2.0/routers/{router['id']}", json={"router": {
        "external_gateway_info": {"network_id": public["id"]}}})
    assert resp.status_code == 200, resp.text
    fip = cluster.post("floatingips", {"floating_network_id": public["id"],
                                       "port_id": a1["id"]})
    config = cluster.compiled("host-a").router_states[router["id"]].configuration
    assert config.external_gateway.network_id == public["id"]
    assert config.external_gateway.is_snat_host  # host-a: the smallest name of r1's hosts
    assert [(f.id, f.fixed_ip_address) for f in config.floating_ips] == [
        (fip["id"], a1["fixed_ips"][0]["ip_address"])]
    b_config = cluster.compiled("host-b").router_states[router["id"]].configuration
    assert not b_config.floating_ips and not b_config.external_gateway.is_snat_host
    assert any(r.routing_rule_extra_info.destination_type == router_pb2.INTERNET
               for t in b_config.subnet_routing_tables for r in t.routing_rules)
    assert public_v4["id"] not in holds(a, "SUBNET")

    resp = cluster.api.put(f"/v2.0/floatingips/{fip['id']}", json={"floatingip": {
        "port_id": None}})
    assert resp.status_code == 200, resp.text
    cluster.router_action(router, "remove_router_interface", red_v4)
    until(lambda: not holds(b, "ROUTER") and not holds(b, "NEIGHBOR"),
          "host-b to drop r1 and a1")
    until(lambda: holds(a, "ROUTER") == {router["id"]} and not holds(a, "NEIGHBOR")
          and holds(a, "SUBNET") == {blue_v4["id"]}, "host-a to drop b1 and red")

"""East-west routing through the whole stack: networks, VMs and a router made through the
Neutron API (``POST /v2.0/routers``, ``PUT .../add_router_interface``), realized by the
agents as a distributed router on every host that needs it, probed from the workloads.

- a router with interfaces on two subnets connects their workloads across hosts, both ways,
  and each workload reaches its gateway on its own host;
- without the interface there is no route; adding it routes, removing it cuts again;
- the router's extra routes are obeyed (an appliance behind a next hop in a subnet).

Changes without a wait header (router interfaces, routes) are followed by polling.
"""

from __future__ import annotations

from alcor.lab.topology import run_in
from tests.fullstack.cloud import Cloud, until


def test_a_router_connects_two_subnets_across_hosts(cloud: Cloud) -> None:
    left = cloud.network("left", "10.70.0.0/24")
    right = cloud.network("right", "10.71.0.0/24")
    x1 = cloud.vm(left, "host-1", "x1")
    x2 = cloud.vm(right, "host-2", "x2")
    x3 = cloud.vm(right, "host-3", "x3")
    assert cloud.silent(x1, x2.ip), "two networks talk without a router"
    router = cloud.router("east-west")
    cloud.add_interface(router, left)
    cloud.add_interface(router, right)
    until(lambda: cloud.pings(x1, x2.ip, timeout=1), "x1 (host-1) to reach x2 (host-2) "
          "through the router", logs=cloud.stack.logs)
    assert cloud.pings(x2, x1.ip), "x2 cannot answer back through the router"
    assert cloud.pings(x3, x1.ip), "x3 (host-3) cannot reach x1 through the router"
    assert cloud.pings(x1, left.gateway), "x1 does not reach its gateway"
    assert cloud.pings(x3, right.gateway), "x3 does not reach its gateway"
    cloud.serve_tcp(x3, "x3")
    assert cloud.tcp(x1, x3.ip) == "x3"


def test_no_route_without_the_interface(cloud: Cloud) -> None:
    near = cloud.network("near", "10.72.0.0/24")
    far = cloud.network("far", "10.73.0.0/24")
    y1 = cloud.vm(near, "host-1", "y1")
    y2 = cloud.vm(far, "host-2", "y2")
    router = cloud.router("half")
    cloud.add_interface(router, near)
    until(lambda: cloud.pings(y1, near.gateway, timeout=1), "y1's gateway to answer",
          logs=cloud.stack.logs)
    assert cloud.silent(y1, y2.ip), "routed to a subnet the router has no interface on"
    cloud.add_interface(router, far)
    until(lambda: cloud.pings(y1, y2.ip, timeout=1), "the new interface to route",
          logs=cloud.stack.logs)
    cloud.remove_interface(router, far)
    until(lambda: cloud.silent(y1, y2.ip), "the removed interface to stop routing",
          logs=cloud.stack.logs)
    # Re-added, the interface is a new port: a new MAC at the same gateway address.  y2
    # still holds the old MAC for its gateway; the agent's gratuitous ARP must replace it
    # (without it y2's replies go nowhere until its entry expires, tens of seconds).
    cloud.add_interface(router, far)
    until(lambda: cloud.pings(y1, y2.ip, timeout=1), "the re-added interface to route",
          timeout=8.0, logs=cloud.stack.logs)


def test_extra_routes_are_obeyed(cloud: Cloud) -> None:
    clients = cloud.network("clients", "10.74.0.0/24")
    servers = cloud.network("servers", "10.75.0.0/24")
    client = cloud.vm(clients, "host-1", "client")
    appliance = cloud.vm(servers, "host-3", "appliance")
    # The appliance owns 172.16.9.1 and may send from 172.16.9.0/24 (anti-spoofing).
    assert run_in(appliance.netns, "ip", "addr", "add", "172.16.9.1/32", "dev",
                  "lo").returncode == 0
    cloud.update_port(appliance, allowed_address_pairs=[{"ip_address": "172.16.9.0/24"}])
    router = cloud.router("with-routes")
    cloud.add_interface(router, clients)
    cloud.add_interface(router, servers)
    until(lambda: cloud.pings(client, appliance.ip, timeout=1), "the router to route",
          logs=cloud.stack.logs)
    assert cloud.silent(client, "172.16.9.1"), "reached 172.16.9.1 without a route"
    cloud.update_router(router, routes=[{"destination": "172.16.9.0/24",
                                         "nexthop": appliance.ip}])
    until(lambda: cloud.pings(client, "172.16.9.1", timeout=1),
          "the extra route to 172.16.9.0/24 via the appliance", logs=cloud.stack.logs)
    cloud.update_router(router, routes=[])
    until(lambda: cloud.silent(client, "172.16.9.1"), "the removed extra route to go",
          logs=cloud.stack.logs)

"""North-south traffic through the whole stack: a router with its gateway on a flat external
network (``router:external``, ``provider:physical_network`` = the lab's provider switch),
interfaces on tenant subnets, floating IPs (``POST /v2.0/floatingips`` with ``port_id``),
probed between the workloads and the lab's external namespace (the outside world, holding
the external subnet's gateway address).

- the outside reaches a workload by its floating IP, and the workload reaching out is seen
  with its floating IP as source; once disassociated, the floating IP stops answering and
  the workload is seen with the router's address;
- workloads without a floating IP reach out through the router's SNAT (source: the router's
  external address), from the SNAT host itself and from another host (across the transit
  tunnel to the SNAT host).
"""

from __future__ import annotations

from typing import Any

from tests.fullstack.cloud import Cloud, Net, until


def _open_group(cloud: Cloud) -> str:
    """A group letting ICMP and TCP in from anywhere (floating IPs are reached from outside;
    the default group admits its members only)."""
    group = cloud.group("from-anywhere")
    cloud.rule(group, "icmp", remote_ip_prefix="0.0.0.0/0")
    cloud.rule(group, "tcp", remote_ip_prefix="0.0.0.0/0")
    return group


def _router_address(router: dict[str, Any]) -> str:
    return str(router["external_gateway_info"]["external_fixed_ips"][0]["ip_address"])


def _routed(cloud: Cloud, name: str, cidr: str) -> tuple[Net, Net, dict[str, Any]]:
    external = cloud.external_network()
    inside = cloud.network(name, cidr)
    router = cloud.router(f"{name}-router", external=external)
    cloud.add_interface(router, inside)
    return external, inside, router


def test_the_outside_reaches_a_workload_by_its_floating_ip(cloud: Cloud) -> None:
    external, inside, router = _routed(cloud, "fip", "10.80.0.0/24")
    vm = cloud.vm(inside, "host-2", "web", groups=[_open_group(cloud)])
    address = cloud.floating_ip(external, vm)
    until(lambda: cloud.outside_pings(address, timeout=1),
          f"the outside to reach {vm.name} by its floating IP {address}",
          logs=cloud.stack.logs)
    cloud.serve_tcp(vm, "web")
    assert cloud.tcp_from_outside(address) == "web"
    cloud.serve_who_am_i()
    assert cloud.source_seen_outside(vm) == address, "outbound source is not the floating IP"

    cloud.disassociate(address)
    until(lambda: cloud.outside_silent(address), "the disassociated floating IP to go",
          logs=cloud.stack.logs)
    until(lambda: cloud.source_seen_outside(vm) == _router_address(router),
          "the workload to go out through SNAT once its floating IP is gone",
          logs=cloud.stack.logs)


def test_workloads_without_floating_ip_reach_out_through_snat(cloud: Cloud) -> None:
    _, inside, router = _routed(cloud, "snat", "10.81.0.0/24")
    # The SNAT host is the smallest node name among the router's hosts: host-1.
    on_snat_host = cloud.vm(inside, "host-1", "near")
    elsewhere = cloud.vm(inside, "host-3", "far")
    cloud.serve_who_am_i()
    expected = _router_address(router)
    until(lambda: cloud.source_seen_outside(on_snat_host) == expected,
          f"{on_snat_host.name} (SNAT host) to reach out as {expected}", logs=cloud.stack.logs)
    until(lambda: cloud.source_seen_outside(elsewhere) == expected,
          f"{elsewhere.name} (host-3, through the transit tunnel) to reach out as {expected}",
          logs=cloud.stack.logs)

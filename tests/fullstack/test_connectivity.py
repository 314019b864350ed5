"""Connectivity through the whole stack: networks, ports and groups made through the Neutron
API, programmed by real agents into simulated hosts, probed from inside the workloads.

- one network connects its workloads across hosts (ping, TCP); two networks with the same
  CIDR, even the same address on one host, never reach each other;
- DHCP hands a workload its port's address, gateway, DNS server and MTU;
- a group without ingress rules blocks, an ICMP or TCP rule opens exactly that;
  ``remote_group_id`` admits the group's members only, and follows membership changes;
- a spoofed source address is dropped;
- deleting a port cuts its workload off.
"""

from __future__ import annotations

from pathlib import Path

from alcor.lab.topology import run_in
from tests.fullstack.cloud import Cloud, until

CIDR = "10.10.0.0/24"


def test_one_network_connects_across_hosts_and_overlapping_networks_stay_apart(
        cloud: Cloud) -> None:
    red = cloud.network("red", CIDR)
    blue = cloud.network("blue", CIDR)
    r1 = cloud.vm(red, "host-1", "r1", address="10.10.0.11")
    r2 = cloud.vm(red, "host-2", "r2", address="10.10.0.12")
    r3 = cloud.vm(red, "host-3", "r3", address="10.10.0.13")
    b1 = cloud.vm(blue, "host-1", "b1", address="10.10.0.11")  # r1's address, r1's host
    b2 = cloud.vm(blue, "host-2", "b2", address="10.10.0.22")
    for src, dst in [(r1, r2), (r2, r3), (r3, r1), (b1, b2), (b2, b1)]:
        assert cloud.pings(src, dst.ip), f"{src.name} ({src.host}) cannot ping {dst.name}"
    for vm, name in [(r1, "r1"), (r3, "r3"), (b1, "b1")]:
        cloud.serve_tcp(vm, name)
    assert cloud.tcp(r2, "10.10.0.11") == "r1"  # the same address answers per network
    assert cloud.tcp(b2, "10.10.0.11") == "b1"
    assert cloud.tcp(r1, r3.ip) == "r3"
    assert cloud.silent(b1, r2.ip), "blue reaches red's 10.10.0.12"
    assert cloud.silent(r1, b2.ip), "red reaches blue's 10.10.0.22"
    assert cloud.tcp(b2, r3.ip) is None, "blue opens TCP to red's r3"


def test_dhcp_hands_out_the_port_address_gateway_dns_and_mtu(
        cloud: Cloud, tmp_path: Path) -> None:
    net = cloud.network("dhcp", "10.20.0.0/24")
    near = cloud.vm(net, "host-1", "near")
    far = cloud.vm(net, "host-3", "far")
    offer = cloud.dhcp(near, tmp_path)
    assert offer["ip"] == near.ip
    assert offer["subnet"] == "255.255.255.0"
    assert offer["router"].split()[0] == net.gateway
    assert offer["dns"].split() == ["198.51.100.53"]
    assert offer["mtu"] == "1450"
    assert cloud.dhcp(far, tmp_path)["ip"] == far.ip


def test_a_group_without_ingress_rules_blocks_until_a_rule_allows(cloud: Cloud) -> None:
    net = cloud.network("guarded", "10.30.0.0/24")
    closed = cloud.group("closed")
    # The client takes pings from anyone, so the guarded port's egress can be seen working
    # (the default group would only admit its own members, as in Neutron).
    open_to_all = cloud.group("open")
    cloud.rule(open_to_all, "icmp", remote_ip_prefix="0.0.0.0/0")
    client = cloud.vm(net, "host-1", "client", groups=[open_to_all])
    guarded = cloud.vm(net, "host-2", "guarded", groups=[closed])
    cloud.serve_tcp(guarded, "guarded")
    assert cloud.silent(client, guarded.ip), "a group without ingress rules let ICMP in"
    assert cloud.tcp(client, guarded.ip) is None, "a group without ingress rules let TCP in"
    assert cloud.pings(guarded, client.ip), "egress (and its replies) must stay allowed"

    cloud.rule(closed, "icmp")
    until(lambda: cloud.pings(client, guarded.ip, timeout=1), "the ICMP rule to let pings in",
          logs=cloud.stack.logs)
    assert cloud.tcp(client, guarded.ip) is None, "an ICMP rule let TCP in"

    cloud.rule(closed, "tcp", port=8080)
    until(lambda: cloud.tcp(client, guarded.ip) == "guarded", "the TCP rule to let TCP in",
          logs=cloud.stack.logs)
    cloud.serve_tcp(guarded, "other", port=8081)
    assert cloud.tcp(client, guarded.ip, port=8081) is None, "a port-8080 rule opened 8081"


def test_remote_group_admits_members_only_and_follows_membership(cloud: Cloud) -> None:
    net = cloud.network("members", "10.40.0.0/24")
    friends = cloud.group("friends")
    guarded = cloud.group("guarded")
    cloud.rule(guarded, "icmp", remote_group=friends)
    target = cloud.vm(net, "host-3", "target", groups=[guarded])
    friend = cloud.vm(net, "host-1", "friend", groups=[friends])
    stranger = cloud.vm(net, "host-2", "stranger")
    assert cloud.pings(friend, target.ip), "a member of the remote group is refused"
    assert cloud.silent(stranger, target.ip), "a non-member is let in"
    cloud.update_port(stranger, security_groups=[cloud.default_group(), friends])
    until(lambda: cloud.pings(stranger, target.ip, timeout=1),
          "a new member of the remote group to be let in", logs=cloud.stack.logs)
    cloud.update_port(friend, security_groups=[cloud.default_group()])
    until(lambda: cloud.silent(friend, target.ip), "a former member to be refused",
          logs=cloud.stack.logs)


def test_a_spoofed_source_address_is_dropped(cloud: Cloud) -> None:
    net = cloud.network("spoof", "10.50.0.0/24")
    open_to_all = cloud.group("open")
    cloud.rule(open_to_all, "icmp", remote_ip_prefix="0.0.0.0/0")
    liar = cloud.vm(net, "host-1", "liar")
    target = cloud.vm(net, "host-2", "target", groups=[open_to_all])
    forged = "10.50.0.200"
    assert _in(liar.netns, "ip", "addr", "add", f"{forged}/24", "dev", "eth0")
    # Without anti-spoofing the target would answer the forged address: it knows its MAC.
    assert _in(target.netns, "ip", "neigh", "replace", forged, "lladdr", liar.mac, "dev",
               "eth0")
    assert cloud.pings(liar, target.ip, source=liar.ip), "the port's own address is refused"
    assert cloud.silent(liar, target.ip, source=forged), "a forged source got through"


def test_deleting_a_port_cuts_its_workload_off(cloud: Cloud) -> None:
    net = cloud.network("doomed", "10.60.0.0/24")
    keeper = cloud.vm(net, "host-1", "keeper")
    doomed = cloud.vm(net, "host-2", "doomed")
    assert cloud.pings(keeper, doomed.ip)
    cloud.delete_port(doomed)
    until(lambda: cloud.silent(keeper, doomed.ip), "the deleted port to stop answering",
          logs=cloud.stack.logs)
    until(lambda: not _in(doomed.netns, "ip", "link", "show", "eth0"),
          "the deleted port's interface to go", logs=cloud.stack.logs)
    until(lambda: doomed.mac not in cloud.vxlan_macs("host-1"),
          "host-1 to forget the deleted port's MAC", logs=cloud.stack.logs)


def _in(netns: str, *command: str) -> bool:
    """Whether ``command`` succeeds inside ``netns``."""
    return run_in(netns, *command).returncode == 0

"""The pure parts of the agent's routing: what a RouterConfiguration asks of a host
(``router_spec``), the NAT table it renders (``nat_script``), provider network mappings and
names.  The kernel side is in tests/linux/test_router.py."""

from __future__ import annotations

import ipaddress

import pytest

from alcor.agent.linux import nat
from alcor.agent.linux.provider import ProviderBridge, bridge_name, parse_mappings
from alcor.agent.linux.router import RouterConfigError, Segment, router_netns, router_spec
from alcor.rpc._generated import common_pb2, router_pb2

ROUTER = "0d5c1a8e-1111-4000-8000-000000000001"
SEGMENTS = {
    "sub-a": Segment(ipaddress.ip_network("10.1.0.0/24"), bridge=11, mtu=1450),
    "sub-b": Segment(ipaddress.ip_network("10.2.0.0/24"), bridge=12, mtu=1400),
    "sub-6": Segment(ipaddress.ip_network("fd00::/64"), bridge=13, mtu=1450),
}
PROVIDER = ProviderBridge("alcpnpublic", 42, 1500)


def provider(name: str) -> ProviderBridge:
    assert name == "public"
    return PROVIDER


def config(*, snat_host: bool, gateway: bool = True) -> router_pb2.RouterConfiguration:
    made = router_pb2.RouterConfiguration(id=ROUTER, revision_number=3)
    for subnet_id, ip, mac in (("sub-a", "10.1.0.1/24", "FA:16:3E:00:00:0A"),
                               ("sub-b", "10.2.0.1/24", "fa:16:3e:00:00:0b"),
                               ("sub-6", "fd00::1/64", "fa:16:3e:00:00:06")):
        table = made.subnet_routing_tables.add(
            subnet_id=subnet_id, interface_ip=ip, interface_mac=mac,
            interface_port_id=f"port-{subnet_id}-0000")
        if subnet_id == "sub-b":
            rule = table.routing_rules.add(destination="172.16.0.0/16", next_hop_ip="10.2.0.9")
            rule.routing_rule_extra_info.destination_type = router_pb2.VPC_GW
        if gateway and subnet_id != "sub-6":
            rule = table.routing_rules.add(destination="0.0.0.0/0",
                                           next_hop_ip="203.0.113.1")
            rule.routing_rule_extra_info.destination_type = router_pb2.INTERNET
    if gateway:
        gw = made.external_gateway
        gw.physical_network = "public"
        gw.ip_address = "203.0.113.5/24"
        gw.gateway_ip = "203.0.113.1"
        gw.mac_address = "fa:16:3e:00:00:05"
        gw.enable_snat = True
        gw.snat_host_ip = "192.0.2.2"
        gw.is_snat_host = snat_host
        gw.external_mac_address = "fa:16:3e:00:00:05" if snat_host else "fe:16:13:aa:bb:cc"
        gw.transit_mac = "fe:16:12:00:00:02" if snat_host else "fe:16:12:00:00:01"
        gw.snat_transit_mac = "fe:16:12:00:00:02"
        gw.transit_subnet_id = "sub-a"
        made.floating_ips.add(id="f1", floating_ip_address="203.0.113.20",
                              fixed_ip_address="10.1.0.11", port_id="p1")
    return made


def test_interfaces_routes_and_the_way_out_off_the_snat_host() -> None:
    spec = router_spec(config(snat_host=False), SEGMENTS, provider)
    assert [(i.subnet_id, i.leg.router_end, i.leg.host_end, i.leg.bridge, i.leg.mtu,
             i.leg.mac, i.leg.addresses) for i in spec.interfaces] == [
        ("sub-a", "qr-port-sub-a-", "alqrport-sub-a-", 11, 1450, "fa:16:3e:00:00:0a",
         (("10.1.0.1", 24),)),
        ("sub-b", "qr-port-sub-b-", "alqrport-sub-b-", 12, 1400, "fa:16:3e:00:00:0b",
         (("10.2.0.1", 24),)),
    ]  # the IPv6 subnet is left out
    assert spec.routes == (("172.16.0.0/16", "10.2.0.9"),)  # the default is the gateway's
    gateway = spec.gateway
    assert gateway is not None
    assert gateway.external.bridge == 42 and gateway.external.mtu == 1500
    assert gateway.external.mac == "fe:16:13:aa:bb:cc"
    assert gateway.external.addresses == (("203.0.113.20", 32),)  # only the floating IP
    assert gateway.transit is not None and gateway.transit.bridge == 11
    assert gateway.transit.mac == "fe:16:12:00:00:01"
    assert gateway.snat_address is None and not gateway.is_snat_host
    assert gateway.internal == ("10.1.0.0/24", "10.2.0.0/24")


def test_the_snat_host_holds_the_router_address_and_translates() -> None:
    gateway = router_spec(config(snat_host=True), SEGMENTS, provider).gateway
    assert gateway is not None
    assert gateway.external.mac == "fa:16:3e:00:00:05"
    assert gateway.external.addresses == (("203.0.113.5", 24), ("203.0.113.20", 32))
    assert gateway.snat_address == "203.0.113.5"
    assert nat.nat_script(gateway) == (
        "add table ip alcor\n"
        "delete table ip alcor\n"
        "table ip alcor {\n"
        "  chain prerouting {\n"
        "    type nat hook prerouting priority dstnat; policy accept;\n"
        "    ip daddr 203.0.113.20 dnat to 10.1.0.11\n"
        "  }\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        '    oifname "qg-0d5c1a8e-11" ip saddr 10.1.0.11 snat to 203.0.113.20\n'
        '    oifname "qg-0d5c1a8e-11" ip saddr { 10.1.0.0/24, 10.2.0.0/24 } '
        "snat to 203.0.113.5\n"
        "  }\n"
        "}\n")


def test_no_gateway_no_nat() -> None:
    spec = router_spec(config(snat_host=False, gateway=False), SEGMENTS, provider)
    assert spec.gateway is None
    assert nat.nat_script(None) == "add table ip alcor\ndelete table ip alcor\n"


def test_an_external_network_that_is_not_flat_is_refused() -> None:
    vlan = config(snat_host=True)
    vlan.external_gateway.network_type = common_pb2.VLAN
    vlan.external_gateway.segmentation_id = 100
    with pytest.raises(RouterConfigError, match="not a flat provider network"):
        router_spec(vlan, SEGMENTS, provider)


def test_physical_network_mappings_and_names() -> None:
    assert parse_mappings(["public=ex0", " lab = eth2 "]) == {"public": "ex0", "lab": "eth2"}
    for bad in (["public"], ["=ex0"], ["a=x", "a=y"]):
        with pytest.raises(ValueError):
            parse_mappings(bad)
    assert bridge_name("public") == "alcpnpublic"
    long_name = bridge_name("a-very-long-provider-network")
    assert long_name.startswith("alcpn") and len(long_name) == 15
    assert router_netns("f0000123", ROUTER) == f"alcr-f0000123-{ROUTER}"

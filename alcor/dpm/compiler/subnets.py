"""Subnet states: one per subnet a host's ports have a fixed IP in.

* ``tunnel_id`` is the network's VNI and ``network_type`` the network's type (VXLAN for types
  the enum lacks, such as flat).
* ``gateway``: the subnet's ``gateway_ip`` with a MAC Alcor defines, since no port holds the
  gateway until routers exist: ``fe:16:3f`` (a locally administered unicast prefix) followed by
  the first three bytes of the SHA-256 of the subnet id.  It is stable for the subnet's life and
  the same on every host.  A subnet without a gateway sends no ``gateway``.
* ``dns_entry_list`` holds ``dns_nameservers`` in order.
* ``extra_dhcp_options``, Alcor's convention for what Neutron keeps on the subnet: IPv4 host
  routes as one ``classless-static-route`` option (``dst,nexthop,dst,nexthop...``, dnsmasq's
  spelling of option 121), and an IPv6 subnet's ``ipv6-address-mode`` / ``ipv6-ra-mode`` when
  set (the agent chooses SLAAC or DHCPv6 from them).

Operation INFO, as upstream sends subnets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from alcor.dpm.compiler.intent import HostIntent
from alcor.dpm.compiler.vpcs import vni
from alcor.rpc._generated import common_pb2, subnet_pb2

GATEWAY_MAC_PREFIX = "fe:16:3f"
NETWORK_TYPES = {
    "vxlan": common_pb2.VXLAN,
    "vlan": common_pb2.VLAN,
    "gre": common_pb2.GRE,
    "geneve": common_pb2.GENEVE,
}

Config = subnet_pb2.SubnetConfiguration


def gateway_mac(subnet_id: str) -> str:
    """The MAC of a subnet's gateway (see the module docstring)."""
    digest = hashlib.sha256(subnet_id.encode()).hexdigest()
    return ":".join([GATEWAY_MAC_PREFIX, digest[0:2], digest[2:4], digest[4:6]])


def extra_options(subnet: Mapping[str, Any]) -> list[Config.DhcpOption]:
    options = []
    routes = subnet["host_routes"]
    if routes and subnet["ip_version"] == 4:
        value = ",".join(f"{r['destination']},{r['nexthop']}" for r in routes)
        options.append(Config.DhcpOption(name="classless-static-route", value=value))
    for key in ("ipv6_address_mode", "ipv6_ra_mode"):
        if subnet.get(key):
            options.append(Config.DhcpOption(name=key.replace("_", "-"), value=subnet[key]))
    return options


def subnet_state(subnet: Mapping[str, Any], network: Mapping[str, Any]
                 ) -> subnet_pb2.SubnetState:
    config = Config(
        revision_number=subnet["revision_number"],
        id=subnet["id"],
        update_type=common_pb2.FULL,
        network_type=NETWORK_TYPES.get(network["provider:network_type"], common_pb2.VXLAN),
        vpc_id=subnet["network_id"],
        name=subnet["name"],
        cidr=subnet["cidr"],
        tunnel_id=vni(network),
        dhcp_enable=subnet["enable_dhcp"],
        extra_dhcp_options=extra_options(subnet),
        dns_entry_list=[Config.DnsEntry(entry=ns) for ns in subnet["dns_nameservers"]],
    )
    if subnet["gateway_ip"]:
        config.gateway.ip_address = subnet["gateway_ip"]
        config.gateway.mac_address = gateway_mac(subnet["id"])
    return subnet_pb2.SubnetState(operation_type=common_pb2.INFO, configuration=config)


def subnet_states(intent: HostIntent) -> dict[str, subnet_pb2.SubnetState]:
    return {
        sub_id: subnet_state(intent.subnets[sub_id],
                             intent.networks[intent.subnets[sub_id]["network_id"]])
        for sub_id in sorted(intent.subnets)
    }

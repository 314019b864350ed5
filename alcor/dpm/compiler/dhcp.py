"""DHCP states: one per port and DHCP-enabled subnet the port has an address in.

The id is ``<port_id>/<subnet_id>`` (a port may have addresses in several subnets); when a port
holds several addresses of one subnet, the first (in allocation order) is the one DHCP hands
out, as one MAC gets one lease per subnet.  ``port_host_name`` is the hostname of Neutron's
``dns_assignment``: the port's ``dns_name``, else ``host-`` and the address with dashes (the
same rule as ``alcor.services.ports.dns_assignment``).  The port's ``extra_dhcp_opts`` have no
field in upstream's DHCPConfiguration and are not sent.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from alcor.dpm.compiler.intent import HostIntent
from alcor.rpc._generated import common_pb2, dhcp_pb2


def hostname(port: Mapping[str, Any], address: str) -> str:
    return str(port["dns_name"]) or "host-" + address.replace(".", "-").replace(":", "-")


def dhcp_id(port_id: str, subnet_id: str) -> str:
    return f"{port_id}/{subnet_id}"


def dhcp_state(port: Mapping[str, Any], subnet_id: str, address: str) -> dhcp_pb2.DHCPState:
    config = dhcp_pb2.DHCPConfiguration(
        revision_number=port["revision_number"],
        id=dhcp_id(port["id"], subnet_id),
        update_type=common_pb2.FULL,
        subnet_id=subnet_id,
        mac_address=port["mac_address"],
        port_host_name=hostname(port, address),
    )
    if ipaddress.ip_address(address).version == 4:
        config.ipv4_address = address
    else:
        config.ipv6_address = address
    return dhcp_pb2.DHCPState(operation_type=common_pb2.CREATE, configuration=config)


def dhcp_states(intent: HostIntent) -> dict[str, dhcp_pb2.DHCPState]:
    states: dict[str, dhcp_pb2.DHCPState] = {}
    for port in intent.ports:
        for ip in port["fixed_ips"]:
            subnet = intent.subnets.get(ip["subnet_id"])
            key = dhcp_id(port["id"], ip["subnet_id"])
            if subnet is not None and subnet["enable_dhcp"] and key not in states:
                states[key] = dhcp_state(port, ip["subnet_id"], ip["ip_address"])
    return dict(sorted(states.items()))

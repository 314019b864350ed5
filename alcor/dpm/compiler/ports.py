"""Port states: every port bound to the host, CREATE with a FULL configuration whose
``revision_number`` is the port's own; ``host_info`` is the node's tunnel address and MAC.

Alcor's extensions: ``network_ns`` and ``veth_name`` come from the port's
``binding:profile`` (keys of the same names, as upstream's CNI flow passes them), and
``port_security_enabled`` is always set (the agent filters unless it is false)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from alcor.dpm.compiler.intent import HostAddress, HostIntent
from alcor.rpc._generated import common_pb2, port_pb2


def port_state(port: Mapping[str, Any], host: HostAddress) -> port_pb2.PortState:
    state = port_pb2.PortState()  # fields set one by one: faster than nested keywords
    state.operation_type = common_pb2.CREATE
    config = state.configuration
    config.revision_number = port["revision_number"]
    config.id = port["id"]
    config.update_type = common_pb2.FULL
    config.vpc_id = port["network_id"]
    config.name = port["name"]
    config.device_id = port["device_id"]
    config.device_owner = port["device_owner"]
    config.mac_address = port["mac_address"]
    config.admin_state_up = port["admin_state_up"]
    config.host_info.ip_address = host.ip
    config.host_info.mac_address = host.mac
    for ip in port["fixed_ips"]:
        fixed = config.fixed_ips.add()
        fixed.subnet_id = ip["subnet_id"]
        fixed.ip_address = ip["ip_address"]
    for pair in port["allowed_address_pairs"]:
        added = config.allow_address_pairs.add()
        added.ip_address = pair["ip_address"]
        added.mac_address = pair["mac_address"]
    for group_id in port["security_groups"]:
        config.security_group_ids.add().id = group_id
    profile = port["binding:profile"] or {}
    config.network_ns = str(profile.get("network_ns") or "")
    config.veth_name = str(profile.get("veth_name") or "")
    config.port_security_enabled = bool(port["port_security_enabled"])
    return state


def port_states(intent: HostIntent) -> dict[str, port_pb2.PortState]:
    host = intent.address
    return {port["id"]: port_state(port, host) for port in intent.ports}

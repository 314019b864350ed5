"""Security group states: every group a host's ports are bound to, with all its rules.

The configuration's ``revision_number`` is the group's, which every rule change bumps; rules
are sorted by id and each is CREATE (the state is FULL).  ``vpc_id`` stays empty: Neutron
groups belong to a project, not a network.  ``remote_ip_prefix`` is the rule's normalized
CIDR.

Protocols: upstream's ``Protocol`` enum has TCP, UDP, ICMP, HTTP and ARP only, with TCP as
its default.  tcp/6, udp/17 and icmp/1 map to their values, and IPv6 ICMP (ipv6-icmp, icmpv6,
58) to ICMP with ethertype IPV6.  A rule for any protocol (none given) or another protocol
(sctp, gre, a number...) leaves the enum at its default as upstream's DPM does (an upstream
agent reads TCP); Alcor's extensions say what it really is: ``ip_protocol``, the IP protocol
number of every rule that names one, and ``any_protocol`` for a rule without.

Remote groups travel as ``remote_group_id``: the agent knows each group's members from its
own ports and its neighbours, whose entries carry their groups (an Alcor extension), which
are all the ports whose packets can reach it with their own addresses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from alcor.dpm.compiler.intent import HostIntent
from alcor.rpc._generated import common_pb2, securitygroup_pb2
from alcor.services.security_groups import protocol_number

Config = securitygroup_pb2.SecurityGroupConfiguration

DIRECTIONS = {"ingress": Config.INGRESS, "egress": Config.EGRESS}
ETHERTYPES = {"IPv4": common_pb2.IPV4, "IPv6": common_pb2.IPV6}
PROTOCOLS = {
    "tcp": common_pb2.TCP, "6": common_pb2.TCP,
    "udp": common_pb2.UDP, "17": common_pb2.UDP,
    "icmp": common_pb2.ICMP, "1": common_pb2.ICMP,
    "ipv6-icmp": common_pb2.ICMP, "icmpv6": common_pb2.ICMP, "58": common_pb2.ICMP,
}
"""Neutron protocol names and numbers the wire enum can express."""



def rule_message(rule: Mapping[str, Any]) -> Config.SecurityGroupRule:
    message = Config.SecurityGroupRule(
        operation_type=common_pb2.CREATE,
        security_group_id=rule["security_group_id"],
        id=rule["id"],
        direction=DIRECTIONS[rule["direction"]],
        ethertype=ETHERTYPES[rule["ethertype"]],
        port_range_min=rule["port_range_min"] or 0,
        port_range_max=rule["port_range_max"] or 0,
        remote_ip_prefix=rule["normalized_cidr"] or "",
        remote_group_id=rule["remote_group_id"] or "",
    )
    protocol = PROTOCOLS.get(str(rule["protocol"]).lower())
    if protocol is not None:
        message.protocol = protocol
    number = protocol_number(rule["protocol"] or None, rule["ethertype"])
    if number is None:
        message.any_protocol = True
    else:
        message.ip_protocol = number
    return message


def security_group_state(group: Mapping[str, Any], rules: Sequence[Mapping[str, Any]]
                         ) -> securitygroup_pb2.SecurityGroupState:
    return securitygroup_pb2.SecurityGroupState(
        operation_type=common_pb2.CREATE,
        configuration=Config(
            revision_number=group["revision_number"],
            id=group["id"],
            update_type=common_pb2.FULL,
            name=group["name"],
            security_group_rules=[rule_message(r) for r in rules],
        ),
    )


def security_group_states(intent: HostIntent) -> dict[str, securitygroup_pb2.SecurityGroupState]:
    return {
        group_id: security_group_state(intent.groups[group_id], intent.rules[group_id])
        for group_id in sorted(intent.groups)
    }

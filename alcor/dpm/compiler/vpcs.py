"""VPC states: one per network a host's ports are on.

``tunnel_id`` is the network's VNI (``provider:segmentation_id``; 0 for a network without
one), set here as well as on subnets (upstream's DPM left it unset here while its NCM indexed
by it).  Neutron networks have no CIDR, so ``cidr`` stays empty.  Operation INFO, as upstream
sends VPCs: the agent programs nothing for a VPC itself.  ``mtu`` (an Alcor extension) is
the network's MTU, for workload interfaces and DHCP.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from alcor.dpm.compiler.intent import HostIntent
from alcor.rpc._generated import common_pb2, vpc_pb2


def vni(network: Mapping[str, Any]) -> int:
    """The network's tunnel id as the wire carries it."""
    return int(network.get("provider:segmentation_id") or 0)


def vpc_state(network: Mapping[str, Any]) -> vpc_pb2.VpcState:
    return vpc_pb2.VpcState(
        operation_type=common_pb2.INFO,
        configuration=vpc_pb2.VpcConfiguration(
            revision_number=network["revision_number"],
            id=network["id"],
            update_type=common_pb2.FULL,
            project_id=network["project_id"],
            name=network["name"],
            tunnel_id=vni(network),
            mtu=int(network.get("mtu") or 0),
        ),
    )


def vpc_states(intent: HostIntent) -> dict[str, vpc_pb2.VpcState]:
    return {net_id: vpc_state(intent.networks[net_id]) for net_id in sorted(intent.networks)}

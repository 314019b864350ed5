"""The goal-state compiler: one host's whole goal state as a pure function of stored intent.

``compile_host(txn, node)`` reads what the node must hold (``intent``) and returns it as a
serialized GoalStateV2, update_type FULL in every configuration: VPCs, subnets, ports, DHCP,
neighbours, security groups and routers (one module per section), with
``host_resources[local_ip]`` listing every resource in the message (VPCs, subnets, ports,
neighbours, security groups, DHCP, routers; each by id).  Every configuration carries its
resource's own ``revision_number``; VPCs and subnets are INFO (context, as upstream sends
them), everything else CREATE.  It writes nothing;
the neighbour cache it keeps in memory (``cache``, by default one per process) never changes
the output, only how fast it comes.

The output is deterministic: maps serialize in key order.  ``goal_state`` builds the same
message the ordinary way; ``compile_host`` gets the same bytes faster, by serializing the
host's own (few) resources with protobuf and splicing in each neighbour's cached map entry:
a repeated or map field is just the concatenation of its tagged entries, and a message the
concatenation of its fields in field-number order.  Tests check both give equal bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from alcor.db.store import Transaction
from alcor.dpm.compiler import intent as host_intent
from alcor.dpm.compiler.dhcp import dhcp_states
from alcor.dpm.compiler.intent import HostIntent
from alcor.dpm.compiler.neighbors import (
    SHARED,
    NeighbourCache,
    entries,
    map_entry,
    map_entry_head,
    neighbour_states,
)
from alcor.dpm.compiler.ports import port_states
from alcor.dpm.compiler.routers import router_states
from alcor.dpm.compiler.security_groups import security_group_states
from alcor.dpm.compiler.subnets import subnet_states
from alcor.dpm.compiler.vpcs import vpc_states
from alcor.rpc._generated import common_pb2, goalstate_pb2

FORMAT_VERSION = 1
TAGS = {
    field.name: bytes([field.number << 3 | 2])
    for field in goalstate_pb2.GoalStateV2.DESCRIPTOR.fields
    if field.number < 16
}
"""Each GoalStateV2 map field's tag byte (field number, wire type 2: length-delimited)."""

__all__ = ["FORMAT_VERSION", "NeighbourCache", "compile_host", "compile_hosts", "compile_intent",
           "goal_state"]


@dataclass(frozen=True, slots=True)
class OwnStates:
    """The host's own resources (everything but neighbours), as messages by id."""

    vpcs: dict[str, Any]
    subnets: dict[str, Any]
    ports: dict[str, Any]
    dhcp: dict[str, Any]
    groups: dict[str, Any]
    routers: dict[str, Any]

    @classmethod
    def of(cls, intent: HostIntent) -> OwnStates:
        return cls(vpc_states(intent), subnet_states(intent), port_states(intent),
                   dhcp_states(intent), security_group_states(intent),
                   router_states(intent.routers, intent.node, host_intent.host_keys(intent.node)))

    def before_neighbours(self) -> list[goalstate_pb2.ResourceIdType]:
        return [*_ids(common_pb2.VPC, self.vpcs), *_ids(common_pb2.SUBNET, self.subnets),
                *_ids(common_pb2.PORT, self.ports)]

    def after_neighbours(self) -> list[goalstate_pb2.ResourceIdType]:
        return [*_ids(common_pb2.SECURITYGROUP, self.groups), *_ids(common_pb2.DHCP, self.dhcp),
                *_ids(common_pb2.ROUTER, self.routers)]


def _ids(type_: common_pb2.ResourceType, states: Mapping[str, Any]
         ) -> list[goalstate_pb2.ResourceIdType]:
    return [goalstate_pb2.ResourceIdType(type=type_, id=key) for key in states]


def _fill(message: goalstate_pb2.GoalStateV2, own: OwnStates) -> None:
    for field, states in (("vpc_states", own.vpcs), ("subnet_states", own.subnets),
                          ("port_states", own.ports), ("dhcp_states", own.dhcp),
                          ("security_group_states", own.groups),
                          ("router_states", own.routers)):
        target = getattr(message, field)
        for key, state in states.items():
            target[key].CopyFrom(state)


def goal_state(txn: Transaction, node: Mapping[str, Any]) -> goalstate_pb2.GoalStateV2:
    """The host's goal state built as one protobuf message (no cache): the reference."""
    intent = host_intent.load(txn, node)
    own = OwnStates.of(intent)
    neighbours = neighbour_states(txn, intent)
    message = goalstate_pb2.GoalStateV2(format_version=FORMAT_VERSION)
    resources = message.host_resources[node["local_ip"]].resources
    resources.extend(own.before_neighbours())
    resources.extend(_ids(common_pb2.NEIGHBOR, neighbours))
    resources.extend(own.after_neighbours())
    _fill(message, own)
    for key, state in neighbours.items():
        message.neighbor_states[key].CopyFrom(state)
    return message


def _map_field(tag: bytes, states: Mapping[str, Any]) -> bytes:
    """A ``map<string, *State>`` field's bytes (the states hold no maps of their own, so
    plain serialization is deterministic)."""
    return b"".join([map_entry(tag, key, state.SerializeToString())
                     for key, state in sorted(states.items())])


def _resources(types_and_ids: list[goalstate_pb2.ResourceIdType]) -> bytes:
    raw: bytes = goalstate_pb2.HostResources(resources=types_and_ids).SerializeToString()
    return raw


def compile_host(txn: Transaction, node: Mapping[str, Any],
                 cache: NeighbourCache = SHARED, *,
                 shared: host_intent.SharedReads | None = None) -> bytes:
    """The whole goal state of one host as a serialized GoalStateV2 (update_type FULL);
    ``shared``: reads shared with other hosts compiled on ``txn`` (see ``compile_hosts``)."""
    return compile_intent(txn, host_intent.load(txn, node, shared), cache)


def compile_hosts(txn: Transaction, nodes: Iterable[Mapping[str, Any]],
                  cache: NeighbourCache = SHARED) -> dict[str, bytes]:
    """``compile_host`` for several nodes on one snapshot, by node_id: each network's
    neighbour candidates are read once for all of them (the same bytes, for much less)."""
    shared = host_intent.SharedReads()
    return {node["node_id"]: compile_intent(txn, host_intent.load(txn, node, shared), cache)
            for node in nodes}


def compile_intent(txn: Transaction, intent: HostIntent, cache: NeighbourCache = SHARED
                   ) -> bytes:
    """``compile_host`` once the intent is read (``txn`` serves neighbours the cache lacks)."""
    node = intent.node
    own = OwnStates.of(intent)
    cached = entries(txn, intent, cache)
    resources = [_resources(own.before_neighbours()), *map(itemgetter(1), cached),
                 _resources(own.after_neighbours())]
    host_head = map_entry_head(TAGS["host_resources"], node["local_ip"],
                               sum(map(len, resources)))
    return b"".join([
        goalstate_pb2.GoalStateV2(format_version=FORMAT_VERSION).SerializeToString(),
        host_head, *resources,
        _map_field(TAGS["vpc_states"], own.vpcs),
        _map_field(TAGS["subnet_states"], own.subnets),
        _map_field(TAGS["port_states"], own.ports),
        _map_field(TAGS["dhcp_states"], own.dhcp),
        *map(itemgetter(0), cached),
        _map_field(TAGS["security_group_states"], own.groups),
        _map_field(TAGS["router_states"], own.routers),
    ])

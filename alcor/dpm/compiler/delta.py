"""Delta goal states: only the neighbour entries of some changed ports, for a host whose own
resources did not change (``alcor.dpm.deltas`` decides when one may be sent).

For each changed port the delta carries its entry (CREATE, the same cached bytes a full goal
state would splice in) if the port is the host's neighbour now, by the rules the full compile
uses (a workload port bound to another registered node, with a fixed IP in a subnet the host
has a port address in, or in a subnet of a router present on the host; L2 or L3 as
``presence`` says), and a DELETE of ``L2/<port_id>`` otherwise (a no-op for an agent that
never held it).  ``host_resources[local_ip]`` lists every entry, as in a full goal state; the
configurations say ``update_type`` FULL, as each entry is whole.

Whether a host uses a subnet is answered once per batch for single-subnet networks (the
distinct hosts with addressed ports in the network, ``SharedReads.hosts_using``) and from the
host's own ports otherwise; the routers present on the host are read only for a port on a
subnet some router is attached to.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Mapping
from operator import itemgetter
from typing import Any

from alcor.db.store import Transaction
from alcor.dpm.compiler import intent as host_intent
from alcor.dpm.compiler import presence
from alcor.dpm.compiler.intent import (
    WORKLOAD,
    HostIntent,
    NeighbourRef,
    SharedReads,
    fetch,
    host_keys,
    is_workload,
    json_value,
)
from alcor.dpm.compiler.neighbors import (
    SHARED,
    NeighbourCache,
    entries,
    map_entry_head,
    neighbour_id,
)
from alcor.rpc._generated import common_pb2, goalstate_pb2, neighbor_pb2

_OWN = "SELECT network_id, fixed_ips FROM ports WHERE binding_host_id IN ({in}) AND " + WORKLOAD


def _own(txn: Transaction, keys: list[str]) -> tuple[set[str], set[str]]:
    """The subnets the host's workload ports have addresses in, and their networks."""
    sql = _OWN.format(**{"in": host_intent.marks(txn, len(keys))})
    rows = fetch(txn, sql, keys)
    return ({ip["subnet_id"] for _, fixed in rows for ip in json_value(fixed)},
            {network_id for network_id, _ in rows})


def _routed_subnets(txn: Transaction, keys: list[str], own_subnets: set[str],
                    shared: SharedReads) -> set[str]:
    """The subnets of the routers present on the host."""
    routers = presence.router_intents(
        txn, presence.present_routers(txn, keys, sorted(own_subnets)), shared)
    return {subnet_id for router in routers for subnet_id in router.subnet_ids}


def _kind(txn: Transaction, row: Mapping[str, Any], keys: list[str], shared: SharedReads,
          own: Callable[[], tuple[set[str], set[str]]], routed: Callable[[], set[str]]
          ) -> neighbor_pb2.NeighborType | None:
    """The port's neighbour type on the host (L2 or L3), None if it is no neighbour."""
    if (not row["binding_host_id"] or row["binding_host_id"] in keys or not row["fixed_ips"]
            or not is_workload(row)):
        return None
    subnets = {ip["subnet_id"] for ip in row["fixed_ips"]}
    using = shared.hosts_using(txn, row["network_id"])
    if using is not None and any(key in using for key in keys):
        return neighbor_pb2.L2
    if using is None and subnets & own()[0]:
        return neighbor_pb2.L2
    if not shared.any_routers(txn) or not presence.attached(txn, subnets, shared):
        return None
    if not subnets & routed():
        return None
    return neighbor_pb2.L2 if row["network_id"] in own()[1] else neighbor_pb2.L3


def _of_kind(refs: list[NeighbourRef], kinds: Mapping[str, neighbor_pb2.NeighborType],
             kind: neighbor_pb2.NeighborType) -> list[NeighbourRef]:
    return [ref for ref in refs if kinds[ref[0]] == kind]


def compile_delta(txn: Transaction, node: Mapping[str, Any], port_ids: Collection[str],
                  cache: NeighbourCache = SHARED, *, shared: SharedReads | None = None) -> bytes:
    """The neighbour entries (or deletions) of ``port_ids`` for one host, as a serialized
    GoalStateV2 (see the module docstring)."""
    from alcor.dpm.compiler import FORMAT_VERSION, TAGS  # the package imports this module

    shared = shared or SharedReads()
    keys = host_keys(node)
    rows = shared.port_rows(txn, port_ids)
    own = functools.cache(lambda: _own(txn, keys))  # each read only if needed
    routed = functools.cache(lambda: _routed_subnets(txn, keys, own()[0], shared))
    kinds = {row["id"]: kind for row in rows.values()
             if (kind := _kind(txn, row, keys, shared, own, routed)) is not None}
    candidates = [rows[port_id] for port_id in kinds]
    resolved = shared.resolve(txn, {row["binding_host_id"] for row in candidates})
    hosts = {name: address for name, (node_id, address) in resolved.items()
             if node_id != node["node_id"]}
    refs = sorted(((row["id"], row["revision_number"], row["binding_host_id"])
                   for row in candidates if row["binding_host_id"] in hosts), key=itemgetter(0))
    networks = shared.networks(txn, {row["network_id"] for row in candidates})
    intent = HostIntent(node=node, ports=[], networks=networks, subnets={}, groups={}, rules={},
                        neighbours=_of_kind(refs, kinds, neighbor_pb2.L2), hosts=hosts,
                        routed=_of_kind(refs, kinds, neighbor_pb2.L3))
    found = entries(txn, intent, cache)
    resources = b"".join(entry.resource for entry in found)
    message = goalstate_pb2.GoalStateV2.FromString(b"".join([
        goalstate_pb2.GoalStateV2(format_version=FORMAT_VERSION).SerializeToString(),
        map_entry_head(TAGS["host_resources"], node["local_ip"], len(resources)), resources,
        *(entry.state for entry in found),
    ]))
    index = message.host_resources[node["local_ip"]]
    kept = {ref[0] for ref in refs}
    for port_id in sorted(set(port_ids) - kept):
        key = neighbour_id(port_id)
        state = message.neighbor_states[key]
        state.operation_type = common_pb2.DELETE
        state.configuration.id = key
        index.resources.add(type=common_pb2.NEIGHBOR, id=key)
    raw: bytes = message.SerializeToString(deterministic=True)
    return raw

"""Delta goal states: only the neighbour entries of some changed ports, for a host whose own
resources did not change (``alcor.dpm.deltas`` decides when one may be sent).

For each changed port the delta carries its entry (CREATE, the same cached bytes a full goal
state would splice in) if the port is the host's neighbour now, by the rule the full compile
uses (bound to another registered node, with a fixed IP in a subnet the host has a port
address in), and a DELETE of ``L2/<port_id>`` otherwise (a no-op for an agent that never held
it).  ``host_resources[local_ip]`` lists every entry, as in a full goal state; the
configurations say ``update_type`` FULL, as each entry is whole.

Whether a host uses a subnet is answered once per batch for single-subnet networks (the
distinct hosts with addressed ports in the network, ``SharedReads.hosts_using``) and from the
host's own ports otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Mapping
from operator import itemgetter
from typing import Any

from alcor.db.store import Transaction
from alcor.dpm.compiler import intent as host_intent
from alcor.dpm.compiler.intent import HostIntent, SharedReads, fetch, host_keys, json_value
from alcor.dpm.compiler.neighbors import (
    SHARED,
    NeighbourCache,
    entries,
    map_entry_head,
    neighbour_id,
)
from alcor.rpc._generated import common_pb2, goalstate_pb2

_OWN_SUBNETS = "SELECT fixed_ips FROM ports WHERE binding_host_id IN ({in})"


def _own_subnets(txn: Transaction, keys: list[str]) -> set[str]:
    sql = _OWN_SUBNETS.format(**{"in": host_intent.marks(txn, len(keys))})
    return {ip["subnet_id"] for (fixed,) in fetch(txn, sql, keys) for ip in json_value(fixed)}


def _is_neighbour(txn: Transaction, row: Mapping[str, Any], keys: list[str],
                  shared: SharedReads, own_subnets: Callable[[], set[str]]) -> bool:
    if not row["binding_host_id"] or row["binding_host_id"] in keys or not row["fixed_ips"]:
        return False
    using = shared.hosts_using(txn, row["network_id"])
    if using is not None:
        return any(key in using for key in keys)
    return any(ip["subnet_id"] in own_subnets() for ip in row["fixed_ips"])


def compile_delta(txn: Transaction, node: Mapping[str, Any], port_ids: Collection[str],
                  cache: NeighbourCache = SHARED, *, shared: SharedReads | None = None) -> bytes:
    """The neighbour entries (or deletions) of ``port_ids`` for one host, as a serialized
    GoalStateV2 (see the module docstring)."""
    from alcor.dpm.compiler import FORMAT_VERSION, TAGS  # the package imports this module

    shared = shared or SharedReads()
    keys = host_keys(node)
    rows = shared.port_rows(txn, port_ids)
    own_subnets = functools.cache(lambda: _own_subnets(txn, keys))  # read only if needed
    candidates = [row for row in rows.values()
                  if _is_neighbour(txn, row, keys, shared, own_subnets)]
    resolved = shared.resolve(txn, {row["binding_host_id"] for row in candidates})
    hosts = {name: address for name, (node_id, address) in resolved.items()
             if node_id != node["node_id"]}
    refs = sorted(((row["id"], row["revision_number"], row["binding_host_id"])
                   for row in candidates if row["binding_host_id"] in hosts), key=itemgetter(0))
    networks = shared.networks(txn, {row["network_id"] for row in candidates})
    intent = HostIntent(node=node, ports=[], networks=networks, subnets={}, groups={}, rules={},
                        neighbours=refs, hosts=hosts)
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

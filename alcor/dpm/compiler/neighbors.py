"""Neighbour states and their serialized form, built once and reused for every host.

A host's neighbours are the other registered nodes' workload ports in its subnets, and in the
subnets of the routers present on it (``presence``).  Each is keyed ``L2/<port_id>`` (the
configuration's id too): mac, the port's name and network, the node's tunnel IP and MAC as
``host_ip_address`` / ``host_mac_address``, every fixed IP of the port (subnet, address,
tunnel_id = the network's VNI, and neighbor_type: L2 when the host has a port on the
neighbour's network, L3 when it holds the neighbour only because of a router) and its
allowed address pairs, and (an Alcor extension) its security groups, from which the agent
knows the members of remote groups; CREATE with the port's revision.  Every fixed IP, not
only those in the receiving host's subnets: the entry is then the same bytes for every host
that holds it with the same type (all of a network's subnets share its VNI, so the addresses
are reachable alike).

An entry depends on the port's revision, its node's address and its type only (a network's
VNI never changes), so it is serialized once and reused by every host: ``NeighbourCache``
keeps the bytes of its ``neighbor_states`` map entry (field 7: ``{1: key, 2: NeighborState}``)
and of its ``HostResources`` entry, for the revision and node address they were built from;
L3 entries in a second cache of the same kind (``NeighbourCache.routed``).
"""

from __future__ import annotations

import heapq
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any, NamedTuple

from alcor.db.store import Transaction
from alcor.dpm.compiler.intent import HostAddress, HostIntent, NeighbourRef, neighbour_rows
from alcor.dpm.compiler.vpcs import vni
from alcor.rpc._generated import common_pb2, neighbor_pb2

PREFIX = "L2/"
DEFAULT_CAPACITY = 1_000_000
"""Entries kept (about 400 bytes each with their keys): a million ports."""


def neighbour_id(port_id: str) -> str:
    return PREFIX + port_id


def neighbour_state(port: Mapping[str, Any], network: Mapping[str, Any], host: HostAddress,
                    kind: neighbor_pb2.NeighborType = neighbor_pb2.L2
                    ) -> neighbor_pb2.NeighborState:
    # Fields are assigned one by one: three times faster than nested keyword construction,
    # which matters when a cold cache serializes tens of thousands of entries.
    state = neighbor_pb2.NeighborState()
    state.operation_type = common_pb2.CREATE
    config = state.configuration
    config.revision_number = port["revision_number"]
    config.id = neighbour_id(port["id"])
    config.update_type = common_pb2.FULL
    config.vpc_id = port["network_id"]
    config.name = port["name"]
    config.mac_address = port["mac_address"]
    config.host_mac_address = host.mac
    config.host_ip_address = host.ip
    tunnel_id = vni(network)
    for ip in port["fixed_ips"]:
        fixed = config.fixed_ips.add()
        fixed.neighbor_type = kind
        fixed.subnet_id = ip["subnet_id"]
        fixed.ip_address = ip["ip_address"]
        fixed.tunnel_id = tunnel_id
    for pair in port["allowed_address_pairs"]:
        added = config.allow_address_pairs.add()
        added.ip_address = pair["ip_address"]
        added.mac_address = pair["mac_address"]
    config.security_group_ids.extend(port["security_groups"])
    return state


# --- wire bytes ------------------------------------------------------------------------------

NEIGHBOR_STATES_TAG = b"\x3a"
"""GoalStateV2 field 7 (neighbor_states), length-delimited."""
RESOURCES_TAG = b"\x0a"
"""HostResources field 1 (resources), length-delimited."""


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def delimited(tag: bytes, payload: bytes) -> bytes:
    return tag + varint(len(payload)) + payload


def map_entry_head(tag: bytes, key: str, value_length: int) -> bytes:
    """What precedes a ``value_length``-byte value in one entry of a ``map<string, Message>``
    field (``{1: key, 2: value}`` under ``tag``), so the value can be spliced in after it."""
    inner = delimited(b"\x0a", key.encode()) + b"\x12" + varint(value_length)
    return tag + varint(len(inner) + value_length) + inner


def map_entry(tag: bytes, key: str, value: bytes) -> bytes:
    """One entry of a ``map<string, Message>`` field."""
    return map_entry_head(tag, key, len(value)) + value


def resource_entry(type_: int, id_: str) -> bytes:
    """One ``ResourceIdType`` in ``HostResources.resources`` (type omitted when 0)."""
    body = (b"\x08" + varint(type_) if type_ else b"") + delimited(b"\x12", id_.encode())
    return delimited(RESOURCES_TAG, body)


class Entry(NamedTuple):
    state: bytes
    """The ``neighbor_states`` map entry, tag included."""
    resource: bytes
    """The ``HostResources.resources`` entry, tag included."""


def build_entry(port: Mapping[str, Any], network: Mapping[str, Any], host: HostAddress,
                kind: neighbor_pb2.NeighborType = neighbor_pb2.L2) -> Entry:
    key = neighbour_id(port["id"])
    state = neighbour_state(port, network, host, kind).SerializeToString()
    return Entry(map_entry(NEIGHBOR_STATES_TAG, key, state),
                 resource_entry(common_pb2.NEIGHBOR, key))


# --- the cache -------------------------------------------------------------------------------


class NeighbourCache:
    """Serialized neighbour entries, keyed by the neighbour's reference (port id, revision,
    binding:host_id) exactly as the database returns it, so a warm lookup is one dict probe.

    A node's address is not in the key: the cache remembers which address each host name's
    entries carry, and a lookup that sees another address drops that host's entries first.
    One entry per port is kept (a new revision replaces the old one); past ``capacity`` the
    oldest stored entries go.  Safe to share between threads.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._routed: NeighbourCache | None = None
        self._entries: OrderedDict[NeighbourRef, Entry] = OrderedDict()
        self._by_port: dict[str, NeighbourRef] = {}
        self._by_host: dict[str, set[NeighbourRef]] = {}
        self._addresses: dict[str, HostAddress] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def routed(self) -> NeighbourCache:
        """The cache of L3 entries (made on first use, with the same capacity)."""
        with self._lock:
            if self._routed is None:
                self._routed = NeighbourCache(self.capacity)
            return self._routed

    def lookup(self, refs: Sequence[NeighbourRef], hosts: Mapping[str, HostAddress]
               ) -> list[Entry | None]:
        """Each reference's entry, or None; ``hosts`` gives every named node's address."""
        with self._lock:
            for name, address in hosts.items():
                if self._addresses.get(name, address) != address:
                    self._drop_host(name)
                self._addresses[name] = address
            get = self._entries.get
            found = [get(ref) for ref in refs]
        missed = found.count(None)
        self.hits += len(found) - missed
        self.misses += missed
        return found

    def store(self, fresh: Mapping[NeighbourRef, Entry], hosts: Mapping[str, HostAddress]
              ) -> None:
        """Keep entries built with ``hosts``' addresses (unless a newer lookup saw others)."""
        with self._lock:
            for ref, entry in fresh.items():
                if self._addresses.get(ref[2]) != hosts[ref[2]]:
                    continue
                self._forget(self._by_port.get(ref[0]))
                self._entries[ref] = entry
                self._by_port[ref[0]] = ref
                self._by_host.setdefault(ref[2], set()).add(ref)
            while len(self._entries) > self.capacity:
                self._forget(next(iter(self._entries)))

    def clear(self) -> None:
        if self._routed is not None:
            self._routed.clear()
        with self._lock:
            self._entries.clear()
            self._by_port.clear()
            self._by_host.clear()
            self._addresses.clear()

    def _forget(self, ref: NeighbourRef | None) -> None:
        if ref is None or ref not in self._entries:
            return
        del self._entries[ref]
        if self._by_port.get(ref[0]) == ref:
            del self._by_port[ref[0]]
        self._by_host.get(ref[2], set()).discard(ref)

    def _drop_host(self, name: str) -> None:
        for ref in list(self._by_host.pop(name, ())):
            self._forget(ref)


SHARED = NeighbourCache()
"""The process's cache (the compiler's default)."""


def _entries(txn: Transaction, refs: Sequence[NeighbourRef], intent: HostIntent,
             cache: NeighbourCache, kind: neighbor_pb2.NeighborType) -> list[Entry | None]:
    """The entries of ``refs`` (of one type), serializing only those the cache lacks; None
    for a port gone since its reference was read."""
    found = cache.lookup(refs, intent.hosts)
    if None not in found:
        return found
    missing = [ref for ref, entry in zip(refs, found, strict=True) if entry is None]
    rows = neighbour_rows(txn, [port_id for port_id, _, _ in missing], intent.networks)
    fresh = {
        ref: build_entry(rows[ref[0]], intent.networks[rows[ref[0]]["network_id"]],
                         intent.hosts[ref[2]], kind)
        for ref in missing if ref[0] in rows
    }
    cache.store(fresh, intent.hosts)
    return [entry or fresh.get(ref) for ref, entry in zip(refs, found, strict=True)]


def entries(txn: Transaction, intent: HostIntent, cache: NeighbourCache) -> list[Entry]:
    """Every neighbour's entry (L2, and L3 from ``cache.routed``) in key order."""
    switched = _entries(txn, intent.neighbours, intent, cache, neighbor_pb2.L2)
    if not intent.routed:
        if None not in switched:
            return switched  # type: ignore[return-value]  # every entry was found
        return [e for e in switched if e is not None]
    routed = _entries(txn, intent.routed, intent, cache.routed, neighbor_pb2.L3)
    merged = heapq.merge(zip([ref[0] for ref in intent.neighbours], switched, strict=True),
                         zip([ref[0] for ref in intent.routed], routed, strict=True),
                         key=itemgetter(0))
    return [entry for _, entry in merged if entry is not None]


def neighbour_states(txn: Transaction, intent: HostIntent
                     ) -> dict[str, neighbor_pb2.NeighborState]:
    """The neighbours as messages in key order, built from their rows (no cache): the
    reference path."""
    kinds = {ref[0]: neighbor_pb2.L2 for ref in intent.neighbours}
    kinds.update({ref[0]: neighbor_pb2.L3 for ref in intent.routed})
    hosts = {ref[0]: ref[2] for ref in [*intent.neighbours, *intent.routed]}
    rows = neighbour_rows(txn, sorted(kinds), intent.networks)
    return {
        neighbour_id(port_id): neighbour_state(
            rows[port_id], intent.networks[rows[port_id]["network_id"]],
            intent.hosts[hosts[port_id]], kinds[port_id])
        for port_id in sorted(kinds) if port_id in rows
    }

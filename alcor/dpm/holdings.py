"""What each host may hold, and the explicit DELETEs a goal state must carry for the rest.

A FULL goal state lists everything a host must hold.  Alcor's agent deletes whatever it holds
and the message leaves out, but upstream's agent applies only what a goal state names: a port
deleted or moved away, a neighbour gone, a subnet, security group, DHCP entry or router no
longer needed would stay on such a host forever.  So the controller names them: ``Holdings``
remembers, per host, the resources (kind, id) pushed to it and not since deleted there -- a
superset of what it holds -- and every FULL goal state carries a DELETE for each of them it
no longer lists (``with_deletions``).  Deltas carry their own DELETEs (``compiler.delta``).

The record only grows on doubt: a push that may or may not have arrived (a transport error, a
deadline, a refusal) adds what it carried and removes nothing; an acknowledged FULL goal state
replaces the record with what it listed (plus the deletions the agent failed); an acknowledged
delta adds its entries and removes its successful deletions.  A DELETE of something a host does
not hold is a no-op for every agent, so a superset is always safe.

Memory only, like ``deltas.DeltaBook``: a controller that restarts knows nothing its hosts hold
until it pushes to them, so what was deleted while no controller ran is left to the agent's
own sweep (Alcor's agent sweeps on its first FULL goal state after a start).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from google.protobuf import (  # type: ignore[import-untyped]
    descriptor_pb2,
    descriptor_pool,
    message_factory,
)

from alcor.dpm.compiler.neighbors import delimited, map_entry, resource_entry, varint
from alcor.rpc._generated import common_pb2, goalstate_pb2

Kind = int
Keys = dict[Kind, set[str]]
"""Resource kind (``common_pb2.ResourceType``) -> ids."""

STATE_FIELDS: dict[Kind, str] = {
    common_pb2.VPC: "vpc_states",
    common_pb2.SUBNET: "subnet_states",
    common_pb2.PORT: "port_states",
    common_pb2.DHCP: "dhcp_states",
    common_pb2.NEIGHBOR: "neighbor_states",
    common_pb2.SECURITYGROUP: "security_group_states",
    common_pb2.ROUTER: "router_states",
    common_pb2.GATEWAY: "gateway_states",
}
"""Resource kind -> its GoalStateV2 map field."""

_FIELD_NUMBERS = {field.name: field.number for field in goalstate_pb2.GoalStateV2.DESCRIPTOR.fields}
HOST_RESOURCES = _FIELD_NUMBERS["host_resources"]


def _index_class() -> type:
    """A message reading only ``GoalStateV2.host_resources`` (a map is a repeated key/value
    entry on the wire): parsing a 30 MB goal state for its index then skips the states."""
    pool = descriptor_pool.Default()
    name = "alcor_goal_state_index.proto"
    try:
        pool.FindFileByName(name)
    except KeyError:
        proto = descriptor_pb2.FileDescriptorProto(
            name=name, package="alcor.index", syntax="proto3",
            dependency=[goalstate_pb2.DESCRIPTOR.name])
        entry = proto.message_type.add(name="HostEntry")
        entry.field.add(name="key", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
        entry.field.add(name="value", number=2,
                        type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                        type_name=".alcor.schema.HostResources",
                        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
        index = proto.message_type.add(name="GoalStateIndex")
        index.field.add(name="host_resources", number=HOST_RESOURCES,
                        type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                        type_name=".alcor.index.HostEntry",
                        label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED)
        pool.Add(proto)
    cls: type = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("alcor.index.GoalStateIndex"))
    return cls


_INDEX = _index_class()


def listed(goal_state: bytes, local_ip: str) -> Keys:
    """The resources a serialized GoalStateV2 lists for ``local_ip`` (its host_resources
    entry; the last one counts, as in a map), by kind."""
    index = _INDEX.FromString(goal_state)  # type: ignore[attr-defined]
    keys: Keys = {}
    found = None
    for entry in index.host_resources:
        if entry.key == local_ip:
            found = entry.value
    if found is not None:
        for ref in found.resources:
            keys.setdefault(ref.type, set()).add(ref.id)
    return keys


class Listing:
    """What a FULL goal state lists for a host, parsed only if someone asks (a host's first
    big goal state is often never compared with anything)."""

    __slots__ = ("_goal_state", "_keys", "_local_ip")

    def __init__(self, goal_state: bytes, local_ip: str) -> None:
        self._goal_state: bytes | None = goal_state
        self._local_ip = local_ip
        self._keys: Keys | None = None

    def keys(self) -> Keys:
        if self._keys is None:
            assert self._goal_state is not None
            self._keys = listed(self._goal_state, self._local_ip)
            self._goal_state = None  # the push may go; the keys stay
        return self._keys


def operations(goal_state: bytes) -> tuple[Keys, Keys]:
    """(resources a goal state creates or updates, resources it deletes), by kind: for the
    small messages whose states are read anyway (deltas)."""
    message = goalstate_pb2.GoalStateV2.FromString(goal_state)
    applied: Keys = {}
    deleted: Keys = {}
    for kind, name in STATE_FIELDS.items():
        for key, state in getattr(message, name).items():
            target = deleted if state.operation_type == common_pb2.DELETE else applied
            target.setdefault(kind, set()).add(key)
    return applied, deleted


def _index_span(raw: bytes, local_ip: str) -> tuple[int, int] | None:
    """Where the host_resources entry for ``local_ip`` lies in a serialized GoalStateV2 (the
    compiler puts it right after format_version, so the walk is short); None if absent."""
    pos, size = 0, len(raw)
    while pos < size:
        start = pos
        tag, pos = _read_varint(raw, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            _, pos = _read_varint(raw, pos)
        elif wire == 2:
            length, pos = _read_varint(raw, pos)
            pos += length
        else:
            raise ValueError(f"unexpected wire type {wire} in a goal state")
        if number == HOST_RESOURCES and _entry_key(raw[start:pos]) == local_ip:
            return start, pos
    return None


def _read_varint(raw: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = raw[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _deletion(kind: Kind, key: str) -> bytes:
    state = getattr(goalstate_pb2.GoalStateV2(), STATE_FIELDS[kind])[key]
    state.operation_type = common_pb2.DELETE
    state.configuration.id = key
    raw: bytes = state.SerializeToString()
    return map_entry(bytes([_FIELD_NUMBERS[STATE_FIELDS[kind]] << 3 | 2]), key, raw)


def with_deletions(goal_state: bytes, local_ip: str, deletions: Mapping[Kind, Iterable[str]]
                   ) -> bytes:
    """``goal_state`` with a DELETE state for each of ``deletions``, listed in the host's
    host_resources entry too (an agent takes the listed resources)."""
    wanted = sorted((kind, key) for kind, keys in deletions.items() for key in keys)
    if not wanted:
        return goal_state
    refs = b"".join(resource_entry(kind, key) for kind, key in wanted)
    states = b"".join(_deletion(kind, key) for kind, key in wanted)
    span = _index_span(goal_state, local_ip)
    if span is None:
        body = delimited(b"\x0a", local_ip.encode()) + delimited(b"\x12", refs)
        entry = bytes([HOST_RESOURCES << 3 | 2]) + varint(len(body)) + body
        return goal_state + entry + states
    start, end = span
    return b"".join([goal_state[:start], _extend_entry(goal_state[start:end], refs),
                     goal_state[end:], states])


def _entry_key(chunk: bytes) -> str:
    """The key of one serialized map entry (tag and length included)."""
    _, pos = _read_varint(chunk, 0)
    _, pos = _read_varint(chunk, pos)
    entry = goalstate_pb2.GoalStateV2.HostResourcesEntry.FromString(chunk[pos:])
    return str(entry.key)


def _extend_entry(chunk: bytes, refs: bytes) -> bytes:
    """One ``host_resources`` map entry with ``refs`` appended to its resource list."""
    _, pos = _read_varint(chunk, 0)
    _, pos = _read_varint(chunk, pos)
    entry = goalstate_pb2.GoalStateV2.HostResourcesEntry.FromString(chunk[pos:])
    value = entry.value.SerializeToString() + refs
    body = delimited(b"\x0a", entry.key.encode()) + delimited(b"\x12", value)
    return bytes([HOST_RESOURCES << 3 | 2]) + varint(len(body)) + body


@dataclass(frozen=True, slots=True)
class Push:
    """One goal state about to go to a host, and what it does to the host's holdings."""

    applied: Keys | Listing
    """What it lists (FULL: everything the host must hold, as a ``Listing``; delta: what it
    creates)."""
    deleted: Keys
    """What it deletes explicitly."""
    full: bool


class Holdings:
    """Per host, the resources it may hold (see the module docstring).  Event loop only."""

    def __init__(self) -> None:
        self._held: dict[str, Keys | Listing] = {}

    def held(self, node_id: str) -> Keys:
        held = self._held.get(node_id)
        if held is None:
            return {}
        if isinstance(held, Listing):
            keys = {kind: set(ids) for kind, ids in held.keys().items()}
            self._held[node_id] = keys
            return keys
        return held

    def prepare(self, node_id: str, local_ip: str, goal_state: bytes, base: int | None
                ) -> tuple[bytes, Push]:
        """The goal state to send (a FULL one gains its DELETEs) and what it carries."""
        if base is not None:
            applied, deleted = operations(goal_state)
            return goal_state, Push(applied, deleted, full=False)
        listing = Listing(goal_state, local_ip)
        held = self.held(node_id)
        if not any(held.values()):
            return goal_state, Push(listing, {}, full=True)
        keys = listing.keys()
        deleted = {kind: ids - keys.get(kind, set()) for kind, ids in held.items()}
        deleted = {kind: ids for kind, ids in deleted.items() if ids}
        return with_deletions(goal_state, local_ip, deleted), Push(listing, deleted, full=True)

    def delivered(self, node_id: str, push: Push, failed_deletes: Keys) -> None:
        """The host acknowledged ``push``; ``failed_deletes``: deletions it reported failed."""
        if push.full and not failed_deletes:
            self._held[node_id] = push.applied
            return
        held = ({} if push.full else self.held(node_id))
        if push.full:
            held.update((kind, set(ids)) for kind, ids in _keys(push.applied).items())
        else:
            for kind, ids in push.deleted.items():
                held.get(kind, set()).difference_update(ids)
            for kind, ids in _keys(push.applied).items():
                held.setdefault(kind, set()).update(ids)
        for kind, ids in failed_deletes.items():
            held.setdefault(kind, set()).update(ids)
        self._held[node_id] = held

    def uncertain(self, node_id: str, push: Push) -> None:
        """``push`` may or may not have reached the host: it may hold what it listed."""
        held = self.held(node_id)
        for kind, ids in _keys(push.applied).items():
            held.setdefault(kind, set()).update(ids)
        self._held[node_id] = held

    def forget(self, node_id: str) -> None:
        """The node is deregistered: nothing is owed to it any more."""
        self._held.pop(node_id, None)


def _keys(applied: Keys | Listing) -> Keys:
    return applied.keys() if isinstance(applied, Listing) else applied

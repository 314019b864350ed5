"""The programmer interface between the agent's state and a host's data plane, and the
recording programmer shipped for tests and the simulator.

One generic pair, ``apply(kind, id, config, previous)`` and ``delete(kind, id, previous)``,
rather than a method per resource type:

- the agent's plan is data (kind, id, action); one table-driven loop runs it in dependency
  order, times each call, and turns an exception into that resource's FAILURE, the same way for
  every type;
- a driver dispatches on ``kind`` to typed handlers of its own and may ignore kinds it does not
  program (upstream's agent only looks VPCs and subnets up), so a new resource type does not
  change the interface;
- every call carries the configuration the resource had when it was last realized
  (``previous``), which a driver needs to undo it: deleting a neighbour removes the FDB entry
  for the MAC and tunnel endpoint it was programmed with, and an update that moves a neighbour
  to another host removes the old entry.

``kind`` is a ``common_pb2.ResourceType`` value; ``config`` is that kind's ``*Configuration``
message (see ``PARSERS``).  A programmer raises any exception to report a failure; its text
is the reason the controller sees.  Calls come one at a time, deletes first (dependants before
what they depend on), then creates and updates in ``APPLY_ORDER``.  Two optional methods: a
programmer with ``flush()`` has it called once after each goal state's calls (to apply what it
batches across resources, such as a security group's member set), and one with ``sweep()``
after the first full goal state since the agent started (to remove stale objects it owns).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from alcor.rpc._generated import (
    common_pb2,
    dhcp_pb2,
    gateway_pb2,
    neighbor_pb2,
    port_pb2,
    router_pb2,
    securitygroup_pb2,
    subnet_pb2,
    vpc_pb2,
)


class Configuration(Protocol):
    """What every ``*Configuration`` message has (the common header, and serialization)."""

    revision_number: int
    id: str

    def SerializeToString(self) -> bytes: ...  # noqa: N802 (protobuf's name)


PARSERS: dict[int, Callable[[bytes], Configuration]] = {
    common_pb2.VPC: vpc_pb2.VpcConfiguration.FromString,
    common_pb2.SUBNET: subnet_pb2.SubnetConfiguration.FromString,
    common_pb2.PORT: port_pb2.PortConfiguration.FromString,
    common_pb2.NEIGHBOR: neighbor_pb2.NeighborConfiguration.FromString,
    common_pb2.SECURITYGROUP: securitygroup_pb2.SecurityGroupConfiguration.FromString,
    common_pb2.DHCP: dhcp_pb2.DHCPConfiguration.FromString,
    common_pb2.ROUTER: router_pb2.RouterConfiguration.FromString,
    common_pb2.GATEWAY: gateway_pb2.GatewayConfiguration.FromString,
}
"""Resource kind -> the parser of the configuration message it carries."""

APPLY_ORDER: tuple[int, ...] = (
    common_pb2.VPC,
    common_pb2.SUBNET,
    common_pb2.SECURITYGROUP,
    common_pb2.GATEWAY,
    common_pb2.PORT,
    common_pb2.DHCP,
    common_pb2.NEIGHBOR,
    common_pb2.ROUTER,
)
"""Creates and updates run in this order (what a resource depends on first); deletes run in
the reverse order, before any create or update."""


class Programmer(Protocol):
    """Makes a host's data plane hold resources; raises to report a failure."""

    def apply(
        self, kind: int, resource_id: str, config: Configuration, previous: Configuration | None
    ) -> None:
        """Create (``previous`` is None) or update the resource to ``config``."""

    def delete(self, kind: int, resource_id: str, previous: Configuration) -> None:
        """Remove the resource that was realized as ``previous``."""


class ProgrammingFailed(RuntimeError):
    """A failure the recording programmer was told to report."""


class RecordingProgrammer:
    """Holds what it was told to program, in memory, and logs every call.

    ``fail(resource_id, reason)`` makes every later call for that id raise, so a test sees the
    agent report FAILURE with the reason; ``heal(resource_id)`` undoes it.
    """

    def __init__(self) -> None:
        self.programmed: dict[tuple[int, str], bytes] = {}
        self.calls: list[tuple[str, int, str]] = []
        self.failing: dict[str, str] = {}

    def fail(self, resource_id: str, reason: str = "programming failed") -> None:
        self.failing[resource_id] = reason

    def heal(self, resource_id: str) -> None:
        self.failing.pop(resource_id, None)

    def apply(
        self, kind: int, resource_id: str, config: Configuration, previous: Configuration | None
    ) -> None:
        self._check(resource_id)
        self.calls.append(("create" if previous is None else "update", kind, resource_id))
        self.programmed[(kind, resource_id)] = config.SerializeToString()

    def delete(self, kind: int, resource_id: str, previous: Configuration) -> None:
        self._check(resource_id)
        self.calls.append(("delete", kind, resource_id))
        self.programmed.pop((kind, resource_id), None)

    def _check(self, resource_id: str) -> None:
        reason = self.failing.get(resource_id)
        if reason is not None:
            raise ProgrammingFailed(reason)

    def ids(self, kind: int) -> set[str]:
        """The ids of the programmed resources of one kind."""
        return {rid for (k, rid) in self.programmed if k == kind}

    def config(self, kind: int, resource_id: str) -> Configuration:
        """The configuration a resource is programmed with (KeyError if it is not)."""
        return PARSERS[kind](self.programmed[(kind, resource_id)])

"""Provider ("physical") networks on a host: the agent option ``--physical-network NAME=IFACE``
maps a network's ``provider:physical_network`` to a host interface, and the agent keeps one
bridge per mapped name (``alcpn<name>``, ifalias ``alcor:physnet:<name>``) with that interface
enslaved, for the routers' external legs (``qg-``) to plug into.

The bridge is made when a router first needs it and then left alone: it is the host's uplink
to the outside, not a tenant object, so neither deleting routers nor the restart sweep
removes it.  The interface must carry no address of its own (as with Neutron's Linux bridge
agent, which moves them to the bridge; this one does not).  Flat networks only: a VLAN
provider network would need a tagged sub-interface per segment.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from alcor.agent.linux.namespaces import (
    ThreadRoutes,
    disable_ipv6,
    get_link,
    link_alias,
    link_kind,
)
from alcor.agent.linux.overlay import OWNER

BRIDGE_PREFIX = "alcpn"
ALIAS_PREFIX = f"{OWNER}physnet:"
_SHORT_NAME = re.compile(r"^[A-Za-z0-9_]{1,10}$")
IFF_UP = 1


def bridge_name(physical_network: str) -> str:
    """``alcpn<name>`` when the name fits an interface name, else ``alcpn`` + a hash of it."""
    if _SHORT_NAME.match(physical_network):
        return f"{BRIDGE_PREFIX}{physical_network}"
    return BRIDGE_PREFIX + hashlib.sha256(physical_network.encode()).hexdigest()[:10]


def parse_mappings(values: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["public=eth1", ...]`` -> ``{"public": "eth1"}``; ValueError on a malformed or
    repeated name."""
    mappings: dict[str, str] = {}
    for value in values:
        name, sep, iface = value.partition("=")
        name, iface = name.strip(), iface.strip()
        if not sep or not name or not iface:
            raise ValueError(f"physical network mapping {value!r} is not NAME=INTERFACE")
        if name in mappings:
            raise ValueError(f"physical network {name!r} is mapped twice")
        mappings[name] = iface
    return mappings


class ProviderError(RuntimeError):
    """A provider network cannot be reached from this host."""


@dataclass(frozen=True, slots=True)
class ProviderBridge:
    name: str
    index: int
    mtu: int


class ProviderBridges:
    """The bridges of the mapped provider networks in one host namespace."""

    def __init__(self, routes: ThreadRoutes, netns: str | None,
                 mappings: Mapping[str, str]) -> None:
        self.routes = routes
        self.netns = netns
        self.mappings = dict(mappings)
        self.known: dict[str, ProviderBridge] = {}

    @property
    def ipr(self) -> Any:
        return self.routes.get()

    def bridge(self, physical_network: str) -> ProviderBridge:
        """The bridge of ``physical_network``, made and its interface enslaved if need be."""
        known = self.known.get(physical_network)
        if known is not None and self._intact(known):
            return known
        iface_name = self.mappings.get(physical_network)
        if iface_name is None:
            raise ProviderError(
                f"physical network {physical_network!r} is not mapped on this host "
                f"(agent option --physical-network {physical_network}=INTERFACE); mapped: "
                f"{', '.join(sorted(self.mappings)) or 'none'}")
        iface = self._link(iface_name)
        if iface is None:
            raise ProviderError(f"interface {iface_name} of physical network "
                                f"{physical_network!r} does not exist")
        name = bridge_name(physical_network)
        alias = f"{ALIAS_PREFIX}{physical_network}"
        link = self._link(name)
        if link is not None and (link_kind(link) != "bridge" or link_alias(link) != alias):
            raise ProviderError(f"{name} exists and is not the agent's bridge of "
                                f"{physical_network!r}")
        mtu = int(iface.get_attr("IFLA_MTU"))
        if link is None:
            self.ipr.link("add", ifname=name, kind="bridge", mtu=mtu)
            link = self._link(name)
            assert link is not None
            self.ipr.link("set", index=link["index"], ifalias=alias)
        disable_ipv6(self.netns, name)
        index = int(link["index"])
        if iface.get_attr("IFLA_MASTER") != index:
            self.ipr.link("set", index=iface["index"], master=index)
        for up in (iface, link):
            if not up["flags"] & IFF_UP:
                self.ipr.link("set", index=up["index"], state="up")
        made = ProviderBridge(name, index, mtu)
        self.known[physical_network] = made
        return made

    def _intact(self, bridge: ProviderBridge) -> bool:
        link = self._link(bridge.name)
        return link is not None and int(link["index"]) == bridge.index

    def _link(self, name: str) -> Any | None:
        return get_link(self.ipr, name)

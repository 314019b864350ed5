"""The host's L2 overlay: per VNI a Linux bridge ``alcbr<vni>`` and a kernel VXLAN device
``alcvx<vni>`` (local = the host's underlay address, UDP 4789, learning off on the device and
on its bridge port, ARP/ND proxy on), and the remote ports behind the tunnel as static FDB
entries (bridge ``master static`` plus VXLAN ``self dst <vtep>``) and permanent neighbour
entries (IP -> MAC, answered locally by the VXLAN proxy, so nothing floods across the tunnel).

Entries are written through the raw rtnetlink channel (``rtnetlink.py``); namespaces are
reached through ``namespaces.py``.

Ownership: both devices carry the ifalias ``alcor:vni:<vni>``; every FDB and neighbour entry
on an ``alcvx*`` device is the agent's.  ``sweep`` removes owned objects nobody asked for.
Devices are programmed with pyroute2 (cold path); the view of the entries (``fdb``,
``neigh``) is read back from the kernel when a segment already exists, so a restarted agent
re-applying its goal state writes nothing.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from alcor.agent.linux.namespaces import (
    ThreadRoutes,
    delete_link,
    disable_ipv6,
    get_link,
    link_alias,
    link_kind,
)
from alcor.agent.linux.rtnetlink import (
    NUD_NOARP,
    NUD_PERMANENT,
    RTM_DELNEIGH,
    NeighEntry,
    NeighMessage,
    RawNetlink,
    fdb_master,
    fdb_self,
    neigh,
)

log = logging.getLogger(__name__)

VXLAN_PORT = 4789
VXLAN_OVERHEAD = 50
DEFAULT_MTU = 1450
"""A VXLAN network's MTU when the VPC does not say (1500 underlay minus 50)."""
OWNER = "alcor:"
"""Prefix of the ifalias of every device the agent created."""
BRIDGE_PREFIX = "alcbr"
VXLAN_PREFIX = "alcvx"
MAX_VNI = 0xFFFFFF


def bridge_name(vni: int) -> str:
    return f"{BRIDGE_PREFIX}{vni}"


def vxlan_name(vni: int) -> str:
    return f"{VXLAN_PREFIX}{vni}"


def segment_alias(vni: int) -> str:
    return f"{OWNER}vni:{vni}"


# --- segments ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    """One VNI's devices on this host."""

    vni: int
    bridge: int
    vxlan: int
    mtu: int


FdbKey = tuple[int, str]
"""(vni, mac)"""
NeighKey = tuple[int, str]
"""(vni, ip)"""


class OverlayError(RuntimeError):
    """The kernel refused part of an overlay change."""


class Overlay:
    """Bridges, VXLAN devices and remote-port entries in one host network namespace."""

    def __init__(self, local_ip: str, netns: str | None = None) -> None:
        self.local_ip = local_ip
        self.netns = netns
        self.routes = ThreadRoutes(netns)
        self.raw = RawNetlink(netns)
        self.segments: dict[int, Segment] = {}
        self.fdb: dict[FdbKey, str] = {}
        """(vni, mac) -> VTEP: both FDB entries are in the kernel."""
        self.neigh: dict[NeighKey, str] = {}
        """(vni, ip) -> MAC on the VXLAN device."""
        self._underlay: tuple[int, int] | None = None

    @property
    def ipr(self) -> Any:
        """The calling thread's IPRoute in the host namespace."""
        return self.routes.get()

    def close(self) -> None:
        self.routes.close()
        self.raw.close()

    # devices

    def ensure_segment(self, vni: int, mtu: int) -> Segment:
        """Make the VNI's bridge and VXLAN device exist and be right (idempotent)."""
        if not 0 < vni <= MAX_VNI:
            raise OverlayError(f"VNI {vni} is out of range 1..{MAX_VNI}")
        underlay, underlay_mtu = self._underlay_link()
        mtu = min(mtu, underlay_mtu - VXLAN_OVERHEAD)
        known = self.segments.get(vni)
        if known is not None and known.mtu == mtu:
            return known
        bridge = self._ensure_bridge(vni, mtu)
        vxlan, existed = self._ensure_vxlan(vni, mtu, underlay)
        self._ensure_port_of(vxlan, bridge, mtu, segment_alias(vni))
        self._ensure_up(bridge)
        segment = Segment(vni, bridge, vxlan, mtu)
        self.segments[vni] = segment
        if existed and known is None:
            self._load_entries(segment)
        return segment

    def remove_segment(self, vni: int) -> None:
        """Delete the VNI's devices (every entry on them goes too)."""
        self.segments.pop(vni, None)
        for name in (vxlan_name(vni), bridge_name(vni)):
            link = self._link(name)
            if link is not None and link_alias(link).startswith(OWNER):
                self._delete_link(link["index"])
        self._forget_entries({vni})

    def _underlay_link(self) -> tuple[int, int]:
        """(index, MTU) of the interface holding the local IP."""
        if self._underlay is None:
            for address in self.ipr.addr("dump"):
                if address.get_attr("IFA_ADDRESS") == self.local_ip:
                    link = self.ipr.link("get", index=address["index"])[0]
                    self._underlay = (address["index"], int(link.get_attr("IFLA_MTU")))
                    break
            else:
                raise OverlayError(f"no interface holds the local IP {self.local_ip}")
        return self._underlay

    def _link(self, name: str) -> Any | None:
        return get_link(self.ipr, name)

    def _delete_link(self, index: int) -> None:
        delete_link(self.ipr, index)

    def _ensure_bridge(self, vni: int, mtu: int) -> int:
        name = bridge_name(vni)
        link = self._link(name)
        if link is not None and link_kind(link) != "bridge":
            raise OverlayError(f"{name} exists and is not a bridge")
        if link is None:
            self.ipr.link("add", ifname=name, kind="bridge")
            link = self._link(name)
            assert link is not None
        changes: dict[str, Any] = {}
        if link_alias(link) != segment_alias(vni):
            changes["ifalias"] = segment_alias(vni)
        if link.get_attr("IFLA_MTU") != mtu:
            changes["mtu"] = mtu
        disable_ipv6(self.netns, name)
        if changes:
            self.ipr.link("set", index=link["index"], **changes)
        return int(link["index"])

    def _ensure_vxlan(self, vni: int, mtu: int, underlay: int) -> tuple[int, bool]:
        """The VXLAN device's index and whether it existed already (right as it was)."""
        name = vxlan_name(vni)
        link = self._link(name)
        if link is not None and not self._vxlan_is_right(link, vni, underlay):
            log.info("recreating %s: its VXLAN parameters are not the wanted ones", name)
            self._delete_link(link["index"])
            link = None
        if link is not None:
            return int(link["index"]), True
        self.ipr.link("add", ifname=name, kind="vxlan", vxlan_id=vni, vxlan_local=self.local_ip,
                      vxlan_link=underlay, vxlan_port=VXLAN_PORT, vxlan_learning=0,
                      vxlan_proxy=1, mtu=mtu)
        created = self._link(name)
        assert created is not None
        return int(created["index"]), False

    def _vxlan_is_right(self, link: Any, vni: int, underlay: int) -> bool:
        if link_kind(link) != "vxlan":
            return False
        data = link.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
        wanted = {"IFLA_VXLAN_ID": vni, "IFLA_VXLAN_LOCAL": self.local_ip,
                  "IFLA_VXLAN_PORT": VXLAN_PORT, "IFLA_VXLAN_LEARNING": 0,
                  "IFLA_VXLAN_PROXY": 1, "IFLA_VXLAN_LINK": underlay}
        return all(data.get_attr(key) == value for key, value in wanted.items())

    def _ensure_port_of(self, index: int, bridge: int, mtu: int, alias: str) -> None:
        """The VXLAN device: alias, MTU, enslaved to the bridge with learning off, up."""
        link = self.ipr.link("get", index=index)[0]
        changes: dict[str, Any] = {}
        if link_alias(link) != alias:
            changes["ifalias"] = alias
        if link.get_attr("IFLA_MTU") != mtu:
            changes["mtu"] = mtu
        if link.get_attr("IFLA_MASTER") != bridge:
            changes["master"] = bridge
        if changes:
            self.ipr.link("set", index=index, **changes)
            link = self.ipr.link("get", index=index)[0]
        if _brport_learning(link) != 0:
            self.ipr.brport("set", index=index, learning=0)
        disable_ipv6(self.netns, str(link.get_attr("IFLA_IFNAME")))
        self._ensure_up(index, link)

    def _ensure_up(self, index: int, link: Any | None = None) -> None:
        link = link if link is not None else self.ipr.link("get", index=index)[0]
        if not link["flags"] & 1:  # IFF_UP
            self.ipr.link("set", index=index, state="up")

    # entries

    def update(
        self,
        put_fdb: Mapping[FdbKey, str],
        put_neigh: Mapping[NeighKey, str],
        drop_fdb: Iterable[FdbKey] = (),
        drop_neigh: Iterable[NeighKey] = (),
    ) -> int:
        """Remove then write entries, skipping what the kernel already holds; returns the
        number of requests sent.  Segments named by puts must exist (``ensure_segment``)."""
        messages: list[NeighMessage] = []
        effects: list[tuple[str, Any, Any]] = []
        for key in drop_neigh:
            segment = self.segments.get(key[0])
            if key in self.neigh and segment is not None:
                messages.append(neigh(segment.vxlan, key[1], None, vxlan_name(key[0]), True))
                effects.append(("neigh", key, None))
        for key in drop_fdb:
            segment = self.segments.get(key[0])
            if key in self.fdb and segment is not None:
                name = vxlan_name(key[0])
                messages.append(fdb_master(segment.vxlan, key[1], name, True))
                effects.append(("-", key, None))
                messages.append(fdb_self(segment.vxlan, key[1], None, name, True))
                effects.append(("fdb", key, None))
        for key, vtep in put_fdb.items():
            if self.fdb.get(key) != vtep:
                segment = self._segment(key[0])
                name = vxlan_name(key[0])
                messages.append(fdb_self(segment.vxlan, key[1], vtep, name, False))
                effects.append(("-", key, None))
                messages.append(fdb_master(segment.vxlan, key[1], name, False))
                effects.append(("fdb", key, vtep))
        for key, mac in put_neigh.items():
            if self.neigh.get(key) != mac:
                segment = self._segment(key[0])
                messages.append(neigh(segment.vxlan, key[1], mac, vxlan_name(key[0]), False))
                effects.append(("neigh", key, mac))
        if messages:
            self._send(messages, effects)
        return len(messages)

    def _segment(self, vni: int) -> Segment:
        segment = self.segments.get(vni)
        if segment is None:
            raise OverlayError(f"VNI {vni} has no segment on this host")
        return segment

    def _send(self, messages: list[NeighMessage], effects: list[tuple[str, Any, Any]]) -> None:
        codes = self.raw.request(messages)
        failed: list[str] = []
        pair_ok = True
        for message, code, (table, key, value) in zip(messages, codes, effects, strict=True):
            ok = code == 0 or (message.kind == RTM_DELNEIGH and code == errno.ENOENT)
            if not ok:
                failed.append(f"{message.what}: {os.strerror(code)}")
            if table == "-":  # first half of an FDB pair: the second records both
                pair_ok = ok
                continue
            view = self.fdb if table == "fdb" else self.neigh
            if ok and pair_ok:
                if value is None:
                    view.pop(key, None)
                else:
                    view[key] = value
            elif value is not None:
                view.pop(key, None)  # half written: write it again next time
            pair_ok = True
        if failed:
            raise OverlayError("; ".join(failed))

    def _load_entries(self, segment: Segment) -> None:
        """Read the entries an existing VXLAN device holds into the view."""
        masters: set[str] = set()
        selves: dict[str, str] = {}
        for entry in self.raw.dump_neigh(socket.AF_BRIDGE, segment.vxlan):
            if entry.mac is None:
                continue
            if entry.master and entry.state & NUD_NOARP:
                masters.add(entry.mac)
            elif entry.dst:
                selves[entry.mac] = entry.dst
        for mac, vtep in selves.items():
            if mac in masters:
                self.fdb[(segment.vni, mac)] = vtep
        for entry in self._neigh_dump(segment.vxlan):
            if entry.state & NUD_PERMANENT and entry.mac and entry.dst:
                self.neigh[(segment.vni, entry.dst)] = entry.mac

    def _neigh_dump(self, ifindex: int) -> list[NeighEntry]:
        return (self.raw.dump_neigh(socket.AF_INET, ifindex)
                + self.raw.dump_neigh(socket.AF_INET6, ifindex))

    def _forget_entries(self, vnis: set[int]) -> None:
        self.fdb = {k: v for k, v in self.fdb.items() if k[0] not in vnis}
        self.neigh = {k: v for k, v in self.neigh.items() if k[0] not in vnis}

    # convergence

    def sweep(self, keep_vnis: set[int], keep_fdb: set[FdbKey], keep_neigh: set[NeighKey]) -> int:
        """Delete owned segments not in ``keep_vnis`` and, on kept ones, every entry not
        kept; returns how many devices and entries went."""
        removed = 0
        for link in self.ipr.link("dump"):
            alias = link_alias(link)
            if alias.startswith(f"{OWNER}vni:") and _alias_vni(alias) not in keep_vnis:
                self._delete_link(link["index"])
                removed += 1
        stale = {vni for vni in self.segments if vni not in keep_vnis}
        for vni in stale:
            del self.segments[vni]
        self._forget_entries(stale)
        for vni in keep_vnis & set(self.segments):
            removed += self._sweep_entries(self.segments[vni], keep_fdb, keep_neigh)
        return removed

    def _sweep_entries(self, segment: Segment, keep_fdb: set[FdbKey],
                       keep_neigh: set[NeighKey]) -> int:
        name = vxlan_name(segment.vni)
        messages: list[NeighMessage] = []
        for entry in self.raw.dump_neigh(socket.AF_BRIDGE, segment.vxlan):
            if entry.mac is None or (segment.vni, entry.mac) in keep_fdb:
                continue
            if entry.master:
                if entry.state & NUD_NOARP:
                    messages.append(fdb_master(segment.vxlan, entry.mac, name, True))
            elif entry.dst:
                messages.append(fdb_self(segment.vxlan, entry.mac, entry.dst, name, True))
        for entry in self._neigh_dump(segment.vxlan):
            if entry.dst and (segment.vni, entry.dst) not in keep_neigh:
                messages.append(neigh(segment.vxlan, entry.dst, None, name, True))
        codes = self.raw.request(messages)
        bad = [f"{m.what}: {os.strerror(c)}" for m, c in zip(messages, codes, strict=True)
               if c not in (0, errno.ENOENT)]
        self.fdb = {k: v for k, v in self.fdb.items() if k[0] != segment.vni or k in keep_fdb}
        self.neigh = {k: v for k, v in self.neigh.items()
                      if k[0] != segment.vni or k in keep_neigh}
        if bad:
            raise OverlayError("; ".join(bad))
        return len(messages)


def _alias_vni(alias: str) -> int:
    try:
        return int(alias.rsplit(":", 1)[1])
    except ValueError:
        return -1


def _brport_learning(link: Any) -> int | None:
    info = link.get_attr("IFLA_LINKINFO")
    slave = info.get_attr("IFLA_INFO_SLAVE_DATA") if info is not None else None
    return None if slave is None else slave.get_attr("IFLA_BRPORT_LEARNING")

"""The host's L2 overlay: per VNI a Linux bridge ``alcbr<vni>`` and a kernel VXLAN device
``alcvx<vni>`` (local = the host's underlay address, UDP 4789, learning off on the device and
on its bridge port, ARP/ND proxy on), and the remote ports behind the tunnel as static FDB
entries (bridge ``master static`` plus VXLAN ``self dst <vtep>``) and permanent neighbour
entries (IP -> MAC, answered locally by the VXLAN proxy, so nothing floods across the tunnel).

Also owns how the agent reaches a network namespace (``entered``: the calling thread alone
enters it while it opens sockets, so the agent never forks) and the raw rtnetlink channel
that writes neighbour-table entries: a remote port's entries go to the kernel in one datagram,
with no per-entry library overhead (10,000 neighbours must apply in about a second).

Ownership: both devices carry the ifalias ``alcor:vni:<vni>``; every FDB and neighbour entry
on an ``alcvx*`` device is the agent's.  ``sweep`` removes owned objects nobody asked for.
Devices are programmed with pyroute2 (cold path); the view of the entries (``fdb``,
``neigh``) is read back from the kernel when a segment already exists, so a restarted agent
re-applying its goal state writes nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import logging
import os
import socket
import struct
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute

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

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

# rtnetlink constants (linux/rtnetlink.h, linux/neighbour.h)
NETLINK_ROUTE = 0
RTM_NEWNEIGH = 28
RTM_DELNEIGH = 29
RTM_GETNEIGH = 30
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_DUMP = 0x300
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_REPLACE = 0x100
NLM_F_CREATE = 0x400
NDA_DST = 1
NDA_LLADDR = 2
NDA_MASTER = 9
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
NTF_MASTER = 0x04
_PUT = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
_DEL = NLM_F_REQUEST | NLM_F_ACK
_BATCH = 256
"""Messages per datagram (acks for one batch must fit the receive buffer)."""


def bridge_name(vni: int) -> str:
    return f"{BRIDGE_PREFIX}{vni}"


def vxlan_name(vni: int) -> str:
    return f"{VXLAN_PREFIX}{vni}"


def segment_alias(vni: int) -> str:
    return f"{OWNER}vni:{vni}"


def ns_path(netns: str) -> str:
    """A netns given by name lives under /run/netns; a path is used as it is."""
    return netns if "/" in netns else f"/run/netns/{netns}"


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns: {os.strerror(code)}")


@contextlib.contextmanager
def entered(netns: str | None) -> Iterator[None]:
    """Run the block with the calling thread in ``netns`` (None: stay where it is).  Sockets
    opened inside stay bound to that namespace after the block returns."""
    if netns is None:
        yield
        return
    target = os.open(ns_path(netns), os.O_RDONLY | os.O_CLOEXEC)
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(home)
    finally:
        os.close(target)


def open_iproute(netns: str | None) -> Any:
    """A pyroute2 IPRoute bound to ``netns`` (opened from inside it, without forking).  Use
    it from the thread that opened it only: pyroute2 0.9 opens a new socket, in the calling
    thread's namespace, for every other thread that uses it."""
    with entered(netns):
        return IPRoute()


class ThreadRoutes:
    """One IPRoute per calling thread, each bound to ``netns`` (the agent applies goal
    states on whichever worker thread asyncio lends it)."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        self._local = threading.local()
        self._opened: list[Any] = []
        self._lock = threading.Lock()

    def get(self) -> Any:
        ipr = getattr(self._local, "ipr", None)
        if ipr is None:
            ipr = open_iproute(self.netns)
            self._local.ipr = ipr
            with self._lock:
                self._opened.append(ipr)
        return ipr

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for ipr in opened:
            with contextlib.suppress(Exception):
                ipr.close()


def link_alias(link: Any) -> str:
    return str(link.get_attr("IFLA_IFALIAS") or "")


def disable_ipv6(netns: str | None, name: str) -> None:
    """Turn IPv6 off on a device of the agent's (before it goes up): its bridges, VXLAN
    devices and taps are pure L2 and must not speak (RS, MLD, link-local) into the tenant's
    network, as Neutron's Linux bridge agent does for its bridges."""
    with entered(netns), open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "r+") as f:
        if f.read().strip() != "1":
            f.seek(0)
            f.write("1")


def link_kind(link: Any) -> str:
    info = link.get_attr("IFLA_LINKINFO")
    return str(info.get_attr("IFLA_INFO_KIND") or "") if info is not None else ""


# --- raw rtnetlink: neighbour-table writes in one datagram -------------------------------------


def _rtattr(kind: int, data: bytes) -> bytes:
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * (-length % 4)


def _mac(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def _ip(address: str) -> tuple[int, bytes]:
    ip = ipaddress.ip_address(address)
    return (socket.AF_INET if ip.version == 4 else socket.AF_INET6), ip.packed


@dataclass(frozen=True, slots=True)
class NeighMessage:
    """One RTM_NEWNEIGH / RTM_DELNEIGH request (an FDB entry when ``family`` is AF_BRIDGE)."""

    kind: int
    flags: int
    family: int
    ifindex: int
    state: int
    ntf: int
    attrs: bytes
    what: str
    """Human words for an error message, e.g. "fdb 02:..:01 on alcvx100"."""

    def encode(self, seq: int) -> bytes:
        body = struct.pack("=BBHiHBB", self.family, 0, 0, self.ifindex, self.state, self.ntf, 0)
        body += self.attrs
        return struct.pack("=IHHII", 16 + len(body), self.kind, self.flags, seq, 0) + body


def fdb_self(ifindex: int, mac: str, vtep: str | None, name: str, delete: bool) -> NeighMessage:
    """The VXLAN device's own FDB entry MAC -> remote VTEP (``bridge fdb ... self dst``)."""
    attrs = _rtattr(NDA_LLADDR, _mac(mac))
    if vtep is not None:
        attrs += _rtattr(NDA_DST, _ip(vtep)[1])
    return NeighMessage(RTM_DELNEIGH if delete else RTM_NEWNEIGH, _DEL if delete else _PUT,
                        socket.AF_BRIDGE, ifindex, NUD_PERMANENT, NTF_SELF, attrs,
                        f"vxlan fdb {mac} on {name}")


def fdb_master(ifindex: int, mac: str, name: str, delete: bool) -> NeighMessage:
    """The bridge's static FDB entry: MAC is behind the VXLAN port (``master static``)."""
    return NeighMessage(RTM_DELNEIGH if delete else RTM_NEWNEIGH, _DEL if delete else _PUT,
                        socket.AF_BRIDGE, ifindex, NUD_NOARP, NTF_MASTER,
                        _rtattr(NDA_LLADDR, _mac(mac)), f"bridge fdb {mac} on {name}")


def neigh(ifindex: int, ip: str, mac: str | None, name: str, delete: bool) -> NeighMessage:
    """A permanent neighbour IP -> MAC on the VXLAN device (its ARP/ND proxy answers it)."""
    family, packed = _ip(ip)
    attrs = _rtattr(NDA_DST, packed)
    if mac is not None:
        attrs += _rtattr(NDA_LLADDR, _mac(mac))
    return NeighMessage(RTM_DELNEIGH if delete else RTM_NEWNEIGH, _DEL if delete else _PUT,
                        family, ifindex, NUD_PERMANENT, 0, attrs, f"neighbour {ip} on {name}")


@dataclass(frozen=True, slots=True)
class NeighEntry:
    """One entry of a neighbour-table dump (an FDB entry when ``family`` is AF_BRIDGE)."""

    family: int
    ifindex: int
    state: int
    ntf: int
    mac: str | None
    dst: str | None
    master: int | None


def _decode_neigh(data: bytes, offset: int, length: int) -> NeighEntry:
    family, _, _, ifindex, state, ntf, _ = struct.unpack_from("=BBHiHBB", data, offset + 16)
    mac = dst = None
    master = None
    at, end = offset + 28, offset + length
    while at + 4 <= end:
        attr_len, attr_type = struct.unpack_from("=HH", data, at)
        if attr_len < 4:
            break
        value = data[at + 4:at + attr_len]
        if attr_type == NDA_LLADDR and len(value) == 6:
            mac = value.hex(":")
        elif attr_type == NDA_DST and len(value) in (4, 16):
            dst = str(ipaddress.ip_address(value))
        elif attr_type == NDA_MASTER:
            master = struct.unpack("=I", value[:4])[0]
        at += (attr_len + 3) & ~3
    return NeighEntry(family, ifindex, state, ntf, mac, dst, master)


class RawNetlink:
    """A NETLINK_ROUTE socket sending batches of requests and reading one ack per request,
    and dumping neighbour tables (pyroute2 takes seconds to parse 10,000 entries)."""

    def __init__(self, netns: str | None) -> None:
        with entered(netns):
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def request(self, messages: list[NeighMessage]) -> list[int]:
        """Send ``messages`` and return each one's errno (0: done), in order."""
        results: list[int] = []
        for start in range(0, len(messages), _BATCH):
            results += self._batch(messages[start:start + _BATCH])
        return results

    def _batch(self, messages: list[NeighMessage]) -> list[int]:
        first = self.seq + 1
        self.seq += len(messages)
        self.sock.send(b"".join(m.encode(first + i) for i, m in enumerate(messages)))
        codes: dict[int, int] = {}
        while len(codes) < len(messages):
            data = self.sock.recv(1 << 16)
            offset = 0
            while offset + 16 <= len(data):
                length, kind, _, seq, _ = struct.unpack_from("=IHHII", data, offset)
                if kind == NLMSG_ERROR and first <= seq < first + len(messages):
                    codes[seq] = -struct.unpack_from("=i", data, offset + 16)[0]
                offset += (length + 3) & ~3
                if length == 0:
                    break
        return [codes[first + i] for i in range(len(messages))]

    def dump_neigh(self, family: int, ifindex: int) -> list[NeighEntry]:
        """The entries of one family's neighbour table (AF_BRIDGE: the FDB) on ``ifindex``."""
        self.seq += 1
        seq = self.seq
        body = struct.pack("=BBHiHBB", family, 0, 0, 0, 0, 0, 0)
        self.sock.send(struct.pack("=IHHII", 16 + len(body), RTM_GETNEIGH,
                                   NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body)
        found: list[NeighEntry] = []
        while True:
            data = self.sock.recv(1 << 20)
            offset = 0
            while offset + 16 <= len(data):
                length, kind, _, got, _ = struct.unpack_from("=IHHII", data, offset)
                if length < 16:
                    break
                if got == seq:
                    if kind == NLMSG_DONE:
                        return found
                    if kind == NLMSG_ERROR:
                        code = -struct.unpack_from("=i", data, offset + 16)[0]
                        raise OSError(code, f"neighbour dump: {os.strerror(code)}")
                    if kind == RTM_NEWNEIGH:
                        entry = _decode_neigh(data, offset, length)
                        if entry.ifindex == ifindex:
                            found.append(entry)
                offset += (length + 3) & ~3


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
        try:
            return self.ipr.link("get", ifname=name)[0]
        except Exception as exc:  # pyroute2 raises NetlinkError(19) for "no such device"
            if getattr(exc, "code", None) == errno.ENODEV:
                return None
            raise

    def _delete_link(self, index: int) -> None:
        try:
            self.ipr.link("del", index=index)
        except Exception as exc:
            if getattr(exc, "code", None) != errno.ENODEV:
                raise

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

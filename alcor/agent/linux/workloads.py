"""Local ports: the interface a workload's traffic enters the host by, on its VNI's bridge.

- With ``network_ns`` (upstream's CNI flow): a veth pair whose host end ``tap<port_id[:11]>``
  (Nova's 14-character convention) is created by the agent, owned (ifalias
  ``alcor:port:<port_id>``) and enslaved to ``alcbr<vni>``; the workload end is created inside
  the workload's namespace (a name under /run/netns or a path such as /proc/<pid>/ns/net) as
  ``veth_name`` with the port's MAC, MTU, addresses (with the subnet prefix), default route
  via the subnet gateway and host routes; ``lo`` is brought up.  Removing the port deletes the
  host end, which takes the workload end with it.
- Without it (Nova's flow): the hypervisor creates ``tap<port_id[:11]>``; the agent attaches
  it to the bridge (MTU, up) now if it exists, else when a netlink link event announces it (a
  watcher thread with its own rtnetlink socket), and again whenever it reappears.  Such a tap
  is not the agent's: removing the port detaches it, never deletes it.

Every change compares with what the kernel holds first, so applying a port twice changes
nothing.  ``sweep`` deletes owned taps of ports nobody asked for and detaches foreign
interfaces from the agent's bridges.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import select
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from alcor.agent.linux.namespaces import (
    delete_link,
    disable_ipv6,
    entered,
    get_link,
    link_alias,
    link_kind,
    ns_path,
    open_iproute,
)
from alcor.agent.linux.overlay import BRIDGE_PREFIX, OWNER, Overlay
from alcor.agent.linux.rtnetlink import NETLINK_ROUTE

log = logging.getLogger(__name__)

TAP_PREFIX = "tap"
PORT_ALIAS = f"{OWNER}port:"
DEFAULT_VETH = "eth0"
RTMGRP_LINK = 1
RTM_NEWLINK = 16
IFLA_IFNAME = 3
IFF_UP = 1
IFA_F_NODAD = 0x02
RT_SCOPE_UNIVERSE = 0


def tap_name(port_id: str) -> str:
    """Nova's host interface name for a port: "tap" + the first 11 characters of its id."""
    return f"{TAP_PREFIX}{port_id[:11]}"


def port_alias(port_id: str) -> str:
    return f"{PORT_ALIAS}{port_id}"


@dataclass(frozen=True, slots=True)
class LocalPort:
    """What one local port needs from the kernel."""

    port_id: str
    mac: str
    vni: int
    mtu: int
    up: bool = True
    network_ns: str = ""
    """"" : attach an existing tap; otherwise the workload's namespace (name or path)."""
    veth_name: str = DEFAULT_VETH
    addresses: tuple[tuple[str, int], ...] = ()
    """(address, prefix length) for the workload end."""
    gateways: tuple[str, ...] = ()
    """Default-route next hops (at most one per IP version)."""
    routes: tuple[tuple[str, str], ...] = ()
    """Host routes (destination CIDR, next hop)."""

    @property
    def tap(self) -> str:
        return tap_name(self.port_id)


class WorkloadError(RuntimeError):
    """A local port cannot be plugged as asked."""


class Workloads:
    """Local ports of one host namespace; ``netns`` None means the agent's own."""

    def __init__(self, overlay: Overlay, netns: str | None = None,
                 on_attached: Callable[[LocalPort], None] | None = None) -> None:
        self.overlay = overlay
        self.netns = netns
        self.on_attached = on_attached
        self.ports: dict[str, LocalPort] = {}
        self._lock = threading.Lock()
        self._watcher: _LinkWatcher | None = None

    @property
    def ipr(self) -> Any:
        return self.overlay.ipr

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None

    # plug / unplug

    def plug(self, port: LocalPort) -> str:
        """Make the port's interface exist and be right; returns the host interface name."""
        previous = self.ports.get(port.port_id)
        if previous is not None and _moved(previous, port):
            self.unplug(port.port_id)
        if port.network_ns:
            self._plug_veth(port)
            with self._lock:
                self.ports[port.port_id] = port
        else:
            self._watch()
            with self._lock:
                self.ports[port.port_id] = port
                self._attach(self.ipr, port)
        return port.tap

    def unplug(self, port_id: str) -> None:
        with self._lock:
            port = self.ports.pop(port_id, None)
        tap = tap_name(port_id)
        link = get_link(self.ipr, tap)
        if link is None:
            return
        if link_alias(link) == port_alias(port_id):
            delete_link(self.ipr, link["index"])
        elif port is None or not port.network_ns:
            self._detach(link)

    def _detach(self, link: Any) -> None:
        master = link.get_attr("IFLA_MASTER")
        if master and master in {s.bridge for s in self.overlay.segments.values()}:
            self.ipr.link("set", index=link["index"], master=0)

    # the veth flow

    def _plug_veth(self, port: LocalPort) -> None:
        bridge = self.overlay.segments[port.vni].bridge
        link = get_link(self.ipr, port.tap)
        if link is not None and link_alias(link) != port_alias(port.port_id):
            raise WorkloadError(f"{port.tap} exists and is not Alcor's veth for this port")
        workload = open_iproute(port.network_ns)
        try:
            inner = get_link(workload, port.veth_name)
            if link is not None and (inner is None or link_kind(inner) != "veth"):
                delete_link(self.ipr, link["index"])  # its peer is gone: the netns changed
                link = None
            if link is None:
                if inner is not None:
                    raise WorkloadError(
                        f"{port.network_ns} already has an interface {port.veth_name}")
                self._create_pair(port)
            link = get_link(self.ipr, port.tap)
            assert link is not None
            self._converge_host_end(port, link, bridge, alias=port_alias(port.port_id))
            _configure_workload(workload, port)
        finally:
            workload.close()

    def _create_pair(self, port: LocalPort) -> None:
        fd = os.open(ns_path(port.network_ns), os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.ipr.link("add", ifname=port.tap, kind="veth", mtu=port.mtu,
                          peer={"ifname": port.veth_name, "net_ns_fd": fd,
                                "address": port.mac, "mtu": port.mtu})
        finally:
            os.close(fd)

    def _converge_host_end(self, port: LocalPort, link: Any, bridge: int,
                           alias: str | None) -> None:
        disable_ipv6(self.netns, port.tap)
        changes: dict[str, Any] = {}
        if alias is not None and link_alias(link) != alias:
            changes["ifalias"] = alias
        if link.get_attr("IFLA_MTU") != port.mtu:
            changes["mtu"] = port.mtu
        if link.get_attr("IFLA_MASTER") != bridge:
            changes["master"] = bridge
        if bool(link["flags"] & IFF_UP) != port.up:
            changes["state"] = "up" if port.up else "down"
        if changes:
            self.ipr.link("set", index=link["index"], **changes)

    # the Nova flow

    def _attach(self, ipr: Any, port: LocalPort) -> bool:
        """Attach an existing foreign tap (caller holds the lock); False if it is absent."""
        link = get_link(ipr, port.tap)
        segment = self.overlay.segments.get(port.vni)
        if link is None or segment is None:
            return False
        changes: dict[str, Any] = {}
        if link.get_attr("IFLA_MTU") != port.mtu:
            changes["mtu"] = port.mtu
        if link.get_attr("IFLA_MASTER") != segment.bridge:
            changes["master"] = segment.bridge
        if bool(link["flags"] & IFF_UP) != port.up:
            changes["state"] = "up" if port.up else "down"
        if changes:
            ipr.link("set", index=link["index"], **changes)
            log.info("attached %s to %s", port.tap, segment.vni)
            if self.on_attached is not None:
                self.on_attached(port)
        return True

    def _watch(self) -> None:
        if self._watcher is None:
            self._watcher = _LinkWatcher(self.netns, self._appeared)
            self._watcher.start()
            self._watcher.ready.wait()

    def _appeared(self, ipr: Any, name: str | None) -> None:
        """A link called ``name`` changed (None: events were lost, check every tap)."""
        with self._lock:
            for port in self.ports.values():
                if not port.network_ns and (name is None or port.tap == name):
                    self._attach(ipr, port)

    # convergence

    def sweep(self, keep: set[str]) -> int:
        """Delete owned taps of ports not in ``keep``; detach every other interface on an
        owned bridge that is neither a VXLAN device nor a kept port's tap."""
        removed = 0
        links = self.ipr.link("dump")
        bridges = {link["index"] for link in links
                   if str(link.get_attr("IFLA_IFNAME")).startswith(BRIDGE_PREFIX)
                   and link_alias(link).startswith(OWNER)}
        kept_taps = {tap_name(port_id) for port_id in keep}
        for link in links:
            alias = link_alias(link)
            if alias.startswith(PORT_ALIAS) and alias[len(PORT_ALIAS):] not in keep:
                delete_link(self.ipr, link["index"])
                removed += 1
            elif (link.get_attr("IFLA_MASTER") in bridges and not alias.startswith(OWNER)
                  and link.get_attr("IFLA_IFNAME") not in kept_taps):
                self.ipr.link("set", index=link["index"], master=0)
                removed += 1
        with self._lock:
            for port_id in set(self.ports) - keep:
                del self.ports[port_id]
        return removed


def _moved(old: LocalPort, new: LocalPort) -> bool:
    """Whether the port's interface must be rebuilt rather than adjusted."""
    return (old.network_ns, old.veth_name) != (new.network_ns, new.veth_name)




def _configure_workload(ipr: Any, port: LocalPort) -> None:
    """The workload end: lo up; MAC, MTU, up; addresses; default route(s); host routes."""
    lo = get_link(ipr, "lo")
    if lo is not None and not lo["flags"] & IFF_UP:
        ipr.link("set", index=lo["index"], state="up")
    link = get_link(ipr, port.veth_name)
    if link is None:
        raise WorkloadError(f"{port.network_ns} has no interface {port.veth_name}")
    index = link["index"]
    changes: dict[str, Any] = {}
    if str(link.get_attr("IFLA_ADDRESS")).lower() != port.mac:
        changes["address"] = port.mac
    if link.get_attr("IFLA_MTU") != port.mtu:
        changes["mtu"] = port.mtu
    if not link["flags"] & IFF_UP:
        changes["state"] = "up"
    if changes:
        ipr.link("set", index=index, **changes)
    _converge_addresses(ipr, index, port.addresses)
    _converge_routes(ipr, index, port)


def _converge_addresses(ipr: Any, index: int, wanted: tuple[tuple[str, int], ...]) -> None:
    have = {(str(a.get_attr("IFA_ADDRESS")), int(a["prefixlen"])): a
            for a in ipr.addr("dump", index=index) if a["index"] == index
            and a["scope"] == RT_SCOPE_UNIVERSE}
    want = {(str(ipaddress.ip_address(ip)), plen) for ip, plen in wanted}
    for key in have.keys() - want:
        ipr.addr("del", index=index, address=key[0], prefixlen=key[1])
    for address, prefixlen in sorted(want - have.keys()):
        ipr.addr("add", index=index, address=address, prefixlen=prefixlen,
                 flags=IFA_F_NODAD if ":" in address else 0)


def _converge_routes(ipr: Any, index: int, port: LocalPort) -> None:
    """Gateway routes through the interface: destination CIDR -> next hop."""
    wanted: dict[str, str] = {}
    for gateway in port.gateways:
        default = "0.0.0.0/0" if ipaddress.ip_address(gateway).version == 4 else "::/0"
        wanted.setdefault(default, gateway)
    for destination, nexthop in port.routes:
        wanted.setdefault(str(ipaddress.ip_network(destination, strict=False)), nexthop)
    have: dict[str, str] = {}
    for family, default in ((socket.AF_INET, "0.0.0.0/0"), (socket.AF_INET6, "::/0")):
        for route in ipr.route("dump", family=family, table=254):
            gateway = route.get_attr("RTA_GATEWAY")
            if gateway and route.get_attr("RTA_OIF") == index:
                dst = route.get_attr("RTA_DST")
                have[default if dst is None else f"{dst}/{route['dst_len']}"] = str(gateway)
    for dst, gateway in sorted(wanted.items()):
        if have.get(dst) != gateway:
            ipr.route("replace", dst=dst, gateway=gateway, oif=index)
    for dst in have.keys() - wanted.keys():
        ipr.route("del", dst=dst, gateway=have[dst], oif=index)


class _LinkWatcher(threading.Thread):
    """Calls ``appeared(ipr, ifname)`` for every RTM_NEWLINK in the host namespace, from its
    own thread with its own sockets (``appeared(ipr, None)`` when events were lost)."""

    def __init__(self, netns: str | None,
                 appeared: Callable[[Any, str | None], None]) -> None:
        super().__init__(name="alcor-link-watcher", daemon=True)
        self.netns = netns
        self.appeared = appeared
        self.ready = threading.Event()
        self._wake_r, self._wake_w = os.pipe()

    def stop(self) -> None:
        os.write(self._wake_w, b"x")
        self.join(timeout=5)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def run(self) -> None:
        with entered(self.netns):
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((0, RTMGRP_LINK))
        ipr = open_iproute(self.netns)
        self.ready.set()
        try:
            while True:
                readable, _, _ = select.select([sock.fileno(), self._wake_r], [], [])
                if self._wake_r in readable:
                    return
                names: list[str | None]
                try:
                    names = list(_new_link_names(sock.recv(1 << 16)))
                except OSError as exc:  # ENOBUFS: events were lost, look at every tap
                    log.warning("link watcher: %s", exc)
                    names = [None]
                for name in names:
                    try:
                        self.appeared(ipr, name)
                    except Exception:
                        log.exception("attaching %s failed", name)
        finally:
            sock.close()
            ipr.close()


def _new_link_names(data: bytes) -> list[str]:
    """The interface names of the RTM_NEWLINK messages in one datagram."""
    names = []
    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if length < 16:
            break
        if kind == RTM_NEWLINK:
            at = offset + 32  # nlmsghdr (16) + ifinfomsg (16)
            end = offset + length
            while at + 4 <= end:
                attr_len, attr_type = struct.unpack_from("=HH", data, at)
                if attr_len < 4:
                    break
                if attr_type == IFLA_IFNAME:
                    names.append(data[at + 4:at + attr_len].rstrip(b"\0").decode())
                    break
                at += (attr_len + 3) & ~3
        offset += (length + 3) & ~3
    return names

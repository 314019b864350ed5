"""How the agent reaches a network namespace and reads links: ``entered`` puts the calling
thread alone into a namespace while it opens sockets (the agent never forks), ``open_iproute``
/ ``ThreadRoutes`` give pyroute2 sockets bound to one, and small readers of link attributes."""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Iterator
from typing import Any

from pyroute2 import IPRoute

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


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


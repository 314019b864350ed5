"""How the agent reaches a network namespace and reads links: ``entered`` puts the calling
thread alone into a namespace while it opens sockets (the agent never forks), ``open_iproute``
/ ``ThreadRoutes`` give pyroute2 sockets bound to one, ``create_netns`` / ``remove_netns``
make and delete named namespaces the way ``ip netns`` does (from the calling thread, without
forking), and small readers of link attributes and sysctls."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import threading
from collections.abc import Iterator
from typing import Any

from pyroute2 import IPRoute

_CLONE_NEWNET = 0x40000000
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_SHARED = 1 << 20
_MNT_DETACH = 2
NETNS_DIR = "/run/netns"
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


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def netns_inode(netns: str | None) -> int:
    """The inode of a network namespace (None: the calling thread's): unique among the
    namespaces alive, and the same for as long as the namespace lives."""
    if netns is not None:
        return os.stat(ns_path(netns)).st_ino
    return os.stat("/proc/thread-self/ns/net").st_ino


def is_netns(netns: str) -> bool:
    """Whether ``netns`` names a live network namespace (not an empty mount point left by a
    failed or half-done removal)."""
    try:
        found = os.stat(ns_path(netns))
    except OSError:
        return False
    return found.st_dev == os.stat("/proc/thread-self/ns/net").st_dev


def netns_names() -> list[str]:
    """The names under /run/netns."""
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def _share_netns_dir() -> None:
    """/run/netns as a shared mount, as ``ip netns add`` leaves it, so a namespace bound there
    is seen from every mount namespace that shares it."""
    os.makedirs(NETNS_DIR, exist_ok=True)
    directory = NETNS_DIR.encode()
    if _libc.mount(b"", directory, b"none", _MS_SHARED | _MS_REC, None) == 0:
        return
    _check(_libc.mount(directory, directory, b"none", _MS_BIND | _MS_REC, None),
           f"bind-mounting {NETNS_DIR}")
    _check(_libc.mount(b"", directory, b"none", _MS_SHARED | _MS_REC, None),
           f"sharing {NETNS_DIR}")


def create_netns(name: str) -> None:
    """Create the named network namespace (``ip netns add``): the calling thread unshares its
    network namespace, binds it under /run/netns and goes back home."""
    _share_netns_dir()
    path = ns_path(name)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check(_libc.unshare(_CLONE_NEWNET), "unshare")
            try:
                _check(_libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none",
                                   _MS_BIND, None), f"binding {path}")
            finally:
                _setns(home)
        finally:
            os.close(home)
    except BaseException:
        os.unlink(path)
        raise


def remove_netns(name: str) -> None:
    """Delete the named network namespace (``ip netns del``); its devices go once nothing
    else holds it (the kernel frees them asynchronously)."""
    path = ns_path(name)
    _libc.umount2(path.encode(), _MNT_DETACH)  # fails harmlessly if it is not mounted
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def write_sysctl(netns: str | None, name: str, value: str) -> None:
    """Set /proc/sys/``name`` in ``netns`` unless it already holds ``value``."""
    with entered(netns), open(f"/proc/sys/{name}", "r+") as f:
        if f.read().strip() != value:
            f.seek(0)
            f.write(value)


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



def get_link(ipr: Any, name: str) -> Any | None:
    """The link called ``name`` on the pyroute2 socket ``ipr``, or None if there is none."""
    try:
        return ipr.link("get", ifname=name)[0]
    except Exception as exc:  # pyroute2 raises NetlinkError(19) for "no such device"
        if getattr(exc, "code", None) == errno.ENODEV:
            return None
        raise


def delete_link(ipr: Any, index: int) -> None:
    """Delete the link ``index``; one already gone is fine."""
    try:
        ipr.link("del", index=index)
    except Exception as exc:
        if getattr(exc, "code", None) != errno.ENODEV:
            raise

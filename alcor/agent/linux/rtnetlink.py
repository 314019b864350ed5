"""A raw NETLINK_ROUTE channel for neighbour-table entries (FDB and ARP/ND): a remote port's
entries go to the kernel in one datagram and tables are dumped without per-entry library
overhead (pyroute2 takes seconds for 10,000 entries; 10,000 neighbours must apply in about
a second)."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

from alcor.agent.linux.namespaces import entered

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


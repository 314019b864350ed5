"""The DHCPv4 wire codec of the in-agent responder: parse a DHCP message out of an Ethernet frame
(Ethernet / IPv4 / UDP / BOOTP + options), encode one back into a frame with correct IPv4 and
UDP checksums, build the server's replies (OFFER, ACK, NAK) from a ``Lease``, the RFC 3442
classless-static-route encoding, and the classic BPF program that lets a packet socket see only
frames bound for the DHCP server port.  Pure: no sockets, no I/O."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from alcor.agent.linux.lease import Lease

BOOTREQUEST = 1
BOOTREPLY = 2

DISCOVER = 1
OFFER = 2
REQUEST = 3
DECLINE = 4
ACK = 5
NAK = 6
RELEASE = 7
INFORM = 8

SERVER_PORT = 67
CLIENT_PORT = 68
BROADCAST_FLAG = 0x8000
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
BROADCAST_IP = "255.255.255.255"

OPT_PAD = 0
OPT_SUBNET_MASK = 1
OPT_ROUTER = 3
OPT_DNS = 6
OPT_HOSTNAME = 12
OPT_DOMAIN = 15
OPT_MTU = 26
OPT_REQUESTED_IP = 50
OPT_LEASE_TIME = 51
OPT_MESSAGE_TYPE = 53
OPT_SERVER_ID = 54
OPT_PARAMETER_REQUEST = 55
OPT_MESSAGE = 56
OPT_RENEWAL_TIME = 58
OPT_REBINDING_TIME = 59
OPT_CLIENT_ID = 61
OPT_CLASSLESS_ROUTES = 121
OPT_MS_CLASSLESS_ROUTES = 249
OPT_END = 255

ETH_P_IP = 0x0800
IPPROTO_UDP = 17
MAGIC_COOKIE = b"\x63\x82\x53\x63"
ETH_HEADER = 14
IP_HEADER = 20
UDP_HEADER = 8
BOOTP_FIXED = 236  # op .. file, before the magic cookie
BOOTP_MIN = 300  # RFC 951 minimum; some old clients drop shorter replies
DEFAULT_TTL = 64

_BOOTP = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")


class MalformedPacket(ValueError):
    """The frame is not a well-formed DHCP message over Ethernet/IPv4/UDP."""


@dataclass(frozen=True)
class DhcpMessage:
    """One DHCP message with the headers it travelled in.  Addresses are strings (MACs lower
    case, colon-separated); ``options`` maps option code to its (RFC 3396 concatenated) value
    and keeps the order the options are (to be) encoded in."""

    src_mac: str
    dst_mac: str
    src_ip: str
    dst_ip: str
    op: int
    xid: int
    chaddr: str
    options: Mapping[int, bytes] = field(default_factory=dict)
    src_port: int = CLIENT_PORT
    dst_port: int = SERVER_PORT
    flags: int = 0
    secs: int = 0
    hops: int = 0
    ciaddr: str = "0.0.0.0"
    yiaddr: str = "0.0.0.0"
    siaddr: str = "0.0.0.0"
    giaddr: str = "0.0.0.0"
    ttl: int = DEFAULT_TTL

    @property
    def message_type(self) -> int | None:
        value = self.options.get(OPT_MESSAGE_TYPE)
        return value[0] if value is not None and len(value) == 1 else None

    @property
    def requested_ip(self) -> str | None:
        return _option_ip(self.options.get(OPT_REQUESTED_IP))

    @property
    def server_id(self) -> str | None:
        return _option_ip(self.options.get(OPT_SERVER_ID))

    @property
    def parameter_requests(self) -> tuple[int, ...]:
        return tuple(self.options.get(OPT_PARAMETER_REQUEST, b""))

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & BROADCAST_FLAG)


def _option_ip(value: bytes | None) -> str | None:
    if value is None or len(value) != 4:
        return None
    return str(ipaddress.IPv4Address(value))


# ---------------------------------------------------------------------------------------------
# Parsing


def parse_frame(frame: bytes) -> DhcpMessage:
    """Parse an Ethernet frame carrying a DHCP message; raise ``MalformedPacket`` otherwise.
    The IPv4 header checksum is verified; the UDP checksum is not (frames captured before the
    sender's NIC may carry a partial, offloaded checksum)."""
    if len(frame) < ETH_HEADER + IP_HEADER + UDP_HEADER:
        raise MalformedPacket("frame too short")
    dst_mac, src_mac = _mac(frame[0:6]), _mac(frame[6:12])
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    if ethertype != ETH_P_IP:
        raise MalformedPacket(f"ethertype {ethertype:#06x} is not IPv4")
    udp_start, ip_end, src_ip, dst_ip, ttl = _parse_ipv4(frame, ETH_HEADER)
    src_port, dst_port, payload = _parse_udp(frame[:ip_end], udp_start)
    return replace(
        _parse_bootp(payload),
        src_mac=src_mac,
        dst_mac=dst_mac,
        src_ip=src_ip,
        dst_ip=dst_ip,
        src_port=src_port,
        dst_port=dst_port,
        ttl=ttl,
    )


def _parse_ipv4(frame: bytes, start: int) -> tuple[int, int, str, str, int]:
    """(UDP start, IP packet end, source, destination, TTL) of the IPv4 header at start."""
    version_ihl, _, total_length, _, fragment, ttl, protocol = struct.unpack_from(
        "!BBHHHBB", frame, start
    )
    header_length = (version_ihl & 0x0F) * 4
    if version_ihl >> 4 != 4 or header_length < IP_HEADER:
        raise MalformedPacket("not an IPv4 header")
    end = start + total_length
    if total_length < header_length + UDP_HEADER or end > len(frame):
        raise MalformedPacket("bad IPv4 total length")
    if fragment & 0x3FFF:
        raise MalformedPacket("IPv4 fragment")
    if protocol != IPPROTO_UDP:
        raise MalformedPacket(f"IP protocol {protocol} is not UDP")
    if internet_checksum(frame[start : start + header_length]) != 0:
        raise MalformedPacket("bad IPv4 header checksum")
    src = str(ipaddress.IPv4Address(frame[start + 12 : start + 16]))
    dst = str(ipaddress.IPv4Address(frame[start + 16 : start + 20]))
    return start + header_length, end, src, dst, ttl


def _parse_udp(frame: bytes, start: int) -> tuple[int, int, bytes]:
    if start + UDP_HEADER > len(frame):
        raise MalformedPacket("truncated UDP header")
    src_port, dst_port, length, _ = struct.unpack_from("!HHHH", frame, start)
    if length < UDP_HEADER or start + length > len(frame):
        raise MalformedPacket("bad UDP length")
    if {src_port, dst_port} - {SERVER_PORT, CLIENT_PORT}:
        raise MalformedPacket(f"UDP ports {src_port}->{dst_port} are not DHCP's")
    return src_port, dst_port, frame[start + UDP_HEADER : start + length]


def _parse_bootp(payload: bytes) -> DhcpMessage:
    """The BOOTP/DHCP part; the caller fills in the Ethernet, IP and UDP addressing."""
    if len(payload) < BOOTP_FIXED + len(MAGIC_COOKIE):
        raise MalformedPacket("BOOTP message too short")
    op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, _, _ = (
        _BOOTP.unpack_from(payload)
    )
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise MalformedPacket(f"BOOTP op {op}")
    if htype != 1 or hlen != 6:
        raise MalformedPacket("hardware address is not Ethernet")
    if payload[BOOTP_FIXED : BOOTP_FIXED + 4] != MAGIC_COOKIE:
        raise MalformedPacket("no DHCP magic cookie")
    options = parse_options(payload[BOOTP_FIXED + 4 :])
    if OPT_MESSAGE_TYPE not in options:
        raise MalformedPacket("no DHCP message type (plain BOOTP)")
    return DhcpMessage(
        src_mac="",
        dst_mac="",
        src_ip="",
        dst_ip="",
        op=op,
        hops=hops,
        xid=xid,
        secs=secs,
        flags=flags,
        ciaddr=str(ipaddress.IPv4Address(ciaddr)),
        yiaddr=str(ipaddress.IPv4Address(yiaddr)),
        siaddr=str(ipaddress.IPv4Address(siaddr)),
        giaddr=str(ipaddress.IPv4Address(giaddr)),
        chaddr=_mac(chaddr[:6]),
        options=options,
    )


def parse_options(data: bytes) -> dict[int, bytes]:
    """Decode the options area.  Repeated codes are concatenated (RFC 3396); a missing END is
    tolerated when the data ends on an option boundary; a truncated option is malformed."""
    options: dict[int, bytes] = {}
    index = 0
    while index < len(data):
        code = data[index]
        if code == OPT_END:
            return options
        if code == OPT_PAD:
            index += 1
            continue
        if index + 2 > len(data):
            raise MalformedPacket(f"option {code} has no length")
        length = data[index + 1]
        value = data[index + 2 : index + 2 + length]
        if len(value) != length:
            raise MalformedPacket(f"option {code} is truncated")
        options[code] = options.get(code, b"") + value
        index += 2 + length
    return options


def _mac(raw: bytes) -> str:
    return ":".join(f"{byte:02x}" for byte in raw)


# ---------------------------------------------------------------------------------------------
# Encoding


def encode_frame(message: DhcpMessage) -> bytes:
    """The Ethernet frame carrying ``message``, with IPv4 header and UDP checksums filled."""
    payload = _encode_bootp(message)
    udp = _encode_udp(message, payload)
    ip = _encode_ipv4(message, len(udp))
    ethernet = _mac_bytes(message.dst_mac) + _mac_bytes(message.src_mac) + struct.pack(
        "!H", ETH_P_IP
    )
    return ethernet + ip + udp


def _encode_bootp(message: DhcpMessage) -> bytes:
    fixed = _BOOTP.pack(
        message.op,
        1,
        6,
        message.hops,
        message.xid,
        message.secs,
        message.flags,
        _ip_bytes(message.ciaddr),
        _ip_bytes(message.yiaddr),
        _ip_bytes(message.siaddr),
        _ip_bytes(message.giaddr),
        _mac_bytes(message.chaddr),
        b"",
        b"",
    )
    body = fixed + MAGIC_COOKIE + encode_options(message.options.items())
    return body.ljust(BOOTP_MIN, b"\x00")


def encode_options(options: Iterable[tuple[int, bytes]]) -> bytes:
    """The options area: each option as code, length, value (values over 255 bytes split into
    consecutive instances, RFC 3396), then END."""
    out = bytearray()
    for code, value in options:
        if not 0 < code < OPT_END:
            raise ValueError(f"option code {code} cannot carry a value")
        chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [b""]
        for chunk in chunks:
            out += bytes((code, len(chunk))) + chunk
    out.append(OPT_END)
    return bytes(out)


def _encode_udp(message: DhcpMessage, payload: bytes) -> bytes:
    length = UDP_HEADER + len(payload)
    header = struct.pack("!HHHH", message.src_port, message.dst_port, length, 0)
    pseudo = (
        _ip_bytes(message.src_ip)
        + _ip_bytes(message.dst_ip)
        + struct.pack("!BBH", 0, IPPROTO_UDP, length)
    )
    checksum = internet_checksum(pseudo + header + payload) or 0xFFFF
    return header[:6] + struct.pack("!H", checksum) + payload


def _encode_ipv4(message: DhcpMessage, payload_length: int) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        IP_HEADER + payload_length,
        0,
        0,
        message.ttl,
        IPPROTO_UDP,
        0,
        _ip_bytes(message.src_ip),
        _ip_bytes(message.dst_ip),
    )
    checksum = internet_checksum(header)
    return header[:10] + struct.pack("!H", checksum) + header[12:]


def internet_checksum(data: bytes) -> int:
    """The RFC 1071 ones'-complement checksum of ``data`` (0 when data includes a valid one)."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def _mac_bytes(mac: str) -> bytes:
    raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return raw


def _ip_bytes(address: str) -> bytes:
    return ipaddress.IPv4Address(address).packed


# ---------------------------------------------------------------------------------------------
# Classless static routes (RFC 3442)


def encode_classless_routes(routes: Iterable[tuple[str, str]]) -> bytes:
    """RFC 3442 option 121 data: per route, the prefix length, the significant octets of the
    destination, then the router (0.0.0.0 = on-link)."""
    out = bytearray()
    for destination, nexthop in routes:
        network = ipaddress.IPv4Network(destination, strict=False)
        significant = (network.prefixlen + 7) // 8
        out.append(network.prefixlen)
        out += network.network_address.packed[:significant]
        out += _ip_bytes(nexthop)
    return bytes(out)


def decode_classless_routes(data: bytes) -> tuple[tuple[str, str], ...]:
    """The (destination CIDR, router) pairs in RFC 3442 option data."""
    routes: list[tuple[str, str]] = []
    index = 0
    while index < len(data):
        width = data[index]
        if width > 32:
            raise MalformedPacket(f"classless route prefix length {width}")
        significant = (width + 7) // 8
        end = index + 1 + significant + 4
        if end > len(data):
            raise MalformedPacket("truncated classless route")
        destination = data[index + 1 : index + 1 + significant].ljust(4, b"\x00")
        network = ipaddress.IPv4Network((destination, width), strict=False)
        routes.append((str(network), str(ipaddress.IPv4Address(data[end - 4 : end]))))
        index = end
    return tuple(routes)


# ---------------------------------------------------------------------------------------------
# Replies


def lease_options(lease: Lease, *, with_times: bool = True) -> dict[int, bytes]:
    """Every option the server tells ``lease``'s client, keyed by code.  When host routes exist
    they go out as 121 and 249 with the default route included (RFC 3442: a client that takes
    121 ignores option 3)."""
    options: dict[int, bytes] = {OPT_SERVER_ID: _ip_bytes(lease.server_ip)}
    if with_times:
        options[OPT_LEASE_TIME] = struct.pack("!I", lease.lease_seconds)
        options[OPT_RENEWAL_TIME] = struct.pack("!I", lease.lease_seconds // 2)
        options[OPT_REBINDING_TIME] = struct.pack("!I", lease.lease_seconds * 7 // 8)
    options[OPT_SUBNET_MASK] = ipaddress.IPv4Network(f"0.0.0.0/{lease.prefixlen}").netmask.packed
    if lease.gateway:
        options[OPT_ROUTER] = _ip_bytes(lease.gateway)
    if lease.dns:
        options[OPT_DNS] = b"".join(_ip_bytes(server) for server in lease.dns)
    if lease.hostname:
        options[OPT_HOSTNAME] = lease.hostname.encode()
    if lease.mtu > 0:
        options[OPT_MTU] = struct.pack("!H", lease.mtu)
    if lease.routes:
        routes = lease.routes
        if lease.gateway and not any(_is_default(dst) for dst, _ in routes):
            routes = (*routes, ("0.0.0.0/0", lease.gateway))
        options[OPT_CLASSLESS_ROUTES] = encode_classless_routes(routes)
        options[OPT_MS_CLASSLESS_ROUTES] = options[OPT_CLASSLESS_ROUTES]
    return options


def check_lease(lease: Lease) -> None:
    """Raise ValueError when ``lease`` cannot be put on the wire (a bad address, MAC, prefix,
    route, an MTU or lease time out of range)."""
    _mac_bytes(lease.mac)
    _ip_bytes(lease.ip)
    if not 0 <= lease.prefixlen <= 32:
        raise ValueError(f"prefix length {lease.prefixlen}")
    if not 68 <= lease.mtu <= 0xFFFF and lease.mtu != 0:
        raise ValueError(f"MTU {lease.mtu}")
    if not 0 < lease.lease_seconds < 2**32:
        raise ValueError(f"lease time {lease.lease_seconds}")
    lease_options(lease)


def _is_default(destination: str) -> bool:
    return ipaddress.IPv4Network(destination, strict=False).prefixlen == 0


def _ordered(options: dict[int, bytes], requested: tuple[int, ...]) -> dict[int, bytes]:
    """Message type and server id first, then what the client asked for in its order, then
    the rest (we always send everything we have; option 55 only orders)."""
    order = [OPT_MESSAGE_TYPE, OPT_SERVER_ID, *requested]
    ranked = {code: options[code] for code in order if code in options}
    ranked.update((code, value) for code, value in options.items() if code not in ranked)
    return ranked


def build_reply(request: DhcpMessage, kind: int, lease: Lease, server_mac: str) -> bytes:
    """The frame answering ``request`` with an OFFER, ACK or NAK from ``lease``'s server,
    addressed as RFC 2131 section 4.1 says for a server on the client's link (no relay)."""
    if kind not in (OFFER, ACK, NAK):
        raise ValueError(f"DHCP message type {kind} is not a server reply")
    inform = request.message_type == INFORM
    options: dict[int, bytes] = {OPT_MESSAGE_TYPE: bytes((kind,))}
    if kind == NAK:
        options[OPT_SERVER_ID] = _ip_bytes(lease.server_ip)
    else:
        options.update(lease_options(lease, with_times=not inform))
    if OPT_CLIENT_ID in request.options:
        options[OPT_CLIENT_ID] = request.options[OPT_CLIENT_ID]  # RFC 6842
    dst_mac, dst_ip = _reply_destination(request, kind, lease.ip)
    reply = DhcpMessage(
        src_mac=server_mac.lower(),
        dst_mac=dst_mac,
        src_ip=lease.server_ip,
        dst_ip=dst_ip,
        src_port=SERVER_PORT,
        dst_port=CLIENT_PORT,
        op=BOOTREPLY,
        xid=request.xid,
        flags=request.flags,
        ciaddr=request.ciaddr if kind == ACK else "0.0.0.0",
        yiaddr="0.0.0.0" if kind == NAK or inform else lease.ip,
        giaddr=request.giaddr,
        chaddr=request.chaddr,
        options=_ordered(options, request.parameter_requests),
    )
    return encode_frame(reply)


def _reply_destination(request: DhcpMessage, kind: int, yiaddr: str) -> tuple[str, str]:
    if kind == NAK:
        return BROADCAST_MAC, BROADCAST_IP
    if request.ciaddr != "0.0.0.0":
        return request.chaddr, request.ciaddr
    if request.broadcast:
        return BROADCAST_MAC, BROADCAST_IP
    return request.chaddr, yiaddr


# ---------------------------------------------------------------------------------------------
# Classic BPF: what a server's packet socket should see

SKF_AD_PKTTYPE = -0x1000 + 4  # SKF_AD_OFF + SKF_AD_PKTTYPE
PACKET_OUTGOING = 4
_BPF_LD_H_ABS = 0x28
_BPF_LD_B_ABS = 0x30
_BPF_LD_W_ABS = 0x20
_BPF_LDX_B_MSH = 0xB1
_BPF_LD_H_IND = 0x48
_BPF_JEQ_K = 0x15
_BPF_JSET_K = 0x45
_BPF_RET_K = 0x06


def server_filter() -> bytes:
    """A classic BPF program (packed ``struct sock_filter`` array, for SO_ATTACH_FILTER) that
    accepts only received (not outgoing) unfragmented IPv4 UDP frames to port 67."""
    program = [
        (_BPF_LD_W_ABS, 0, 0, SKF_AD_PKTTYPE & 0xFFFFFFFF),
        (_BPF_JEQ_K, 9, 0, PACKET_OUTGOING),  # -> drop
        (_BPF_LD_H_ABS, 0, 0, 12),  # ethertype
        (_BPF_JEQ_K, 0, 7, ETH_P_IP),
        (_BPF_LD_B_ABS, 0, 0, ETH_HEADER + 9),  # IP protocol
        (_BPF_JEQ_K, 0, 5, IPPROTO_UDP),
        (_BPF_LD_H_ABS, 0, 0, ETH_HEADER + 6),  # flags + fragment offset
        (_BPF_JSET_K, 3, 0, 0x3FFF),  # MF or an offset: a fragment
        (_BPF_LDX_B_MSH, 0, 0, ETH_HEADER),  # X = IP header length
        (_BPF_LD_H_IND, 0, 0, ETH_HEADER + 2),  # UDP destination port
        (_BPF_JEQ_K, 1, 0, SERVER_PORT),
        (_BPF_RET_K, 0, 0, 0),  # drop
        (_BPF_RET_K, 0, 0, 0x40000),  # accept the whole frame
    ]
    return b"".join(struct.pack("HBBI", *instruction) for instruction in program)

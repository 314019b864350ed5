"""The DHCPv4 codec and reply logic of the in-agent responder, without root: frames built here
by hand (independently of the codec) parse as they should, replies carry the lease's options
with correct IPv4/UDP checksums (checked by an independent checksum), RFC 3442 examples,
malformed input raises MalformedPacket only, the responder's reply decisions, and the BPF
program (run by the kernel on a socketpair, which needs no privilege)."""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import ipaddress
import socket
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alcor.agent.linux import dhcp_packet as dp
from alcor.agent.linux.dhcp_responder import SO_ATTACH_FILTER, DhcpResponder, decide
from alcor.agent.linux.lease import Lease

CLIENT_MAC = "fa:16:3e:12:34:56"
SERVER_MAC = "02:00:00:aa:bb:cc"

LEASE = Lease(
    mac=CLIENT_MAC,
    ip="10.0.0.11",
    prefixlen=24,
    gateway="10.0.0.1",
    dns=("10.0.0.53", "8.8.8.8"),
    mtu=1450,
    routes=(("192.168.0.0/16", "10.0.0.254"), ("172.16.5.0/24", "10.0.0.253")),
    hostname="vm-1",
    server_ip="10.0.0.1",
    lease_seconds=3600,
)


def ones_sum(data: bytes) -> int:
    """Independent RFC 1071 sum: the folded 16-bit ones'-complement sum of data."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for i in range(0, len(data), 2):
        total += int.from_bytes(data[i : i + 2], "big")
        total = (total & 0xFFFF) + (total >> 16)
    return total


def client_frame(
    message_type: int,
    *,
    mac: str = CLIENT_MAC,
    src_mac: str | None = None,
    xid: int = 0x1234ABCD,
    flags: int = 0,
    ciaddr: str = "0.0.0.0",
    src_ip: str = "0.0.0.0",
    dst_ip: str = "255.255.255.255",
    dst_mac: str = "ff:ff:ff:ff:ff:ff",
    extra: bytes = b"",
) -> bytes:
    """A client's DHCP frame assembled with struct only (not with the codec under test), with
    a correct IPv4 header checksum and a zero (absent) UDP checksum, like udhcpc's raw send."""
    chaddr = bytes.fromhex(mac.replace(":", ""))
    bootp = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        1, 1, 6, 0, xid, 3, flags,
        ipaddress.IPv4Address(ciaddr).packed, bytes(4), bytes(4), bytes(4),
        chaddr, b"", b"",
    )  # fmt: skip
    options = b"\x63\x82\x53\x63" + bytes((53, 1, message_type)) + extra + b"\xff"
    payload = bootp + options
    udp = struct.pack("!HHHH", 68, 67, 8 + len(payload), 0) + payload
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45, 0x10, 20 + len(udp), 0, 0, 64, 17, 0,
        ipaddress.IPv4Address(src_ip).packed, ipaddress.IPv4Address(dst_ip).packed,
    )  # fmt: skip
    checksum = ~ones_sum(header) & 0xFFFF
    header = header[:10] + struct.pack("!H", checksum) + header[12:]
    ethernet = (
        bytes.fromhex(dst_mac.replace(":", ""))
        + bytes.fromhex((src_mac or mac).replace(":", ""))
        + b"\x08\x00"
    )
    return ethernet + header + udp


def opt(code: int, value: bytes) -> bytes:
    return bytes((code, len(value))) + value


def ip4(address: str) -> bytes:
    return ipaddress.IPv4Address(address).packed


def assert_checksums_valid(frame: bytes) -> None:
    """Verify a built frame's IPv4 header and UDP checksums independently of the codec."""
    assert frame[12:14] == b"\x08\x00"
    ihl = (frame[14] & 0x0F) * 4
    ip_header = frame[14 : 14 + ihl]
    assert ones_sum(ip_header) == 0xFFFF
    total_length = int.from_bytes(ip_header[2:4], "big")
    assert total_length == len(frame) - 14
    udp = frame[14 + ihl :]
    assert int.from_bytes(udp[4:6], "big") == len(udp)
    assert udp[6:8] != b"\x00\x00"  # a server always sends a checksum
    pseudo = ip_header[12:20] + b"\x00\x11" + len(udp).to_bytes(2, "big")
    assert ones_sum(pseudo + udp) == 0xFFFF


# -- parsing --------------------------------------------------------------------------------


def test_parse_hand_built_discover() -> None:
    frame = client_frame(
        dp.DISCOVER,
        flags=0x8000,
        extra=opt(55, bytes((1, 3, 6, 12, 15, 26, 121))) + opt(61, b"\x01" + bytes(6)),
    )
    message = dp.parse_frame(frame)
    assert message.message_type == dp.DISCOVER
    assert message.op == dp.BOOTREQUEST
    assert (message.src_mac, message.dst_mac) == (CLIENT_MAC, "ff:ff:ff:ff:ff:ff")
    assert (message.src_ip, message.dst_ip) == ("0.0.0.0", "255.255.255.255")
    assert (message.src_port, message.dst_port) == (68, 67)
    assert message.chaddr == CLIENT_MAC
    assert message.xid == 0x1234ABCD
    assert message.secs == 3
    assert message.broadcast
    assert message.parameter_requests == (1, 3, 6, 12, 15, 26, 121)
    assert message.requested_ip is None and message.server_id is None
    assert message.options[61] == b"\x01" + bytes(6)


def test_parse_request_options_and_ethernet_padding() -> None:
    frame = client_frame(
        dp.REQUEST, extra=opt(50, ip4("10.0.0.11")) + opt(54, ip4("10.0.0.1"))
    ) + bytes(20)  # trailing bytes beyond the IP packet (Ethernet padding) are ignored
    message = dp.parse_frame(frame)
    assert message.requested_ip == "10.0.0.11"
    assert message.server_id == "10.0.0.1"


def test_parse_concatenates_split_options() -> None:
    """RFC 3396: an option appearing twice is one value, concatenated."""
    frame = client_frame(dp.DISCOVER, extra=opt(55, b"\x01\x03") + b"\x00\x00" + opt(55, b"\x06"))
    assert dp.parse_frame(frame).parameter_requests == (1, 3, 6)


# -- round trips ----------------------------------------------------------------------------


def test_round_trip_reply_message() -> None:
    message = dp.DhcpMessage(
        src_mac=SERVER_MAC,
        dst_mac=CLIENT_MAC,
        src_ip="10.0.0.1",
        dst_ip="10.0.0.11",
        src_port=67,
        dst_port=68,
        op=dp.BOOTREPLY,
        xid=7,
        flags=0,
        ciaddr="10.0.0.11",
        yiaddr="10.0.0.11",
        siaddr="10.0.0.2",
        chaddr=CLIENT_MAC,
        options={53: b"\x05", 54: ip4("10.0.0.1"), 12: b"x" * 300},
    )
    frame = dp.encode_frame(message)
    assert_checksums_valid(frame)
    parsed = dp.parse_frame(frame)
    assert parsed == message
    assert list(parsed.options) == [53, 54, 12]


macs = st.binary(min_size=6, max_size=6).map(lambda raw: ":".join(f"{b:02x}" for b in raw))
ips = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
option_values = st.dictionaries(
    st.integers(1, 254).filter(lambda code: code != 53), st.binary(max_size=600), max_size=6
)


@settings(max_examples=200, deadline=None)
@given(
    macs, macs, macs, ips, ips, ips, ips,
    st.integers(0, 2**32 - 1), st.integers(0, 0xFFFF), st.sampled_from([1, 2]),
    st.integers(1, 8), option_values,
)  # fmt: skip
def test_round_trip_any_message(
    src_mac: str,
    dst_mac: str,
    chaddr: str,
    src_ip: str,
    dst_ip: str,
    ciaddr: str,
    yiaddr: str,
    xid: int,
    flags: int,
    op: int,
    kind: int,
    options: dict[int, bytes],
) -> None:
    message = dp.DhcpMessage(
        src_mac=src_mac,
        dst_mac=dst_mac,
        src_ip=src_ip,
        dst_ip=dst_ip,
        op=op,
        xid=xid,
        flags=flags,
        ciaddr=ciaddr,
        yiaddr=yiaddr,
        chaddr=chaddr,
        options={53: bytes((kind,)), **options},
    )
    frame = dp.encode_frame(message)
    assert_checksums_valid(frame)
    assert dp.parse_frame(frame) == message


# -- RFC 3442 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("destination", "encoded"),
    [  # the examples of RFC 3442 section 3 (router appended)
        ("0.0.0.0/0", bytes([0])),
        ("10.0.0.0/8", bytes([8, 10])),
        ("10.0.0.0/16", bytes([16, 10, 0])),
        ("10.17.0.0/16", bytes([16, 10, 17])),
        ("10.27.129.0/24", bytes([24, 10, 27, 129])),
        ("10.229.0.128/25", bytes([25, 10, 229, 0, 128])),
        ("10.198.122.47/32", bytes([32, 10, 198, 122, 47])),
    ],
)
def test_rfc3442_examples(destination: str, encoded: bytes) -> None:
    router = bytes([10, 0, 0, 1])
    assert dp.encode_classless_routes([(destination, "10.0.0.1")]) == encoded + router
    assert dp.decode_classless_routes(encoded + router) == ((destination, "10.0.0.1"),)


def test_rfc3442_several_routes_and_on_link() -> None:
    routes = (("192.168.0.0/16", "10.0.0.254"), ("169.254.169.254/32", "0.0.0.0"))
    data = dp.encode_classless_routes(routes)
    assert data == bytes([16, 192, 168, 10, 0, 0, 254, 32, 169, 254, 169, 254, 0, 0, 0, 0])
    assert dp.decode_classless_routes(data) == routes


@pytest.mark.parametrize("data", [bytes([33, 1, 2, 3, 4, 5, 6, 7, 8]), bytes([24, 10, 0, 0, 1])])
def test_rfc3442_malformed(data: bytes) -> None:
    with pytest.raises(dp.MalformedPacket):
        dp.decode_classless_routes(data)


# -- replies --------------------------------------------------------------------------------


def reply(kind: int, request_frame: bytes, lease: Lease = LEASE) -> tuple[bytes, dp.DhcpMessage]:
    frame = dp.build_reply(dp.parse_frame(request_frame), kind, lease, SERVER_MAC)
    assert_checksums_valid(frame)
    return frame, dp.parse_frame(frame)


def test_offer_carries_the_whole_lease() -> None:
    frame, offer = reply(dp.OFFER, client_frame(dp.DISCOVER))
    assert len(frame) - 14 - 20 - 8 >= 300  # BOOTP minimum size
    assert offer.op == dp.BOOTREPLY and offer.message_type == dp.OFFER
    assert offer.xid == 0x1234ABCD and offer.chaddr == CLIENT_MAC
    assert offer.yiaddr == "10.0.0.11" and offer.ciaddr == "0.0.0.0"
    assert (offer.src_mac, offer.dst_mac) == (SERVER_MAC, CLIENT_MAC)
    assert (offer.src_ip, offer.dst_ip) == ("10.0.0.1", "10.0.0.11")
    assert (offer.src_port, offer.dst_port) == (67, 68)
    o = offer.options
    assert o[1] == ip4("255.255.255.0")
    assert o[3] == ip4("10.0.0.1")
    assert o[6] == ip4("10.0.0.53") + ip4("8.8.8.8")
    assert o[12] == b"vm-1"
    assert o[26] == struct.pack("!H", 1450)
    assert o[51] == struct.pack("!I", 3600)
    assert o[54] == ip4("10.0.0.1")
    assert o[58] == struct.pack("!I", 1800)
    assert o[59] == struct.pack("!I", 3150)
    routes = dp.decode_classless_routes(o[121])
    assert routes == (*LEASE.routes, ("0.0.0.0/0", "10.0.0.1"))  # default route included
    assert o[249] == o[121]
    assert 15 not in o  # the lease has no domain


def test_options_follow_the_parameter_request_order() -> None:
    request = client_frame(dp.DISCOVER, extra=opt(55, bytes((121, 6, 1, 3))))
    _, offer = reply(dp.OFFER, request)
    assert list(offer.options)[:6] == [53, 54, 121, 6, 1, 3]
    assert {12, 26, 51, 58, 59, 249} <= set(offer.options)  # the rest is sent anyway


def test_no_routes_means_no_121_and_no_optional_options() -> None:
    lease = Lease(
        mac=CLIENT_MAC, ip="192.168.5.7", prefixlen=28, gateway=None, dns=(), mtu=0,
        routes=(), hostname="", server_ip="192.168.5.1",
    )  # fmt: skip
    _, offer = reply(dp.OFFER, client_frame(dp.DISCOVER), lease)
    assert set(offer.options) == {53, 54, 51, 58, 59, 1}
    assert offer.options[1] == ip4("255.255.255.240")
    assert offer.options[51] == struct.pack("!I", 86400)


def test_explicit_default_route_is_not_doubled() -> None:
    lease = Lease(
        mac=CLIENT_MAC, ip="10.0.0.11", prefixlen=24, gateway="10.0.0.1", dns=(), mtu=1500,
        routes=(("0.0.0.0/0", "10.0.0.9"),), hostname="h", server_ip="10.0.0.1",
    )  # fmt: skip
    _, offer = reply(dp.OFFER, client_frame(dp.DISCOVER), lease)
    assert dp.decode_classless_routes(offer.options[121]) == (("0.0.0.0/0", "10.0.0.9"),)


def test_broadcast_flag_makes_a_broadcast_reply() -> None:
    _, offer = reply(dp.OFFER, client_frame(dp.DISCOVER, flags=0x8000))
    assert (offer.dst_mac, offer.dst_ip) == ("ff:ff:ff:ff:ff:ff", "255.255.255.255")
    assert offer.broadcast


def test_renewal_ack_is_unicast_to_ciaddr() -> None:
    request = client_frame(
        dp.REQUEST, ciaddr="10.0.0.11", src_ip="10.0.0.11", dst_ip="10.0.0.1",
        dst_mac=SERVER_MAC,
    )  # fmt: skip
    _, ack = reply(dp.ACK, request)
    assert ack.message_type == dp.ACK
    assert (ack.dst_mac, ack.dst_ip) == (CLIENT_MAC, "10.0.0.11")
    assert ack.ciaddr == "10.0.0.11" and ack.yiaddr == "10.0.0.11"


def test_nak_is_broadcast_with_only_the_server_id() -> None:
    request = client_frame(dp.REQUEST, extra=opt(50, ip4("10.0.0.99")) + opt(61, b"\x01abc"))
    _, nak = reply(dp.NAK, request)
    assert nak.message_type == dp.NAK
    assert (nak.dst_mac, nak.dst_ip) == ("ff:ff:ff:ff:ff:ff", "255.255.255.255")
    assert nak.yiaddr == "0.0.0.0"
    assert dict(nak.options) == {53: b"\x06", 54: ip4("10.0.0.1"), 61: b"\x01abc"}


def test_inform_ack_has_no_lease_time_and_no_yiaddr() -> None:
    request = client_frame(dp.INFORM, ciaddr="10.0.0.11", src_ip="10.0.0.11")
    _, ack = reply(dp.ACK, request)
    assert ack.yiaddr == "0.0.0.0" and ack.dst_ip == "10.0.0.11"
    assert not {51, 58, 59} & set(ack.options)
    assert ack.options[1] == ip4("255.255.255.0")


def test_build_reply_refuses_client_message_types() -> None:
    with pytest.raises(ValueError, match="not a server reply"):
        dp.build_reply(dp.parse_frame(client_frame(dp.DISCOVER)), dp.REQUEST, LEASE, SERVER_MAC)


# -- malformed input ------------------------------------------------------------------------


def test_every_truncation_is_rejected_cleanly() -> None:
    frame = client_frame(dp.REQUEST, extra=opt(50, ip4("10.0.0.11")))
    for length in range(len(frame)):
        cut = frame[:length]
        if length >= 34:  # keep the IP and UDP lengths consistent with the cut
            ip_len, udp_len = length - 14, length - 34
            cut = cut[:16] + ip_len.to_bytes(2, "big") + cut[18:24] + b"\x00\x00" + cut[26:]
            checksum = ~ones_sum(cut[14:34]) & 0xFFFF
            cut = cut[:24] + checksum.to_bytes(2, "big") + cut[26:]
            if length >= 42:
                cut = cut[:38] + udp_len.to_bytes(2, "big") + cut[40:]
        try:
            dp.parse_frame(cut)
        except dp.MalformedPacket:
            continue
        # the only acceptable cuts end on an option boundary after the message type
        assert length in (len(frame) - 7, len(frame) - 1)


def mutate(frame: bytes, offset: int, value: bytes, fix_ip_checksum: bool = True) -> bytes:
    out = frame[:offset] + value + frame[offset + len(value) :]
    if fix_ip_checksum:
        header = out[14:24] + b"\x00\x00" + out[26:34]
        checksum = ~ones_sum(header) & 0xFFFF
        out = out[:24] + checksum.to_bytes(2, "big") + out[26:]
    return out


GOOD = client_frame(dp.DISCOVER)
BOOTP = 14 + 20 + 8


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", "too short"),
        (mutate(GOOD, 12, b"\x86\xdd"), "not IPv4"),
        (mutate(GOOD, 14, b"\x65"), "not an IPv4 header"),
        (mutate(GOOD, 14, b"\x44"), "not an IPv4 header"),
        (mutate(GOOD, 16, b"\xff\xff"), "total length"),
        (mutate(GOOD, 20, b"\x20\x00"), "fragment"),
        (mutate(GOOD, 20, b"\x00\x05"), "fragment"),
        (mutate(GOOD, 23, b"\x06"), "not UDP"),
        (mutate(GOOD, 24, b"\x12\x34", fix_ip_checksum=False), "checksum"),
        (mutate(GOOD, 36, b"\x00\x35"), "not DHCP"),
        (mutate(GOOD, 38, b"\x00\x04"), "UDP length"),
        (mutate(GOOD, 38, b"\xff\xff"), "UDP length"),
        (mutate(GOOD, BOOTP, b"\x03"), "BOOTP op"),
        (mutate(GOOD, BOOTP + 1, b"\x06"), "not Ethernet"),
        (mutate(GOOD, BOOTP + 2, b"\x10"), "not Ethernet"),
        (mutate(GOOD, BOOTP + 236, b"\x63\x82\x53\x64"), "magic cookie"),
        (mutate(GOOD, BOOTP + 240, b"\x0c\x09ab"), "truncated"),
        (mutate(GOOD, BOOTP + 240, b"\x00\x00\x00\xff"), "message type"),
    ],
)
def test_malformed_frames(frame: bytes, reason: str) -> None:
    with pytest.raises(dp.MalformedPacket, match=reason):
        dp.parse_frame(frame)


def test_option_without_length() -> None:
    with pytest.raises(dp.MalformedPacket, match="no length"):
        dp.parse_options(b"\x35\x01\x01\x0c")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(0, 600))
def test_random_bytes_never_crash(noise: bytes, offset: int) -> None:
    start = BOOTP + offset % (len(GOOD) - BOOTP)
    overwritten = GOOD[:start] + noise[: len(GOOD) - start]
    overwritten += GOOD[len(overwritten) :]  # same length: IP and UDP headers stay valid
    for frame in (noise, GOOD[:offset] + noise, overwritten):
        with contextlib.suppress(dp.MalformedPacket):
            dp.parse_frame(frame)


# -- the responder's decisions ----------------------------------------------------------------


def decide_for(message_type: int, **kwargs: Any) -> int | None:
    return decide(dp.parse_frame(client_frame(message_type, **kwargs)), LEASE)


def test_decisions() -> None:
    selecting = opt(50, ip4("10.0.0.11")) + opt(54, ip4("10.0.0.1"))
    assert decide_for(dp.DISCOVER) == dp.OFFER
    assert decide_for(dp.REQUEST, extra=selecting) == dp.ACK
    assert decide_for(dp.REQUEST, extra=opt(50, ip4("10.0.0.11"))) == dp.ACK  # INIT-REBOOT
    assert decide_for(dp.REQUEST, extra=opt(50, ip4("10.0.0.12"))) == dp.NAK
    assert decide_for(dp.REQUEST, ciaddr="10.0.0.11", src_ip="10.0.0.11") == dp.ACK  # renewal
    assert decide_for(dp.REQUEST, ciaddr="10.0.0.77", src_ip="10.0.0.77") == dp.NAK
    assert decide_for(dp.INFORM, ciaddr="10.0.0.11") == dp.ACK


def test_silences() -> None:
    other_server = opt(50, ip4("10.0.0.11")) + opt(54, ip4("10.0.0.2"))
    assert decide_for(dp.REQUEST, extra=other_server) is None  # the client chose another server
    assert decide_for(dp.REQUEST) is None  # neither requested address nor ciaddr
    assert decide_for(dp.DISCOVER, mac="fa:16:3e:00:00:01") is None  # not the port's MAC
    assert decide_for(dp.DISCOVER, src_mac="fa:16:3e:00:00:01") is None  # chaddr spoofed
    assert decide_for(dp.RELEASE, ciaddr="10.0.0.11") is None
    assert decide_for(dp.DECLINE, extra=opt(50, ip4("10.0.0.11"))) is None
    relayed = dp.parse_frame(client_frame(dp.DISCOVER))
    assert decide(dataclasses.replace(relayed, giaddr="10.9.9.9"), LEASE) is None
    upper = dataclasses.replace(LEASE, mac=CLIENT_MAC.upper())
    assert decide(dp.parse_frame(GOOD), upper) == dp.OFFER


# -- the BPF program, run by the kernel -------------------------------------------------------


def filtered_pair() -> tuple[socket.socket, socket.socket]:
    """A datagram socketpair whose receiving end runs the server filter: the kernel applies
    socket filters to AF_UNIX datagrams too (as PACKET_HOST), no privilege needed."""
    sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    program = dp.server_filter()
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(buffer))
    receiver.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    receiver.setblocking(False)
    return sender, receiver


def passes(frame: bytes) -> bool:
    sender, receiver = filtered_pair()
    with sender, receiver:
        sender.send(frame)
        try:
            return receiver.recv(65536) == frame
        except BlockingIOError:
            return False


def test_bpf_filter_accepts_only_dhcp_server_frames() -> None:
    assert passes(GOOD)
    options_ihl = mutate(GOOD, 14, b"\x46")[:34] + bytes(4) + GOOD[34:]  # IHL 6: options
    assert passes(options_ihl)
    assert not passes(mutate(GOOD, 12, b"\x86\xdd"))  # not IPv4
    assert not passes(mutate(GOOD, 23, b"\x06"))  # TCP
    assert not passes(mutate(GOOD, 36, b"\x00\x44"))  # to port 68: a reply
    assert not passes(mutate(GOOD, 20, b"\x20\x00"))  # first fragment
    assert not passes(mutate(GOOD, 20, b"\x00\x10"))  # later fragment
    assert not passes(b"\x00" * 10)


# -- lease validation (before anything reaches the responder's thread) -------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"mac": "fa:16:3e:12:34"},
        {"ip": "10.0.0.300"},
        {"prefixlen": 33},
        {"gateway": "gw"},
        {"dns": ("::1",)},
        {"mtu": 67},
        {"mtu": 70000},
        {"lease_seconds": 0},
        {"routes": (("10.1.0.0/33", "10.0.0.1"),)},
        {"server_ip": ""},
    ],
)
def test_bad_leases_are_refused(change: dict[str, Any]) -> None:
    lease = dataclasses.replace(LEASE, **change)
    with pytest.raises(ValueError):
        dp.check_lease(lease)
    with pytest.raises(ValueError):
        DhcpResponder().serve("tap0123456789a", lease)


def test_serve_before_start_records_the_lease() -> None:
    responder = DhcpResponder()
    assert responder.serve("tap0123456789a", LEASE) is False  # not started: opened at start
    assert responder.served() == {"tap0123456789a": LEASE}
    with pytest.raises(ValueError, match="interface name"):
        responder.serve("tap0123456789abc", LEASE)  # 16 characters: too long for Linux
    responder.forget("tap0123456789a")
    assert responder.served() == {}

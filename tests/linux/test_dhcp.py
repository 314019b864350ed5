"""The in-agent DHCP responder against a real client, as root, in namespaces this test makes
(prefix "alt-dh-<random>"; the root netns is never touched): a "host" netns with a bridge and
workload netns attached by veth (host end "tap" + 11 chars); the responder runs in the test
process with its thread in the host netns.  busybox udhcpc in a workload must get exactly the
lease; an unknown MAC gets nothing; forget() stops answers; a unicast renewal is answered; a
tap that appears (or comes back) later is served.  Prints how long an udhcpc run takes."""

from __future__ import annotations

import contextlib
import os
import secrets
import selectors
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from alcor.agent.linux import dhcp_packet as dp
from alcor.agent.linux.dhcp_responder import DhcpResponder
from alcor.agent.linux.lease import Lease
from alcor.agent.linux.namespaces import entered

CLIENT_SCRIPT = r"""#!/bin/sh
# udhcpc hook for the test: record what the client was told, configure only eth0 in this
# netns (never /etc/resolv.conf).
case "$1" in
  deconfig)
    ip addr flush dev "$interface"; ip link set dev "$interface" up ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    {
      echo "event=$1"; echo "ip=$ip"; echo "subnet=$subnet"; echo "mask=$mask"
      echo "router=$router"; echo "dns=$dns"; echo "mtu=$mtu"
      echo "staticroutes=$staticroutes"; echo "hostname=$hostname"
      echo "serverid=$serverid"; echo "lease=$lease"; echo "---"
    } >>"$DHCP_TEST_LOG" ;;
esac
exit 0
"""

pytestmark = pytest.mark.timeout(120)


def run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


@dataclass
class Topology:
    """Namespaces and names of one test; ``workload(n)`` makes another tap + workload."""

    prefix: str
    host: str
    tmp: Path
    script: Path
    made: list[str]

    def add_netns(self, name: str) -> str:
        run("ip", "netns", "add", name)
        self.made.append(name)
        run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def workload(self, index: int, mac: str, *, attach: bool = True) -> tuple[str, str]:
        """A workload netns with eth0 (``mac``) whose peer tap sits on the host's bridge.
        Returns (workload netns, tap name)."""
        ns = self.add_netns(f"{self.prefix}-w{index}")
        tap = f"tap{uuid.uuid4()}"[:14]
        if attach:
            self.plug(ns, tap, mac)
        return ns, tap

    def plug(self, ns: str, tap: str, mac: str) -> None:
        run("ip", "-n", self.host, "link", "add", tap, "type", "veth", "peer", "name", "eth0",
            "netns", ns)  # fmt: skip
        run("ip", "-n", self.host, "link", "set", tap, "master", "br0", "up")
        run("ip", "-n", ns, "link", "set", "eth0", "address", mac, "up")

    def udhcpc(self, ns: str, *extra: str, log: str = "leases") -> subprocess.Popen[str]:
        env = {**os.environ, "DHCP_TEST_LOG": str(self.tmp / f"{ns}.{log}")}
        return subprocess.Popen(
            ["ip", "netns", "exec", ns, "busybox", "udhcpc", "-i", "eth0", "-f", "-t", "5",
             "-T", "1", "-O", "mtu", "-O", "staticroutes", "-s", str(self.script), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip

    def obtain(self, ns: str, *extra: str) -> tuple[int, float, list[dict[str, str]]]:
        """One `udhcpc -n -q` run: (exit code, seconds, recorded events)."""
        started = time.monotonic()
        client = self.udhcpc(ns, "-n", "-q", *extra, log=f"run{time.monotonic_ns()}")
        output, _ = client.communicate(timeout=30)
        elapsed = time.monotonic() - started
        logs = list(self.tmp.glob(f"{ns}.run*"))
        events = [e for path in logs for e in parse_events(path.read_text())]
        for path in logs:
            path.unlink()
        if client.returncode != 0 and events:
            raise AssertionError(f"udhcpc failed after recording events: {output}")
        return client.returncode, elapsed, events


def parse_events(text: str) -> list[dict[str, str]]:
    events: list[dict[str, str]] = []
    for block in text.split("---\n"):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if fields:
            events.append(fields)
    return events


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[Topology]:
    prefix = f"alt-dh-{secrets.token_hex(3)}"
    script = tmp_path / "hook.sh"
    script.write_text(CLIENT_SCRIPT)
    script.chmod(0o755)
    topo = Topology(prefix, f"{prefix}-host", tmp_path, script, [])
    try:
        topo.add_netns(topo.host)
        run("ip", "-n", topo.host, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", topo.host, "addr", "add", "10.0.0.1/24", "dev", "br0")
        run("ip", "-n", topo.host, "link", "set", "br0", "up")
        yield topo
    finally:
        for name in reversed(topo.made):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture
def responder(topology: Topology) -> Iterator[DhcpResponder]:
    """A responder whose thread (and so every socket it opens) lives in the host netns."""
    dhcp = DhcpResponder(retry_interval=0.1)
    with entered(topology.host):
        dhcp.start()
    try:
        yield dhcp
    finally:
        dhcp.stop()


def lease_for(mac: str, ip: str = "10.0.0.11", **changes: object) -> Lease:
    lease = Lease(
        mac=mac,
        ip=ip,
        prefixlen=24,
        gateway="10.0.0.1",
        dns=("10.0.0.53", "10.0.0.54"),
        mtu=1400,
        routes=(("192.168.0.0/16", "10.0.0.254"), ("172.16.5.0/24", "10.0.0.253")),
        hostname="vm-one",
        server_ip="10.0.0.1",
    )
    return replace(lease, **changes)  # type: ignore[arg-type]


def random_mac() -> str:
    return "fa:16:3e:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))


def assert_got(event: dict[str, str], lease: Lease) -> None:
    assert event["ip"] == lease.ip
    assert event["subnet"] == "255.255.255.0" and event["mask"] == "24"
    assert event["router"] == lease.gateway
    assert event["dns"].split() == list(lease.dns)
    assert event["mtu"] == str(lease.mtu)
    assert event["hostname"] == lease.hostname
    assert event["serverid"] == lease.server_ip
    assert event["lease"] == str(lease.lease_seconds)
    # udhcpc renders option 121 as "dst/len router dst/len router ..."
    routes = event["staticroutes"].split()
    pairs = list(zip(routes[::2], routes[1::2], strict=True))
    assert pairs == [*lease.routes, ("0.0.0.0/0", lease.gateway)]


def eth0(ns: str) -> str:
    return subprocess.run(
        ["ip", "-n", ns, "-4", "-o", "addr", "show", "dev", "eth0"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


def test_client_gets_exactly_the_lease(topology: Topology, responder: DhcpResponder) -> None:
    mac = random_mac()
    ns, tap = topology.workload(1, mac)
    lease = lease_for(mac)
    assert responder.serve(tap, lease) is True

    code, elapsed, events = topology.obtain(ns)
    assert code == 0
    assert [e["event"] for e in events] == ["bound"]
    assert_got(events[0], lease)
    assert "10.0.0.11/24" in eth0(ns)

    timings = [elapsed] + [topology.obtain(ns)[1] for _ in range(4)]
    print(f"\nudhcpc -n -q runs (s): {', '.join(f'{t:.3f}' for t in timings)}")
    assert max(timings) < 2.0  # answered at the first DISCOVER, no retransmission


def test_unknown_mac_gets_nothing_and_forget_stops_answers(
    topology: Topology, responder: DhcpResponder
) -> None:
    known_mac, stranger_mac = random_mac(), random_mac()
    known_ns, known_tap = topology.workload(1, known_mac)
    stranger_ns, stranger_tap = topology.workload(2, stranger_mac)
    lease = lease_for(known_mac)
    assert responder.serve(known_tap, lease)
    # the stranger's tap is served too, but for a MAC that is not the stranger's
    assert responder.serve(stranger_tap, lease_for(random_mac(), ip="10.0.0.12"))

    code, _, events = topology.obtain(stranger_ns, "-t", "2")
    assert (code, events) == (1, [])
    assert "inet " not in eth0(stranger_ns)

    assert topology.obtain(known_ns)[0] == 0
    responder.forget(known_tap)
    assert not responder.listening(known_tap)
    assert known_tap not in responder.served()
    code, _, events = topology.obtain(known_ns, "-t", "2")
    assert (code, events) == (1, [])

    assert responder.serve(known_tap, replace(lease, hostname="again"))
    code, _, events = topology.obtain(known_ns)
    assert code == 0 and events[0]["hostname"] == "again"


def sniffer(topology: Topology, tap: str) -> socket.socket:
    """A packet socket in the host netns seeing every frame the workload sends on ``tap``."""
    with entered(topology.host):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        sock.bind((tap, 0))
    sock.setblocking(False)
    return sock


def dhcp_seen(sock: socket.socket) -> list[dp.DhcpMessage]:
    """The DHCP messages the sniffer saw since last asked: the workload's requests (received
    on the tap) and the responder's replies (sent on it), in order."""
    seen = []
    while True:
        try:
            frame, _ = sock.recvfrom(65535)
        except BlockingIOError:
            return seen
        with contextlib.suppress(dp.MalformedPacket):
            seen.append(dp.parse_frame(frame))


def read_until(client: subprocess.Popen[str], needle: str, timeout: float) -> str:
    """Lines of the client's output up to the first containing ``needle``."""
    assert client.stdout is not None
    deadline = time.monotonic() + timeout
    output = ""
    with selectors.DefaultSelector() as selector:
        selector.register(client.stdout, selectors.EVENT_READ)
        while needle not in output:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise AssertionError(f"no {needle!r} from udhcpc; output so far:\n{output}")
            line = client.stdout.readline()
            if not line:
                raise AssertionError(f"udhcpc exited; output:\n{output}")
            output += line
    return output


@pytest.mark.parametrize("server_reachable", [True, False], ids=["unicast", "rebinding"])
def test_renewal_is_answered(
    topology: Topology, responder: DhcpResponder, server_reachable: bool
) -> None:
    """With the server identifier reachable (here: on the host's bridge, like a router port)
    the renewal is a unicast REQUEST, answered at once by a unicast ACK; without, the client's
    unicast dies at ARP and it falls back to a broadcast REQUEST with ciaddr, answered too.

    busybox udhcpc race (not ours): it sends the unicast renew from a UDP socket connected to
    server:67 and closes it right after; an ACK arriving before that close matches the
    connected socket better than udhcpc's listener and is lost with it, so under CPU load the
    client sometimes retries by broadcast after -T seconds (also answered)."""
    if not server_reachable:
        run("ip", "-n", topology.host, "addr", "flush", "dev", "br0")
    mac = random_mac()
    ns, tap = topology.workload(1, mac)
    lease = lease_for(mac)
    assert responder.serve(tap, lease)
    capture = sniffer(topology, tap)
    client = topology.udhcpc(ns)  # stays running: bound, then renews on SIGUSR1
    try:
        read_until(client, "obtained", timeout=10)
        dhcp_seen(capture)  # drop the DISCOVER / OFFER / REQUEST / ACK of the first binding
        started = time.monotonic()
        client.send_signal(signal.SIGUSR1)
        output = read_until(client, "obtained", timeout=10)
        renewal_time = time.monotonic() - started
        seen = dhcp_seen(capture)
    finally:
        client.terminate()
        client.wait(timeout=10)
        capture.close()
    print(f"\nudhcpc renewal ({'unicast' if server_reachable else 'rebinding'}) took "
          f"{renewal_time:.3f}s; {len(seen)} DHCP frames")
    requests = [m for m in seen if m.op == dp.BOOTREQUEST]
    replies = [m for m in seen if m.op == dp.BOOTREPLY]
    assert "sending renew" in output
    assert requests and all(
        m.message_type == dp.REQUEST and m.ciaddr == lease.ip for m in requests
    ), seen
    # every renewal request got its ACK, unicast to the client's address (RFC 2131 4.1)
    assert [(m.message_type, m.xid) for m in replies] == [(dp.ACK, m.xid) for m in requests]
    for ack in replies:
        assert (ack.dst_mac, ack.dst_ip, ack.yiaddr) == (mac, lease.ip, lease.ip)
        assert ack.options[dp.OPT_LEASE_TIME] == lease.lease_seconds.to_bytes(4, "big")
    first = requests[0]
    if server_reachable:
        assert (first.dst_mac, first.dst_ip) != (dp.BROADCAST_MAC, dp.BROADCAST_IP)
        assert first.dst_ip == lease.server_ip  # unicast to the server identifier
        assert len(requests) == 1 or "broadcasting renew" in output  # see the docstring
    else:
        assert all(m.dst_ip == dp.BROADCAST_IP for m in requests)
    events = parse_events((topology.tmp / f"{ns}.leases").read_text())
    assert [e["event"] for e in events] == ["bound", "renew"]
    assert_got(events[1], lease)


def test_interface_that_appears_later_is_served(
    topology: Topology, responder: DhcpResponder
) -> None:
    mac = random_mac()
    ns, tap = topology.workload(1, mac, attach=False)
    lease = lease_for(mac)
    assert responder.serve(tap, lease) is False  # no such interface yet: retried
    assert tap in responder.served()
    topology.plug(ns, tap, mac)
    code, _, events = topology.obtain(ns)
    assert code == 0 and events[0]["ip"] == lease.ip

    # the tap is deleted and made again (a new ifindex): the responder follows it
    run("ip", "-n", topology.host, "link", "del", tap)
    topology.plug(ns, tap, mac)
    code, _, events = topology.obtain(ns)
    assert code == 0 and events[0]["ip"] == lease.ip
    assert responder.listening(tap)


def test_concurrent_serve_and_forget(topology: Topology, responder: DhcpResponder) -> None:
    """Apply threads may call serve/forget at any time: many threads churning bindings on
    existing and missing interfaces leave exactly the last state, and it answers."""
    mac = random_mac()
    ns, tap = topology.workload(1, mac)
    lease = lease_for(mac)
    missing = [f"tapmissing{i:04d}" for i in range(8)]

    def churn(index: int) -> None:
        for round_ in range(30):
            name = tap if round_ % 3 == 0 else missing[index]
            responder.serve(name, replace(lease, hostname=f"h{index}-{round_}"))
            responder.forget(name)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(churn, range(8)))
    assert responder.served() == {}
    assert not responder.listening(tap)
    assert responder.serve(tap, lease)
    code, _, events = topology.obtain(ns)
    assert code == 0 and events[0]["hostname"] == lease.hostname


def test_stop_closes_everything_and_start_reopens(
    topology: Topology, responder: DhcpResponder
) -> None:
    mac = random_mac()
    ns, tap = topology.workload(1, mac)
    assert responder.serve(tap, lease_for(mac))
    responder.stop()
    assert not responder.listening(tap)
    code, _, events = topology.obtain(ns, "-t", "2")
    assert (code, events) == (1, [])
    with entered(topology.host):
        responder.start()  # leases survive a stop; sockets are opened again
    assert responder.listening(tap)
    assert topology.obtain(ns)[0] == 0

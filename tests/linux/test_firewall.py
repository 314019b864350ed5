"""The firewall on a real kernel (root): a host netns with Linux bridges ``alcbr100`` and
``alcbr200`` and workload namespaces on veths (host ends ``tap<11 chars>``), driven through
``Firewall``; every verdict is a real ping, TCP connection or UDP datagram.

Everything lives in namespaces named ``alt-fw-<random>-*`` that the fixtures create and
delete (also after a failure); the root netns is never touched.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from alcor.agent.linux.firewall import Firewall
from alcor.rpc._generated import common_pb2, port_pb2, securitygroup_pb2

Port = port_pb2.PortConfiguration
Group = securitygroup_pb2.SecurityGroupConfiguration
Rule = Group.SecurityGroupRule
V6 = common_pb2.IPV6

SERVER = """
import socket, sys, threading
host, port, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
family = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
if kind == "udp":
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(100)
        print(data.decode(), flush=True)
s.listen(16)
print("ready", flush=True)
def echo(c):
    while data := c.recv(100):
        c.sendall(data)
while True:
    c, _ = s.accept()
    threading.Thread(target=echo, args=(c,), daemon=True).start()
"""

CLIENT = """
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
c = socket.create_connection((host, port), timeout=1)
c.sendall(b"x")
sys.exit(0 if c.recv(1) == b"x" else 1)
"""

SESSION = """
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1)
print("connected", flush=True)
for line in sys.stdin:
    try:
        c.sendall(line.encode())
        print("ok" if c.recv(100) == line.encode() else "bad", flush=True)
    except OSError as e:
        print(type(e).__name__, flush=True)
"""

UDP_SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.sendto(sys.argv[5].encode(), (sys.argv[3], int(sys.argv[4])))
"""


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=30)


@dataclass
class Workload:
    ns: str
    tap: str
    mac: str
    ip4: str
    ip6: str
    port_id: str
    vni: int

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.ns, *argv, check=check)

    def python(self, code: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(["ip", "netns", "exec", self.ns, sys.executable, "-c", code,
                                 *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)

    def config(self, groups: tuple[str, ...] = (), **extra: object) -> Port:
        return Port(id=self.port_id, mac_address=self.mac,
                    fixed_ips=[Port.FixedIp(subnet_id="v4", ip_address=self.ip4),
                               Port.FixedIp(subnet_id="v6", ip_address=self.ip6)],
                    security_group_ids=[Port.SecurityGroupId(id=g) for g in groups],
                    **extra)  # type: ignore[arg-type]


@dataclass
class Host:
    prefix: str
    ns: str
    workloads: dict[str, Workload] = field(default_factory=dict)
    servers: list[subprocess.Popen[str]] = field(default_factory=list)

    def add_workload(self, name: str, vni: int, n: int, ip_suffix: int) -> Workload:
        port_id = f"{name}{secrets.token_hex(8)}-port"
        w = Workload(ns=f"{self.prefix}-{name}", tap=f"tap{port_id[:11]}",
                     mac=f"02:00:00:{vni // 100:02x}:00:{n:02x}", ip4=f"10.0.0.{ip_suffix}",
                     ip6=f"fd00::{ip_suffix}", port_id=port_id, vni=vni)
        sh("ip", "netns", "add", w.ns)
        sh("ip", "-n", self.ns, "link", "add", w.tap, "type", "veth", "peer", "name", "eth0",
           "netns", w.ns)
        sh("ip", "-n", self.ns, "link", "set", w.tap, "master", f"alcbr{vni}", "up")
        sh("ip", "-n", w.ns, "link", "set", "eth0", "address", w.mac)
        sh("ip", "-n", w.ns, "addr", "add", f"{w.ip4}/24", "dev", "eth0")
        sh("ip", "-n", w.ns, "addr", "add", f"{w.ip6}/64", "dev", "eth0", "nodad")
        sh("ip", "-n", w.ns, "link", "set", "eth0", "up")
        sh("ip", "-n", w.ns, "link", "set", "lo", "up")
        self.workloads[name] = w
        return w

    def serve(self, w: Workload, port: int, kind: str = "tcp", host: str | None = None
              ) -> subprocess.Popen[str]:
        server = w.python(SERVER, host or w.ip4, str(port), kind)
        self.servers.append(server)
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        return server


def namespaces(prefix: str) -> list[str]:
    listing = sh("ip", "netns", "list").stdout.split("\n")
    return [line.split()[0] for line in listing if line.startswith(prefix)]


@pytest.fixture
def host() -> Iterator[Host]:
    prefix = f"alt-fw-{secrets.token_hex(3)}"
    h = Host(prefix=prefix, ns=f"{prefix}-host")
    try:
        sh("ip", "netns", "add", h.ns)
        sh("ip", "-n", h.ns, "link", "set", "lo", "up")
        for vni in (100, 200):
            sh("ip", "-n", h.ns, "link", "add", f"alcbr{vni}", "type", "bridge")
            sh("ip", "-n", h.ns, "link", "set", f"alcbr{vni}", "up")
        h.add_workload("w1", 100, 1, 11)
        h.add_workload("w2", 100, 2, 12)
        h.add_workload("w3", 100, 3, 13)
        yield h
    finally:
        for server in h.servers:
            server.kill()
            server.wait()
        for ns in namespaces(prefix):
            sh("ip", "netns", "del", ns, check=False)


def ping(src: Workload, dst: str, source: str | None = None) -> bool:
    extra = ["-I", source] if source else []
    return src.run("ping", "-c", "1", "-W", "1", *extra, dst, check=False).returncode == 0


def tcp(src: Workload, dst: str, port: int) -> bool:
    return src.run(sys.executable, "-c", CLIENT, dst, str(port), check=False).returncode == 0


def rule(direction: int, **kw: object) -> Rule:
    return Rule(id=secrets.token_hex(4), direction=direction, **kw)  # type: ignore[arg-type]


def group(gid: str, rules: list[Rule], egress: bool = True) -> Group:
    """A group; by default with Neutron's allow-all egress rules."""
    if egress:
        rules = [rule(Group.EGRESS, any_protocol=True),
                 rule(Group.EGRESS, any_protocol=True, ethertype=V6), *rules]
    return Group(id=gid, security_group_rules=rules)


ICMP_IN = rule(Group.INGRESS, protocol=common_pb2.ICMP)


def test_ingress_rules_open_icmp_then_one_tcp_port(host: Host) -> None:
    fw = Firewall(host.ns)
    w1, w2 = host.workloads["w1"], host.workloads["w2"]
    host.serve(w2, 80)
    host.serve(w2, 81)
    # The ports arrive before their group: nothing may reach w2.
    fw.set_port(w1.config(("sg",)), w1.tap, 100)
    fw.set_port(w2.config(("sg",)), w2.tap, 100)
    assert not ping(w1, w2.ip4)
    fw.set_group(group("sg", []))
    assert not ping(w1, w2.ip4)
    assert not tcp(w1, w2.ip4, 80)

    fw.set_group(group("sg", [ICMP_IN]))
    assert ping(w1, w2.ip4)
    assert not tcp(w1, w2.ip4, 80)

    fw.set_group(group("sg", [ICMP_IN, rule(Group.INGRESS, protocol=common_pb2.TCP,
                                            port_range_min=80, port_range_max=80)]))
    assert tcp(w1, w2.ip4, 80)
    assert not tcp(w1, w2.ip4, 81)


def test_same_configuration_twice_leaves_the_ruleset_byte_identical(host: Host) -> None:
    w1, w2, w3 = (host.workloads[n] for n in ("w1", "w2", "w3"))
    sg = group("sg", [ICMP_IN, rule(Group.INGRESS, remote_group_id="other")], [w1.ip4])
    configs = [(w3.config(("sg",)), w3.tap), (w1.config(("sg",)), w1.tap),
               (w2.config(("sg",), port_security_enabled=False), w2.tap)]
    fw = Firewall(host.ns)
    fw.set_group(sg)
    for config, tap in configs:
        fw.set_port(config, tap, 100)
    before = fw.ruleset()
    fw.set_group(sg)
    for config, tap in configs:
        fw.set_port(config, tap, 100)
    assert fw.ruleset() == before
    # A restarted agent (a new Firewall) re-applying the same state in another order changes
    # nothing either (each port keeps its mark number), and its sweep keeps what it was given.
    again = Firewall(host.ns)
    for config, tap in reversed(configs):
        again.set_port(config, tap, 100)
    again.set_group(sg)
    again.sweep({w1.port_id, w2.port_id, w3.port_id}, {"sg"})
    assert again.ruleset() == before


def test_remote_group_admits_members_only_and_later_members(host: Host) -> None:
    fw = Firewall(host.ns)
    w1, w2, w3 = (host.workloads[n] for n in ("w1", "w2", "w3"))
    host.serve(w2, 22)
    web = group("web", [rule(Group.INGRESS, protocol=common_pb2.TCP, port_range_min=22,
                             port_range_max=22, remote_group_id="admins")])
    fw.set_group(web)
    fw.set_group(group("admins", []), [w1.ip4])
    fw.set_group(group("others", []))
    fw.set_port(w1.config(("admins",)), w1.tap, 100)
    fw.set_port(w2.config(("web",)), w2.tap, 100)
    fw.set_port(w3.config(("others",)), w3.tap, 100)
    assert tcp(w1, w2.ip4, 22)
    assert not tcp(w3, w2.ip4, 22)

    fw.set_group(group("admins", []), [w1.ip4, w3.ip4])
    assert tcp(w3, w2.ip4, 22)


def test_spoofed_ip_and_mac_are_dropped_unless_an_allowed_pair(host: Host) -> None:
    fw = Firewall(host.ns)
    w1, w2 = host.workloads["w1"], host.workloads["w2"]
    fw.set_group(group("sg", [ICMP_IN]))
    fw.set_port(w1.config(("sg",)), w1.tap, 100)
    fw.set_port(w2.config(("sg",)), w2.tap, 100)
    assert ping(w1, w2.ip4)

    # A second address on w1; ARP from it is dropped, so w2 never learns it.
    w1.run("ip", "addr", "add", "10.0.0.99/24", "dev", "eth0")
    w1.run("ip", "neigh", "flush", "dev", "eth0")
    assert not ping(w1, w2.ip4, source="10.0.0.99")
    assert "10.0.0.99" not in w2.run("ip", "neigh", "show").stdout
    # With the neighbours set by hand, only the IP check is left to drop it.
    w1.run("ip", "neigh", "replace", w2.ip4, "lladdr", w2.mac, "dev", "eth0", "nud", "permanent")
    w2.run("ip", "neigh", "replace", "10.0.0.99", "lladdr", w1.mac, "dev", "eth0", "nud",
           "permanent")
    assert not ping(w1, w2.ip4, source="10.0.0.99")
    pair = [Port.AllowAddressPair(ip_address="10.0.0.96/29")]
    fw.set_port(w1.config(("sg",), allow_address_pairs=pair), w1.tap, 100)
    assert ping(w1, w2.ip4, source="10.0.0.99")

    # Another MAC on w1 is dropped, unless a pair allows it.
    w1.run("ip", "link", "set", "eth0", "address", "02:00:00:00:00:99")
    # (a new MAC flushes the neighbour table; keep ARP out of the picture again)
    w1.run("ip", "neigh", "replace", w2.ip4, "lladdr", w2.mac, "dev", "eth0", "nud", "permanent")
    w2.run("ip", "neigh", "replace", w1.ip4, "lladdr", "02:00:00:00:00:99", "dev", "eth0",
           "nud", "permanent")
    assert not ping(w1, w2.ip4)
    pair.append(Port.AllowAddressPair(ip_address=w1.ip4, mac_address="02:00:00:00:00:99"))
    fw.set_port(w1.config(("sg",), allow_address_pairs=pair), w1.tap, 100)
    assert ping(w1, w2.ip4)


def test_port_security_off_removes_all_filtering(host: Host) -> None:
    fw = Firewall(host.ns)
    w1, w3 = host.workloads["w1"], host.workloads["w3"]
    host.serve(w3, 4000)
    fw.set_group(group("sg", []))
    fw.set_port(w1.config(("sg",)), w1.tap, 100)
    fw.set_port(w3.config(("sg",)), w3.tap, 100)
    assert not ping(w1, w3.ip4)
    fw.set_port(w3.config(("sg",), port_security_enabled=False), w3.tap, 100)
    assert ping(w1, w3.ip4)
    assert tcp(w1, w3.ip4, 4000)
    # Its own traffic is not checked either: a source address it does not own passes.
    w3.run("ip", "addr", "add", "10.0.0.98/24", "dev", "eth0")
    fw.set_group(group("sg", [ICMP_IN]))
    assert ping(w3, w1.ip4, source="10.0.0.98")
    assert f"spoof_{w3.port_id}" not in fw.ruleset()


def test_removing_the_egress_rule_blocks_new_flows_but_keeps_established(host: Host) -> None:
    fw = Firewall(host.ns)
    w1, w2 = host.workloads["w1"], host.workloads["w2"]
    host.serve(w2, 5000)
    tcp_in = rule(Group.INGRESS, protocol=common_pb2.TCP, port_range_min=5000,
                  port_range_max=5000)
    fw.set_group(group("sg", [tcp_in]))
    fw.set_port(w1.config(("sg",)), w1.tap, 100)
    fw.set_port(w2.config(("sg",)), w2.tap, 100)
    session = w1.python(SESSION, w2.ip4, "5000")
    host.servers.append(session)
    assert session.stdin is not None and session.stdout is not None
    assert session.stdout.readline().strip() == "connected"

    fw.set_group(group("sg", [tcp_in], egress=False))
    assert not tcp(w1, w2.ip4, 5000)
    session.stdin.write("still there\n")
    session.stdin.flush()
    assert session.stdout.readline().strip() == "ok"


def test_ipv6_ping_needs_an_ipv6_rule(host: Host) -> None:
    fw = Firewall(host.ns)
    w1, w2 = host.workloads["w1"], host.workloads["w2"]
    fw.set_group(group("sg", [ICMP_IN]))
    fw.set_port(w1.config(("sg",)), w1.tap, 100)
    fw.set_port(w2.config(("sg",)), w2.tap, 100)
    assert not ping(w1, w2.ip6)  # neighbour discovery passes, echo does not
    assert w2.mac in w1.run("ip", "-6", "neigh", "show", w2.ip6).stdout
    fw.set_group(group("sg", [ICMP_IN, rule(Group.INGRESS, protocol=common_pb2.ICMP,
                                            ethertype=V6, remote_ip_prefix="fd00::/64")]))
    assert ping(w1, w2.ip6)


def test_overlapping_addresses_on_two_bridges_do_not_share_conntrack(host: Host) -> None:
    """w4/w5 on alcbr200 reuse w1/w2's addresses.  A UDP flow w1 -> w2 is allowed; the
    'reply' w5 -> w4 with the same addresses and ports must not ride on it."""
    fw = Firewall(host.ns)
    w1, w2 = host.workloads["w1"], host.workloads["w2"]
    w4 = host.add_workload("w4", 200, 4, 11)
    w5 = host.add_workload("w5", 200, 5, 12)
    fw.set_group(group("sg", [rule(Group.INGRESS, protocol=common_pb2.UDP,
                                   port_range_min=6000, port_range_max=6000)]))
    for w in (w1, w2, w4, w5):
        fw.set_port(w.config(("sg",)), w.tap, w.vni)
    w2_inbox = host.serve(w2, 6000, "udp")
    w4_inbox = host.serve(w4, 5000, "udp")
    w1.run(sys.executable, "-c", UDP_SEND, w1.ip4, "5000", w2.ip4, "6000", "request")
    assert w2_inbox.stdout is not None and w2_inbox.stdout.readline().strip() == "request"
    # Without zones this would be the flow's reply (10.0.0.12:6000 -> 10.0.0.11:5000).
    w5.run(sys.executable, "-c", UDP_SEND, w5.ip4, "6000", w4.ip4, "5000", "intruder")
    # Open port 5000 and send again on the same path: had the intruder passed, it would be
    # the first datagram w4 received.
    fw.set_group(group("sg", [rule(Group.INGRESS, protocol=common_pb2.UDP,
                                   port_range_min=5000, port_range_max=6000)]))
    w5.run(sys.executable, "-c", UDP_SEND, w5.ip4, "6000", w4.ip4, "5000", "allowed")
    assert w4_inbox.stdout is not None
    assert w4_inbox.stdout.readline().strip() == "allowed"


def test_remove_and_sweep_leave_no_owned_objects(host: Host) -> None:
    fw = Firewall(host.ns)
    w1, w2, w3 = (host.workloads[n] for n in ("w1", "w2", "w3"))
    fw.set_group(group("a", [rule(Group.INGRESS, remote_group_id="b")]))
    fw.set_group(group("b", [ICMP_IN], [w1.ip4]))
    for w in (w1, w2, w3):
        fw.set_port(w.config(("a", "b")), w.tap, 100)
    empty = Firewall(host.ns)
    fw.remove_port(w3.port_id)
    assert w3.port_id not in fw.ruleset()
    fw.remove_group("b")  # still named by a's rule: its sets stay, empty
    assert ping(w1, w2.ip4) is False
    # A restarted agent that was only told about w1 and group a sweeps the rest.
    empty.set_group(group("a", []))
    empty.set_port(w1.config(("a",)), w1.tap, 100)
    empty.sweep({w1.port_id}, {"a"})
    text = empty.ruleset()
    assert w2.port_id not in text and "sg_b_" not in text and "rg4_b" not in text
    assert ping(w2, w1.ip4) is False  # w1 still filtered
    assert ping(w1, w2.ip4)  # w2 is no longer filtered
    empty.remove_port(w1.port_id)
    empty.remove_group("a")
    text = empty.ruleset()
    assert "spoof_" not in text and "sg_" not in text and "alcbr100" not in text


def test_a_port_moved_to_another_tap_leaves_no_entry_under_the_old_one(host: Host) -> None:
    fw = Firewall(host.ns)
    w1 = host.workloads["w1"]
    fw.set_port(w1.config(), "tapold0000001", 100)
    fw.set_port(w1.config(), w1.tap, 100)
    text = fw.ruleset()
    assert "tapold0000001" not in text
    assert f'"{w1.tap}" : jump spoof_{w1.port_id}' in text

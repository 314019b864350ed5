"""Renders the agent's nftables security groups and anti-spoofing as nft script text (pure
functions: no kernel, no I/O; ``firewall.py`` runs the scripts and keeps the state).

Layout (the agent owns ``table bridge alcor`` and ``table inet alcor``, nothing else):

- ``bridge alcor`` (stateless, sees the tap): ``prerouting`` (priority -200, before
  br_netfilter) dispatches a frame from a tap through the map ``in_ports`` to the port's
  ``spoof_<port>`` chain, which stamps the port's number into the low 16 bits of the packet
  mark and drops frames whose source MAC / (MAC, IP) / ARP sender is not the port's (fixed IPs,
  allowed address pairs; DHCP discovery from 0.0.0.0 and IPv6 DAD from :: allowed) and
  non-IP, non-ARP ethertypes.  ``forward`` (priority -200) dispatches on the output tap through
  ``out_ports`` to ``mark_<port>``, which ORs the destination port's number into the high 16
  bits (per output port: a flooded frame is marked per copy).  Frames from ``alcvx*`` start
  with a zero mark.
- ``inet alcor`` (stateful, br_netfilter hands it bridged IPv4/IPv6 with iifname/oifname =
  the bridge): ``zone_by_bridge`` (prerouting, priority raw) puts each bridge's traffic in its
  own conntrack zone via the map ``zones`` (``alcbr<vni>`` -> a small zone number), so equal
  addresses in two networks never share an entry.  ``filter_egress`` (forward, priority
  filter) and ``filter_ingress`` (filter + 1) accept established/related traffic, then look
  the mark up in ``egress_by_mark`` / ``ingress_by_mark`` and jump to ``egress_<port>`` /
  ``ingress_<port>``.  An ``accept`` there ends only that base chain, so a packet between two
  local ports passes the sender's egress and then the receiver's ingress.  A port chain
  allows DHCP and the IPv6 ND/MLD a port needs (before ``ct state invalid drop``, since
  conntrack calls ND invalid), jumps to ``sg_<group>_ingress`` / ``sg_<group>_egress`` of
  each of its groups (whose rules ``accept``) and ends in ``drop``.  Remote groups are the
  interval sets ``rg4_<group>`` / ``rg6_<group>`` filled with the group's members' addresses.

A port without port security has no chain and no map entry (only its bridge's zone): nothing
filters it.  A port's groups that the host does not know yet are left out of its chains (so
that direction drops) until ``set_group`` brings them.

Rule semantics follow Neutron: the protocol is ``any_protocol`` (every protocol), else
``ip_protocol`` (a number; 0 = any, as iptables' ``-p 0``; ICMP's 1 means ICMPv6 for IPv6),
else the ``Protocol`` enum (TCP, UDP, ICMP; HTTP and ARP cannot be expressed and such a rule
allows nothing).  Port ranges are destination ports for TCP, UDP, SCTP, DCCP and UDP-Lite
(0/0 = every port).  For ICMP, port_range_min/max are type/code and 0 means "not given"
(the wire has no presence bit): 0/0 = every type, type/0 = that type with any code.  A rule
for echo-reply alone (type 0) therefore reads as "every ICMP type".
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from alcor.agent.linux.overlay import VXLAN_PREFIX, bridge_name
from alcor.rpc._generated import common_pb2, port_pb2, securitygroup_pb2

GroupConfig = securitygroup_pb2.SecurityGroupConfiguration
Rule = GroupConfig.SecurityGroupRule

TABLE = "alcor"
MAX_NUMBER = 0xFFFF
"""Port numbers (mark halves) and conntrack zones are 16-bit, from 1."""

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
_PORT_PROTOCOLS = frozenset({6, 17, 33, 132, 136})
_ICMP = {4: 1, 6: 58}
_ENUM_PROTOCOLS = {common_pb2.TCP: 6, common_pb2.UDP: 17}
_ND_EGRESS = ("nd-router-solicit", "nd-neighbor-solicit", "nd-neighbor-advert",
              "mld-listener-report", "mld2-listener-report")
_ND_INGRESS = ("nd-router-advert", "nd-neighbor-solicit", "nd-neighbor-advert",
               "mld-listener-query")


class FirewallError(ValueError):
    """A port or group that cannot be rendered (for example an id unfit for a chain name)."""


def checked_id(value: str) -> str:
    """An id used inside chain and set names: UUID-like characters only."""
    if not _ID.match(value):
        raise FirewallError(f"id {value!r} cannot name an nftables chain")
    return value


def spoof_chain(port_id: str) -> str:
    return f"spoof_{port_id}"


def mark_chain(port_id: str) -> str:
    return f"mark_{port_id}"


def port_chain(port_id: str, direction: str) -> str:
    return f"{direction}_{port_id}"


def group_chain(group_id: str, direction: str) -> str:
    return f"sg_{group_id}_{direction}"


def remote_set(group_id: str, version: int) -> str:
    return f"rg{version}_{group_id}"


def egress_key(number: int) -> int:
    return number


def ingress_key(number: int) -> int:
    return number << 16


# --- what a port needs ---------------------------------------------------------------------


@dataclass(frozen=True)
class PortFilter:
    """The firewall's view of one local port."""

    port_id: str
    tap: str
    vni: int
    secured: bool
    macs: tuple[str, ...]
    v4: tuple[tuple[str, IPNet], ...]
    v6: tuple[tuple[str, IPNet], ...]
    group_ids: tuple[str, ...]


def port_filter(port: port_pb2.PortConfiguration, tap: str, vni: int) -> PortFilter:
    secured = not port.HasField("port_security_enabled") or port.port_security_enabled
    mac = port.mac_address.lower()
    pairs = [(mac, ip.ip_address) for ip in port.fixed_ips if ip.ip_address]
    pairs += [((p.mac_address or mac).lower(), p.ip_address)
              for p in port.allow_address_pairs if p.ip_address]
    macs = sorted({mac} | {m for m, _ in pairs})
    pairs += [(m, str(link_local(m))) for m in macs]
    return PortFilter(
        port_id=checked_id(port.id), tap=tap, vni=vni, secured=secured, macs=tuple(macs),
        v4=_collapsed(pairs, 4), v6=_collapsed(pairs, 6),
        group_ids=tuple(dict.fromkeys(checked_id(g.id) for g in port.security_group_ids)))


def link_local(mac: str) -> ipaddress.IPv6Address:
    """The EUI-64 link-local address a MAC gives (what Neutron lets a port use)."""
    octets = [int(x, 16) for x in mac.split(":")]
    eui = [octets[0] ^ 0x02, *octets[1:3], 0xFF, 0xFE, *octets[3:6]]
    return ipaddress.IPv6Address(bytes([0xFE, 0x80, 0, 0, 0, 0, 0, 0, *eui]))


def _collapsed(pairs: Iterable[tuple[str, str]], version: int) -> tuple[tuple[str, IPNet], ...]:
    """(MAC, network) pairs of one IP version, per MAC with overlaps merged (an interval set
    must not hold overlapping elements), sorted."""
    by_mac: dict[str, list[IPNet]] = {}
    for mac, address in pairs:
        network = ipaddress.ip_network(address, strict=False)
        if network.version == version:
            by_mac.setdefault(mac, []).append(network)
    return tuple((mac, net) for mac in sorted(by_mac) for net in _collapse(by_mac[mac]))


def _collapse(nets: Sequence[IPNet]) -> list[IPNet]:
    """Networks of one version merged where they overlap or adjoin, sorted."""
    v4 = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in nets if isinstance(n, ipaddress.IPv6Network)]
    return [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]


def member_networks(addresses: Iterable[str], version: int) -> list[IPNet]:
    nets = [ipaddress.ip_network(a, strict=False) for a in addresses]
    return _collapse([n for n in nets if n.version == version])


# --- the base tables ------------------------------------------------------------------------


def base_script() -> list[str]:
    """The tables, maps and hooked chains (idempotent: safe to run again)."""
    b, i = f"bridge {TABLE}", f"inet {TABLE}"
    return [
        f"add table {b}",
        f"add map {b} in_ports {{ type ifname : verdict; }}",
        f"add map {b} out_ports {{ type ifname : verdict; }}",
        f"add chain {b} prerouting {{ type filter hook prerouting priority -200; "
        "policy accept; }",
        f"flush chain {b} prerouting",
        f'add rule {b} prerouting iifname "{VXLAN_PREFIX}*" meta mark set 0',
        f"add rule {b} prerouting iifname vmap @in_ports",
        f"add chain {b} forward {{ type filter hook forward priority -200; policy accept; }}",
        f"flush chain {b} forward",
        f"add rule {b} forward oifname vmap @out_ports",
        f"add table {i}",
        f"add map {i} zones {{ typeof iifname : ct zone; }}",
        f"add map {i} egress_by_mark {{ type mark : verdict; }}",
        f"add map {i} ingress_by_mark {{ type mark : verdict; }}",
        f"add chain {i} zone_by_bridge {{ type filter hook prerouting priority raw; "
        "policy accept; }",
        f"flush chain {i} zone_by_bridge",
        f"add rule {i} zone_by_bridge ct zone set iifname map @zones",
        f"add chain {i} filter_egress {{ type filter hook forward priority filter; "
        "policy accept; }",
        f"flush chain {i} filter_egress",
        f"add rule {i} filter_egress ct state established,related accept",
        f"add rule {i} filter_egress meta mark & 0x0000ffff vmap @egress_by_mark",
        f"add chain {i} filter_ingress {{ type filter hook forward priority filter + 1; "
        "policy accept; }",
        f"flush chain {i} filter_ingress",
        f"add rule {i} filter_ingress ct state established,related accept",
        f"add rule {i} filter_ingress meta mark & 0xffff0000 vmap @ingress_by_mark",
    ]


def zone_script(vni: int, zone: int) -> list[str]:
    return [f'add element inet {TABLE} zones {{ "{bridge_name(vni)}" : {zone} }}']


def zone_removal(vni: int) -> list[str]:
    return [f'delete element inet {TABLE} zones {{ "{bridge_name(vni)}" }}']


# --- ports ----------------------------------------------------------------------------------


def port_script(port: PortFilter, number: int, groups: Collection[str]) -> list[str]:
    """A secured port's chains (rewritten whole) and map entries."""
    return [*spoof_script(port, number), *mark_script(port.port_id, number),
            *port_chains_script(port, groups), *port_elements(port.port_id, port.tap, number)]


def port_elements(port_id: str, tap: str, number: int) -> list[str]:
    b, i = f"bridge {TABLE}", f"inet {TABLE}"
    return [
        f'add element {b} in_ports {{ "{tap}" : jump {spoof_chain(port_id)} }}',
        f'add element {b} out_ports {{ "{tap}" : jump {mark_chain(port_id)} }}',
        f"add element {i} egress_by_mark {{ {egress_key(number):#010x} : "
        f"jump {port_chain(port_id, 'egress')} }}",
        f"add element {i} ingress_by_mark {{ {ingress_key(number):#010x} : "
        f"jump {port_chain(port_id, 'ingress')} }}",
    ]


def tap_removal(tap: str) -> list[str]:
    return [f'delete element bridge {TABLE} {m} {{ "{tap}" }}' for m in ("in_ports", "out_ports")]


def mark_removal(number: int) -> list[str]:
    return [f"delete element inet {TABLE} egress_by_mark {{ {egress_key(number):#010x} }}",
            f"delete element inet {TABLE} ingress_by_mark {{ {ingress_key(number):#010x} }}"]


def port_chain_removal(port_id: str) -> list[str]:
    return [f"delete chain bridge {TABLE} {spoof_chain(port_id)}",
            f"delete chain bridge {TABLE} {mark_chain(port_id)}",
            f"delete chain inet {TABLE} {port_chain(port_id, 'egress')}",
            f"delete chain inet {TABLE} {port_chain(port_id, 'ingress')}"]


def _chain(family: str, name: str, rules: Sequence[str]) -> list[str]:
    head = f"{family} {TABLE} {name}"
    return [f"add chain {head}", f"flush chain {head}", *(f"add rule {head} {r}" for r in rules)]


def spoof_script(port: PortFilter, number: int) -> list[str]:
    """Anti-spoofing for frames from the port's tap; stamps the port's number."""
    macs = ", ".join(port.macs)
    v4 = [f"{mac} . {net}" for mac, net in port.v4]
    v6 = [f"{mac} . {net}" for mac, net in port.v6]
    arp = sorted({f"{mac} . 0.0.0.0" for mac in port.macs} | set(v4))
    rules = [
        f"meta mark set {egress_key(number):#010x}",
        f"ether saddr != {{ {macs} }} drop",
        f"ether type arp arp saddr ether . arp saddr ip != {{ {', '.join(arp)} }} drop",
        "ether type ip ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 "
        "return",
        f"ether type ip ether saddr . ip saddr != {{ {', '.join(v4)} }} drop" if v4
        else "ether type ip drop",
        "ether type ip6 ip6 saddr :: meta l4proto ipv6-icmp return",
        f"ether type ip6 ether saddr . ip6 saddr != {{ {', '.join(v6)} }} drop",
        "ether type != { ip, arp, ip6 } drop",
    ]
    return _chain("bridge", spoof_chain(port.port_id), rules)


def mark_script(port_id: str, number: int) -> list[str]:
    """Stamps the destination port's number on a frame about to leave through its tap."""
    return _chain("bridge", mark_chain(port_id),
                  [f"meta mark set meta mark | {ingress_key(number):#010x}"])


def port_chains_script(port: PortFilter, groups: Collection[str]) -> list[str]:
    """The port's stateful egress and ingress chains: the always-allowed control traffic,
    then a jump to each group the host knows, then drop."""
    known = [g for g in port.group_ids if g in groups]
    egress = [
        "meta nfproto ipv4 udp sport 68 udp dport 67 accept",
        "meta nfproto ipv6 udp sport 546 udp dport 547 accept",
        "meta nfproto ipv4 udp sport 67 udp dport 68 drop",
        "meta nfproto ipv6 udp sport 547 udp dport 546 drop",
        "icmpv6 type nd-router-advert drop",
        f"icmpv6 type {{ {', '.join(_ND_EGRESS)} }} accept",
        "ct state invalid drop",
        *(f"jump {group_chain(g, 'egress')}" for g in known),
        "drop",
    ]
    ingress = [
        "meta nfproto ipv4 udp sport 67 udp dport 68 accept",
        "meta nfproto ipv6 udp sport 547 udp dport 546 accept",
        f"icmpv6 type {{ {', '.join(_ND_INGRESS)} }} accept",
        "ct state invalid drop",
        *(f"jump {group_chain(g, 'ingress')}" for g in known),
        "drop",
    ]
    return [*_chain("inet", port_chain(port.port_id, "egress"), egress),
            *_chain("inet", port_chain(port.port_id, "ingress"), ingress)]


# --- groups ---------------------------------------------------------------------------------


def remote_groups(group: GroupConfig) -> list[str]:
    """The groups this group's rules name as remote_group_id, in order, once each."""
    return list(dict.fromkeys(checked_id(r.remote_group_id)
                              for r in group.security_group_rules if r.remote_group_id))


def sets_script(group_id: str) -> list[str]:
    """Create a group's remote-address sets if they do not exist (leaves their elements)."""
    return [f"add set inet {TABLE} {remote_set(group_id, v)} "
            f"{{ type ipv{v}_addr; flags interval; }}" for v in (4, 6)]


def members_script(group_id: str, members: Collection[str]) -> list[str]:
    """Replace a group's remote-address sets' elements with its members' addresses."""
    lines = sets_script(group_id)
    for version in (4, 6):
        name = f"inet {TABLE} {remote_set(group_id, version)}"
        lines.append(f"flush set {name}")
        nets = member_networks(members, version)
        if nets:
            lines.append(f"add element {name} {{ {', '.join(map(str, nets))} }}")
    return lines


def sets_removal(group_id: str) -> list[str]:
    return [f"delete set inet {TABLE} {remote_set(group_id, v)}" for v in (4, 6)]


def sets_flush(group_id: str) -> list[str]:
    return [f"flush set inet {TABLE} {remote_set(group_id, v)}" for v in (4, 6)]


def group_script(group: GroupConfig, members: Collection[str] = ()) -> list[str]:
    """A group's two rule chains (rewritten whole), its sets (holding ``members``, its
    members' addresses) and the sets it refers to."""
    lines = [line for g in remote_groups(group) if g != group.id for line in sets_script(g)]
    lines += members_script(group.id, members)
    for direction, wanted in (("ingress", GroupConfig.INGRESS), ("egress", GroupConfig.EGRESS)):
        rules = [r for r in group.security_group_rules if r.direction == wanted]
        lines += _chain("inet", group_chain(group.id, direction),
                        [text for r in rules if (text := rule_text(r, direction)) is not None])
    return lines


def group_removal(group_id: str) -> list[str]:
    return [f"delete chain inet {TABLE} {group_chain(group_id, d)}"
            for d in ("ingress", "egress")]


def group_flush(group_id: str) -> list[str]:
    return [f"flush chain inet {TABLE} {group_chain(group_id, d)}"
            for d in ("ingress", "egress")]


def rule_protocol(rule: Rule) -> int | None:
    """The rule's IP protocol number, None for any, -1 for one that cannot be expressed."""
    version = 6 if rule.ethertype == common_pb2.IPV6 else 4
    if rule.any_protocol:
        return None
    if rule.HasField("ip_protocol"):
        number = rule.ip_protocol
        if number == 0:
            return None
        return _ICMP[version] if number in (1, 58) else number
    if rule.protocol == common_pb2.ICMP:
        return _ICMP[version]
    return _ENUM_PROTOCOLS.get(rule.protocol, -1)


def rule_text(rule: Rule, direction: str) -> str | None:
    """One rule as an nft rule that accepts what it allows; None when it allows nothing."""
    version = 6 if rule.ethertype == common_pb2.IPV6 else 4
    protocol = rule_protocol(rule)
    if protocol == -1:
        return None
    parts = [f"meta nfproto ipv{version}"]
    if protocol is not None:
        parts += [f"meta l4proto {protocol}", *_ports(protocol, rule, version)]
    remote = _remote(rule, direction, version)
    if remote is None:
        return None
    parts += [*remote, "accept"]
    return " ".join(parts)


def _ports(protocol: int, rule: Rule, version: int) -> list[str]:
    low, high = rule.port_range_min, rule.port_range_max
    if protocol in _PORT_PROTOCOLS and (low or high):
        high = high or low
        return [f"th dport {low}" if low == high else f"th dport {low}-{high}"]
    if protocol == _ICMP[version] and low:
        word = "icmp" if version == 4 else "icmpv6"
        return [f"{word} type {low}", *([f"{word} code {high}"] if high else [])]
    return []


def _remote(rule: Rule, direction: str, version: int) -> list[str] | None:
    """The match on the far side's address; None when the rule can never match."""
    field = f"{'ip' if version == 4 else 'ip6'} {'saddr' if direction == 'ingress' else 'daddr'}"
    if rule.remote_group_id:
        return [f"{field} @{remote_set(checked_id(rule.remote_group_id), version)}"]
    if rule.remote_ip_prefix:
        network = ipaddress.ip_network(rule.remote_ip_prefix, strict=False)
        if network.version != version:
            return None
        return [f"{field} {network}"] if network.prefixlen else []
    return []

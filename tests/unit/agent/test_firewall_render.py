"""The nft script rendering of security groups and anti-spoofing (no kernel, no root), and
the parsing of the kernel's JSON listing back into the firewall's state."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from alcor.agent.linux import firewall_rules as fr
from alcor.agent.linux.firewall import parse_view
from alcor.rpc._generated import common_pb2, port_pb2, securitygroup_pb2

Port = port_pb2.PortConfiguration
Group = securitygroup_pb2.SecurityGroupConfiguration
Rule = Group.SecurityGroupRule
IN, OUT = Group.INGRESS, Group.EGRESS


def text(rule: Rule) -> str | None:
    return fr.rule_text(rule, "ingress" if rule.direction == IN else "egress")


@pytest.mark.parametrize(("rule", "expected"), [
    (Rule(direction=IN, any_protocol=True), "meta nfproto ipv4 accept"),
    (Rule(direction=IN, ethertype=common_pb2.IPV6, any_protocol=True),
     "meta nfproto ipv6 accept"),
    (Rule(direction=IN, protocol=common_pb2.TCP),
     "meta nfproto ipv4 meta l4proto 6 accept"),
    (Rule(direction=IN, protocol=common_pb2.TCP, port_range_min=80, port_range_max=80),
     "meta nfproto ipv4 meta l4proto 6 th dport 80 accept"),
    (Rule(direction=IN, protocol=common_pb2.UDP, port_range_min=5000, port_range_max=6000),
     "meta nfproto ipv4 meta l4proto 17 th dport 5000-6000 accept"),
    (Rule(direction=IN, protocol=common_pb2.ICMP),
     "meta nfproto ipv4 meta l4proto 1 accept"),
    (Rule(direction=IN, protocol=common_pb2.ICMP, port_range_min=8),
     "meta nfproto ipv4 meta l4proto 1 icmp type 8 accept"),
    (Rule(direction=IN, protocol=common_pb2.ICMP, port_range_min=3, port_range_max=1),
     "meta nfproto ipv4 meta l4proto 1 icmp type 3 icmp code 1 accept"),
    (Rule(direction=IN, protocol=common_pb2.ICMP, ethertype=common_pb2.IPV6,
          port_range_min=128),
     "meta nfproto ipv6 meta l4proto 58 icmpv6 type 128 accept"),
    (Rule(direction=IN, ip_protocol=1, ethertype=common_pb2.IPV6),
     "meta nfproto ipv6 meta l4proto 58 accept"),
    (Rule(direction=IN, ip_protocol=132, port_range_min=100, port_range_max=200),
     "meta nfproto ipv4 meta l4proto 132 th dport 100-200 accept"),
    (Rule(direction=IN, ip_protocol=47), "meta nfproto ipv4 meta l4proto 47 accept"),
    (Rule(direction=IN, ip_protocol=0), "meta nfproto ipv4 accept"),
    (Rule(direction=IN, any_protocol=True, remote_ip_prefix="10.1.0.0/16"),
     "meta nfproto ipv4 ip saddr 10.1.0.0/16 accept"),
    (Rule(direction=OUT, any_protocol=True, remote_ip_prefix="10.1.0.0/16"),
     "meta nfproto ipv4 ip daddr 10.1.0.0/16 accept"),
    (Rule(direction=OUT, any_protocol=True, remote_ip_prefix="0.0.0.0/0"),
     "meta nfproto ipv4 accept"),
    (Rule(direction=IN, ethertype=common_pb2.IPV6, protocol=common_pb2.TCP,
          remote_group_id="web"),
     "meta nfproto ipv6 meta l4proto 6 ip6 saddr @rg6_web accept"),
    (Rule(direction=OUT, any_protocol=True, remote_group_id="web"),
     "meta nfproto ipv4 ip daddr @rg4_web accept"),
])
def test_rule_text(rule: Rule, expected: str) -> None:
    assert text(rule) == expected


@pytest.mark.parametrize("rule", [
    Rule(direction=IN, protocol=common_pb2.HTTP),
    Rule(direction=IN, protocol=common_pb2.ARP),
    Rule(direction=IN, any_protocol=True, remote_ip_prefix="fd00::/64"),
])
def test_rules_that_cannot_match_allow_nothing(rule: Rule) -> None:
    assert text(rule) is None


def test_icmp_type_zero_reads_as_every_type() -> None:
    """0 on the wire means "not given" (documented limitation: echo-reply alone)."""
    assert text(Rule(direction=IN, protocol=common_pb2.ICMP, port_range_min=0,
                     port_range_max=0)) == "meta nfproto ipv4 meta l4proto 1 accept"


def port(**kw: object) -> Port:
    base: dict[str, object] = {
        "id": "p1", "mac_address": "02:00:00:AA:00:01",
        "fixed_ips": [Port.FixedIp(ip_address="10.0.0.11"),
                      Port.FixedIp(ip_address="fd00::11")],
        "security_group_ids": [Port.SecurityGroupId(id="a"), Port.SecurityGroupId(id="b"),
                               Port.SecurityGroupId(id="a")]}
    base.update(kw)
    return Port(**base)  # type: ignore[arg-type]


def test_port_filter_collects_macs_and_addresses() -> None:
    pairs = [Port.AllowAddressPair(ip_address="10.0.0.0/24"),
             Port.AllowAddressPair(ip_address="10.9.0.1", mac_address="02:00:00:00:00:99")]
    pf = fr.port_filter(port(allow_address_pairs=pairs), "tapp1", 100)
    assert pf.secured
    assert pf.macs == ("02:00:00:00:00:99", "02:00:00:aa:00:01")
    # 10.0.0.11 lies inside the pair's /24: one interval, no overlap in the set.
    assert [(m, str(n)) for m, n in pf.v4] == [("02:00:00:00:00:99", "10.9.0.1/32"),
                                              ("02:00:00:aa:00:01", "10.0.0.0/24")]
    assert ("02:00:00:aa:00:01", ipaddress.ip_network("fe80::ff:feaa:1/128")) in pf.v6
    assert pf.group_ids == ("a", "b")


def test_port_security_absent_means_enabled_and_false_disables() -> None:
    assert fr.port_filter(port(), "t", 1).secured
    assert fr.port_filter(port(port_security_enabled=True), "t", 1).secured
    assert not fr.port_filter(port(port_security_enabled=False), "t", 1).secured


def test_link_local_is_eui64() -> None:
    assert str(fr.link_local("fa:16:3e:12:34:56")) == "fe80::f816:3eff:fe12:3456"


def test_port_script_jumps_only_to_known_groups_and_ends_in_drop() -> None:
    pf = fr.port_filter(port(), "tapp1", 100)
    script = fr.port_script(pf, 7, {"a"})
    assert "add rule inet alcor egress_p1 jump sg_a_egress" in script
    assert "add rule inet alcor ingress_p1 jump sg_a_ingress" in script
    assert not any("sg_b_" in line for line in script)
    ingress = [line for line in script if line.startswith("add rule inet alcor ingress_p1")]
    assert ingress[-1].endswith(" drop")
    assert ingress.index("add rule inet alcor ingress_p1 ct state invalid drop") < len(ingress) - 2
    assert "add rule bridge alcor spoof_p1 meta mark set 0x00000007" in script
    assert "add rule bridge alcor mark_p1 meta mark set meta mark | 0x00070000" in script
    assert 'add element bridge alcor in_ports { "tapp1" : jump spoof_p1 }' in script
    assert "add element inet alcor ingress_by_mark { 0x00070000 : jump ingress_p1 }" in script
    # every chain is rewritten whole: flushed right after it is (idempotently) added
    for i, line in enumerate(script):
        if line.startswith("add chain"):
            assert script[i + 1] == line.replace("add chain", "flush chain", 1)


def test_spoof_chain_checks_mac_ip_and_arp() -> None:
    pf = fr.port_filter(port(), "tapp1", 100)
    rules = [line.split("spoof_p1 ", 1)[1] for line in fr.spoof_script(pf, 1)
             if line.startswith("add rule")]
    assert "ether saddr != { 02:00:00:aa:00:01 } drop" in rules
    assert ("ether type ip ether saddr . ip saddr != { 02:00:00:aa:00:01 . 10.0.0.11/32 } drop"
            in rules)
    assert ("ether type arp arp saddr ether . arp saddr ip != { 02:00:00:aa:00:01 . 0.0.0.0, "
            "02:00:00:aa:00:01 . 10.0.0.11/32 } drop") in rules
    v4_only = fr.port_filter(port(fixed_ips=[]), "tapp1", 100)
    assert "add rule bridge alcor spoof_p1 ether type ip drop" in fr.spoof_script(v4_only, 1)


def test_group_script_fills_sets_and_creates_referenced_ones() -> None:
    members = ["10.0.0.12", "10.0.0.13", "fd00::12", "10.0.0.12"]
    group = Group(id="web", security_group_rules=[
                      Rule(direction=IN, protocol=common_pb2.TCP, remote_group_id="admins"),
                      Rule(direction=OUT, any_protocol=True)])
    script = fr.group_script(group, members)
    assert script[:2] == fr.sets_script("admins")
    assert "flush set inet alcor rg4_web" in script
    # duplicates dropped and neighbours merged (an interval set refuses overlaps)
    assert "add element inet alcor rg4_web { 10.0.0.12/31 }" in script
    assert "add element inet alcor rg6_web { fd00::12/128 }" in script
    assert ("add rule inet alcor sg_web_ingress meta nfproto ipv4 meta l4proto 6 "
            "ip saddr @rg4_admins accept") in script
    assert "add rule inet alcor sg_web_egress meta nfproto ipv4 accept" in script
    assert fr.group_script(group, members) == script


def test_empty_members_leave_sets_empty() -> None:
    script = fr.members_script("g", [])
    assert not any(line.startswith("add element") for line in script)


@pytest.mark.parametrize("bad", ["", "a b", 'x"; flush ruleset', "-x", "a" * 300])
def test_ids_unfit_for_chain_names_are_refused(bad: str) -> None:
    with pytest.raises(fr.FirewallError):
        fr.checked_id(bad)


def test_base_script_hooks() -> None:
    script = "\n".join(fr.base_script())
    assert "hook prerouting priority raw" in script
    assert "filter_ingress { type filter hook forward priority filter + 1;" in script
    assert "ct zone set iifname map @zones" in script


def test_parse_view_reads_marks_taps_zones_groups_and_sets() -> None:
    listing: list[dict[str, Any]] = [
        {"metainfo": {}},
        {"table": {"family": "inet", "name": "alcor"}},
        {"map": {"family": "inet", "name": "zones", "elem": [["alcbr100", 3]]}},
        {"map": {"family": "inet", "name": "egress_by_mark",
                 "elem": [[5, {"jump": {"target": "egress_p1"}}]]}},
        {"chain": {"family": "inet", "name": "egress_p1"}},
        {"chain": {"family": "inet", "name": "sg_web_ingress"}},
        {"chain": {"family": "inet", "name": "filter_egress"}},
        {"set": {"family": "inet", "name": "rg4_web"}},
    ]
    bridge: list[dict[str, Any]] = [
        {"table": {"family": "bridge", "name": "alcor"}},
        {"map": {"family": "bridge", "name": "in_ports",
                 "elem": [["tapp1", {"jump": {"target": "spoof_p1"}}]]}},
        {"chain": {"family": "bridge", "name": "spoof_p1"}},
    ]
    view = parse_view([bridge, listing])
    assert view.present
    assert view.zones == {100: 3}
    assert view.marks == {"p1": 5}
    assert view.taps == {"p1": "tapp1"}
    assert view.port_chains == {"p1": {"inet egress_p1", "bridge spoof_p1"}}
    assert view.groups == {"web"}
    assert view.sets == {"web"}

"""Security group rules' canonical form and identity, the default group, and the services'
refusals, on a real SQLite store (ports are bound by inserting rows, not through ports)."""

from __future__ import annotations

from typing import Any

import pytest

from alcor import errors
from alcor.api.app import Services
from alcor.api.attributes import apply_create
from alcor.api.definitions import RESOURCES
from alcor.context import RequestContext
from alcor.db.store import DuplicateEntry, Store, Transaction
from alcor.query import ListQuery
from alcor.services.resource import stamp_new
from alcor.services.security_groups import (
    canonical_rule,
    ensure_default_security_group,
    listed_project,
    protocol_number,
    rule_fingerprint,
)


def _checked(**body: Any) -> dict[str, Any]:
    """A rule body as the API layer hands it to the service."""
    body.setdefault("security_group_id", "sg-1")
    body.setdefault("direction", "ingress")
    return apply_create(RESOURCES["security-group-rules"], body, "proj-a")


def _canonical(**body: Any) -> dict[str, Any]:
    return canonical_rule(_checked(**body))


# --- canonical form and fingerprint (pure) ------------------------------------------------


def test_protocol_names_and_numbers_are_one_protocol() -> None:
    assert protocol_number("tcp") == protocol_number("6") == 6
    assert protocol_number("icmpv6") == protocol_number("ipv6-icmp") == 58
    assert protocol_number("icmp", "IPv6") == protocol_number("1", "IPv6") == 58
    assert protocol_number("icmp", "IPv4") == 1
    assert protocol_number(None) is protocol_number("any") is None
    assert protocol_number("200") == 200


@pytest.mark.parametrize(("a", "b"), [
    ({"protocol": "tcp"}, {"protocol": "6"}),
    ({"protocol": "tcp", "port_range_min": 1, "port_range_max": 65535}, {"protocol": "tcp"}),
    ({"remote_ip_prefix": "0.0.0.0/0"}, {}),
    ({"ethertype": "IPv6", "remote_ip_prefix": "::/0"}, {"ethertype": "IPv6"}),
    ({"ethertype": "IPv6", "protocol": "icmp"}, {"ethertype": "IPv6", "protocol": "58"}),
    ({"remote_ip_prefix": "10.0.0.1"}, {"remote_ip_prefix": "10.0.0.1/32"}),
])
def test_equivalent_rules_share_a_fingerprint(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert _canonical(**a)["fingerprint"] == _canonical(**b)["fingerprint"]


@pytest.mark.parametrize(("a", "b"), [
    ({"protocol": "tcp"}, {"protocol": "udp"}),
    ({"direction": "egress"}, {"direction": "ingress"}),
    ({"ethertype": "IPv6"}, {"ethertype": "IPv4"}),
    ({"protocol": "tcp", "port_range_min": 1, "port_range_max": 2},
     {"protocol": "tcp", "port_range_min": 1, "port_range_max": 3}),
    ({"remote_ip_prefix": "10.0.0.0/24"}, {"remote_ip_prefix": "10.0.0.5/24"}),
    ({"remote_group_id": "g1"}, {"remote_group_id": "g2"}),
    ({"protocol": "icmp", "port_range_min": 8}, {"protocol": "icmp", "port_range_min": 8,
                                                 "port_range_max": 0}),
])
def test_different_rules_have_different_fingerprints(a: dict[str, Any],
                                                     b: dict[str, Any]) -> None:
    assert _canonical(**a)["fingerprint"] != _canonical(**b)["fingerprint"]


def test_canonical_rule_fills_normalized_cidr() -> None:
    rule = _canonical(remote_ip_prefix="192.168.7.9/16")
    assert (rule["remote_ip_prefix"], rule["normalized_cidr"]) == ("192.168.7.9/16",
                                                                   "192.168.0.0/16")
    assert _canonical()["normalized_cidr"] is None


def test_canonical_rule_does_not_change_its_input() -> None:
    item = _checked(ethertype="IPv6", protocol="icmp")
    canonical_rule(item)
    assert item["protocol"] == "icmp"


@pytest.mark.parametrize(("body", "error"), [
    ({"port_range_min": 1, "port_range_max": 2}, errors.SecurityGroupProtocolRequiredWithPorts),
    ({"protocol": "tcp", "port_range_min": 3, "port_range_max": 2},
     errors.SecurityGroupInvalidPortRange),
    ({"protocol": "sctp", "port_range_min": 0, "port_range_max": 2},
     errors.SecurityGroupInvalidPortValue),
    ({"protocol": "vrrp", "port_range_min": 1, "port_range_max": 2},
     errors.SecurityGroupInvalidProtocolForPort),
    ({"protocol": "icmp", "port_range_min": 1, "port_range_max": 256},
     errors.SecurityGroupInvalidIcmpValue),
    ({"protocol": "icmp", "port_range_max": 1}, errors.SecurityGroupMissingIcmpType),
    ({"remote_ip_prefix": "::1"}, errors.SecurityGroupRuleParameterConflict),
    ({"protocol": "ipv6-frag"}, errors.SecurityGroupEthertypeConflictWithProtocol),
    ({"remote_ip_prefix": "1.2.3.4", "remote_group_id": "g"},
     errors.SecurityGroupMultipleRemoteEntites),
    ({"remote_group_id": "g", "remote_address_group_id": "a"},
     errors.SecurityGroupMultipleRemoteEntites),
])
def test_canonical_rule_refusals(body: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        _canonical(**body)


def test_full_port_range_is_no_range_even_without_protocol() -> None:
    rule = _canonical(port_range_min=1, port_range_max=65535)
    assert (rule["protocol"], rule["port_range_min"], rule["port_range_max"]) == (
        None, None, None)


def test_default_group_rules_use_the_canonical_fingerprint(store: Store) -> None:
    group_id = store.write(ensure_default_security_group, "proj-a")
    rules = store.read(lambda txn: txn.select("security_group_rules",
                                              {"security_group_id": group_id}))
    expected = {
        _canonical(security_group_id=group_id, direction="egress", ethertype=e)["fingerprint"]
        for e in ("IPv4", "IPv6")
    } | {
        _canonical(security_group_id=group_id, ethertype=e, remote_group_id=group_id)[
            "fingerprint"]
        for e in ("IPv4", "IPv6")
    }
    assert {r["fingerprint"] for r in rules} == expected
    assert {r["fingerprint"] for r in rules} == {rule_fingerprint(r) for r in rules}


def test_listed_project_prefers_the_filter() -> None:
    ctx = RequestContext.admin("me")
    assert listed_project(ctx, ListQuery(filters={"project_id": ["p1", "p2"]})) == "p1"
    assert listed_project(ctx, ListQuery(project_ids=["native"])) == "native"
    assert listed_project(ctx, ListQuery()) == "me"


# --- the default group --------------------------------------------------------------------


def test_ensure_default_is_idempotent_and_recorded(store: Store) -> None:
    first = store.write(ensure_default_security_group, "proj-a")
    assert store.write(ensure_default_security_group, "proj-a") == first
    assert store.write(ensure_default_security_group, "proj-b") != first

    def read(txn: Transaction) -> tuple[dict[str, Any] | None, list[str]]:
        records = txn.select("outbox", {"project_id": "proj-a"}, order_by=("seq",))
        return txn.get("security_groups", first), [r["resource_type"] for r in records]

    group, records = store.read(read)
    assert group is not None
    assert (group["name"], group["stateful"], group["revision_number"]) == ("default", True, 1)
    assert records == ["security_group"] + ["security_group_rule"] * 4


def test_duplicate_rule_rows_are_refused_by_the_database(store: Store) -> None:
    group_id = store.write(ensure_default_security_group, "proj-a")

    def insert_copy(txn: Transaction) -> None:
        rule = txn.select("security_group_rules", {"security_group_id": group_id})[0]
        fields = {k: v for k, v in rule.items() if k not in ("id", "created_at", "updated_at")}
        txn.insert("security_group_rules", stamp_new(fields))

    with pytest.raises(DuplicateEntry):
        store.write(insert_copy)


# --- services -----------------------------------------------------------------------------


def _create_group(services: Services, ctx: RequestContext, name: str) -> dict[str, Any]:
    body = apply_create(RESOURCES["security-groups"], {"name": name}, ctx.project_id)
    return services.by_collection["security-groups"].create(ctx, [body])[0]


def _bind(services: Services, store: Store, ctx: RequestContext, group_id: str) -> str:
    """Bind a group to a new port the way the port service records it."""
    net_body = apply_create(RESOURCES["networks"], {"name": "n"}, ctx.project_id)
    net = services.by_collection["networks"].create(ctx, [net_body])[0]
    port = stamp_new({
        "project_id": ctx.project_id, "name": "", "description": "", "network_id": net["id"],
        "admin_state_up": True, "status": "DOWN", "mac_address": "fa:16:3e:00:00:01",
        "device_id": "", "device_owner": "", "port_security_enabled": True,
        "binding:host_id": "", "binding:vif_type": "unbound", "binding:vnic_type": "normal",
        "binding:profile": {}, "binding:vif_details": {}, "fixed_ips": [],
        "security_groups": [group_id], "allowed_address_pairs": [], "extra_dhcp_opts": [],
        "dns_name": "", "qos_policy_id": None, "ip_allocation": "immediate",
    })

    def insert(txn: Transaction) -> None:
        txn.insert("ports", port)
        txn.insert("port_security_groups", {"port_id": port["id"],
                                            "security_group_id": group_id})

    store.write(insert)
    return str(port["id"])


def test_bound_group_cannot_be_deleted_or_change_statefulness(
        services: Services, store: Store, ctx: RequestContext) -> None:
    groups = services.by_collection["security-groups"]
    sg = _create_group(services, ctx, "web")
    port_id = _bind(services, store, ctx, sg["id"])

    with pytest.raises(errors.SecurityGroupInUse):
        groups.delete(ctx, sg["id"])
    with pytest.raises(errors.SecurityGroupInUse):
        groups.update(ctx, sg["id"], {"stateful": False})
    assert groups.update(ctx, sg["id"], {"description": "still"})["description"] == "still"

    store.write(lambda txn: txn.delete("ports", {"id": port_id}))
    groups.delete(ctx, sg["id"])
    with pytest.raises(errors.SecurityGroupNotFound):
        groups.get(ctx, sg["id"])


def test_rules_of_another_projects_group_are_hidden(services: Services,
                                                    ctx: RequestContext) -> None:
    sg = _create_group(services, ctx, "mine")
    other = RequestContext(project_id="proj-b", is_admin=False)
    body = apply_create(RESOURCES["security-group-rules"],
                        {"security_group_id": sg["id"], "direction": "ingress"}, "proj-b")
    with pytest.raises(errors.SecurityGroupNotFound):
        services.by_collection["security-group-rules"].create(other, [body])
    with pytest.raises(errors.SecurityGroupNotFound):
        services.by_collection["security-groups"].get(other, sg["id"])

"""Security groups and rules through HTTP: CRUD and bulk, the default group's lifecycle,
in-use refusals, rule validation with Neutron's exception types, duplicates, revisions and
outbox records."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from alcor.db.store import Store, Transaction

SG = "/v2.0/security-groups"
RULES = "/v2.0/security-group-rules"
MISSING = "6b2e54b4-8d38-4c9e-a1c9-0a0c0ad0e7a1"


def _group(client: TestClient, name: str = "web", **extra: Any) -> dict[str, Any]:
    resp = client.post(SG, json={"security_group": {"name": name, **extra}})
    assert resp.status_code == 201, resp.text
    return dict(resp.json()["security_group"])


def _post_rule(client: TestClient, group_id: str, **body: Any) -> Any:
    body.setdefault("direction", "ingress")
    return client.post(RULES, json={"security_group_rule": {"security_group_id": group_id,
                                                            **body}})


def _rule(client: TestClient, group_id: str, **body: Any) -> dict[str, Any]:
    resp = _post_rule(client, group_id, **body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json()["security_group_rule"])


def _error(resp: Any) -> tuple[int, str, str]:
    err = resp.json()["NeutronError"]
    return resp.status_code, err["type"], err["message"]


def _default_group(client: TestClient, project: str = "proj-a") -> dict[str, Any]:
    groups = client.get(f"{SG}?name=default&project_id={project}").json()["security_groups"]
    assert len(groups) == 1
    return dict(groups[0])


def _outbox(store: Store, resource_id: str) -> list[tuple[str, str]]:
    def read(txn: Transaction) -> list[tuple[str, str]]:
        rows = txn.select("outbox", {"resource_id": resource_id}, order_by=("seq",))
        return [(r["resource_type"], r["operation"]) for r in rows]
    return store.read(read)


# --- groups --------------------------------------------------------------------------------


def test_create_group_has_neutron_shape_and_two_egress_rules(client: TestClient) -> None:
    sg = _group(client, "web", description="front")
    assert (sg["name"], sg["description"]) == ("web", "front")
    assert sg["project_id"] == sg["tenant_id"] == "proj-a"
    assert (sg["stateful"], sg["shared"], sg["revision_number"]) == (True, False, 1)
    assert sg["tags"] == []
    rules = sg["security_group_rules"]
    assert sorted((r["direction"], r["ethertype"]) for r in rules) == [
        ("egress", "IPv4"), ("egress", "IPv6")]
    for rule in rules:
        assert rule["security_group_id"] == sg["id"]
        assert rule["protocol"] is rule["remote_ip_prefix"] is rule["remote_group_id"] is None
        assert rule["belongs_to_default_sg"] is False
        assert rule["tenant_id"] == "proj-a"
        assert "fingerprint" not in rule


def test_create_group_also_creates_the_project_default(client: TestClient) -> None:
    _group(client)
    names = sorted(g["name"] for g in client.get(SG).json()["security_groups"])
    assert names == ["default", "web"]


def test_listing_creates_default_group_once(client: TestClient) -> None:
    client.headers["X-Project-Id"] = "proj-b"
    first = client.get(SG).json()["security_groups"]
    second = client.get(SG).json()["security_groups"]
    assert [g["id"] for g in first] == [g["id"] for g in second]
    (default,) = first
    assert (default["name"], default["description"]) == ("default", "Default security group")
    assert default["project_id"] == "proj-b"
    assert default["revision_number"] == 1
    rules = default["security_group_rules"]
    assert sorted((r["direction"], r["ethertype"], r["remote_group_id"]) for r in rules) == [
        ("egress", "IPv4", None), ("egress", "IPv6", None),
        ("ingress", "IPv4", default["id"]), ("ingress", "IPv6", default["id"])]
    assert all(r["belongs_to_default_sg"] for r in rules)


def test_listing_with_project_filter_creates_that_projects_default(client: TestClient) -> None:
    groups = client.get(f"{SG}?tenant_id=proj-x").json()["security_groups"]
    assert [(g["name"], g["project_id"]) for g in groups] == [("default", "proj-x")]
    native = client.get("/project/proj-y/security-groups").json()["security_groups"]
    assert [(g["name"], g["project_id"]) for g in native] == [("default", "proj-y")]


def test_listing_rules_creates_default_group(client: TestClient) -> None:
    rules = client.get(RULES).json()["security_group_rules"]
    assert len(rules) == 4
    assert all(r["belongs_to_default_sg"] for r in rules)
    assert len(client.get(SG).json()["security_groups"]) == 1


def test_show_group_and_missing_group(client: TestClient) -> None:
    sg = _group(client)
    shown = client.get(f"{SG}/{sg['id']}").json()["security_group"]
    assert shown == sg
    assert _error(client.get(f"{SG}/{MISSING}")) == (
        404, "SecurityGroupNotFound", f"Security group {MISSING} does not exist")


def test_list_embeds_rules_of_each_group(client: TestClient) -> None:
    a, b = _group(client, "a"), _group(client, "b")
    rule = _rule(client, a["id"], protocol="tcp", port_range_min=22, port_range_max=22)
    listed = {g["id"]: g for g in client.get(SG).json()["security_groups"]}
    assert rule["id"] in {r["id"] for r in listed[a["id"]]["security_group_rules"]}
    assert len(listed[b["id"]]["security_group_rules"]) == 2
    only = client.get(f"{SG}?name=a&fields=id&fields=security_group_rules").json()
    assert set(only["security_groups"][0]) == {"id", "security_group_rules"}


@pytest.mark.parametrize("name", ["default", "Default", "DEFAULT"])
def test_naming_a_group_default_is_refused(client: TestClient, name: str) -> None:
    resp = client.post(SG, json={"security_group": {"name": name}})
    assert _error(resp) == (409, "SecurityGroupDefaultAlreadyExists",
                            "Default security group already exists.")
    sg = _group(client)
    resp = client.put(f"{SG}/{sg['id']}", json={"security_group": {"name": name}})
    assert _error(resp)[:2] == (409, "SecurityGroupDefaultAlreadyExists")


def test_update_group(client: TestClient) -> None:
    sg = _group(client)
    resp = client.put(f"{SG}/{sg['id']}", json={"security_group": {
        "name": "renamed", "description": "d", "stateful": False}})
    assert resp.status_code == 200
    updated = resp.json()["security_group"]
    assert (updated["name"], updated["description"], updated["stateful"]) == (
        "renamed", "d", False)
    assert updated["revision_number"] == sg["revision_number"] + 1


def test_default_group_cannot_be_renamed_but_description_can_change(
        client: TestClient) -> None:
    default = _default_group(client)
    resp = client.put(f"{SG}/{default['id']}", json={"security_group": {"name": "other"}})
    assert _error(resp) == (409, "SecurityGroupCannotUpdateDefault",
                            "Updating default security group not allowed.")
    resp = client.put(f"{SG}/{default['id']}", json={"security_group": {"description": "x"}})
    assert resp.status_code == 200
    assert resp.json()["security_group"]["name"] == "default"


def test_default_group_cannot_be_deleted(client: TestClient) -> None:
    default = _default_group(client)
    assert _error(client.delete(f"{SG}/{default['id']}")) == (
        409, "SecurityGroupCannotRemoveDefault",
        "Insufficient rights for removing default security group.")
    assert client.get(f"{SG}/{default['id']}").status_code == 200


def test_delete_group_takes_its_rules_and_rules_naming_it(client: TestClient,
                                                          store: Store) -> None:
    sg, peer = _group(client, "sg"), _group(client, "peer")
    own = _rule(client, sg["id"], protocol="tcp", port_range_min=80, port_range_max=80)
    pointing = _rule(client, peer["id"], remote_group_id=sg["id"])
    peer_revision = client.get(f"{SG}/{peer['id']}").json()["security_group"]["revision_number"]

    assert client.delete(f"{SG}/{sg['id']}").status_code == 204
    assert client.get(f"{SG}/{sg['id']}").status_code == 404
    for rule in (own, pointing):
        assert _error(client.get(f"{RULES}/{rule['id']}"))[:2] == (
            404, "SecurityGroupRuleNotFound")
    peer_now = client.get(f"{SG}/{peer['id']}").json()["security_group"]
    assert peer_now["revision_number"] == peer_revision + 1
    assert len(peer_now["security_group_rules"]) == 2
    assert _outbox(store, sg["id"])[-1] == ("security_group", "delete")
    assert _outbox(store, pointing["id"])[-1] == ("security_group_rule", "delete")


def test_group_bound_to_a_port_is_in_use(client: TestClient) -> None:
    sg = _group(client)
    net = client.post("/v2.0/networks", json={"network": {"name": "n"}}).json()["network"]
    resp = client.post("/v2.0/ports", json={"port": {"network_id": net["id"],
                                                     "security_groups": [sg["id"]]}})
    assert resp.status_code == 201, resp.text
    port = resp.json()["port"]

    assert _error(client.delete(f"{SG}/{sg['id']}")) == (
        409, "SecurityGroupInUse", f"Security Group {sg['id']} in use.")
    resp = client.put(f"{SG}/{sg['id']}", json={"security_group": {"stateful": False}})
    assert _error(resp)[:2] == (409, "SecurityGroupInUse")
    resp = client.put(f"{SG}/{sg['id']}", json={"security_group": {"stateful": True}})
    assert resp.status_code == 200  # unchanged statefulness is no change

    assert client.delete(f"/v2.0/ports/{port['id']}").status_code == 204
    assert client.delete(f"{SG}/{sg['id']}").status_code == 204


def test_bulk_create_groups(client: TestClient) -> None:
    resp = client.post(SG, json={"security_groups": [{"name": "a"}, {"name": "b"}]})
    assert resp.status_code == 201
    groups = resp.json()["security_groups"]
    assert [g["name"] for g in groups] == ["a", "b"]
    assert all(len(g["security_group_rules"]) == 2 for g in groups)


def test_bulk_create_groups_is_atomic(client: TestClient) -> None:
    client.headers["X-Project-Id"] = "proj-bulk"
    resp = client.post(SG, json={"security_groups": [{"name": "a"}, {"name": "default"}]})
    assert resp.status_code == 409
    assert [g["name"] for g in client.get(SG).json()["security_groups"]] == ["default"]


def test_group_tags(client: TestClient) -> None:
    sg = _group(client)
    assert client.put(f"{SG}/{sg['id']}/tags/blue").status_code == 201
    assert client.get(f"{SG}?tags=blue").json()["security_groups"][0]["id"] == sg["id"]


# --- rules: create, show, list, delete ----------------------------------------------------


def test_create_rule_shape_revision_and_outbox(client: TestClient, store: Store) -> None:
    sg = _group(client)
    rule = _rule(client, sg["id"], protocol="tcp", port_range_min=22, port_range_max=22,
                 remote_ip_prefix="10.0.0.0/8", description="ssh")
    assert rule == {**rule, "security_group_id": sg["id"], "direction": "ingress",
                    "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 22,
                    "port_range_max": 22, "remote_ip_prefix": "10.0.0.0/8",
                    "normalized_cidr": "10.0.0.0/8", "remote_group_id": None,
                    "remote_address_group_id": None, "description": "ssh",
                    "belongs_to_default_sg": False, "revision_number": 0,
                    "project_id": "proj-a", "tenant_id": "proj-a"}
    assert "name" not in rule and "tags" not in rule and "fingerprint" not in rule
    assert client.get(f"{RULES}/{rule['id']}").json()["security_group_rule"] == rule
    group = client.get(f"{SG}/{sg['id']}").json()["security_group"]
    assert group["revision_number"] == sg["revision_number"] + 1
    assert _outbox(store, rule["id"]) == [("security_group_rule", "create")]


def test_delete_rule(client: TestClient, store: Store) -> None:
    sg = _group(client)
    rule = _rule(client, sg["id"], protocol="udp", port_range_min=53, port_range_max=53)
    assert client.delete(f"{RULES}/{rule['id']}").status_code == 204
    assert _error(client.get(f"{RULES}/{rule['id']}")) == (
        404, "SecurityGroupRuleNotFound", f"Security group rule {rule['id']} does not exist")
    group = client.get(f"{SG}/{sg['id']}").json()["security_group"]
    assert group["revision_number"] == sg["revision_number"] + 2
    assert _outbox(store, rule["id"]) == [("security_group_rule", "create"),
                                          ("security_group_rule", "delete")]
    assert client.delete(f"{RULES}/{rule['id']}").status_code == 404


def test_rules_cannot_be_updated(client: TestClient) -> None:
    sg = _group(client)
    rule = _rule(client, sg["id"])
    for body in ({"description": "x"}, {"direction": "egress"}, {}):
        resp = client.put(f"{RULES}/{rule['id']}", json={"security_group_rule": body})
        assert resp.status_code == 400, body
    assert client.get(f"{RULES}/{rule['id']}").json()["security_group_rule"] == rule


def test_list_rules_filters(client: TestClient) -> None:
    sg = _group(client)
    tcp = _rule(client, sg["id"], protocol="tcp", port_range_min=1, port_range_max=1024)
    listed = client.get(f"{RULES}?security_group_id={sg['id']}").json()["security_group_rules"]
    assert len(listed) == 3
    ingress = client.get(f"{RULES}?security_group_id={sg['id']}&direction=ingress").json()
    assert [r["id"] for r in ingress["security_group_rules"]] == [tcp["id"]]
    by_proto = client.get(f"{RULES}?protocol=TCP").json()["security_group_rules"]
    assert [r["id"] for r in by_proto] == [tcp["id"]]


def test_rules_on_the_default_group_belong_to_it(client: TestClient) -> None:
    default = _default_group(client)
    rule = _rule(client, default["id"], protocol="icmp")
    assert rule["belongs_to_default_sg"] is True
    assert client.get(f"{SG}/{default['id']}").json()["security_group"]["revision_number"] == 2


def test_bulk_rules(client: TestClient) -> None:
    sg = _group(client)
    resp = client.post(RULES, json={"security_group_rules": [
        {"security_group_id": sg["id"], "direction": "ingress", "protocol": "tcp",
         "port_range_min": 80, "port_range_max": 80},
        {"security_group_id": sg["id"], "direction": "ingress", "protocol": "tcp",
         "port_range_min": 443, "port_range_max": 443},
    ]})
    assert resp.status_code == 201
    assert [r["port_range_min"] for r in resp.json()["security_group_rules"]] == [80, 443]
    group = client.get(f"{SG}/{sg['id']}").json()["security_group"]
    assert group["revision_number"] == sg["revision_number"] + 1


def test_bulk_rules_are_atomic(client: TestClient) -> None:
    sg = _group(client)
    existing = _rule(client, sg["id"], protocol="tcp", port_range_min=22, port_range_max=22)
    resp = client.post(RULES, json={"security_group_rules": [
        {"security_group_id": sg["id"], "direction": "ingress", "protocol": "udp"},
        {"security_group_id": sg["id"], "direction": "ingress", "protocol": "6",
         "port_range_min": 22, "port_range_max": 22},
    ]})
    assert _error(resp) == (409, "SecurityGroupRuleExists",
                            f"Security group rule already exists. Rule id is {existing['id']}.")
    listed = client.get(f"{RULES}?security_group_id={sg['id']}").json()["security_group_rules"]
    assert len(listed) == 3


def test_bulk_rules_duplicate_in_post(client: TestClient) -> None:
    sg = _group(client)
    same = {"security_group_id": sg["id"], "direction": "ingress", "protocol": "tcp"}
    resp = client.post(RULES, json={"security_group_rules": [same, {**same, "protocol": "6"}]})
    assert _error(resp) == (409, "DuplicateSecurityGroupRuleInPost",
                            "Duplicate Security Group Rule in POST.")


def test_bulk_rules_for_two_groups_are_refused(client: TestClient) -> None:
    a, b = _group(client, "a"), _group(client, "b")
    resp = client.post(RULES, json={"security_group_rules": [
        {"security_group_id": a["id"], "direction": "ingress"},
        {"security_group_id": b["id"], "direction": "ingress"},
    ]})
    assert _error(resp) == (400, "SecurityGroupNotSingleGroupRules",
                            "Only allowed to update rules for one security profile at a time")


def test_bulk_rules_for_two_projects_are_refused(client: TestClient) -> None:
    sg = _group(client)
    resp = client.post(RULES, json={"security_group_rules": [
        {"security_group_id": sg["id"], "direction": "ingress", "project_id": "p1"},
        {"security_group_id": sg["id"], "direction": "egress", "project_id": "p2"},
    ]})
    assert _error(resp)[:2] == (400, "SecurityGroupRulesNotSingleProject")


# --- rules: duplicates ----------------------------------------------------------------------


@pytest.mark.parametrize(("first", "second"), [
    ({"protocol": "tcp"}, {"protocol": "6"}),
    ({"protocol": "17"}, {"protocol": "UDP"}),
    ({"protocol": "tcp", "port_range_min": 1, "port_range_max": 65535}, {"protocol": "tcp"}),
    ({"remote_ip_prefix": "0.0.0.0/0"}, {}),
    ({"ethertype": "IPv6", "remote_ip_prefix": "::/0"}, {"ethertype": "ipv6"}),
    ({"ethertype": "IPv6", "protocol": "icmp"}, {"ethertype": "IPv6", "protocol": "icmpv6"}),
    ({"ethertype": "IPv6", "protocol": "ipv6-icmp"}, {"ethertype": "IPv6", "protocol": "58"}),
    ({"ethertype": "IPv6", "protocol": "1"}, {"ethertype": "IPv6", "protocol": "ipv6-icmp"}),
    ({"remote_ip_prefix": "10.0.0.1"}, {"remote_ip_prefix": "10.0.0.1/32"}),
    ({"protocol": "any"}, {}),
])
def test_equivalent_rules_are_duplicates(client: TestClient, first: dict[str, Any],
                                         second: dict[str, Any]) -> None:
    sg = _group(client)
    rule = _rule(client, sg["id"], **first)
    resp = _post_rule(client, sg["id"], **second)
    assert _error(resp) == (409, "SecurityGroupRuleExists",
                            f"Security group rule already exists. Rule id is {rule['id']}.")


def test_same_rule_in_two_groups_is_no_duplicate(client: TestClient) -> None:
    a, b = _group(client, "a"), _group(client, "b")
    _rule(client, a["id"], protocol="tcp")
    _rule(client, b["id"], protocol="tcp")


def test_new_group_default_egress_rule_is_a_duplicate(client: TestClient) -> None:
    sg = _group(client)
    egress = next(r for r in sg["security_group_rules"] if r["ethertype"] == "IPv4")
    resp = _post_rule(client, sg["id"], direction="egress", remote_ip_prefix="0.0.0.0/0")
    assert _error(resp)[:2] == (409, "SecurityGroupRuleExists")
    assert egress["id"] in _error(resp)[2]


def test_default_groups_own_rules_are_duplicates(client: TestClient) -> None:
    default = _default_group(client)
    resp = _post_rule(client, default["id"], ethertype="IPv6", remote_group_id=default["id"])
    assert _error(resp)[:2] == (409, "SecurityGroupRuleExists")


# --- rules: canonical forms -----------------------------------------------------------------


@pytest.mark.parametrize(("given", "stored"), [
    ({"ethertype": "ipv6"}, {"ethertype": "IPv6"}),
    ({"ethertype": "IPV4"}, {"ethertype": "IPv4"}),
    ({"protocol": "TCP"}, {"protocol": "tcp"}),
    ({"protocol": 6}, {"protocol": "6"}),
    ({"protocol": "any"}, {"protocol": None}),
    ({"protocol": "ANY"}, {"protocol": None}),
    ({"ethertype": "IPv6", "protocol": "icmp"}, {"protocol": "ipv6-icmp"}),
    ({"ethertype": "IPv6", "protocol": "icmpv6"}, {"protocol": "ipv6-icmp"}),
    ({"ethertype": "IPv6", "protocol": "1"}, {"protocol": "58"}),
    ({"protocol": "tcp", "port_range_min": 1, "port_range_max": 65535},
     {"port_range_min": None, "port_range_max": None}),
    ({"protocol": "tcp", "port_range_min": "8000", "port_range_max": "8080"},
     {"port_range_min": 8000, "port_range_max": 8080}),
    ({"remote_ip_prefix": "10.0.0.5"},
     {"remote_ip_prefix": "10.0.0.5/32", "normalized_cidr": "10.0.0.5/32"}),
    ({"remote_ip_prefix": "10.0.0.5/24"},
     {"remote_ip_prefix": "10.0.0.5/24", "normalized_cidr": "10.0.0.0/24"}),
    ({"ethertype": "IPv6", "remote_ip_prefix": "2001:DB8::1"},
     {"remote_ip_prefix": "2001:db8::1/128", "normalized_cidr": "2001:db8::1/128"}),
    ({"ethertype": "IPv6", "remote_ip_prefix": "2001:db8::5/64"},
     {"remote_ip_prefix": "2001:db8::5/64", "normalized_cidr": "2001:db8::/64"}),
    ({"remote_ip_prefix": ""}, {"remote_ip_prefix": None, "normalized_cidr": None}),
])
def test_rule_canonical_forms(client: TestClient, given: dict[str, Any],
                              stored: dict[str, Any]) -> None:
    sg = _group(client)
    rule = _rule(client, sg["id"], **given)
    assert {k: rule[k] for k in stored} == stored
    shown = client.get(f"{RULES}/{rule['id']}").json()["security_group_rule"]
    assert {k: shown[k] for k in stored} == stored


@pytest.mark.parametrize("protocol", ["ah", "dccp", "egp", "esp", "gre", "hopopt", "icmp",
                                      "igmp", "ip", "ipip", "ospf", "pgm", "rsvp", "sctp",
                                      "tcp", "udp", "udplite", "vrrp", "0", "255"])
def test_every_neutron_protocol_is_accepted(client: TestClient, protocol: str) -> None:
    sg = _group(client)
    assert _rule(client, sg["id"], protocol=protocol)["protocol"] == protocol


@pytest.mark.parametrize("protocol", ["ipv6-encap", "ipv6-frag", "ipv6-icmp", "ipv6-nonxt",
                                      "ipv6-opts", "ipv6-route", "icmpv6", "58"])
def test_ipv6_protocols_need_ipv6(client: TestClient, protocol: str) -> None:
    sg = _group(client)
    assert _error(_post_rule(client, sg["id"], protocol=protocol)) == (
        400, "SecurityGroupEthertypeConflictWithProtocol",
        f"Invalid ethertype IPv4 for protocol {protocol}.")
    assert _rule(client, sg["id"], protocol=protocol, ethertype="IPv6")["ethertype"] == "IPv6"


@pytest.mark.parametrize("protocol", ["tcp", "udp", "sctp", "dccp", "udplite", "6", "17"])
def test_port_ranges_for_port_protocols(client: TestClient, protocol: str) -> None:
    sg = _group(client)
    rule = _rule(client, sg["id"], protocol=protocol, port_range_min=1000, port_range_max=2000)
    assert (rule["port_range_min"], rule["port_range_max"]) == (1000, 2000)
    single = _rule(client, sg["id"], protocol=protocol, port_range_min=5, port_range_max=5)
    assert (single["port_range_min"], single["port_range_max"]) == (5, 5)


def test_icmp_type_and_code(client: TestClient) -> None:
    sg = _group(client)
    rule = _rule(client, sg["id"], protocol="icmp", port_range_min=8, port_range_max=0)
    assert (rule["port_range_min"], rule["port_range_max"]) == (8, 0)
    only_type = _rule(client, sg["id"], protocol="icmp", port_range_min=3)
    assert (only_type["port_range_min"], only_type["port_range_max"]) == (3, None)
    v6 = _rule(client, sg["id"], ethertype="IPv6", protocol="ipv6-icmp", port_range_min=128,
               port_range_max=0)
    assert (v6["protocol"], v6["port_range_min"]) == ("ipv6-icmp", 128)


# --- rules: validation errors --------------------------------------------------------------


def test_direction_is_required_and_checked(client: TestClient) -> None:
    sg = _group(client)
    resp = client.post(RULES, json={"security_group_rule": {"security_group_id": sg["id"]}})
    assert resp.status_code == 400
    assert _error(_post_rule(client, sg["id"], direction="sideways")) == (
        400, "InvalidInput",
        "Invalid input for direction. Reason: 'sideways' is not in ['ingress', 'egress'].")


def test_invalid_ethertype(client: TestClient) -> None:
    sg = _group(client)
    assert _error(_post_rule(client, sg["id"], ethertype="IPv5")) == (
        400, "SecurityGroupRuleInvalidEtherType",
        "Security group rule for ethertype 'IPv5' not supported. "
        "Allowed values are ['IPv4', 'IPv6'].")


@pytest.mark.parametrize("protocol", ["foo", "256", 256, -1, "-1", "tcp/udp", True, 1.5])
def test_invalid_protocol(client: TestClient, protocol: Any) -> None:
    sg = _group(client)
    status, kind, message = _error(_post_rule(client, sg["id"], protocol=protocol))
    assert (status, kind) == (400, "SecurityGroupRuleInvalidProtocol")
    assert message.startswith(f"Security group rule protocol {protocol} not supported. "
                              "Only protocol values (None, 'any', 'ah', 'dccp'")
    assert message.endswith("and integer representations [0 to 255] are supported.")


@pytest.mark.parametrize(("body", "expected"), [
    ({"protocol": "tcp", "port_range_min": 80, "port_range_max": 79},
     ("SecurityGroupInvalidPortRange",
      "For TCP/UDP protocols, port_range_min must be <= port_range_max")),
    ({"protocol": "tcp", "port_range_min": 80},
     ("SecurityGroupInvalidPortRange",
      "For TCP/UDP protocols, port_range_min must be <= port_range_max")),
    ({"protocol": "udp", "port_range_max": 80},
     ("SecurityGroupInvalidPortRange",
      "For TCP/UDP protocols, port_range_min must be <= port_range_max")),
    ({"protocol": "tcp", "port_range_min": 0, "port_range_max": 80},
     ("SecurityGroupInvalidPortValue", "Invalid value for port 0")),
    ({"protocol": "tcp", "port_range_min": 1, "port_range_max": 65536},
     ("SecurityGroupInvalidPortValue", "Invalid value for port 65536")),
    ({"protocol": "tcp", "port_range_min": "http", "port_range_max": 80},
     ("SecurityGroupInvalidPortValue", "Invalid value for port http")),
    ({"protocol": "tcp", "port_range_min": -5, "port_range_max": 80},
     ("SecurityGroupInvalidPortValue", "Invalid value for port -5")),
    ({"port_range_min": 80, "port_range_max": 80},
     ("SecurityGroupProtocolRequiredWithPorts",
      "Must also specify protocol if port range is given.")),
    ({"protocol": "gre", "port_range_min": 80, "port_range_max": 80},
     ("SecurityGroupInvalidProtocolForPort",
      "Ports cannot be specified for protocol 47. "
      "Ports are only supported for DCCP, SCTP, TCP, UDP, UDPLITE.")),
    ({"protocol": "icmp", "port_range_min": 256},
     ("SecurityGroupInvalidIcmpValue",
      "Invalid value for ICMP type (port_range_min) 256. It must be 0 to 255.")),
    ({"protocol": "icmp", "port_range_min": 8, "port_range_max": 300},
     ("SecurityGroupInvalidIcmpValue",
      "Invalid value for ICMP code (port_range_max) 300. It must be 0 to 255.")),
    ({"protocol": "icmp", "port_range_max": 0},
     ("SecurityGroupMissingIcmpType",
      "ICMP code (port-range-max) 0 is provided but ICMP type (port-range-min) is missing.")),
    ({"remote_ip_prefix": "2001:db8::/64"},
     ("SecurityGroupRuleParameterConflict",
      "Conflicting value ethertype IPv4 for CIDR 2001:db8::/64")),
    ({"ethertype": "IPv6", "remote_ip_prefix": "10.0.0.0/8"},
     ("SecurityGroupRuleParameterConflict",
      "Conflicting value ethertype IPv6 for CIDR 10.0.0.0/8")),
    ({"remote_ip_prefix": "10.0.0.300/24"},
     ("InvalidCIDR", "Invalid CIDR 10.0.0.300/24 given as IP prefix.")),
    ({"remote_ip_prefix": "10.0.0.0/33"},
     ("InvalidCIDR", "Invalid CIDR 10.0.0.0/33 given as IP prefix.")),
])
def test_rule_validation_errors(client: TestClient, body: dict[str, Any],
                                expected: tuple[str, str]) -> None:
    sg = _group(client)
    assert _error(_post_rule(client, sg["id"], **body)) == (400, *expected)


def test_remote_prefix_and_remote_group_are_exclusive(client: TestClient) -> None:
    sg = _group(client)
    resp = _post_rule(client, sg["id"], remote_ip_prefix="10.0.0.0/8", remote_group_id=sg["id"])
    assert _error(resp) == (
        400, "SecurityGroupMultipleRemoteEntites",
        "Only one of remote_ip_prefix or remote_group_id or remote_address_group_id may be "
        "provided.")


def test_rule_needs_existing_groups(client: TestClient) -> None:
    sg = _group(client)
    assert _error(_post_rule(client, MISSING)) == (
        404, "SecurityGroupNotFound", f"Security group {MISSING} does not exist")
    assert _error(_post_rule(client, "not-a-uuid"))[:2] == (404, "SecurityGroupNotFound")
    assert _error(_post_rule(client, sg["id"], remote_group_id=MISSING)) == (
        404, "SecurityGroupNotFound", f"Security group {MISSING} does not exist")
    assert _error(_post_rule(client, sg["id"], remote_address_group_id=MISSING)) == (
        404, "AddressGroupNotFound", f"Address group {MISSING} could not be found.")


def test_rule_with_remote_group(client: TestClient) -> None:
    sg, peer = _group(client, "sg"), _group(client, "peer")
    rule = _rule(client, sg["id"], remote_group_id=peer["id"], protocol="tcp")
    assert (rule["remote_group_id"], rule["remote_ip_prefix"]) == (peer["id"], None)

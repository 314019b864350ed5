"""Quotas through the HTTP API: every path on both surfaces (with and without ``.json``), every
refusal with Neutron's status, type and message, enforcement of each resource type (a bulk
over quota creates nothing); openstacksdk against a real server process; and, behind a real
Keystone, the ``openstack quota`` commands and what a project member may not do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openstack
import pytest
from openstack import exceptions
from openstack.connection import Connection
from starlette.testclient import TestClient

from tests.functional.server import AlcorServer
from tests.keystone_cloud import ADMIN_PASSWORD, PASSWORD, Cloud

DEFAULTS = {"network": 100, "subnet": 100, "port": 500, "router": 10, "floatingip": 50,
            "security_group": 10, "security_group_rule": 100}


def set_quota(client: TestClient, **limits: int) -> dict[str, Any]:
    resp = client.put("/v2.0/quotas/proj-a", json={"quota": limits})
    assert resp.status_code == 200, resp.text
    return dict(resp.json()["quota"])


def created(resp: Any, key: str) -> Any:
    assert resp.status_code == 201, resp.text
    return resp.json()[key]


def network(client: TestClient, name: str = "n", **extra: Any) -> dict[str, Any]:
    return dict(created(client.post("/v2.0/networks",
                                    json={"network": {"name": name, **extra}}), "network"))


def subnet(client: TestClient, network_id: str, cidr: str) -> dict[str, Any]:
    return dict(created(client.post("/v2.0/subnets", json={"subnet": {
        "network_id": network_id, "cidr": cidr, "ip_version": 4}}), "subnet"))


def over_quota(resp: Any, resource: str) -> None:
    assert resp.status_code == 409, resp.text
    assert resp.json() == {"NeutronError": {
        "type": "OverQuota", "message": f"Quota exceeded for resources: ['{resource}'].",
        "detail": ""}}


def count(client: TestClient, collection: str) -> int:
    resp = client.get(f"/v2.0/{collection}", params={"project_id": "proj-a"})
    return len(resp.json()[collection.replace("-", "_")])


# --- paths -------------------------------------------------------------------------------


@pytest.mark.parametrize("base", ["/v2.0/quotas", "/project/proj-a/quotas"])
@pytest.mark.parametrize("suffix", ["", ".json"])
def test_show_default_and_details_on_every_path(client: TestClient, base: str,
                                                suffix: str) -> None:
    network(client)
    assert client.get(f"{base}/proj-a{suffix}").json() == {"quota": DEFAULTS}
    assert client.get(f"{base}/proj-a/default{suffix}").json() == {"quota": DEFAULTS}
    details = client.get(f"{base}/proj-a/details{suffix}")
    assert details.status_code == 200
    assert details.json()["quota"]["network"] == {"limit": 100, "used": 1, "reserved": 0}
    assert set(details.json()["quota"]) == set(DEFAULTS)


def test_update_answers_the_full_set_and_list_shows_the_project(client: TestClient) -> None:
    assert set_quota(client, network=5, port=-1) == {**DEFAULTS, "network": 5, "port": -1}
    assert client.get("/v2.0/quotas/proj-a").json()["quota"]["network"] == 5
    assert client.get("/v2.0/quotas/proj-b").json() == {"quota": DEFAULTS}
    assert client.get("/v2.0/quotas/proj-a/default").json() == {"quota": DEFAULTS}
    listed = {**DEFAULTS, "network": 5, "port": -1, "project_id": "proj-a",
              "tenant_id": "proj-a"}
    for path in ("/v2.0/quotas", "/v2.0/quotas.json", "/project/proj-a/quotas"):
        assert client.get(path).json() == {"quotas": [listed]}


def test_native_update_and_delete_of_another_project(client: TestClient) -> None:
    resp = client.put("/project/proj-a/quotas/proj-b.json", json={"quota": {"router": 3}})
    assert resp.json()["quota"] == {**DEFAULTS, "router": 3}
    assert client.get("/v2.0/quotas/proj-b").json()["quota"]["router"] == 3
    assert client.delete("/project/proj-a/quotas/proj-b").status_code == 204
    assert client.get("/v2.0/quotas/proj-b").json() == {"quota": DEFAULTS}


def test_delete_restores_the_defaults_and_is_404_without_own_limits(
    client: TestClient,
) -> None:
    set_quota(client, subnet=1)
    resp = client.delete("/v2.0/quotas/proj-a.json")
    assert (resp.status_code, resp.content) == (204, b"")
    assert client.get("/v2.0/quotas/proj-a").json() == {"quota": DEFAULTS}
    assert client.get("/v2.0/quotas").json() == {"quotas": []}
    resp = client.delete("/v2.0/quotas/proj-a")
    assert resp.status_code == 404
    assert resp.json()["NeutronError"] == {
        "type": "TenantQuotaNotFound", "message": "Quota for tenant proj-a could not be found.",
        "detail": ""}


def test_the_callers_project(client: TestClient) -> None:
    assert client.get("/v2.0/quotas/project").json() == {"project": {"project_id": "proj-a"}}
    assert client.get("/v2.0/quotas/tenant.json").json() == {"tenant": {"tenant_id": "proj-a"}}
    assert client.get("/project/proj-b/quotas/project").json() == {
        "project": {"project_id": "proj-b"}}


def test_quota_extensions_are_listed(client: TestClient) -> None:
    aliases = {e["alias"] for e in client.get("/v2.0/extensions").json()["extensions"]}
    assert {"quotas", "quota_details", "quota-check-limit",
            "quota-check-limit-default"} <= aliases
    ext = client.get("/v2.0/extensions/quota_details").json()["extension"]
    assert ext["name"] == "Quota details management support"


# --- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "type_", "message"), [
    ({"quota": {"network": "many"}}, "InvalidInput",
     "Invalid input for operation: 'many' is not an integer."),
    ({"quota": {"network": -2}}, "InvalidInput",
     "Invalid input for network. Reason: '-2' is too small - must be at least '-1'."),
    ({"quota": {"port": 2**31}}, "InvalidInput",
     f"Invalid input for port. Reason: '{2**31}' is too large - must be no larger than "
     f"'{2**31 - 1}'."),
    ({"quota": {"network": 1, "subnetpool": 2, "bogus": 1}}, "HTTPBadRequest",
     "Unrecognized attribute(s) 'bogus, subnetpool'"),
    ({"quota": {"network": 1, "force": "maybe"}}, "InvalidInput",
     "Invalid input for operation: 'maybe' cannot be converted to boolean."),
    ({"network": 1}, "HTTPBadRequest", "Unable to find 'quota' in request body"),
    ({"quota": [1]}, "HTTPBadRequest", "Unable to find 'quota' in request body"),
])
def test_bad_updates_are_400_and_change_nothing(client: TestClient, body: dict[str, Any],
                                               type_: str, message: str) -> None:
    resp = client.put("/v2.0/quotas/proj-a", json=body)
    assert resp.status_code == 400
    assert resp.json() == {"NeutronError": {"type": type_, "message": message, "detail": ""}}
    assert client.get("/v2.0/quotas").json() == {"quotas": []}


def test_an_empty_body_is_400(client: TestClient) -> None:
    resp = client.put("/v2.0/quotas/proj-a", content=b"")
    assert resp.status_code == 400
    assert resp.json()["NeutronError"]["message"] == "Resource body required"


def test_a_limit_below_usage_is_400_unless_forced(client: TestClient) -> None:
    network(client, "a")
    network(client, "b")
    resp = client.put("/v2.0/quotas/proj-a", json={"quota": {"network": 1, "check_limit": True}})
    assert resp.status_code == 400
    assert resp.json()["NeutronError"]["message"] == (
        "Bad quota request: Quota limit 1 for network must be greater than or equal to "
        "already used 2.")
    resp = client.put("/v2.0/quotas/proj-a", json={"quota": {"network": 1, "force": True}})
    assert resp.json()["quota"]["network"] == 1
    over_quota(client.post("/v2.0/networks", json={"network": {"name": "c"}}), "network")


def test_posting_a_quota_is_not_a_route(client: TestClient) -> None:
    assert client.post("/v2.0/quotas", json={"quota": {"network": 1}}).status_code == 405


# --- enforcement -------------------------------------------------------------------------


def test_over_quota_network_is_409_and_a_bulk_over_quota_creates_nothing(
    client: TestClient,
) -> None:
    set_quota(client, network=2)
    network(client, "a")
    over_quota(client.post("/v2.0/networks", json={"networks": [{"name": "b"}, {"name": "c"}]}),
               "network")
    over_quota(client.post("/project/proj-a/vpcs/bulk",
                           json={"vpcs": [{"name": "b"}, {"name": "c"}]}), "network")
    assert count(client, "networks") == 1
    network(client, "b")
    over_quota(client.post("/v2.0/networks", json={"network": {"name": "c"}}), "network")
    assert count(client, "networks") == 2


def test_subnets_and_ports_are_enforced(client: TestClient) -> None:
    set_quota(client, subnet=1, port=2)
    net = network(client)
    subnet(client, net["id"], "10.0.0.0/24")
    over_quota(client.post("/v2.0/subnets", json={"subnet": {
        "network_id": net["id"], "cidr": "10.1.0.0/24", "ip_version": 4}}), "subnet")

    port = {"network_id": net["id"]}
    over_quota(client.post("/v2.0/ports", json={"ports": [port, port, port]}), "port")
    assert count(client, "ports") == 0
    created(client.post("/v2.0/ports", json={"ports": [port, port]}), "ports")
    over_quota(client.post("/v2.0/ports", json={"port": port}), "port")
    assert (count(client, "subnets"), count(client, "ports")) == (1, 2)


def test_security_groups_and_rules_are_enforced_counting_the_default_group(
    client: TestClient,
) -> None:
    set_quota(client, security_group=2, security_group_rule=7)
    web = created(client.post("/v2.0/security-groups", json={"security_group": {
        "name": "web"}}), "security_group")  # the default group (4 rules) came along
    over_quota(client.post("/v2.0/security-groups", json={"security_group": {"name": "db"}}),
               "security_group")
    rule = {"security_group_id": web["id"], "direction": "ingress", "protocol": "tcp",
            "port_range_min": 22, "port_range_max": 22}
    over_quota(client.post("/v2.0/security-group-rules", json={"security_group_rules": [
        rule, {**rule, "port_range_min": 80, "port_range_max": 80}]}), "security_group_rule")
    created(client.post("/v2.0/security-group-rules", json={"security_group_rule": rule}),
            "security_group_rule")
    over_quota(client.post("/v2.0/security-group-rules", json={"security_group_rule": {
        **rule, "port_range_min": 80, "port_range_max": 80}}), "security_group_rule")
    used = client.get("/v2.0/quotas/proj-a/details").json()["quota"]
    assert used["security_group"]["used"] == 2
    assert used["security_group_rule"]["used"] == 7


def test_routers_are_enforced(client: TestClient) -> None:
    set_quota(client, router=1)
    over_quota(client.post("/v2.0/routers", json={"routers": [{"name": "a"}, {"name": "b"}]}),
               "router")
    created(client.post("/v2.0/routers", json={"router": {"name": "a"}}), "router")
    over_quota(client.post("/v2.0/routers", json={"router": {"name": "b"}}), "router")
    assert count(client, "routers") == 1


def test_floating_ips_are_enforced_and_their_ports_do_not_count(client: TestClient) -> None:
    external = network(client, "public", **{"router:external": True})
    subnet(client, external["id"], "203.0.113.0/24")
    set_quota(client, floatingip=1, port=0)
    fip = {"floating_network_id": external["id"]}
    over_quota(client.post("/v2.0/floatingips", json={"floatingips": [fip, fip]}), "floatingip")
    created(client.post("/v2.0/floatingips", json={"floatingip": fip}), "floatingip")
    over_quota(client.post("/v2.0/floatingips", json={"floatingip": fip}), "floatingip")
    used = client.get("/v2.0/quotas/proj-a/details").json()["quota"]
    assert (used["floatingip"]["used"], used["port"]["used"]) == (1, 0)


def test_unlimited_projects_are_not_counted_against(client: TestClient) -> None:
    set_quota(client, network=-1)
    created(client.post("/v2.0/networks", json={"networks": [{"name": f"n{i}"}
                                                             for i in range(12)]}), "networks")
    assert client.get("/v2.0/quotas/proj-a/details").json()["quota"]["network"] == {
        "limit": -1, "used": 12, "reserved": 0}


# --- openstacksdk against a real server ---------------------------------------------------


@pytest.fixture(scope="module")
def conn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Connection]:
    db = tmp_path_factory.mktemp("quotas") / "alcor.db"
    with AlcorServer(f"sqlite:///{db}") as server:
        c = openstack.connect(auth_type="none", network_endpoint_override=server.base_url + "/",
                              load_yaml_config=False, load_envvars=False)
        yield c
        c.close()


def test_openstacksdk_shows_sets_and_resets_a_quota(conn: Connection) -> None:
    project = f"sdk-{uuid.uuid4().hex[:8]}"
    assert conn.network.get_quota(project).networks == 100
    assert conn.network.get_quota_default(project).ports == 500

    updated = conn.network.update_quota(project, networks=7, security_group_rules=-1)
    assert (updated.networks, updated.security_group_rules, updated.ports) == (7, -1, 500)
    assert conn.network.get_quota(project).networks == 7
    assert project in {q.project_id for q in conn.network.quotas()}

    details = conn.network.get_quota(project, details=True)
    assert details.networks == {"limit": 7, "used": 0, "reserved": 0}

    conn.network.delete_quota(project)
    assert conn.network.get_quota(project).networks == 100
    with pytest.raises(exceptions.NotFoundException):
        conn.network.delete_quota(project, ignore_missing=False)


def test_openstacksdk_sees_over_quota_as_a_conflict(conn: Connection) -> None:
    project = conn.network.get("/quotas/project").json()["project"]["project_id"]
    conn.network.update_quota(project, networks=0, force=True)
    try:
        with pytest.raises(exceptions.ConflictException,
                           match=r"Quota exceeded for resources: \['network'\]"):
            conn.network.create_network(name="over")
    finally:
        conn.network.delete_quota(project)


# --- the openstack CLI and a project member, behind a real Keystone -----------------------

OPENSTACK = str(Path(sys.executable).parent / "openstack")
Cli = Callable[..., Any]


@pytest.fixture(scope="module")
def keystone_server(cloud: Cloud, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[AlcorServer]:
    db = tmp_path_factory.mktemp("quotas-keystone") / "alcor.db"
    env = {"ALCOR_AUTH__STRATEGY": "keystone", "ALCOR_AUTH__KEYSTONE_URL": cloud.keystone.url,
           "ALCOR_AUTH__PASSWORD": PASSWORD}
    with AlcorServer(f"sqlite:///{db}", env=env) as server:
        yield server


@pytest.fixture(scope="module")
def openstack_cli(cloud: Cloud, keystone_server: AlcorServer,
                  tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Cli]:
    """``openstack`` as a user of the seeded cloud: Keystone for identity, this server for
    the network service (endpoint overrides: the seeded catalog is empty), from a clouds.yaml
    of its own."""
    home = tmp_path_factory.mktemp("cli-home")
    clouds = {"clouds": {user: {
        "auth": {"auth_url": cloud.keystone.url, "username": user,
                 "password": ADMIN_PASSWORD if user == "admin" else PASSWORD,
                 "project_name": cloud.users[user], "user_domain_id": "default",
                 "project_domain_id": "default"},
        "identity_api_version": 3, "region_name": "RegionOne",
        "identity_endpoint_override": cloud.keystone.url,
        "network_endpoint_override": keystone_server.base_url + "/",
    } for user in ("admin", "alice")}}
    (home / "clouds.yaml").write_text(json.dumps(clouds))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "LANG": "C.UTF-8", "OS_CLIENT_CONFIG_FILE": str(home / "clouds.yaml")}

    def as_user(user: str) -> Cli:
        def run(*args: str) -> Any:
            """The command's JSON answer (``-f json``), or None for a silent one."""
            result = subprocess.run([OPENSTACK, "--os-cloud", user, *args],
                                    capture_output=True, text=True, env=env, cwd=home,
                                    timeout=120, check=False)
            assert result.returncode == 0, result.stderr
            return json.loads(result.stdout) if result.stdout.strip() else None
        return run

    return as_user


def test_openstack_quota_set_and_show(openstack_cli: Callable[[str], Cli], cloud: Cloud) -> None:
    admin, alice = openstack_cli("admin"), openstack_cli("alice")
    admin("quota", "set", "--networks", "3", "--ports", "40", "alpha")
    shown = {r["Resource"]: r for r in admin("quota", "show", "--network", "alpha",
                                              "-f", "json")}
    assert [shown[k]["Limit"] for k in ("networks", "ports", "subnets")] == [3, 40, 100]

    # a member reads its own project's quota, usage included
    alice("network", "create", "alice-net", "-f", "json")
    own = {r["Resource"]: r for r in alice("quota", "show", "--network", "--usage",
                                            "-f", "json")}
    assert own["networks"] == {"Resource": "networks", "Limit": 3, "In Use": 1, "Reserved": 0}
    assert own["ports"]["Limit"] == 40


def test_a_member_may_not_change_or_read_others_quotas(keystone_server: AlcorServer,
                                                       cloud: Cloud) -> None:
    alpha, beta = cloud.projects["alpha"], cloud.projects["beta"]
    with httpx.Client(base_url=keystone_server.base_url, timeout=30,
                      headers={"X-Auth-Token": cloud.token("alice")}) as alice:
        assert alice.get(f"/v2.0/quotas/{alpha}").status_code == 200
        assert alice.get(f"/v2.0/quotas/{alpha}/details.json").status_code == 200
        for method, path, rule in (
            ("GET", f"/v2.0/quotas/{beta}", "get_quota"),
            ("GET", f"/v2.0/quotas/{beta}/default", "get_quota"),
            ("GET", f"/v2.0/quotas/{beta}/details.json", "get_quota"),
            ("GET", "/v2.0/quotas", "get_quota"),
            ("PUT", f"/v2.0/quotas/{alpha}", "update_quota"),
            ("DELETE", f"/v2.0/quotas/{alpha}", "delete_quota"),
        ):
            resp = alice.request(method, path, json={"quota": {"network": 50}}
                                 if method == "PUT" else None)
            assert resp.status_code == 403, (method, path, resp.text)
            assert resp.json()["NeutronError"] == {
                "type": "PolicyNotAuthorized",
                "message": f"rule:{rule} is disallowed by policy", "detail": ""}

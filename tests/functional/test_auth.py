"""Keystone authentication against a real Keystone (``tests/keystone_cloud.py``): 401s and
their body, the token cache, roles (admin, member, reader), admin-only attributes hidden and
refused, admin-only paths, native paths' projects, and openstacksdk logging in by password.

Users: ``alice`` (member of alpha), ``bob`` (member of beta), ``rita`` (reader of alpha),
``olga`` (alpha, a role Alcor does not know), ``admin`` (admin of the admin project)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openstack
import pytest
from openstack import exceptions
from starlette.testclient import TestClient

from alcor.api.attributes import FOREIGN_PROJECT
from alcor.config import Settings, load
from alcor.identity import KeystoneClient, TokenCache, TokenValidator, epoch
from tests.functional.server import AlcorServer, alcor_executable, free_port
from tests.keystone_cloud import ADMIN_PASSWORD, PASSWORD, Cloud, alcor_client

UNAUTHORIZED = {"error": {"code": 401, "title": "Unauthorized",
                          "message": "The request you have made requires authentication."}}


def policy(message: str) -> dict[str, Any]:
    return {"NeutronError": {"type": "PolicyNotAuthorized", "message": message, "detail": ""}}


@pytest.fixture(scope="module")
def settings(cloud: Cloud, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    db = tmp_path_factory.mktemp("auth") / "alcor.db"
    return load(cloud.alcor_env(), db__url=f"sqlite:///{db}")


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[TestClient]:
    """The API behind Keystone authentication, one token cache for the module."""
    with alcor_client(settings) as client:
        yield client


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create(api: TestClient, cloud: Cloud, user: str, collection: str, body: dict[str, Any]
           ) -> dict[str, Any]:
    resp = api.post(f"/v2.0/{collection}", json=body, headers=cloud.headers(user))
    assert resp.status_code == 201, resp.text
    return dict(next(iter(resp.json().values())))


# --- authentication ----------------------------------------------------------------------


def test_no_token_is_401_with_keystonemiddleware_answer(api: TestClient, cloud: Cloud) -> None:
    resp = api.get("/v2.0/networks")
    assert resp.status_code == 401
    assert resp.json() == UNAUTHORIZED
    assert resp.headers["www-authenticate"] == f'Keystone uri="{cloud.keystone.url}"'
    assert resp.headers["x-openstack-request-id"].startswith("req-")


@pytest.mark.parametrize("token", ["notused", "gAAAAABbogus", ""])
def test_invalid_token_is_401(api: TestClient, token: str) -> None:
    resp = api.get("/v2.0/networks", headers={"X-Auth-Token": token})
    assert resp.status_code == 401
    assert resp.json() == UNAUTHORIZED


def test_noauth_headers_mean_nothing_under_keystone(api: TestClient) -> None:
    resp = api.get("/v2.0/networks", headers={"X-Project-Id": "alpha"})
    assert resp.status_code == 401


@pytest.mark.parametrize("path", ["/", "/openapi.json", "/metrics"])
def test_discovery_description_and_metrics_need_no_token(api: TestClient, path: str) -> None:
    assert api.get(path).status_code == 200


def test_paths_under_v2_need_a_token(api: TestClient, cloud: Cloud) -> None:
    for path in ("/v2.0", "/v2.0/extensions", "/v2.0/ports", "/nodes"):
        assert api.get(path).status_code == 401, path
    assert api.get("/v2.0/extensions", headers=cloud.headers("rita")).status_code == 200


def test_a_token_acts_for_its_project_whatever_the_headers_say(api: TestClient,
                                                               cloud: Cloud) -> None:
    headers = {**cloud.headers("alice"), "X-Project-Id": cloud.projects["beta"]}
    resp = api.post("/v2.0/networks", json={"network": {"name": _name("n")}}, headers=headers)
    assert resp.status_code == 201
    net = resp.json()["network"]
    assert net["project_id"] == net["tenant_id"] == cloud.projects["alpha"]


def test_a_token_with_no_known_role_is_403(api: TestClient, cloud: Cloud) -> None:
    resp = api.get("/v2.0/networks", headers=cloud.headers("olga"))
    assert resp.status_code == 403
    assert resp.json() == policy("(role:admin or role:member or role:reader) is disallowed by "
                                 "policy")


def test_unreachable_identity_service_is_503(cloud: Cloud, tmp_path: Path) -> None:
    env = {**cloud.alcor_env(), "ALCOR_AUTH__KEYSTONE_URL": f"http://127.0.0.1:{free_port()}/v3"}
    down = load(env, db__url=f"sqlite:///{tmp_path}/alcor.db")
    with alcor_client(down) as client:
        resp = client.get("/v2.0/networks", headers=cloud.headers("alice"))
        assert resp.status_code == 503
        assert resp.json()["error"]["message"] == \
            "The Keystone service is temporarily unavailable."


# --- the token cache ---------------------------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _validator(settings: Settings, clock: Clock, ttl: float
               ) -> tuple[TokenValidator, KeystoneClient]:
    source = KeystoneClient(settings.auth, clock=clock)
    cache = TokenCache(ttl, settings.auth.negative_cache_ttl, settings.auth.cache_size, clock)
    return TokenValidator(source, cache), source


def test_a_validated_token_is_not_asked_again_within_the_ttl(settings: Settings,
                                                            cloud: Cloud) -> None:
    """Revoked in Keystone after its first use, a token still works until the cache TTL
    passes (as with keystonemiddleware's cache); then it is asked about again, and refused."""
    clock = Clock(epoch("2000-01-01T00:00:00Z"))
    token = cloud.fresh_token("alice")
    validator, source = _validator(settings, clock, ttl=300)
    with alcor_client(settings, validator) as client:
        headers = {"X-Auth-Token": token}
        assert client.get("/v2.0/networks", headers=headers).status_code == 200
        cloud.keystone.revoke(token)
        clock.now += 299
        assert client.get("/v2.0/networks", headers=headers).status_code == 200
        assert source.validations == 1
        clock.now += 1
        assert client.get("/v2.0/networks", headers=headers).status_code == 401
        assert source.validations == 2
        assert client.get("/v2.0/networks", headers=headers).status_code == 401
        assert source.validations == 2  # a refusal is remembered (briefly)


def test_a_token_past_its_expiry_is_asked_about_again(settings: Settings, cloud: Cloud) -> None:
    token, body = cloud.keystone.login("alice", PASSWORD, "alpha")
    expires_at = epoch(body["token"]["expires_at"])
    clock = Clock(expires_at - 10)
    validator, source = _validator(settings, clock, ttl=10**9)
    with alcor_client(settings, validator) as client:
        headers = {"X-Auth-Token": token}
        assert client.get("/v2.0/networks", headers=headers).status_code == 200
        cloud.keystone.revoke(token)
        clock.now = expires_at - 1
        assert client.get("/v2.0/networks", headers=headers).status_code == 200
        clock.now = expires_at
        assert client.get("/v2.0/networks", headers=headers).status_code == 401
        assert source.validations == 2


# --- roles -------------------------------------------------------------------------------


def test_reader_reads_its_project_but_writes_nothing(api: TestClient, cloud: Cloud) -> None:
    net = create(api, cloud, "alice", "networks", {"network": {"name": _name("n")}})
    rita = cloud.headers("rita")
    listed = api.get("/v2.0/networks", headers=rita).json()["networks"]
    assert net["id"] in {n["id"] for n in listed}
    assert api.get(f"/v2.0/networks/{net['id']}", headers=rita).json()["network"]["name"] == \
        net["name"]
    resp = api.post("/v2.0/networks", json={"network": {"name": "r"}}, headers=rita)
    assert (resp.status_code, resp.json()) == (403, policy(
        "rule:create_network is disallowed by policy"))
    resp = api.put(f"/v2.0/networks/{net['id']}", json={"network": {"name": "r"}}, headers=rita)
    assert (resp.status_code, resp.json()) == (403, policy(
        "rule:update_network is disallowed by policy"))
    resp = api.delete(f"/v2.0/networks/{net['id']}", headers=rita)
    assert (resp.status_code, resp.json()) == (403, policy(
        "rule:delete_network is disallowed by policy"))
    for method, path in (("PUT", "/tags"), ("PUT", "/tags/t"), ("DELETE", "/tags")):
        resp = api.request(method, f"/v2.0/networks/{net['id']}{path}", headers=rita,
                           json={"tags": ["t"]} if path == "/tags" and method == "PUT" else None)
        assert resp.status_code == 403, (method, path)
    after = api.get(f"/v2.0/networks/{net['id']}", headers=cloud.headers("alice")).json()
    assert after["network"]["revision_number"] == net["revision_number"]
    assert after["network"]["tags"] == []


def test_reader_cannot_create_subnets_ports_or_groups(api: TestClient, cloud: Cloud) -> None:
    net = create(api, cloud, "alice", "networks", {"network": {"name": _name("n")}})
    rita = cloud.headers("rita")
    for collection, body in (
        ("subnets", {"subnet": {"network_id": net["id"], "ip_version": 4,
                                "cidr": "10.9.0.0/24"}}),
        ("ports", {"port": {"network_id": net["id"]}}),
        ("security-groups", {"security_group": {"name": "g"}}),
    ):
        resp = api.post(f"/v2.0/{collection}", json=body, headers=rita)
        singular = next(iter(body))
        assert (resp.status_code, resp.json()) == (403, policy(
            f"rule:create_{singular} is disallowed by policy")), collection


def test_admin_sees_and_changes_every_project(api: TestClient, cloud: Cloud) -> None:
    mine = create(api, cloud, "alice", "networks", {"network": {"name": _name("a")}})
    theirs = create(api, cloud, "bob", "networks", {"network": {"name": _name("b")}})
    admin = cloud.headers("admin")
    listed = {n["id"] for n in api.get("/v2.0/networks", headers=admin).json()["networks"]}
    assert {mine["id"], theirs["id"]} <= listed
    resp = api.put(f"/v2.0/networks/{theirs['id']}", json={"network": {"name": "by-admin"}},
                   headers=admin)
    assert resp.json()["network"]["name"] == "by-admin"
    assert api.delete(f"/v2.0/networks/{mine['id']}", headers=admin).status_code == 204


def test_admin_creates_for_another_project(api: TestClient, cloud: Cloud) -> None:
    beta = cloud.projects["beta"]
    net = create(api, cloud, "admin", "networks", {"network": {"name": "x", "project_id": beta}})
    assert net["project_id"] == beta
    bobs = api.get(f"/v2.0/networks/{net['id']}", headers=cloud.headers("bob"))
    assert bobs.status_code == 200


@pytest.mark.parametrize("key", ["project_id", "tenant_id"])
def test_member_cannot_create_for_another_project(api: TestClient, cloud: Cloud,
                                                  key: str) -> None:
    body = {"network": {"name": "x", key: cloud.projects["beta"]}}
    resp = api.post("/v2.0/networks", json=body, headers=cloud.headers("alice"))
    assert resp.status_code == 400
    assert resp.json()["NeutronError"] == {"type": "HTTPBadRequest", "message": FOREIGN_PROJECT,
                                           "detail": ""}
    own = {"network": {"name": "x", key: cloud.projects["alpha"]}}
    assert api.post("/v2.0/networks", json=own, headers=cloud.headers("alice")).status_code == 201


# --- admin-only attributes and paths -----------------------------------------------------

PROVIDER = ("provider:network_type", "provider:physical_network", "provider:segmentation_id")
BINDING_HIDDEN = ("binding:host_id", "binding:profile", "binding:vif_type",
                  "binding:vif_details")


def test_provider_attributes_are_hidden_from_non_admins(api: TestClient, cloud: Cloud) -> None:
    net = create(api, cloud, "alice", "networks", {"network": {"name": _name("n")}})
    assert not set(PROVIDER) & set(net)
    for user in ("alice", "rita"):
        shown = api.get(f"/v2.0/networks/{net['id']}", headers=cloud.headers(user)).json()
        assert not set(PROVIDER) & set(shown["network"])
        listed = api.get("/v2.0/networks", headers=cloud.headers(user)).json()["networks"]
        assert all(not set(PROVIDER) & set(n) for n in listed)
    fields = api.get(f"/v2.0/networks/{net['id']}?fields=provider:segmentation_id&fields=id",
                     headers=cloud.headers("alice")).json()["network"]
    assert fields == {"id": net["id"]}
    admin = api.get(f"/v2.0/networks/{net['id']}", headers=cloud.headers("admin")).json()
    assert admin["network"]["provider:network_type"] == "vxlan"
    assert isinstance(admin["network"]["provider:segmentation_id"], int)


@pytest.mark.parametrize(("attr", "value"), [
    ("provider:network_type", "vxlan"), ("provider:segmentation_id", 4321),
    ("provider:physical_network", None), ("shared", True), ("router:external", True),
    ("is_default", True),
])
def test_members_cannot_set_admin_only_network_attributes(api: TestClient, cloud: Cloud,
                                                          attr: str, value: Any) -> None:
    resp = api.post("/v2.0/networks", json={"network": {"name": "x", attr: value}},
                    headers=cloud.headers("alice"))
    assert (resp.status_code, resp.json()) == (403, policy(
        f"(rule:create_network and rule:create_network:{attr}) is disallowed by policy"))


def test_admin_only_attributes_at_their_defaults_are_accepted(api: TestClient,
                                                              cloud: Cloud) -> None:
    body = {"network": {"name": "x", "shared": False, "router:external": False}}
    assert api.post("/v2.0/networks", json=body, headers=cloud.headers("alice")
                    ).status_code == 201


@pytest.mark.parametrize("attr", ["shared", "router:external"])
def test_members_cannot_update_admin_only_network_attributes(api: TestClient, cloud: Cloud,
                                                             attr: str) -> None:
    net = create(api, cloud, "alice", "networks", {"network": {"name": _name("n")}})
    resp = api.put(f"/v2.0/networks/{net['id']}", json={"network": {attr: True}},
                   headers=cloud.headers("alice"))
    assert (resp.status_code, resp.json()) == (403, policy(
        f"(rule:update_network and rule:update_network:{attr}) is disallowed by policy"))
    admin = api.put(f"/v2.0/networks/{net['id']}", json={"network": {attr: True}},
                    headers=cloud.headers("admin"))
    assert admin.json()["network"][attr] is True


def test_binding_attributes_are_admin_only(api: TestClient, cloud: Cloud) -> None:
    net = create(api, cloud, "alice", "networks", {"network": {"name": _name("n")}})
    port = create(api, cloud, "alice", "ports", {"port": {"network_id": net["id"],
                                                           "binding:vnic_type": "normal"}})
    assert not set(BINDING_HIDDEN) & set(port)
    assert port["binding:vnic_type"] == "normal"
    alice = cloud.headers("alice")
    for body in ({"binding:host_id": "host-1"}, {"binding:profile": {"k": "v"}}):
        attr = next(iter(body))
        resp = api.post("/v2.0/ports", json={"port": {"network_id": net["id"], **body}},
                        headers=alice)
        assert (resp.status_code, resp.json()) == (403, policy(
            f"(rule:create_port and rule:create_port:{attr}) is disallowed by policy"))
        resp = api.put(f"/v2.0/ports/{port['id']}", json={"port": body}, headers=alice)
        assert (resp.status_code, resp.json()) == (403, policy(
            f"(rule:update_port and rule:update_port:{attr}) is disallowed by policy"))
    admin = api.put(f"/v2.0/ports/{port['id']}", json={"port": {"binding:host_id": "host-1"}},
                    headers=cloud.headers("admin")).json()["port"]
    assert admin["binding:host_id"] == "host-1"
    assert admin["binding:vif_type"] != "unbound"
    shown = api.get(f"/v2.0/ports/{port['id']}", headers=alice).json()["port"]
    assert not set(BINDING_HIDDEN) & set(shown)


@pytest.mark.parametrize("query", [
    "provider:network_type=vxlan", "provider:segmentation_id=7",
    "sort_key=provider:segmentation_id",
])
def test_non_admins_cannot_filter_or_sort_by_hidden_attributes(api: TestClient, cloud: Cloud,
                                                               query: str) -> None:
    resp = api.get(f"/v2.0/networks?{query}", headers=cloud.headers("alice"))
    assert resp.status_code == 400
    assert resp.json()["NeutronError"]["type"] == "HTTPBadRequest"
    assert api.get(f"/v2.0/networks?{query}", headers=cloud.headers("admin")).status_code == 200


def test_port_binding_filter_is_admin_only(api: TestClient, cloud: Cloud) -> None:
    resp = api.get("/v2.0/ports?binding:host_id=host-1", headers=cloud.headers("alice"))
    assert resp.status_code == 400


def test_nodes_are_admin_only(api: TestClient, cloud: Cloud) -> None:
    node = {"host_info": {"node_id": _name("node"), "node_name": _name("host"),
                          "local_ip": "192.0.2.10"}}
    for user in ("alice", "rita"):
        headers = cloud.headers(user)
        assert api.get("/nodes", headers=headers).status_code == 403
        resp = api.post("/nodes", json=node, headers=headers)
        assert (resp.status_code, resp.json()) == (403, policy(
            "rule:create_node is disallowed by policy"))
    admin = cloud.headers("admin")
    assert api.post("/nodes", json=node, headers=admin).status_code == 201
    node_id = node["host_info"]["node_id"]
    alice = cloud.headers("alice")
    assert api.get(f"/nodes/{node_id}", headers=alice).status_code == 403
    assert api.put(f"/nodes/{node_id}", json={"host_info": {"veth": "x"}},
                   headers=alice).status_code == 403
    assert api.delete(f"/nodes/{node_id}", headers=alice).status_code == 403
    assert api.get(f"/nodes/{node_id}", headers=admin).status_code == 200


# --- native paths ------------------------------------------------------------------------


def test_native_paths_name_the_tokens_project_unless_admin(api: TestClient,
                                                           cloud: Cloud) -> None:
    alpha, beta = cloud.projects["alpha"], cloud.projects["beta"]
    alice = cloud.headers("alice")
    resp = api.post(f"/project/{alpha}/vpcs", json={"network": {"name": "v"}}, headers=alice)
    assert resp.status_code == 201
    assert resp.json()["network"]["project_id"] == alpha
    for method in ("GET", "POST"):
        resp = api.request(method, f"/project/{beta}/vpcs", headers=alice,
                           json={"network": {"name": "v"}} if method == "POST" else None)
        assert (resp.status_code, resp.json()) == (403, policy(
            f"project_id:{beta} is disallowed by policy")), method
    made = api.post(f"/project/{beta}/vpcs", json={"network": {"name": "v"}},
                    headers=cloud.headers("admin"))
    assert made.status_code == 201
    assert made.json()["network"]["project_id"] == beta


# --- a real client -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def alcor_url(cloud: Cloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``alcor server`` behind this Keystone, listed in its catalog as ``network``."""
    db = tmp_path_factory.mktemp("sdk-auth") / "alcor.db"
    with AlcorServer(f"sqlite:///{db}", env=cloud.alcor_env()) as server:
        cloud.keystone.register_endpoint("network", server.base_url + "/")
        yield server.base_url + "/"


def _connect(cloud: Cloud, user: str) -> Any:
    return openstack.connect(
        auth_type="password", auth_url=cloud.keystone.url, username=user, password=PASSWORD,
        project_name=cloud.users[user], user_domain_id="default", project_domain_id="default",
        region_name="RegionOne", load_yaml_config=False, load_envvars=False)


def test_openstacksdk_logs_in_and_finds_alcor_in_the_catalog(cloud: Cloud,
                                                             alcor_url: str) -> None:
    alice, bob = _connect(cloud, "alice"), _connect(cloud, "bob")
    try:
        assert alice.network.get_endpoint().rstrip("/") == alcor_url + "v2.0"
        net = alice.network.create_network(name=_name("sdk"))
        assert net.project_id == cloud.projects["alpha"]
        assert net.provider_network_type is None  # hidden from a member
        assert net.id in {n.id for n in alice.network.networks()}
        assert net.id not in {n.id for n in bob.network.networks()}
        with pytest.raises(exceptions.ResourceNotFound):
            bob.network.get_network(net.id)
        with pytest.raises(exceptions.ForbiddenException):
            alice.network.create_network(name="x", provider_network_type="vxlan")
    finally:
        alice.close()
        bob.close()


def _agent_output(alcor_url: str, env: dict[str, str], node_id: str, wanted: str) -> str:
    """Run ``alcor agent`` (recording data plane) registering at ``alcor_url`` with ``env``
    until it prints a line containing ``wanted`` (or 60 s pass); its output so far."""
    args = [alcor_executable(), "agent", "--listen", "127.0.0.1:0", "--node-id", node_id,
            "--local-ip", "127.0.0.1", "--dataplane", "recording", "--api-url", alcor_url]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **env}, start_new_session=True)
    lines: list[str] = []
    deadline = time.monotonic() + 60
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if wanted in line or time.monotonic() > deadline:
                break
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return "".join(lines)


def test_an_agent_registers_with_an_admin_token(alcor_url: str, cloud: Cloud) -> None:
    """Behind Keystone the agent authenticates as the user its ALCOR_AUTH__* settings name
    and registers its node; a member's credentials are refused (403) and it says so."""
    base = alcor_url.rstrip("/")
    admin_env = {**cloud.alcor_env(), "ALCOR_AUTH__USERNAME": "admin",
                 "ALCOR_AUTH__PASSWORD": ADMIN_PASSWORD, "ALCOR_AUTH__PROJECT_NAME": "admin"}
    out = _agent_output(base, admin_env, "auth-node-1", "created at")
    assert "node auth-node-1 created at" in out, out
    shown = httpx.get(f"{base}/nodes/auth-node-1", headers=cloud.headers("admin"))
    assert shown.status_code == 200, shown.text
    assert shown.json()["host_info"]["local_ip"] == "127.0.0.1"

    member_env = {**cloud.alcor_env(), "ALCOR_AUTH__USERNAME": "alice",
                  "ALCOR_AUTH__PASSWORD": PASSWORD, "ALCOR_AUTH__PROJECT_NAME": "alpha"}
    out = _agent_output(base, member_env, "auth-node-2", "not registered")
    assert "403" in out and "PolicyNotAuthorized" in out, out
    assert httpx.get(f"{base}/nodes/auth-node-2",
                     headers=cloud.headers("admin")).status_code == 404

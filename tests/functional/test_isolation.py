"""Cross-project probes under Keystone authentication (a real Keystone: keystone_cloud.py).

Project alpha (``alice``) owns one of every resource the API serves (``RESOURCES``: a new
resource is probed as soon as it is registered, and fails here until it has an entry in
``KINDS``); admin-only resources (segments, segment ranges) are the admin's.  Project beta
(``bob``) then tries every read and write on each: its lists never show it, whatever the
filters; show, update, delete and every tag call answer 404 as for a resource that does not
exist (an admin-only resource's writes may answer 403, as Neutron's do, whether it exists or
not); Alcor's native paths answer the same under beta's project and 403 under another's; and
the resource is unchanged afterwards.  Shared and external networks are visible to beta but
not writable; ``/nodes`` is refused to non-admins.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.testclient import TestClient

from alcor.api.attributes import Resource
from alcor.api.definitions import RESOURCES
from alcor.config import Settings, load
from tests.keystone_cloud import Cloud, alcor_client

Body = dict[str, Any]


@pytest.fixture(scope="module")
def settings(cloud: Cloud, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    db = tmp_path_factory.mktemp("isolation") / "alcor.db"
    return load(cloud.alcor_env(), db__url=f"sqlite:///{db}")


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[TestClient]:
    with alcor_client(settings) as client:
        yield client


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Estate:
    """What each user made, created on first use (one of each resource per project)."""

    def __init__(self, api: TestClient, cloud: Cloud) -> None:
        self.api = api
        self.cloud = cloud
        self.made: dict[tuple[str, str], Body] = {}
        self.cidrs = iter(range(1, 250))

    def post(self, user: str, collection: str, body: Body) -> Body:
        resp = self.api.post(f"/v2.0/{collection}", json=body, headers=self.cloud.headers(user))
        assert resp.status_code == 201, (collection, resp.text)
        return dict(next(iter(resp.json().values())))

    def get(self, user: str, collection: str) -> Body:
        """``user``'s one resource of ``collection`` (the admin's for admin-only ones)."""
        kind = kind_of(collection)
        user = "admin" if kind.admin_only else user
        key = (user, collection)
        if key not in self.made:
            self.made[key] = kind.make(self, user)
        return self.made[key]

    def owner(self, collection: str) -> str:
        return "admin" if kind_of(collection).admin_only else "alice"

    def cidr(self) -> str:
        return f"10.{next(self.cidrs)}.0.0/24"

    def external_network(self) -> Body:
        """An admin's external network with a subnet (floating IPs come from it)."""
        key = ("admin", "external")
        if key not in self.made:
            net = self.post("admin", "networks", {"network": {
                "name": _name("ext"), "router:external": True}})
            self.post("admin", "subnets", {"subnet": {
                "network_id": net["id"], "ip_version": 4, "cidr": self.cidr()}})
            self.made[key] = net
        return self.made[key]


@dataclass(frozen=True)
class Kind:
    make: Callable[[Estate, str], Body]
    """Makes the user's one resource (and what it depends on); returns it."""
    admin_only: bool = False
    """Only admins see or change it (Neutron's policy): the admin makes the probed one."""


def _posting(collection: str, body: Callable[[Estate, str], Body]) -> Callable[[Estate, str],
                                                                             Body]:
    return lambda e, u: e.post(u, collection, body(e, u))


def _network_segment(e: Estate, user: str) -> Body:
    """A network's segment (made with the network)."""
    net = e.post(user, "networks", {"network": {"name": _name("segmented")}})
    resp = e.api.get(f"/v2.0/segments?network_id={net['id']}", headers=e.cloud.headers(user))
    [segment] = resp.json()["segments"]
    return dict(segment)


KINDS: dict[str, Kind] = {
    "networks": Kind(_posting("networks", lambda e, u: {"network": {"name": _name("net")}})),
    "subnets": Kind(_posting("subnets", lambda e, u: {"subnet": {
        "network_id": e.get(u, "networks")["id"], "ip_version": 4, "cidr": e.cidr(),
        "name": _name("sub")}})),
    "ports": Kind(_posting("ports", lambda e, u: {"port": {
        "network_id": e.get(u, "subnets")["network_id"], "name": _name("port")}})),
    "security-groups": Kind(_posting("security-groups", lambda e, u: {
        "security_group": {"name": _name("sg")}})),
    "security-group-rules": Kind(_posting("security-group-rules", lambda e, u: {
        "security_group_rule": {
            "security_group_id": e.get(u, "security-groups")["id"], "direction": "ingress",
            "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 22,
            "port_range_max": 22}})),
    "routers": Kind(_posting("routers", lambda e, u: {"router": {"name": _name("router")}})),
    "floatingips": Kind(_posting("floatingips", lambda e, u: {"floatingip": {
        "floating_network_id": e.external_network()["id"]}})),
    "segments": Kind(_network_segment, admin_only=True),
    "network_segment_ranges": Kind(_posting("network_segment_ranges", lambda e, u: {
        "network_segment_range": {"name": _name("range"), "network_type": "vxlan",
                                  "minimum": 5000, "maximum": 5009}}), admin_only=True),
}
"""How each resource the API serves is made for the probes."""


def kind_of(collection: str) -> Kind:
    kind = KINDS.get(collection)
    if kind is None:
        pytest.fail(f"{collection} is served but not probed: add it to KINDS in "
                    "tests/functional/test_isolation.py")
    return kind


@pytest.fixture(scope="module")
def estate(api: TestClient, cloud: Cloud) -> Estate:
    return Estate(api, cloud)


def _update_body(resource: Resource) -> Body:
    """A real change where the resource allows one (its description), else an empty one."""
    if "description" in resource.attributes and resource.attributes["description"].allow_put:
        return {resource.name: {"description": "changed by another project"}}
    return {resource.name: {}}


REVEALING = ("name", "project_id", "mac_address", "cidr", "floating_ip_address")
"""Attributes of alpha's resources that no answer to beta may contain."""


def _not_found(resp: Any, mine: Body) -> bool:
    """404 with a NotFound type, revealing nothing of the resource but the id asked about."""
    if resp.status_code != 404 or not resp.json()["NeutronError"]["type"].endswith("NotFound"):
        return False
    return not any(mine.get(k) and str(mine[k]) in resp.text for k in REVEALING)


def _refused(resp: Any, mine: Body, method: str, collection: str) -> bool:
    """Not found; or, writing an admin-only resource, 403 (Neutron's answer to any id)."""
    if method != "GET" and kind_of(collection).admin_only and resp.status_code == 403:
        return bool(resp.json()["NeutronError"]["type"] == "PolicyNotAuthorized")
    return _not_found(resp, mine)


COLLECTIONS = sorted(RESOURCES)


@pytest.mark.parametrize("collection", COLLECTIONS)
def test_another_project_never_sees_it_listed(api: TestClient, cloud: Cloud, estate: Estate,
                                              collection: str) -> None:
    mine = estate.get("alice", collection)
    bob = cloud.headers("bob")
    alpha = cloud.projects[cloud.users[estate.owner(collection)]]
    queries = ["", f"?id={mine['id']}", "?limit=1", f"?id={mine['id']}&fields=id",
               "?sort_key=id&sort_dir=desc"]
    project = RESOURCES[collection].attributes.get("project_id")
    if project is not None and project.is_filter:
        queries += [f"?project_id={alpha}", f"?tenant_id={alpha}"]
    for query in queries:
        resp = api.get(f"/v2.0/{collection}{query}", headers=bob)
        assert resp.status_code == 200, (query, resp.text)
        listed = next(iter(resp.json().values()))
        assert mine["id"] not in {r.get("id") for r in listed}, query
        assert alpha not in {r.get("project_id") for r in listed}, query


@pytest.mark.parametrize("collection", COLLECTIONS)
def test_another_project_cannot_read_change_or_delete_it(
    api: TestClient, cloud: Cloud, estate: Estate, collection: str
) -> None:
    resource = RESOURCES[collection]
    mine = estate.get("alice", collection)
    owner = cloud.headers(estate.owner(collection))
    before = api.get(f"/v2.0/{collection}/{mine['id']}", headers=owner).json()
    path = f"/v2.0/{collection}/{mine['id']}"
    probes: list[tuple[str, str, Any]] = [
        ("GET", path, None), ("GET", f"{path}?fields=id", None),
        ("PUT", path, _update_body(resource)), ("DELETE", path, None),
    ]
    if resource.tags:
        probes += [
            ("GET", f"{path}/tags", None), ("PUT", f"{path}/tags", {"tags": ["x"]}),
            ("DELETE", f"{path}/tags", None), ("GET", f"{path}/tags/x", None),
            ("PUT", f"{path}/tags/x", None), ("DELETE", f"{path}/tags/x", None),
        ]
    users = ("bob", "alice", "rita") if kind_of(collection).admin_only else ("bob",)
    for user in users:
        for method, url, body in probes:
            resp = api.request(method, url, json=body, headers=cloud.headers(user))
            assert _refused(resp, mine, method, collection), (user, method, url, resp.text)
    after = api.get(f"/v2.0/{collection}/{mine['id']}", headers=owner).json()
    assert after == before


@pytest.mark.parametrize("collection", COLLECTIONS)
def test_native_paths_keep_projects_apart(api: TestClient, cloud: Cloud, estate: Estate,
                                          collection: str) -> None:
    resource = RESOURCES[collection]
    mine = estate.get("alice", collection)
    _, segment = resource.native
    alpha, beta = cloud.projects["alpha"], cloud.projects["beta"]
    bob = cloud.headers("bob")
    under_beta = f"/project/{beta}/{segment}/{mine['id']}"
    for method, body in (("GET", None), ("PUT", _update_body(resource)), ("DELETE", None)):
        resp = api.request(method, under_beta, json=body, headers=bob)
        assert _refused(resp, mine, method, collection), (method, resp.status_code, resp.text)
    listed = api.get(f"/project/{beta}/{segment}", headers=bob).json()
    assert mine["id"] not in {r.get("id") for r in next(iter(listed.values()))}
    for url in (f"/project/{alpha}/{segment}", f"/project/{alpha}/{segment}/{mine['id']}"):
        resp = api.get(url, headers=bob)
        assert resp.status_code == 403, (url, resp.text)
        assert resp.json()["NeutronError"]["type"] == "PolicyNotAuthorized"
    owner = estate.owner(collection)
    owners_path = f"/project/{cloud.projects[cloud.users[owner]]}/{segment}/{mine['id']}"
    assert api.get(owners_path, headers=cloud.headers(owner)).status_code == 200


@pytest.mark.parametrize("collection", [c for c in COLLECTIONS
                                        if not KINDS.get(c, Kind(dict)).admin_only])
def test_the_projects_reader_reads_it_but_changes_nothing(
    api: TestClient, cloud: Cloud, estate: Estate, collection: str
) -> None:
    resource = RESOURCES[collection]
    mine = estate.get("alice", collection)
    rita = cloud.headers("rita")
    path = f"/v2.0/{collection}/{mine['id']}"
    assert api.get(path, headers=rita).status_code == 200
    listed = next(iter(api.get(f"/v2.0/{collection}", headers=rita).json().values()))
    assert mine["id"] in {r["id"] for r in listed}
    for method, body in (("PUT", _update_body(resource)), ("DELETE", None)):
        resp = api.request(method, path, json=body, headers=rita)
        assert resp.status_code == 403, (method, resp.text)
        assert resp.json()["NeutronError"]["type"] == "PolicyNotAuthorized"
    assert api.get(path, headers=cloud.headers("alice")).status_code == 200


# --- references to another project's resources -------------------------------------------


def _error(resp: Any) -> tuple[int, str]:
    return resp.status_code, resp.json()["NeutronError"]["type"]


def test_another_projects_network_cannot_take_ports_or_subnets(
    api: TestClient, cloud: Cloud, estate: Estate
) -> None:
    net = estate.get("alice", "subnets")["network_id"]
    bob = cloud.headers("bob")
    resp = api.post("/v2.0/ports", json={"port": {"network_id": net}}, headers=bob)
    assert _error(resp) == (404, "NetworkNotFound")
    resp = api.post("/v2.0/subnets", json={"subnet": {
        "network_id": net, "ip_version": 4, "cidr": "10.250.0.0/24"}}, headers=bob)
    assert _error(resp) == (404, "NetworkNotFound")
    bulk = {"ports": [{"network_id": estate.get("bob", "networks")["id"]},
                      {"network_id": net}]}
    assert _error(api.post("/v2.0/ports", json=bulk, headers=bob)) == (404, "NetworkNotFound")


def test_another_projects_security_group_cannot_be_used(api: TestClient, cloud: Cloud,
                                                        estate: Estate) -> None:
    group = estate.get("alice", "security-groups")["id"]
    bob = cloud.headers("bob")
    own_net = estate.get("bob", "networks")["id"]
    resp = api.post("/v2.0/ports", json={"port": {"network_id": own_net,
                                                  "security_groups": [group]}}, headers=bob)
    assert _error(resp) == (404, "SecurityGroupNotFound")
    for body in ({"security_group_id": group},
                 {"security_group_id": estate.get("bob", "security-groups")["id"],
                  "remote_group_id": group}):
        resp = api.post("/v2.0/security-group-rules", headers=bob, json={
            "security_group_rule": {"direction": "ingress", "ethertype": "IPv4", **body}})
        assert _error(resp) == (404, "SecurityGroupNotFound"), body


def test_listing_another_projects_groups_makes_nothing_for_it(api: TestClient, cloud: Cloud,
                                                              estate: Estate) -> None:
    beta_filter = f"?project_id={cloud.projects['alpha']}"
    resp = api.get(f"/v2.0/security-groups{beta_filter}", headers=cloud.headers("bob"))
    assert resp.json()["security_groups"] == []
    bob_groups = api.get("/v2.0/security-groups", headers=cloud.headers("bob")).json()
    assert {g["project_id"] for g in bob_groups["security_groups"]} == {cloud.projects["beta"]}


def test_rules_an_admin_adds_to_a_group_are_its_owners(api: TestClient, cloud: Cloud,
                                                       estate: Estate) -> None:
    group = estate.post("alice", "security-groups", {"security_group": {"name": _name("g")}})
    rule = estate.post("admin", "security-group-rules", {"security_group_rule": {
        "security_group_id": group["id"], "direction": "ingress", "ethertype": "IPv4",
        "protocol": "udp"}})
    assert rule["project_id"] != cloud.projects["alpha"]
    alice, bob = cloud.headers("alice"), cloud.headers("bob")
    listed = api.get(f"/v2.0/security-group-rules?security_group_id={group['id']}",
                     headers=alice).json()["security_group_rules"]
    assert rule["id"] in {r["id"] for r in listed}
    assert api.get(f"/v2.0/security-group-rules/{rule['id']}", headers=bob).status_code == 404
    assert api.delete(f"/v2.0/security-group-rules/{rule['id']}", headers=bob
                      ).status_code == 404
    assert api.delete(f"/v2.0/security-group-rules/{rule['id']}", headers=alice
                      ).status_code == 204


# --- shared and external networks --------------------------------------------------------


@pytest.fixture(scope="module")
def shared(estate: Estate) -> tuple[Body, Body]:
    """An admin's shared network and its subnet."""
    net = estate.post("admin", "networks", {"network": {"name": _name("shared"),
                                                         "shared": True}})
    sub = estate.post("admin", "subnets", {"subnet": {
        "network_id": net["id"], "ip_version": 4, "cidr": estate.cidr()}})
    return net, sub


def test_shared_network_is_visible_to_every_project(api: TestClient, cloud: Cloud,
                                                    shared: tuple[Body, Body]) -> None:
    net, sub = shared
    for user in ("alice", "bob", "rita"):
        headers = cloud.headers(user)
        assert net["id"] in {n["id"] for n in
                             api.get("/v2.0/networks", headers=headers).json()["networks"]}
        assert sub["id"] in {s["id"] for s in
                             api.get("/v2.0/subnets", headers=headers).json()["subnets"]}
        assert api.get(f"/v2.0/networks/{net['id']}", headers=headers).status_code == 200
        assert api.get(f"/v2.0/subnets/{sub['id']}", headers=headers).status_code == 200
    listed = api.get("/v2.0/networks?shared=true", headers=cloud.headers("bob")).json()
    assert net["id"] in {n["id"] for n in listed["networks"]}


def test_shared_network_is_not_writable_by_other_projects(api: TestClient, cloud: Cloud,
                                                          shared: tuple[Body, Body]) -> None:
    net, sub = shared
    bob = cloud.headers("bob")
    before = api.get(f"/v2.0/networks/{net['id']}", headers=cloud.headers("admin")).json()
    for method, url, body, rule in (
        ("PUT", f"/v2.0/networks/{net['id']}", {"network": {"name": "x"}}, "update_network"),
        ("DELETE", f"/v2.0/networks/{net['id']}", None, "delete_network"),
        ("PUT", f"/v2.0/networks/{net['id']}/tags", {"tags": ["x"]}, "update_network"),
        ("PUT", f"/v2.0/networks/{net['id']}/tags/x", None, "update_network"),
        ("PUT", f"/v2.0/subnets/{sub['id']}", {"subnet": {"name": "x"}}, "update_subnet"),
        ("DELETE", f"/v2.0/subnets/{sub['id']}", None, "delete_subnet"),
    ):
        resp = api.request(method, url, json=body, headers=bob)
        assert resp.status_code == 403, (method, url, resp.text)
        assert resp.json()["NeutronError"] == {
            "type": "PolicyNotAuthorized", "message": f"rule:{rule} is disallowed by policy",
            "detail": ""}
    resp = api.post("/v2.0/subnets", headers=bob, json={"subnet": {
        "network_id": net["id"], "ip_version": 4, "cidr": "10.251.0.0/24"}})
    assert resp.status_code == 403
    assert resp.json()["NeutronError"]["message"] == \
        "rule:create_subnet is disallowed by policy"
    after = api.get(f"/v2.0/networks/{net['id']}", headers=cloud.headers("admin")).json()
    assert after == before


def test_ports_on_a_shared_network_stay_their_projects(api: TestClient, cloud: Cloud,
                                                       shared: tuple[Body, Body]) -> None:
    net, _ = shared
    bobs = api.post("/v2.0/ports", json={"port": {"network_id": net["id"]}},
                    headers=cloud.headers("bob"))
    assert bobs.status_code == 201
    port = bobs.json()["port"]
    assert port["project_id"] == cloud.projects["beta"]
    alice = cloud.headers("alice")
    assert api.get(f"/v2.0/ports/{port['id']}", headers=alice).status_code == 404
    listed = api.get(f"/v2.0/ports?network_id={net['id']}", headers=alice).json()["ports"]
    assert port["id"] not in {p["id"] for p in listed}


def test_external_network_is_visible_but_takes_no_ports_from_others(
    api: TestClient, cloud: Cloud, estate: Estate
) -> None:
    ext = estate.external_network()
    bob = cloud.headers("bob")
    assert api.get(f"/v2.0/networks/{ext['id']}", headers=bob).status_code == 200
    subnets = api.get(f"/v2.0/subnets?network_id={ext['id']}", headers=bob).json()["subnets"]
    assert len(subnets) == 1
    beta = cloud.projects["beta"]
    resp = api.post("/v2.0/ports", json={"port": {"network_id": ext["id"]}}, headers=bob)
    assert resp.json()["NeutronError"] == {
        "type": "HTTPForbidden", "detail": "",
        "message": f"Tenant {beta} not allowed to create port on this network"}
    assert resp.status_code == 403
    resp = api.post("/v2.0/subnets", headers=bob, json={"subnet": {
        "network_id": ext["id"], "ip_version": 4, "cidr": "10.252.0.0/24"}})
    assert (resp.status_code, resp.json()["NeutronError"]["message"]) == (
        403, f"Tenant {beta} not allowed to create subnet on this network")
    resp = api.put(f"/v2.0/networks/{ext['id']}", json={"network": {"name": "x"}}, headers=bob)
    assert resp.status_code == 403


# --- admin-only paths --------------------------------------------------------------------


def test_nodes_are_refused_to_non_admins(api: TestClient, cloud: Cloud) -> None:
    for user in ("alice", "bob", "rita"):
        resp = api.get("/nodes", headers=cloud.headers(user))
        assert resp.status_code == 403
        assert resp.json()["NeutronError"]["message"] == "rule:get_node is disallowed by policy"
    assert api.get("/nodes", headers=cloud.headers("admin")).status_code == 200


def test_admin_sees_every_projects_resources(api: TestClient, cloud: Cloud,
                                             estate: Estate) -> None:
    mine = estate.get("alice", "ports")
    theirs = estate.get("bob", "networks")
    admin = cloud.headers("admin")
    assert api.get(f"/v2.0/ports/{mine['id']}", headers=admin).status_code == 200
    listed = api.get("/v2.0/networks", headers=admin).json()["networks"]
    assert theirs["id"] in {n["id"] for n in listed}


# --- router actions and floating IP associations -----------------------------------------


def test_router_actions_on_another_projects_router_are_not_found(
    api: TestClient, cloud: Cloud, estate: Estate
) -> None:
    router = estate.get("alice", "routers")["id"]
    bobs_subnet = estate.get("bob", "subnets")["id"]
    for action, body in (
        ("add_router_interface", {"subnet_id": bobs_subnet}),
        ("remove_router_interface", {"subnet_id": bobs_subnet}),
        ("add_extraroutes", {"router": {"routes": []}}),
        ("remove_extraroutes", {"router": {"routes": []}}),
    ):
        resp = api.put(f"/v2.0/routers/{router}/{action}", json=body,
                       headers=cloud.headers("bob"))
        assert _error(resp) == (404, "RouterNotFound"), (action, resp.text)
        resp = api.put(f"/v2.0/routers/{router}/{action}", json=body,
                       headers=cloud.headers("rita"))
        assert resp.json()["NeutronError"] == {
            "type": "PolicyNotAuthorized", "message": f"rule:{action} is disallowed by policy",
            "detail": ""}, action


def test_another_projects_subnet_or_port_cannot_join_a_router(
    api: TestClient, cloud: Cloud, estate: Estate
) -> None:
    router = estate.get("bob", "routers")["id"]
    bob = cloud.headers("bob")
    resp = api.put(f"/v2.0/routers/{router}/add_router_interface", headers=bob,
                   json={"subnet_id": estate.get("alice", "subnets")["id"]})
    assert _error(resp) == (404, "SubnetNotFound")
    resp = api.put(f"/v2.0/routers/{router}/add_router_interface", headers=bob,
                   json={"port_id": estate.get("alice", "ports")["id"]})
    assert _error(resp) == (404, "PortNotFound")


def test_another_projects_port_cannot_take_a_floating_ip(api: TestClient, cloud: Cloud,
                                                         estate: Estate) -> None:
    fip = estate.get("bob", "floatingips")["id"]
    port = estate.get("alice", "ports")
    resp = api.put(f"/v2.0/floatingips/{fip}", json={"floatingip": {"port_id": port["id"]}},
                   headers=cloud.headers("bob"))
    assert _error(resp) == (404, "PortNotFound")
    resp = api.post("/v2.0/floatingips", headers=cloud.headers("bob"), json={"floatingip": {
        "floating_network_id": estate.external_network()["id"], "port_id": port["id"]}})
    assert _error(resp) == (404, "PortNotFound")


# --- quotas ------------------------------------------------------------------------------


def test_quotas_of_other_projects_are_admin_only(api: TestClient, cloud: Cloud) -> None:
    alpha, beta = cloud.projects["alpha"], cloud.projects["beta"]
    bob = cloud.headers("bob")
    assert api.get(f"/v2.0/quotas/{beta}", headers=bob).status_code == 200
    for method, url, body in (
        ("GET", f"/v2.0/quotas/{alpha}", None),
        ("GET", f"/v2.0/quotas/{alpha}/details.json", None),
        ("GET", "/v2.0/quotas", None),
        ("PUT", f"/v2.0/quotas/{alpha}", {"quota": {"network": 1}}),
        ("PUT", f"/v2.0/quotas/{beta}", {"quota": {"network": 1000}}),
        ("DELETE", f"/v2.0/quotas/{alpha}", None),
    ):
        resp = api.request(method, url, json=body, headers=bob)
        assert resp.status_code == 403, (method, url, resp.text)
        assert resp.json()["NeutronError"]["type"] == "PolicyNotAuthorized"
    admin = cloud.headers("admin")
    assert api.get(f"/v2.0/quotas/{alpha}", headers=admin).status_code == 200


def test_ip_availability_is_the_admins(api: TestClient, cloud: Cloud, estate: Estate) -> None:
    net = estate.get("alice", "subnets")["network_id"]
    for user in ("alice", "bob"):
        headers = cloud.headers(user)
        listed = api.get("/v2.0/network-ip-availabilities", headers=headers).json()
        assert listed["network_ip_availabilities"] == []
        resp = api.get(f"/v2.0/network-ip-availabilities/{net}", headers=headers)
        assert _error(resp) == (404, "NetworkNotFound")
    shown = api.get(f"/v2.0/network-ip-availabilities/{net}", headers=cloud.headers("admin"))
    assert shown.status_code == 200

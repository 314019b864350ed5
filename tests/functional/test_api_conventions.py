"""Neutron's API conventions through HTTP: discovery, fields, filters, sorting, pagination,
bulk atomicity, If-Match, tags, error bodies, and the Alcor-native project paths."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.testclient import TestClient


def _nets(client: TestClient, *names: str, **extra: Any) -> list[dict[str, Any]]:
    body = {"networks": [{"name": n, **extra} for n in names]}
    resp = client.post("/v2.0/networks", json=body)
    assert resp.status_code == 201, resp.text
    return list(resp.json()["networks"])


def test_root_lists_v2_with_self_link_from_host(client: TestClient) -> None:
    body = client.get("/").json()
    assert body == {"versions": [{"id": "v2.0", "status": "CURRENT", "links": [
        {"rel": "self", "href": "http://testserver/v2.0/"}]}]}


def test_v2_index_lists_core_resources(client: TestClient) -> None:
    resources = client.get("/v2.0/").json()["resources"]
    assert {r["collection"] for r in resources} == {"networks", "subnets", "ports"}
    assert resources[0]["links"][0]["href"].startswith("http://testserver/v2.0/")


def test_extensions_list_and_show(client: TestClient) -> None:
    aliases = {e["alias"] for e in client.get("/v2.0/extensions").json()["extensions"]}
    assert {"binding", "provider", "security-group", "pagination", "sorting",
            "standard-attr-tag", "revision-if-match", "filter-validation"} <= aliases
    assert "l3-ha" not in aliases  # listed only once implemented
    shown = client.get("/v2.0/extensions/binding").json()["extension"]
    assert shown["name"] == "Port Binding"
    missing = client.get("/v2.0/extensions/l3-ha")
    assert missing.status_code == 404
    assert missing.json()["NeutronError"]["type"] == "ExtensionNotFound"


def test_openapi_describes_every_collection(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path in ("/v2.0/networks", "/v2.0/subnets", "/v2.0/ports", "/v2.0/security-groups",
                 "/v2.0/security-group-rules"):
        assert path in doc["paths"]
    assert "network_id" in doc["components"]["schemas"]["port_create"]["required"]


def test_fields_returns_only_requested_attributes(client: TestClient) -> None:
    _nets(client, "a")
    nets = client.get("/v2.0/networks?fields=name&fields=mtu").json()["networks"]
    assert nets == [{"name": "a", "mtu": 1450}]


def test_filters_any_of_and_boolean(client: TestClient) -> None:
    _nets(client, "a", "b", "c")
    _nets(client, "d", shared=True)
    names = {n["name"] for n in
             client.get("/v2.0/networks?name=a&name=c").json()["networks"]}
    assert names == {"a", "c"}
    shared = client.get("/v2.0/networks?shared=true").json()["networks"]
    assert [n["name"] for n in shared] == ["d"]


def test_unknown_filter_is_rejected(client: TestClient) -> None:
    resp = client.get("/v2.0/networks?colour=blue")
    assert resp.status_code == 400
    assert resp.json()["NeutronError"]["type"] == "HTTPBadRequest"


def test_tenant_id_filter_means_project(client: TestClient) -> None:
    _nets(client, "mine")
    client.post("/v2.0/networks", json={"network": {"name": "theirs", "project_id": "proj-b"}})
    names = [n["name"] for n in client.get("/v2.0/networks?tenant_id=proj-b").json()["networks"]]
    assert names == ["theirs"]


def test_sorting_by_two_keys(client: TestClient) -> None:
    _nets(client, "b", "a", "c")
    _nets(client, "a", shared=True)
    nets = client.get("/v2.0/networks?sort_key=name&sort_dir=desc&sort_key=shared"
                      "&sort_dir=asc").json()["networks"]
    assert [(n["name"], n["shared"]) for n in nets] == [
        ("c", False), ("b", False), ("a", False), ("a", True)]


def test_bad_sort_key_is_400(client: TestClient) -> None:
    assert client.get("/v2.0/networks?sort_key=subnets").status_code == 400


def test_pagination_walks_every_item_once(client: TestClient) -> None:
    _nets(client, *[f"n{i:02d}" for i in range(7)])
    seen: list[str] = []
    url = "/v2.0/networks?limit=3&sort_key=name"
    pages = 0
    while url:
        body = client.get(url).json()
        seen += [n["name"] for n in body["networks"]]
        nxt = [link["href"] for link in body.get("networks_links", []) if link["rel"] == "next"]
        url = nxt[0].replace("http://testserver", "") if nxt else ""
        pages += 1
    assert seen == [f"n{i:02d}" for i in range(7)]
    assert pages == 3


def test_pagination_previous_link_goes_back(client: TestClient) -> None:
    _nets(client, *[f"n{i}" for i in range(6)])
    first = client.get("/v2.0/networks?limit=2&sort_key=name").json()
    marker = first["networks"][-1]["id"]
    second = client.get(f"/v2.0/networks?limit=2&sort_key=name&marker={marker}").json()
    assert [n["name"] for n in second["networks"]] == ["n2", "n3"]
    prev = next(x["href"] for x in second["networks_links"] if x["rel"] == "previous")
    query = parse_qs(urlsplit(prev).query)
    assert query["page_reverse"] == ["True"]
    back = client.get(prev.replace("http://testserver", "")).json()
    assert [n["name"] for n in back["networks"]] == ["n0", "n1"]


def test_bulk_create_is_atomic(client: TestClient) -> None:
    body = {"networks": [{"name": "ok"}, {"name": "bad", "mtu": "lots"}]}
    resp = client.post("/v2.0/networks", json=body)
    assert resp.status_code == 400
    body = {"networks": [{"name": "x", "provider:segmentation_id": 77},
                         {"name": "y", "provider:segmentation_id": 77}]}
    resp = client.post("/v2.0/networks", json=body)
    assert resp.status_code == 409
    assert client.get("/v2.0/networks").json()["networks"] == []


def test_if_match_on_update_and_delete(client: TestClient) -> None:
    net = _nets(client, "a")[0]
    url = f"/v2.0/networks/{net['id']}"
    stale = {"If-Match": f"revision_number={net['revision_number'] + 5}"}
    resp = client.put(url, json={"network": {"name": "b"}}, headers=stale)
    assert resp.status_code == 412
    assert resp.json()["NeutronError"]["type"] == "RevisionNumberConstraintFailed"
    fresh = {"If-Match": f"revision_number={net['revision_number']}"}
    assert client.put(url, json={"network": {"name": "b"}}, headers=fresh).status_code == 200
    assert client.delete(url, headers=fresh).status_code == 412
    bumped = {"If-Match": f"revision_number={net['revision_number'] + 1}"}
    assert client.delete(url, headers=bumped).status_code == 204


def test_tags_subresource(client: TestClient) -> None:
    net = _nets(client, "a")[0]
    base = f"/v2.0/networks/{net['id']}/tags"
    assert client.put(f"{base}/red").status_code == 201
    assert client.put(f"{base}/blue").status_code == 201
    assert client.get(f"{base}/red").status_code == 204
    assert client.get(f"{base}/green").status_code == 404
    assert sorted(client.get(base).json()["tags"]) == ["blue", "red"]
    assert client.get("/v2.0/networks?tags=red,blue").json()["networks"][0]["id"] == net["id"]
    assert client.get("/v2.0/networks?not-tags-any=red").json()["networks"] == []
    resp = client.put(base, json={"tags": ["x", "y"]})
    assert resp.status_code == 200
    assert resp.json()["tags"] == ["x", "y"]
    assert client.delete(f"{base}/x").status_code == 204
    assert client.delete(f"{base}/x").status_code == 404
    assert client.delete(base).status_code == 204
    shown = client.get(f"/v2.0/networks/{net['id']}").json()["network"]
    assert shown["tags"] == []
    assert shown["revision_number"] > net["revision_number"]


def test_tags_on_create(client: TestClient) -> None:
    net = _nets(client, "a", tags=["one", "two"])[0]
    assert net["tags"] == ["one", "two"]
    found = client.get("/v2.0/networks?tags-any=two,zzz").json()["networks"]
    assert [n["id"] for n in found] == [net["id"]]


@pytest.mark.parametrize(
    ("body", "expected_type"),
    [
        ({"network": {"name": 5}}, "InvalidInput"),
        ({"network": {"bogus": 1}}, "HTTPBadRequest"),
        ({"network": {"status": "DOWN"}}, "HTTPBadRequest"),
        ({"netwerk": {}}, "HTTPBadRequest"),
        ({"network": {"project_id": "a", "tenant_id": "b"}}, "HTTPBadRequest"),
    ],
)
def test_bad_bodies_are_400_with_neutron_error(
    client: TestClient, body: dict[str, Any], expected_type: str
) -> None:
    resp = client.post("/v2.0/networks", json=body)
    assert resp.status_code == 400
    assert resp.json()["NeutronError"]["type"] == expected_type


def test_malformed_json_is_400(client: TestClient) -> None:
    resp = client.post("/v2.0/networks", content=b"{not json",
                       headers={"content-type": "application/json"})
    assert resp.status_code == 400


def test_unknown_path_is_json_404(client: TestClient) -> None:
    resp = client.get("/v2.0/widgets")
    assert resp.status_code == 404
    assert resp.json()["NeutronError"]["type"] == "HTTPNotFound"


def test_native_vpc_paths_share_the_implementation(client: TestClient) -> None:
    resp = client.post("/project/p1/vpcs", json={"network": {"name": "v1"}})
    assert resp.status_code == 201
    vpc = resp.json()["network"]
    assert vpc["project_id"] == "p1"
    assert client.post("/project/p1/vpcs", json={"vpc": {"name": "v2"}}).status_code == 201
    _nets(client, "other-project")
    listed = client.get("/project/p1/vpcs").json()["vpcs"]
    assert sorted(v["name"] for v in listed) == ["v1", "v2"]
    assert client.get(f"/v2.0/networks/{vpc['id']}").json()["network"]["name"] == "v1"
    bulk = client.post("/project/p1/vpcs/bulk", json={"vpcs": [{"name": "b1"}, {"name": "b2"}]})
    assert bulk.status_code == 201
    assert len(bulk.json()["vpcs"]) == 2
    assert client.delete(f"/project/p1/vpcs/{vpc['id']}").status_code == 204


def test_request_too_large_is_413(client: TestClient, settings: Any) -> None:
    big = b"x" * (settings.api.max_request_bytes + 1)
    resp = client.post("/v2.0/networks", content=big,
                       headers={"content-type": "application/json"})
    assert resp.status_code == 413


def test_openapi_body_keys_use_underscores(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    listing = doc["paths"]["/v2.0/security-groups"]["get"]["responses"]["200"]
    schema = listing["content"]["application/json"]["schema"]
    assert "security_groups" in schema["properties"]

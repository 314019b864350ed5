"""Network segment ranges through the HTTP API: the default ranges, creating, updating and
deleting ranges with Neutron's errors, ``used``/``available``, and where tenant networks' VNIs
come from (own ranges, then shared ones, then the default range less other projects')."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from alcor import errors
from alcor.api.app import Services
from alcor.cli.wiring import build_server_app, build_services, open_store
from alcor.config import Settings, load
from alcor.context import RequestContext
from alcor.query import ListQuery
from alcor.services.segment_ranges import AVAILABLE_SHOWN, default_range_id

MEMBER = RequestContext(project_id="proj-a", is_admin=False, roles=("member",))
DEFAULT = (100, 119)
"""The configured default VNI range of these tests: small enough to run out of."""


@pytest.fixture
def small(tmp_path: Path) -> Settings:
    return load({}, db__url=f"sqlite:///{tmp_path}/alcor.db", ipam__vni_min=DEFAULT[0],
                ipam__vni_max=DEFAULT[1])


@pytest.fixture
def api(small: Settings) -> Iterator[TestClient]:
    store = open_store(small)
    with TestClient(build_server_app(small, store), base_url="http://testserver") as c:
        c.headers["X-Project-Id"] = "proj-a"
        yield c
    store.dispose()


def create_range(client: TestClient, **attrs: Any) -> dict[str, Any]:
    body = {"name": "r", "network_type": "vxlan", **attrs}
    resp = client.post("/v2.0/network_segment_ranges", json={"network_segment_range": body})
    assert resp.status_code == 201, resp.text
    return dict(resp.json()["network_segment_range"])


def show(client: TestClient, range_id: str) -> dict[str, Any]:
    resp = client.get(f"/v2.0/network_segment_ranges/{range_id}")
    assert resp.status_code == 200, resp.text
    return dict(resp.json()["network_segment_range"])


def vni_of(client: TestClient, project: str = "proj-a", **attrs: Any) -> int:
    resp = client.post("/v2.0/networks", json={"network": {"name": "n", **attrs}},
                       headers={"X-Project-Id": project})
    assert resp.status_code == 201, resp.text
    return int(resp.json()["network"]["provider:segmentation_id"])


def error(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    return dict(resp.json()["NeutronError"])


# --- the default ranges ----------------------------------------------------------------------


def test_the_configured_range_shows_as_default_ranges(api: TestClient) -> None:
    resp = api.get("/v2.0/network_segment_ranges")
    assert resp.status_code == 200
    ranges = {r["network_type"]: r for r in resp.json()["network_segment_ranges"]}
    assert set(ranges) == {"vxlan", "geneve"}
    vxlan = ranges["vxlan"]
    assert vxlan["id"] == default_range_id("vxlan")
    assert (vxlan["default"], vxlan["shared"], vxlan["project_id"], vxlan["tenant_id"]) == (
        True, True, None, None)
    assert (vxlan["minimum"], vxlan["maximum"], vxlan["name"]) == (*DEFAULT, "")
    assert vxlan["available"] == list(range(DEFAULT[0], DEFAULT[1] + 1))
    assert vxlan["used"] == {}


def test_default_ranges_follow_the_configuration(tmp_path: Path) -> None:
    for low, high in ((100, 119), (200, 299)):
        settings = load({}, db__url=f"sqlite:///{tmp_path}/alcor.db", ipam__vni_min=low,
                        ipam__vni_max=high)
        store = open_store(settings)
        try:
            service = build_services(settings, store).by_collection["network_segment_ranges"]
            row = service.get(RequestContext.admin(), default_range_id("vxlan"))
            assert (row["minimum"], row["maximum"]) == (low, high)
        finally:
            store.dispose()


def test_default_ranges_are_read_only(api: TestClient) -> None:
    range_id = default_range_id("vxlan")
    message = (f"Network Segment Range {range_id} is a default segment range which could not "
               "be updated or deleted.")
    resp = api.put(f"/v2.0/network_segment_ranges/{range_id}",
                   json={"network_segment_range": {"name": "mine"}})
    assert error(resp, 400) == {"type": "NetworkSegmentRangeDefaultReadOnly",
                                "message": message, "detail": ""}
    resp = api.delete(f"/v2.0/network_segment_ranges/{range_id}")
    assert error(resp, 400)["type"] == "NetworkSegmentRangeDefaultReadOnly"


def test_available_of_a_huge_range_lists_the_lowest_free_ids(client: TestClient) -> None:
    vni = vni_of(client, **{"provider:segmentation_id": 3})
    default = show(client, default_range_id("vxlan"))
    assert (default["minimum"], default["maximum"]) == (1, 16_000_000)
    assert len(default["available"]) == AVAILABLE_SHOWN
    assert default["available"][:4] == [1, 2, 4, 5]
    assert default["used"] == {str(vni): "proj-a"}


# --- creating ranges -------------------------------------------------------------------------


def test_create_a_private_range(api: TestClient) -> None:
    created = create_range(api, shared=False, minimum=10, maximum=12, description="d",
                           tags=["t1"])
    assert set(created) == {"id", "name", "description", "default", "shared", "project_id",
                            "tenant_id", "network_type", "physical_network", "minimum",
                            "maximum", "available", "used", "tags", "revision_number",
                            "created_at", "updated_at"}
    assert (created["default"], created["shared"]) == (False, False)
    assert created["project_id"] == created["tenant_id"] == "proj-a"
    assert (created["minimum"], created["maximum"]) == (10, 12)
    assert (created["available"], created["used"]) == ([10, 11, 12], {})
    assert (created["description"], created["tags"], created["revision_number"]) == (
        "d", ["t1"], 0)
    assert created["physical_network"] is None
    assert show(api, created["id"]) == created


def test_a_shared_range_belongs_to_no_project(api: TestClient) -> None:
    created = create_range(api, minimum=10, maximum=12, project_id="proj-b")
    assert (created["shared"], created["project_id"], created["tenant_id"]) == (True, None, None)


def test_a_tunnel_range_has_no_physical_network(api: TestClient) -> None:
    created = create_range(api, minimum=10, maximum=12, physical_network="physnet1")
    assert created["physical_network"] is None


@pytest.mark.parametrize("network_type", ["vlan", "gre"])
def test_types_without_allocation_are_not_supported(api: TestClient, network_type: str) -> None:
    resp = api.post("/v2.0/network_segment_ranges", json={"network_segment_range": {
        "network_type": network_type, "physical_network": "physnet1", "minimum": 1,
        "maximum": 10}})
    assert error(resp, 400) == {
        "type": "NetworkSegmentRangeNetTypeNotSupported", "detail": "",
        "message": f"Network type {network_type} does not support network segment ranges."}


@pytest.mark.parametrize(("body", "status", "kind", "message"), [
    ({"network_type": "ethernet", "minimum": 1, "maximum": 2}, 400, "InvalidInput", None),
    ({"network_type": "vxlan", "minimum": 1}, 400, "HTTPBadRequest",
     "Failed to parse request. Required attribute 'maximum' not specified"),
    ({"network_type": "vxlan", "minimum": 0, "maximum": 2}, 400, "InvalidInput", None),
    ({"network_type": "vxlan", "minimum": 100, "maximum": 16_777_216}, 400,
     "NetworkTunnelRangeError", "Invalid network tunnel range: '100:16777216' - 16777216 is "
     "not a valid vxlan identifier."),
    ({"network_type": "geneve", "minimum": 20, "maximum": 10}, 400, "NetworkTunnelRangeError",
     "Invalid network tunnel range: '20:10' - End of tunnel range is less than start of "
     "tunnel range."),
    ({"network_type": "vxlan", "minimum": 1, "maximum": 2, "default": True}, 400,
     "HTTPBadRequest", "Attribute 'default' not allowed in POST"),
])
def test_create_body_is_checked(
    api: TestClient, body: dict[str, Any], status: int, kind: str, message: str | None
) -> None:
    resp = api.post("/v2.0/network_segment_ranges", json={"network_segment_range": body})
    found = error(resp, status)
    assert found["type"] == kind
    if message is not None:
        assert found["message"] == message


def test_overlapping_ranges_are_refused(api: TestClient) -> None:
    first = create_range(api, minimum=10, maximum=20)
    second = create_range(api, minimum=30, maximum=40, shared=False)
    resp = api.post("/v2.0/network_segment_ranges", json={"network_segment_range": {
        "network_type": "vxlan", "minimum": 15, "maximum": 35, "shared": False}})
    ids = ", ".join(sorted([first["id"], second["id"]]))
    assert error(resp, 409) == {"type": "NetworkSegmentRangeOverlaps", "detail": "",
                                "message": f"Network segment range overlaps with range(s) "
                                           f"with id {ids}"}
    # Another type, and the default range, may overlap.
    create_range(api, network_type="geneve", minimum=15, maximum=35)
    create_range(api, minimum=DEFAULT[0], maximum=DEFAULT[1])


# --- reading ranges --------------------------------------------------------------------------


def test_list_filters_and_both_path_spellings(api: TestClient) -> None:
    mine = create_range(api, name="mine", minimum=10, maximum=12, shared=False)
    create_range(api, name="geneve", network_type="geneve", minimum=10, maximum=12)
    resp = api.get("/v2.0/network_segment_ranges",
                   params={"network_type": "vxlan", "name": "mine"})
    assert [r["id"] for r in resp.json()["network_segment_ranges"]] == [mine["id"]]
    resp = api.get("/v2.0/network-segment-ranges", params={"project_id": "proj-a"})
    assert [r["id"] for r in resp.json()["network_segment_ranges"]] == [mine["id"]]
    resp = api.get(f"/v2.0/network-segment-ranges/{mine['id']}", params={"fields": "name"})
    assert resp.json() == {"network_segment_range": {"name": "mine"}}
    resp = api.get("/v2.0/network_segment_ranges", params={"default": "true"})
    assert {r["id"] for r in resp.json()["network_segment_ranges"]} == {
        default_range_id("vxlan"), default_range_id("geneve")}
    resp = api.get("/v2.0/network_segment_ranges", params={"shared": "false"})
    assert [r["id"] for r in resp.json()["network_segment_ranges"]] == [mine["id"]]
    assert api.get("/v2.0/network_segment_ranges", params={"minimum": 10}).status_code == 400
    assert error(api.get("/v2.0/network_segment_ranges/nope"), 404) == {
        "type": "NetworkSegmentRangeNotFound", "detail": "",
        "message": "Network Segment Range nope could not be found."}


def test_tags_on_ranges(api: TestClient) -> None:
    created = create_range(api, minimum=10, maximum=12)
    base = f"/v2.0/network_segment_ranges/{created['id']}/tags"
    assert api.put(f"{base}/blue").status_code == 201
    assert api.get(base).json() == {"tags": ["blue"]}
    resp = api.get("/v2.0/network_segment_ranges", params={"tags": "blue"})
    assert [r["id"] for r in resp.json()["network_segment_ranges"]] == [created["id"]]


def test_the_network_segment_range_extension_is_listed(api: TestClient) -> None:
    aliases = {e["alias"] for e in api.get("/v2.0/extensions").json()["extensions"]}
    assert "network-segment-range" in aliases


# --- allocation ------------------------------------------------------------------------------


def test_a_project_takes_vnis_from_its_own_range_first(api: TestClient) -> None:
    own = create_range(api, shared=False, minimum=10, maximum=12)
    create_range(api, minimum=20, maximum=29)
    vnis = {vni_of(api) for _ in range(3)}
    assert vnis == {10, 11, 12}
    shown = show(api, own["id"])
    assert shown["used"] == {"10": "proj-a", "11": "proj-a", "12": "proj-a"}
    assert shown["available"] == []
    # Its own range is full: the shared range is next.
    assert 20 <= vni_of(api) <= 29


def test_other_projects_use_shared_ranges_then_the_default(api: TestClient) -> None:
    create_range(api, shared=False, minimum=10, maximum=12)
    shared = create_range(api, minimum=20, maximum=21)
    assert {vni_of(api, "proj-b") for _ in range(2)} == {20, 21}
    assert show(api, shared["id"])["used"] == {"20": "proj-b", "21": "proj-b"}
    assert DEFAULT[0] <= vni_of(api, "proj-b") <= DEFAULT[1]


def test_the_default_range_keeps_other_projects_ranges_for_them(api: TestClient) -> None:
    # proj-a owns all but two VNIs of the default range: proj-b gets those two, then none.
    create_range(api, shared=False, minimum=DEFAULT[0] + 2, maximum=DEFAULT[1])
    assert {vni_of(api, "proj-b") for _ in range(2)} == {DEFAULT[0], DEFAULT[0] + 1}
    resp = api.post("/v2.0/networks", json={"network": {"name": "n"}},
                    headers={"X-Project-Id": "proj-b"})
    assert error(resp, 409) == {
        "type": "NoNetworkAvailable", "detail": "",
        "message": "Unable to create the network. No tenant network is available for "
                   "allocation."}
    # proj-a itself still has its range.
    assert DEFAULT[0] + 2 <= vni_of(api) <= DEFAULT[1]


def test_an_admin_names_any_vni_and_ranges_show_it(api: TestClient) -> None:
    own = create_range(api, shared=False, minimum=10, maximum=12)
    assert vni_of(api, "proj-b", **{"provider:segmentation_id": 11}) == 11
    assert show(api, own["id"])["used"] == {"11": "proj-b"}
    assert show(api, own["id"])["available"] == [10, 12]


def test_geneve_networks_use_geneve_ranges(api: TestClient) -> None:
    create_range(api, network_type="geneve", shared=False, minimum=50, maximum=50)
    assert vni_of(api, **{"provider:network_type": "geneve"}) == 50
    assert DEFAULT[0] <= vni_of(api) <= DEFAULT[1]


# --- updating and deleting ranges ------------------------------------------------------------


def test_update_name_grows_and_shrinks_around_used_vnis(api: TestClient) -> None:
    created = create_range(api, shared=False, minimum=10, maximum=10)
    assert vni_of(api) == 10
    path = f"/v2.0/network_segment_ranges/{created['id']}"
    resp = api.put(path, json={"network_segment_range": {"name": "renamed", "minimum": 5,
                                                         "maximum": 15}})
    assert resp.status_code == 200, resp.text
    updated = resp.json()["network_segment_range"]
    assert (updated["name"], updated["minimum"], updated["maximum"]) == ("renamed", 5, 15)
    assert updated["revision_number"] == 1
    assert updated["used"] == {"10": "proj-a"}
    assert api.put(path, json={"network_segment_range": {"minimum": 10, "maximum": 10}}
                   ).status_code == 200
    for bounds in ({"minimum": 11}, {"maximum": 9, "minimum": 1}):
        resp = api.put(path, json={"network_segment_range": bounds})
        assert error(resp, 409) == {
            "type": "NetworkSegmentRangeReferencedByProject", "detail": "",
            "message": f"Network Segment Range {created['id']} is referenced by one or more "
                       "tenant networks."}
    assert (show(api, created["id"])["minimum"], show(api, created["id"])["maximum"]) == (
        10, 10)


def test_update_is_checked(api: TestClient) -> None:
    created = create_range(api, minimum=10, maximum=20)
    other = create_range(api, minimum=30, maximum=40)
    path = f"/v2.0/network_segment_ranges/{created['id']}"
    resp = api.put(path, json={"network_segment_range": {"minimum": 25}})
    assert error(resp, 400)["message"] == (
        "Invalid network tunnel range: '25:20' - End of tunnel range is less than start of "
        "tunnel range.")
    resp = api.put(path, json={"network_segment_range": {"maximum": 30}})
    assert error(resp, 409)["message"] == (
        f"Network segment range overlaps with range(s) with id {other['id']}")
    for attr, value in (("shared", False), ("network_type", "geneve"), ("project_id", "x")):
        resp = api.put(path, json={"network_segment_range": {attr: value}})
        assert resp.status_code == 400
    resp = api.put(path, json={"network_segment_range": {"name": "x"}},
                   headers={"If-Match": "revision_number=7"})
    assert error(resp, 412)["type"] == "RevisionNumberConstraintFailed"


def test_a_range_with_networks_in_it_is_not_deleted(api: TestClient) -> None:
    created = create_range(api, shared=False, minimum=10, maximum=11)
    vni_of(api)
    net = api.get("/v2.0/networks").json()["networks"][0]
    path = f"/v2.0/network_segment_ranges/{created['id']}"
    assert error(api.delete(path), 409)["type"] == "NetworkSegmentRangeReferencedByProject"
    assert api.delete(f"/v2.0/networks/{net['id']}").status_code == 204
    assert api.delete(path).status_code == 204
    assert api.get(path).status_code == 404


# --- policy ----------------------------------------------------------------------------------


def test_ranges_are_admin_only(small: Settings) -> None:
    store = open_store(small)
    try:
        services: Services = build_services(small, store)
        service = services.by_collection["network_segment_ranges"]
        admin = RequestContext.admin("proj-a")
        item = {"name": "r", "description": "", "tags": [], "shared": True,
                "network_type": "vxlan", "physical_network": None, "minimum": 10,
                "maximum": 12, "project_id": "proj-a"}
        [created] = service.create(admin, [dict(item)])
        assert service.list(MEMBER, ListQuery()).items == []
        with pytest.raises(errors.NetworkSegmentRangeNotFound):
            service.get(MEMBER, created["id"])
        with pytest.raises(errors.PolicyNotAuthorized) as refused:
            service.create(MEMBER, [dict(item, minimum=20, maximum=22)])
        assert str(refused.value) == "rule:create_network_segment_range is disallowed by policy"
        with pytest.raises(errors.PolicyNotAuthorized):
            service.update(MEMBER, created["id"], {"name": "x"})
        with pytest.raises(errors.PolicyNotAuthorized):
            service.delete(MEMBER, created["id"])
        assert service.get(admin, created["id"])["name"] == "r"
    finally:
        store.dispose()

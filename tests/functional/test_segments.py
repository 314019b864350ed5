"""Segments through the HTTP API: every network's own segment, one segment per network, the
VNI a new segment takes, deletion refused while ports or subnets use it, admin-only policy."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from alcor import errors
from alcor.api.app import Services
from alcor.context import RequestContext
from alcor.query import ListQuery

MEMBER = RequestContext(project_id="proj-a", is_admin=False, roles=("member",))


def make_network(client: TestClient, **attrs: Any) -> dict[str, Any]:
    resp = client.post("/v2.0/networks", json={"network": {"name": "n", **attrs}})
    assert resp.status_code == 201, resp.text
    return dict(resp.json()["network"])


def segments_of(client: TestClient, network_id: str) -> list[dict[str, Any]]:
    resp = client.get("/v2.0/segments", params={"network_id": network_id})
    assert resp.status_code == 200
    return list(resp.json()["segments"])


def only_segment(client: TestClient, network_id: str) -> dict[str, Any]:
    [segment] = segments_of(client, network_id)
    return segment


def error(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    return dict(resp.json()["NeutronError"])


def test_a_network_is_made_with_its_segment(client: TestClient) -> None:
    net = make_network(client)
    segment = only_segment(client, net["id"])
    assert set(segment) == {"id", "network_id", "name", "description", "network_type",
                            "physical_network", "segmentation_id", "revision_number",
                            "created_at", "updated_at"}
    assert segment["network_id"] == net["id"]
    assert segment["network_type"] == "vxlan"
    assert segment["segmentation_id"] == net["provider:segmentation_id"]
    assert segment["physical_network"] is None
    assert (segment["name"], segment["description"]) == (None, None)
    assert segment["revision_number"] == 0
    assert segment["created_at"] == net["created_at"]


def test_show_segment_and_missing_one(client: TestClient) -> None:
    net = make_network(client, **{"provider:network_type": "vlan",
                                  "provider:segmentation_id": 42})
    segment = only_segment(client, net["id"])
    resp = client.get(f"/v2.0/segments/{segment['id']}")
    assert resp.status_code == 200
    shown = resp.json()["segment"]
    assert (shown["network_type"], shown["segmentation_id"]) == ("vlan", 42)
    assert error(client.get("/v2.0/segments/nope"), 404) == {
        "type": "SegmentNotFound", "message": "Segment nope could not be found.", "detail": ""}


def test_list_filters_and_sorts(client: TestClient) -> None:
    a = make_network(client, **{"provider:segmentation_id": 501})
    make_network(client, **{"provider:network_type": "vlan", "provider:segmentation_id": 7})
    resp = client.get("/v2.0/segments", params={"network_type": "vlan"})
    assert [s["segmentation_id"] for s in resp.json()["segments"]] == [7]
    resp = client.get("/v2.0/segments", params={"segmentation_id": 501})
    assert [s["network_id"] for s in resp.json()["segments"]] == [a["id"]]
    resp = client.get("/v2.0/segments", params={"sort_key": "segmentation_id",
                                                 "sort_dir": "desc", "fields": "segmentation_id"})
    assert resp.json()["segments"] == [{"segmentation_id": 501}, {"segmentation_id": 7}]
    assert client.get("/v2.0/segments", params={"colour": "red"}).status_code == 400


def test_update_name_and_description_only(client: TestClient) -> None:
    segment = only_segment(client, make_network(client)["id"])
    resp = client.put(f"/v2.0/segments/{segment['id']}",
                      json={"segment": {"name": "seg", "description": "the one"}})
    assert resp.status_code == 200
    updated = resp.json()["segment"]
    assert (updated["name"], updated["description"]) == ("seg", "the one")
    assert updated["revision_number"] == 1
    for attr, value in (("segmentation_id", 9), ("network_type", "vlan"),
                        ("network_id", segment["network_id"])):
        resp = client.put(f"/v2.0/segments/{segment['id']}", json={"segment": {attr: value}})
        assert resp.status_code == 400


def test_a_second_segment_is_refused(client: TestClient) -> None:
    net = make_network(client)
    segment = only_segment(client, net["id"])
    resp = client.post("/v2.0/segments", json={"segment": {
        "network_id": net["id"], "network_type": "vxlan"}})
    body = error(resp, 400)
    assert body["type"] == "InvalidInput"
    assert body["message"] == (
        f"Invalid input for operation: network {net['id']} already has segment "
        f"{segment['id']}: an Alcor network has one segment (multi-segment networks have no "
        "data-plane meaning here).")
    assert segments_of(client, net["id"]) == [segment]


def test_segment_of_unknown_network_is_404(client: TestClient) -> None:
    missing = "5c0cb560-4089-41dd-be29-469907a23b49"
    resp = client.post("/v2.0/segments", json={"segment": {
        "network_id": missing, "network_type": "vxlan"}})
    assert error(resp, 404)["type"] == "NetworkNotFound"


def test_create_body_is_checked(client: TestClient) -> None:
    resp = client.post("/v2.0/segments", json={"segment": {"network_type": "vxlan"}})
    assert error(resp, 400)["message"] == (
        "Failed to parse request. Required attribute 'network_id' not specified")
    net = make_network(client)
    resp = client.post("/v2.0/segments", json={"segment": {
        "network_id": net["id"], "network_type": "token-ring"}})
    assert error(resp, 400)["type"] == "InvalidInput"


def test_deleting_the_segment_of_a_network_with_ports_is_refused(client: TestClient) -> None:
    net = make_network(client)
    segment = only_segment(client, net["id"])
    assert client.post("/v2.0/ports", json={"port": {"network_id": net["id"]}}).status_code == 201
    body = error(client.delete(f"/v2.0/segments/{segment['id']}"), 409)
    assert body == {"type": "SegmentInUse", "detail": "", "message":
                    f"Segment '{segment['id']}' cannot be deleted: The segment is still bound "
                    "with 1 port(s)."}
    assert only_segment(client, net["id"]) == segment


def test_deleting_a_segment_a_subnet_names_is_refused(client: TestClient) -> None:
    net = make_network(client)
    segment = only_segment(client, net["id"])
    resp = client.post("/v2.0/subnets", json={"subnet": {
        "network_id": net["id"], "cidr": "10.0.0.0/24", "ip_version": 4,
        "segment_id": segment["id"]}})
    assert resp.status_code == 201, resp.text
    subnet_id = resp.json()["subnet"]["id"]
    body = error(client.delete(f"/v2.0/segments/{segment['id']}"), 409)
    assert body["type"] == "SegmentInUse"
    assert body["message"] == (f"Segment '{segment['id']}' cannot be deleted: The segment is "
                               f"still associated with subnet(s) {subnet_id}.")


def test_a_network_without_ports_loses_and_regains_its_segment(client: TestClient) -> None:
    net = make_network(client, **{"provider:segmentation_id": 777})
    segment = only_segment(client, net["id"])
    assert client.delete(f"/v2.0/segments/{segment['id']}").status_code == 204
    assert client.get(f"/v2.0/segments/{segment['id']}").status_code == 404
    bare = client.get(f"/v2.0/networks/{net['id']}").json()["network"]
    assert (bare["provider:network_type"], bare["provider:physical_network"],
            bare["provider:segmentation_id"]) == (None, None, None)
    assert bare["revision_number"] == net["revision_number"] + 1
    assert segments_of(client, net["id"]) == []
    # The VNI is free again: another network may take it.
    make_network(client, **{"provider:segmentation_id": 777})

    resp = client.post("/v2.0/segments", json={"segment": {
        "network_id": net["id"], "network_type": "vxlan", "name": "again"}})
    assert resp.status_code == 201, resp.text
    new = resp.json()["segment"]
    assert new["name"] == "again"
    assert isinstance(new["segmentation_id"], int) and new["segmentation_id"] != 777
    again = client.get(f"/v2.0/networks/{net['id']}").json()["network"]
    assert (again["provider:network_type"], again["provider:segmentation_id"]) == (
        "vxlan", new["segmentation_id"])
    assert again["revision_number"] == bare["revision_number"] + 1
    assert segments_of(client, net["id"]) == [new]


def test_a_new_segment_takes_a_free_vni_only(client: TestClient) -> None:
    taken = make_network(client, **{"provider:segmentation_id": 4242})
    net = make_network(client)
    assert client.delete(f"/v2.0/segments/{only_segment(client, net['id'])['id']}"
                         ).status_code == 204
    body = error(client.post("/v2.0/segments", json={"segment": {
        "network_id": net["id"], "network_type": "vxlan", "segmentation_id": 4242}}), 409)
    assert body == {"type": "TunnelIdInUse", "detail": "", "message":
                    "Unable to create the network. The tunnel ID 4242 is in use."}
    assert only_segment(client, taken["id"])["segmentation_id"] == 4242
    resp = client.post("/v2.0/segments", json={"segment": {
        "network_id": net["id"], "network_type": "vxlan", "segmentation_id": 4343}})
    assert resp.status_code == 201
    assert client.get(f"/v2.0/networks/{net['id']}").json()["network"][
        "provider:segmentation_id"] == 4343


@pytest.mark.parametrize(("body", "message"), [
    ({"network_type": "vxlan", "physical_network": "physnet1"},
     "provider:physical_network specified for vxlan network"),
    ({"network_type": "vlan"}, "segmentation_id must be a VLAN tag between 1 and 4094"),
    ({"network_type": "vlan", "segmentation_id": 4095},
     "segmentation_id must be a VLAN tag between 1 and 4094"),
    ({"network_type": "flat", "segmentation_id": 5}, "segmentation_id specified for flat network"),
])
def test_segment_attributes_must_fit_the_type(
    client: TestClient, body: dict[str, Any], message: str
) -> None:
    net = make_network(client)
    client.delete(f"/v2.0/segments/{only_segment(client, net['id'])['id']}")
    resp = client.post("/v2.0/segments", json={"segment": {"network_id": net["id"], **body}})
    assert error(resp, 400)["message"] == f"Invalid input for operation: {message}."
    assert segments_of(client, net["id"]) == []


def test_vlan_and_flat_segments(client: TestClient) -> None:
    net = make_network(client)
    client.delete(f"/v2.0/segments/{only_segment(client, net['id'])['id']}")
    resp = client.post("/v2.0/segments", json={"segment": {
        "network_id": net["id"], "network_type": "vlan", "segmentation_id": 100,
        "physical_network": "physnet1"}})
    assert resp.status_code == 201
    shown = client.get(f"/v2.0/networks/{net['id']}").json()["network"]
    assert (shown["provider:network_type"], shown["provider:physical_network"],
            shown["provider:segmentation_id"]) == ("vlan", "physnet1", 100)
    flat = make_network(client, **{"provider:network_type": "flat"})
    segment = only_segment(client, flat["id"])
    assert (segment["network_type"], segment["segmentation_id"]) == ("flat", None)
    # A flat network has no segmentation id, yet it has its segment.
    assert client.get(f"/v2.0/networks/{flat['id']}").json()["network"][
        "provider:network_type"] == "flat"


def test_deleting_a_network_deletes_its_segment(client: TestClient) -> None:
    net = make_network(client)
    segment = only_segment(client, net["id"])
    assert client.delete(f"/v2.0/networks/{net['id']}").status_code == 204
    assert client.get(f"/v2.0/segments/{segment['id']}").status_code == 404


def test_segment_extensions_are_listed(client: TestClient) -> None:
    aliases = {e["alias"] for e in client.get("/v2.0/extensions").json()["extensions"]}
    assert {"segment", "standard-attr-segment"} <= aliases


def test_segments_are_admin_only(client: TestClient, services: Services) -> None:
    net = make_network(client)
    segment = only_segment(client, net["id"])
    service = services.by_collection["segments"]
    assert service.list(MEMBER, ListQuery()).items == []
    with pytest.raises(errors.SegmentNotFound):
        service.get(MEMBER, segment["id"])
    item = {"network_id": net["id"], "network_type": "vxlan", "project_id": "proj-a"}
    with pytest.raises(errors.PolicyNotAuthorized) as refused:
        service.create(MEMBER, [item])
    assert str(refused.value) == "rule:create_segment is disallowed by policy"
    with pytest.raises(errors.PolicyNotAuthorized):
        service.update(MEMBER, segment["id"], {"name": "x"})
    with pytest.raises(errors.PolicyNotAuthorized):
        service.delete(MEMBER, segment["id"])
    assert only_segment(client, net["id"]) == segment

"""Networks through the HTTP API: create, read, list, update, delete, VNI allocation."""

from __future__ import annotations

from starlette.testclient import TestClient


def test_create_network_returns_neutron_shape(client: TestClient) -> None:
    resp = client.post("/v2.0/networks", json={"network": {"name": "net1"}})
    assert resp.status_code == 201
    net = resp.json()["network"]
    assert net["name"] == "net1"
    assert net["project_id"] == net["tenant_id"] == "proj-a"
    assert net["status"] == "ACTIVE"
    assert net["mtu"] == 1450
    assert net["provider:network_type"] == "vxlan"
    assert isinstance(net["provider:segmentation_id"], int)
    assert net["subnets"] == []
    assert net["router:external"] is False
    assert net["created_at"].endswith("Z")
    assert resp.headers["x-openstack-request-id"].startswith("req-")


def test_networks_get_distinct_vnis(client: TestClient) -> None:
    body = {"networks": [{"name": f"n{i}"} for i in range(20)]}
    nets = client.post("/v2.0/networks", json=body).json()["networks"]
    vnis = {n["provider:segmentation_id"] for n in nets}
    assert len(vnis) == 20


def test_explicit_vni_in_use_is_conflict(client: TestClient) -> None:
    body = {"network": {"name": "a", "provider:segmentation_id": 4242}}
    assert client.post("/v2.0/networks", json=body).status_code == 201
    resp = client.post("/v2.0/networks", json=body)
    assert resp.status_code == 409
    assert resp.json()["NeutronError"]["type"] == "TunnelIdInUse"


def test_show_missing_network_is_404(client: TestClient) -> None:
    resp = client.get("/v2.0/networks/does-not-exist")
    assert resp.status_code == 404
    assert resp.json() == {"NeutronError": {
        "type": "NetworkNotFound",
        "message": "Network does-not-exist could not be found.", "detail": ""}}


def test_update_network_bumps_revision(client: TestClient) -> None:
    net = client.post("/v2.0/networks", json={"network": {"name": "a"}}).json()["network"]
    resp = client.put(f"/v2.0/networks/{net['id']}", json={"network": {"name": "b", "mtu": 1400}})
    assert resp.status_code == 200
    updated = resp.json()["network"]
    assert (updated["name"], updated["mtu"]) == ("b", 1400)
    assert updated["revision_number"] == net["revision_number"] + 1


def test_update_read_only_attribute_is_400(client: TestClient) -> None:
    net = client.post("/v2.0/networks", json={"network": {"name": "a"}}).json()["network"]
    resp = client.put(f"/v2.0/networks/{net['id']}", json={"network": {"status": "DOWN"}})
    assert resp.status_code == 400


def test_delete_network(client: TestClient) -> None:
    net = client.post("/v2.0/networks", json={"network": {"name": "a"}}).json()["network"]
    assert client.delete(f"/v2.0/networks/{net['id']}").status_code == 204
    assert client.get(f"/v2.0/networks/{net['id']}").status_code == 404

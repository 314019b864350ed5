"""The host registry through HTTP: register one, many (atomically) or a JSON file; list with
filters, show, update, deregister; validation, 404 and 409 answers.  (The outbox records of
node changes are checked in tests/unit/dpm/test_placement.py, where no controller drains
them.)"""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient

Body = dict[str, Any]


def node(node_id: str = "node-1", name: str = "host-1", ip: str = "192.0.2.1", **extra: Any
         ) -> Body:
    return {"node_id": node_id, "node_name": name, "local_ip": ip, **extra}


def register(client: TestClient, **fields: Any) -> Any:
    return client.post("/nodes", json={"host_info": node(**fields)})


def error_type(resp: Any) -> str:
    return str(resp.json()["NeutronError"]["type"])


def test_register_returns_the_node_with_defaults(client: TestClient) -> None:
    resp = register(client, mac_address="AA-BB-CC-00-00-01")
    assert resp.status_code == 201
    assert resp.json() == {"host_info": {
        "node_id": "node-1", "node_name": "host-1", "local_ip": "192.0.2.1",
        "mac_address": "aa:bb:cc:00:00:01", "veth": "", "server_port": 50001,
        "host_dvr_mac": "",
    }}
    assert client.get("/nodes/node-1").json() == resp.json()


def test_upstream_only_keys_are_accepted_and_ignored(client: TestClient) -> None:
    resp = register(client, ncm_id="ncm-1", unicast_topic="t", veth="eth0", server_port=50005)
    assert resp.status_code == 201
    assert "ncm_id" not in resp.json()["host_info"]
    assert resp.json()["host_info"]["server_port"] == 50005


def test_ipv6_address_is_stored_canonical(client: TestClient) -> None:
    resp = register(client, ip="2001:DB8:0::1")
    assert resp.json()["host_info"]["local_ip"] == "2001:db8::1"


@pytest.mark.parametrize(("fields", "fragment"), [
    ({"ip": "300.1.1.1"}, "'300.1.1.1' is not a valid IP address"),
    ({"mac_address": "zz:bb:cc:00:00:01"}, "not a valid MAC address"),
    ({"mac_address": "01:00:5e:00:00:01"}, "not a valid unicast MAC address"),
    ({"host_dvr_mac": "aa:bb"}, "not a valid MAC address"),
    ({"server_port": 0}, "must be at least '1'"),
    ({"server_port": 70000}, "must be no more than '65535'"),
    ({"server_port": "x"}, "is not an integer"),
    ({"node_id": ""}, "is not a valid node identifier"),
    ({"name": "a/b"}, "contains a slash"),
])
def test_invalid_fields_are_400(client: TestClient, fields: Body, fragment: str) -> None:
    resp = register(client, **fields)
    assert resp.status_code == 400
    assert error_type(resp) == "InvalidInput"
    assert fragment in resp.json()["NeutronError"]["message"]


@pytest.mark.parametrize("missing", ["node_id", "node_name", "local_ip"])
def test_required_fields(client: TestClient, missing: str) -> None:
    body = node()
    del body[missing]
    resp = client.post("/nodes", json={"host_info": body})
    assert resp.status_code == 400
    assert f"Required attribute '{missing}' not specified" in resp.json()["NeutronError"][
        "message"]


@pytest.mark.parametrize("body", [
    {"node": node()}, {"host_info": node(), "x": 1}, {"host_infos": [node()]}, [node()],
])
def test_malformed_bodies_are_400(client: TestClient, body: Any) -> None:
    resp = client.post("/nodes", json=body)
    assert resp.status_code == 400
    assert error_type(resp) == "HTTPBadRequest"


def test_unknown_attribute_is_400(client: TestClient) -> None:
    resp = register(client, colour="blue")
    assert resp.status_code == 400
    assert "Unrecognized attribute(s) 'colour'" in resp.json()["NeutronError"]["message"]


@pytest.mark.parametrize(("second", "field"), [
    ({"node_id": "node-1", "name": "other"}, "node_id"),
    ({"node_id": "node-2", "name": "host-1"}, "node_name"),
    ({"node_id": "host-1", "name": "other"}, "node_id"),   # an id that is another's name
    ({"node_id": "node-2", "name": "node-1"}, "node_name"),  # a name that is another's id
])
def test_taken_id_or_name_is_409(client: TestClient, second: Body, field: str) -> None:
    assert register(client).status_code == 201
    resp = register(client, **second)
    assert resp.status_code == 409
    assert error_type(resp) == "NodeAlreadyExists"
    assert resp.json()["NeutronError"]["message"].startswith(f"A node with {field} ")


def test_id_and_name_may_be_equal(client: TestClient) -> None:
    assert register(client, node_id="h", name="h").status_code == 201


def test_missing_node_is_404(client: TestClient) -> None:
    for method in ("get", "delete"):
        resp = getattr(client, method)("/nodes/nope")
        assert resp.status_code == 404
        assert resp.json()["NeutronError"] == {
            "type": "NodeNotFound", "message": "Node nope could not be found.", "detail": ""}
    resp = client.put("/nodes/nope", json={"host_info": {"local_ip": "192.0.2.9"}})
    assert resp.status_code == 404


# --- bulk and upload -------------------------------------------------------------------------


def test_bulk_registers_every_node(client: TestClient) -> None:
    body = {"host_infos": [node(f"n{i}", f"h{i}", f"192.0.2.{i}") for i in range(1, 4)]}
    resp = client.post("/nodes/bulk", json=body)
    assert resp.status_code == 201
    assert [n["node_id"] for n in resp.json()["host_infos"]] == ["n1", "n2", "n3"]
    assert len(client.get("/nodes").json()["host_infos"]) == 3


@pytest.mark.parametrize("bad", [node("n2", "h2", "not-an-ip"), node("n9", "h1", "192.0.2.9")])
def test_bulk_is_atomic(client: TestClient, bad: Body) -> None:
    body = {"host_infos": [node("n1", "h1", "192.0.2.1"), bad]}
    resp = client.post("/nodes/bulk", json=body)
    assert resp.status_code in (400, 409)
    assert client.get("/nodes").json() == {"host_infos": []}


def test_bulk_refuses_an_empty_list(client: TestClient) -> None:
    assert client.post("/nodes/bulk", json={"host_infos": []}).status_code == 400


def test_upload_registers_the_files_nodes(client: TestClient) -> None:
    document = {"host_infos": [node("n1", "h1", "192.0.2.1"), node("n2", "h2", "192.0.2.2")]}
    files = {"file": ("nodes.json", json.dumps(document), "application/json")}
    resp = client.post("/nodes/upload", files=files)
    assert resp.status_code == 201
    assert [n["node_name"] for n in resp.json()["host_infos"]] == ["h1", "h2"]
    assert client.get("/nodes/n2").json()["host_info"]["local_ip"] == "192.0.2.2"


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"files": {"file": ("n.json", "{not json", "application/json")}}, "not a JSON document"),
    ({"files": {"other": ("n.json", "{}", "application/json")}}, "no file in its 'file'"),
    ({"json": {"host_infos": [node()]}}, "multipart/form-data"),
    ({"files": {"file": ("n.json", json.dumps({"hosts": []}), "application/json")}},
     "Unable to find 'host_infos'"),
])
def test_bad_uploads_are_400(client: TestClient, kwargs: Body, fragment: str) -> None:
    resp = client.post("/nodes/upload", **kwargs)
    assert resp.status_code == 400
    assert fragment in resp.json()["NeutronError"]["message"]
    assert client.get("/nodes").json() == {"host_infos": []}


# --- list, update, delete --------------------------------------------------------------------


def test_list_filters_by_field(client: TestClient) -> None:
    client.post("/nodes/bulk", json={"host_infos": [
        node("n1", "h1", "192.0.2.1", server_port=6000),
        node("n2", "h2", "192.0.2.2"),
        node("n3", "h3", "192.0.2.3", mac_address="aa:bb:cc:00:00:03"),
    ]})

    def ids(query: str) -> list[str]:
        resp = client.get(f"/nodes{query}")
        assert resp.status_code == 200
        return [n["node_id"] for n in resp.json()["host_infos"]]

    assert ids("") == ["n1", "n2", "n3"]
    assert ids("?node_name=h2") == ["n2"]
    assert ids("?node_name=h1&node_name=h3") == ["n1", "n3"]
    assert ids("?server_port=50001") == ["n2", "n3"]
    assert ids("?local_ip=192.0.2.3&mac_address=AA:BB:CC:00:00:03") == ["n3"]
    assert ids("?node_id=n1&node_name=h2") == []
    resp = client.get("/nodes?colour=blue")
    assert resp.status_code == 400
    assert client.get("/nodes?server_port=abc").status_code == 400


def test_update_changes_the_node(client: TestClient) -> None:
    register(client)
    resp = client.put("/nodes/node-1", json={"host_info": {
        "node_id": "node-1", "node_name": "renamed", "local_ip": "192.0.2.77",
        "server_port": 6001}})
    assert resp.status_code == 200
    assert resp.json()["host_info"] == {
        "node_id": "node-1", "node_name": "renamed", "local_ip": "192.0.2.77",
        "mac_address": "", "veth": "", "server_port": 6001, "host_dvr_mac": ""}
    assert client.get("/nodes?node_name=renamed").json()["host_infos"][0]["node_id"] == "node-1"


def test_update_refusals(client: TestClient) -> None:
    register(client)
    register(client, node_id="node-2", name="host-2", ip="192.0.2.2")
    other_id = client.put("/nodes/node-1", json={"host_info": {"node_id": "node-9"}})
    assert other_id.status_code == 400
    taken = client.put("/nodes/node-1", json={"host_info": {"node_name": "host-2"}})
    assert taken.status_code == 409
    assert error_type(taken) == "NodeAlreadyExists"
    bad = client.put("/nodes/node-1", json={"host_info": {"local_ip": "nope"}})
    assert bad.status_code == 400
    same = client.put("/nodes/node-1", json={"host_info": {"node_name": "host-1"}})
    assert same.status_code == 200


def test_delete_deregisters(client: TestClient) -> None:
    register(client)
    assert client.delete("/nodes/node-1").status_code == 204
    assert client.get("/nodes/node-1").status_code == 404
    assert register(client).status_code == 201


def test_deleting_a_node_with_bound_ports_leaves_them_bound_and_down(client: TestClient) -> None:
    register(client)
    net = client.post("/v2.0/networks", json={"network": {"name": "n"}}).json()["network"]
    client.post("/v2.0/subnets", json={"subnet": {"network_id": net["id"], "cidr": "10.0.0.0/24",
                                                  "ip_version": 4}})
    port = client.post("/v2.0/ports", json={"port": {
        "network_id": net["id"], "binding:host_id": "host-1"}}).json()["port"]
    assert client.delete("/nodes/node-1").status_code == 204
    shown = client.get(f"/v2.0/ports/{port['id']}").json()["port"]
    assert (shown["binding:host_id"], shown["status"]) == ("host-1", "DOWN")


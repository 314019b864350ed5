"""Routers through the HTTP API: create, read, update and delete in Neutron's shape, the
external gateway and its port, interfaces by subnet and by port, extra routes (whole and
atomic), every refusal with Neutron's error, the outbox records, and the native paths."""

from __future__ import annotations

import ipaddress
from typing import Any, Protocol

import pytest
from starlette.testclient import TestClient

from alcor.db.store import Store

Json = dict[str, Any]


class Response(Protocol):
    @property
    def status_code(self) -> int: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


# --- helpers ---------------------------------------------------------------------------------


def network(client: TestClient, **attrs: Any) -> Json:
    resp = client.post("/v2.0/networks", json={"network": {"name": "net", **attrs}})
    assert resp.status_code == 201, resp.text
    return dict(resp.json()["network"])


def subnet(client: TestClient, net_id: str, cidr: str, **attrs: Any) -> Json:
    version = ipaddress.ip_network(cidr).version
    body = {"subnet": {"network_id": net_id, "cidr": cidr, "ip_version": version, **attrs}}
    resp = client.post("/v2.0/subnets", json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json()["subnet"])


def port(client: TestClient, net_id: str, **attrs: Any) -> Json:
    resp = client.post("/v2.0/ports", json={"port": {"network_id": net_id, **attrs}})
    assert resp.status_code == 201, resp.text
    return dict(resp.json()["port"])


def create_router(client: TestClient, **attrs: Any) -> Response:
    return client.post("/v2.0/routers", json={"router": {"name": "r", **attrs}})


def router(client: TestClient, **attrs: Any) -> Json:
    resp = create_router(client, **attrs)
    assert resp.status_code == 201, resp.text
    return dict(resp.json()["router"])


def update(client: TestClient, router_id: str, **attrs: Any) -> Response:
    return client.put(f"/v2.0/routers/{router_id}", json={"router": attrs})


def show(client: TestClient, router_id: str) -> Json:
    resp = client.get(f"/v2.0/routers/{router_id}")
    assert resp.status_code == 200, resp.text
    return dict(resp.json()["router"])


def action(client: TestClient, router_id: str, name: str, body: Any,
           prefix: str = "/v2.0") -> Response:
    return client.put(f"{prefix}/routers/{router_id}/{name}", json=body)


def add_subnet(client: TestClient, router_id: str, subnet_id: str) -> Json:
    resp = action(client, router_id, "add_router_interface", {"subnet_id": subnet_id})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def routes_body(*routes: tuple[str, str]) -> Json:
    return {"router": {"routes": [{"destination": d, "nexthop": n} for d, n in routes]}}


def error(resp: Response, status: int, type_name: str, message: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()["NeutronError"]
    assert body["type"] == type_name, body
    if message is not None:
        assert body["message"] == message


def ports_of(client: TestClient, router_id: str, owner: str) -> list[Json]:
    resp = client.get(f"/v2.0/ports?device_id={router_id}&device_owner={owner}")
    return list(resp.json()["ports"])


def router_records(store: Store) -> list[tuple[str, list[str]]]:
    rows = store.read(lambda txn: txn.select("outbox", {"resource_type": "router"},
                                             order_by=("seq",)))
    return [(r["operation"], r["detail"]["subnet_ids"]) for r in rows]


@pytest.fixture
def external(client: TestClient) -> Json:
    """An external network with one subnet (203.0.113.0/24, gateway .1)."""
    net = network(client, name="public", **{"router:external": True})
    return {"network": net, "subnet": subnet(client, net["id"], "203.0.113.0/24")}


@pytest.fixture
def inside(client: TestClient) -> Json:
    """A tenant network with one subnet (10.0.0.0/24, gateway .1)."""
    net = network(client, name="private")
    return {"network": net, "subnet": subnet(client, net["id"], "10.0.0.0/24")}


# --- create, read, update, delete ------------------------------------------------------------


def test_create_router_returns_neutron_shape(client: TestClient) -> None:
    resp = create_router(client, description="edge")
    assert resp.status_code == 201
    r = resp.json()["router"]
    assert r["name"] == "r" and r["description"] == "edge"
    assert r["project_id"] == r["tenant_id"] == "proj-a"
    assert r["status"] == "ACTIVE"
    assert r["admin_state_up"] is True
    assert r["external_gateway_info"] is None
    assert r["routes"] == []
    assert (r["distributed"], r["ha"], r["flavor_id"]) == (False, False, None)
    assert r["availability_zone_hints"] == [] and r["availability_zones"] == []
    assert r["tags"] == [] and r["revision_number"] == 0
    assert r["created_at"].endswith("Z") and r["updated_at"].endswith("Z")
    assert "gw_port_id" not in r


def test_show_list_filter_and_missing_router(client: TestClient) -> None:
    a = router(client, name="a")
    router(client, name="b")
    assert show(client, a["id"]) == a
    listed = client.get("/v2.0/routers?name=a").json()["routers"]
    assert [r["id"] for r in listed] == [a["id"]]
    assert len(client.get("/v2.0/routers").json()["routers"]) == 2
    error(client.get("/v2.0/routers/nope"), 404, "RouterNotFound",
          "Router nope could not be found")


def test_routes_cannot_be_posted_and_flavors_do_not_exist(client: TestClient) -> None:
    resp = create_router(client, routes=[])
    error(resp, 400, "HTTPBadRequest", "Attribute 'routes' not allowed in POST")
    flavor = "5f8a2b8e-58c2-4b35-8d0d-0c6fbb9d1a7e"
    error(create_router(client, flavor_id=flavor), 404, "FlavorNotFound",
          f"Flavor {flavor} could not be found.")


def test_bulk_create_is_atomic(client: TestClient) -> None:
    resp = client.post("/v2.0/routers", json={"routers": [{"name": "x"}, {"name": "y"}]})
    assert resp.status_code == 201
    assert [r["name"] for r in resp.json()["routers"]] == ["x", "y"]
    bad = {"routers": [{"name": "z"}, {"name": "w", "flavor_id": "5f8a2b8e-58c2-4b35-8d0d-"
                                                               "0c6fbb9d1a7e"}]}
    assert client.post("/v2.0/routers", json=bad).status_code == 404
    assert sorted(r["name"] for r in client.get("/v2.0/routers").json()["routers"]) == ["x", "y"]


def test_update_router_attributes(client: TestClient) -> None:
    r = router(client)
    resp = update(client, r["id"], name="renamed", admin_state_up=False, distributed=True)
    assert resp.status_code == 200
    updated = resp.json()["router"]
    assert (updated["name"], updated["admin_state_up"], updated["distributed"]) == (
        "renamed", False, True)
    assert updated["revision_number"] == r["revision_number"] + 1
    error(update(client, r["id"], status="DOWN"), 400, "HTTPBadRequest")


def test_delete_router(client: TestClient) -> None:
    r = router(client)
    assert client.delete(f"/v2.0/routers/{r['id']}").status_code == 204
    error(client.get(f"/v2.0/routers/{r['id']}"), 404, "RouterNotFound")
    error(client.delete(f"/v2.0/routers/{r['id']}"), 404, "RouterNotFound")


def test_router_tags(client: TestClient) -> None:
    r = router(client, tags=["blue"])
    assert client.put(f"/v2.0/routers/{r['id']}/tags/red").status_code == 201
    assert sorted(show(client, r["id"])["tags"]) == ["blue", "red"]
    listed = client.get("/v2.0/routers?tags=red").json()["routers"]
    assert [x["id"] for x in listed] == [r["id"]]


# --- external gateway ------------------------------------------------------------------------


def test_gateway_on_create_makes_its_port(client: TestClient, external: Json) -> None:
    r = router(client, external_gateway_info={"network_id": external["network"]["id"]})
    info = r["external_gateway_info"]
    assert info["network_id"] == external["network"]["id"]
    assert info["enable_snat"] is True
    [gw] = ports_of(client, r["id"], "network:router_gateway")
    assert gw["project_id"] == ""
    assert gw["network_id"] == external["network"]["id"]
    assert gw["binding:host_id"] == ""
    assert info["external_fixed_ips"] == gw["fixed_ips"]
    assert gw["fixed_ips"][0]["subnet_id"] == external["subnet"]["id"]


def test_gateway_honours_snat_mode_and_fixed_ips(client: TestClient, external: Json) -> None:
    ext_id, ext_sub = external["network"]["id"], external["subnet"]["id"]
    r = router(client, external_gateway_info={
        "network_id": ext_id, "enable_snat": False,
        "external_fixed_ips": [{"subnet_id": ext_sub, "ip_address": "203.0.113.10"}]})
    assert r["external_gateway_info"] == {
        "network_id": ext_id, "enable_snat": False,
        "external_fixed_ips": [{"subnet_id": ext_sub, "ip_address": "203.0.113.10"}]}
    [gw] = ports_of(client, r["id"], "network:router_gateway")
    resp = update(client, r["id"], external_gateway_info={
        "network_id": ext_id, "external_fixed_ips": [{"ip_address": "203.0.113.20"}]})
    assert resp.status_code == 200, resp.text
    info = resp.json()["router"]["external_gateway_info"]
    assert info["external_fixed_ips"] == [{"subnet_id": ext_sub, "ip_address": "203.0.113.20"}]
    assert info["enable_snat"] is True  # not given: the default again, as in Neutron
    [moved] = ports_of(client, r["id"], "network:router_gateway")
    assert moved["id"] == gw["id"]
    assert moved["fixed_ips"] == info["external_fixed_ips"]


def test_gateway_set_later_cleared_and_moved(client: TestClient, external: Json) -> None:
    r = router(client)
    resp = update(client, r["id"], external_gateway_info={"network_id": external["network"]["id"]})
    assert resp.status_code == 200, resp.text
    assert len(ports_of(client, r["id"], "network:router_gateway")) == 1
    resp = update(client, r["id"], external_gateway_info=None)
    assert resp.json()["router"]["external_gateway_info"] is None
    assert ports_of(client, r["id"], "network:router_gateway") == []
    update(client, r["id"], external_gateway_info={"network_id": external["network"]["id"]})
    assert update(client, r["id"], external_gateway_info={}).status_code == 200
    assert ports_of(client, r["id"], "network:router_gateway") == []
    other = network(client, name="public2", **{"router:external": True})
    subnet(client, other["id"], "198.51.100.0/24")
    update(client, r["id"], external_gateway_info={"network_id": external["network"]["id"]})
    resp = update(client, r["id"], external_gateway_info={"network_id": other["id"]})
    assert resp.json()["router"]["external_gateway_info"]["network_id"] == other["id"]
    [gw] = ports_of(client, r["id"], "network:router_gateway")
    assert gw["network_id"] == other["id"]


def test_gateway_refusals(client: TestClient, external: Json, inside: Json) -> None:
    net_id = inside["network"]["id"]
    error(create_router(client, external_gateway_info={"network_id": net_id}), 400,
          "BadRequest", f"Bad router request: Network {net_id} is not an external network.")
    missing = "7c9f4f55-8ac4-4b0e-9d3f-2a7a3b9f2c11"
    error(create_router(client, external_gateway_info={"network_id": missing}), 404,
          "NetworkNotFound", f"Network {missing} could not be found.")
    ext_id = external["network"]["id"]
    error(create_router(client, external_gateway_info={
        "network_id": ext_id, "external_fixed_ips": [{"ip_address": "203.0.113.1"}]}), 400,
        "BadRequest", "Bad router request: External IP 203.0.113.1 is the same as the gateway "
                      "IP.")
    resp = create_router(client, external_gateway_info={"enable_snat": False})
    error(resp, 400, "InvalidInput")
    assert resp.json()["NeutronError"]["message"].startswith(
        "Invalid input for external_gateway_info. Reason: Validation of dictionary's keys")
    error(create_router(client, external_gateway_info={"network_id": ext_id, "bogus": 1}),
          400, "InvalidInput")
    assert client.get("/v2.0/routers").json()["routers"] == []
    assert client.get("/v2.0/ports?device_owner=network:router_gateway").json()["ports"] == []


def test_gateway_overlapping_an_interface_is_refused(client: TestClient, inside: Json) -> None:
    ext = network(client, name="wide", **{"router:external": True})
    wide = subnet(client, ext["id"], "10.0.0.0/16")
    r = router(client)
    add_subnet(client, r["id"], inside["subnet"]["id"])
    resp = update(client, r["id"], external_gateway_info={"network_id": ext["id"]})
    error(resp, 400, "BadRequest",
          f"Bad router request: Cidr 10.0.0.0/16 of subnet {wide['id']} overlaps with cidr "
          f"10.0.0.0/24 of subnet {inside['subnet']['id']}.")


def test_external_network_with_gateways_stays_external(client: TestClient, external: Json
                                                       ) -> None:
    ext_id = external["network"]["id"]
    r = router(client, external_gateway_info={"network_id": ext_id})
    resp = client.put(f"/v2.0/networks/{ext_id}", json={"network": {"router:external": False}})
    error(resp, 409, "ExternalNetworkInUse",
          f"External network {ext_id} cannot be updated to be made non-external, since it has "
          "existing gateway ports.")
    error(client.delete(f"/v2.0/networks/{ext_id}"), 409, "NetworkInUse")
    error(client.delete(f"/v2.0/subnets/{external['subnet']['id']}"), 409, "SubnetInUse")
    assert client.delete(f"/v2.0/routers/{r['id']}").status_code == 204
    assert client.get(f"/v2.0/ports?device_id={r['id']}").json()["ports"] == []
    resp = client.put(f"/v2.0/networks/{ext_id}", json={"network": {"router:external": False}})
    assert resp.status_code == 200


def test_gateway_port_cannot_be_deleted_directly(client: TestClient, external: Json) -> None:
    r = router(client, external_gateway_info={"network_id": external["network"]["id"]})
    [gw] = ports_of(client, r["id"], "network:router_gateway")
    error(client.delete(f"/v2.0/ports/{gw['id']}"), 409, "ServicePortInUse",
          f"Port {gw['id']} cannot be deleted directly via the port API: has device owner "
          "network:router_gateway.")


# --- interfaces ------------------------------------------------------------------------------


def test_add_interface_by_subnet(client: TestClient, inside: Json, store: Store) -> None:
    r = router(client)
    sub = inside["subnet"]
    info = add_subnet(client, r["id"], sub["id"])
    assert set(info) == {"id", "tenant_id", "project_id", "port_id", "network_id", "subnet_id",
                         "subnet_ids"}
    assert info["id"] == r["id"]
    assert (info["subnet_id"], info["subnet_ids"]) == (sub["id"], [sub["id"]])
    assert info["network_id"] == inside["network"]["id"]
    assert info["tenant_id"] == info["project_id"] == "proj-a"
    p = client.get(f"/v2.0/ports/{info['port_id']}").json()["port"]
    assert (p["device_owner"], p["device_id"]) == ("network:router_interface", r["id"])
    assert p["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.0.0.1"}]
    assert p["binding:host_id"] == "" and p["security_groups"] == []
    assert show(client, r["id"])["revision_number"] == r["revision_number"] + 1
    assert router_records(store) == [("create", []), ("update", [sub["id"]])]


def test_interface_port_belongs_to_the_routers_project(client: TestClient, inside: Json
                                                        ) -> None:
    r = router(client, project_id="proj-b")
    info = add_subnet(client, r["id"], inside["subnet"]["id"])
    assert info["project_id"] == info["tenant_id"] == "proj-b"
    assert client.get(f"/v2.0/ports/{info['port_id']}").json()["port"]["project_id"] == "proj-b"


def test_interface_refusals_for_subnets(client: TestClient, inside: Json) -> None:
    r = router(client)
    no_gw_net = network(client)
    no_gw = subnet(client, no_gw_net["id"], "10.1.0.0/24", gateway_ip=None)
    error(action(client, r["id"], "add_router_interface", {"subnet_id": no_gw["id"]}), 400,
          "BadRequest", "Bad router request: Subnet for router interface must have a gateway IP.")
    sub = inside["subnet"]
    add_subnet(client, r["id"], sub["id"])
    error(action(client, r["id"], "add_router_interface", {"subnet_id": sub["id"]}), 400,
          "BadRequest", f"Bad router request: Router already has a port on subnet {sub['id']}.")
    wide_net = network(client)
    wide = subnet(client, wide_net["id"], "10.0.0.0/16")
    error(action(client, r["id"], "add_router_interface", {"subnet_id": wide["id"]}), 400,
          "BadRequest", f"Bad router request: Cidr 10.0.0.0/16 of subnet {wide['id']} overlaps "
          f"with cidr 10.0.0.0/24 of subnet {sub['id']}.")
    v6_net = network(client)
    ra = subnet(client, v6_net["id"], "2001:db8::/64", ipv6_address_mode="slaac")
    error(action(client, r["id"], "add_router_interface", {"subnet_id": ra["id"]}), 400,
          "BadRequest", f"Bad router request: IPv6 subnet {ra['id']} configured to receive RAs "
          "from an external router cannot be added to Neutron Router..")  # Neutron's own ".."
    missing = "0b8bba6f-2b8e-4d6d-9a37-54e3c7c5b0a1"
    error(action(client, r["id"], "add_router_interface", {"subnet_id": missing}), 404,
          "SubnetNotFound", f"Subnet {missing} could not be found.")
    error(action(client, missing, "add_router_interface", {"subnet_id": sub["id"]}), 404,
          "RouterNotFound", f"Router {missing} could not be found")


def test_interface_overlapping_the_external_subnet_is_refused(
    client: TestClient, external: Json
) -> None:
    r = router(client, external_gateway_info={"network_id": external["network"]["id"]})
    net = network(client)
    clash = subnet(client, net["id"], "203.0.113.0/25")
    error(action(client, r["id"], "add_router_interface", {"subnet_id": clash["id"]}), 400,
          "BadRequest", f"Bad router request: Cidr 203.0.113.0/25 of subnet {clash['id']} "
          f"overlaps with cidr 203.0.113.0/24 of subnet {external['subnet']['id']}.")
    error(action(client, r["id"], "add_router_interface",
                 {"subnet_id": external["subnet"]["id"]}), 400, "BadRequest",
          f"Bad router request: Router already has a port on subnet {external['subnet']['id']}.")


def test_interface_bodies_are_checked(client: TestClient, inside: Json) -> None:
    r = router(client)
    p = port(client, inside["network"]["id"])
    error(action(client, r["id"], "add_router_interface", {}), 400, "BadRequest",
          "Bad router request: Either subnet_id or port_id must be specified.")
    error(action(client, r["id"], "add_router_interface",
                 {"subnet_id": inside["subnet"]["id"], "port_id": p["id"]}), 400, "BadRequest",
          "Bad router request: Cannot specify both subnet-id and port-id.")
    error(action(client, r["id"], "add_router_interface", {"subnet_id": "x"}), 400,
          "BadRequest", "Bad router request: 'x' is not a valid UUID.")
    error(action(client, r["id"], "remove_router_interface", []), 400, "BadRequest")


def test_add_interface_by_port(client: TestClient, inside: Json) -> None:
    r = router(client)
    p = port(client, inside["network"]["id"],
             fixed_ips=[{"subnet_id": inside["subnet"]["id"], "ip_address": "10.0.0.254"}])
    resp = action(client, r["id"], "add_router_interface", {"port_id": p["id"]})
    assert resp.status_code == 200, resp.text
    info = resp.json()
    assert (info["port_id"], info["subnet_ids"]) == (p["id"], [inside["subnet"]["id"]])
    now = client.get(f"/v2.0/ports/{p['id']}").json()["port"]
    assert (now["device_owner"], now["device_id"]) == ("network:router_interface", r["id"])
    assert now["fixed_ips"] == p["fixed_ips"]
    other = router(client)
    error(action(client, other["id"], "add_router_interface", {"port_id": p["id"]}), 409,
          "PortInUse", f"Unable to complete operation on port {p['id']} for network "
          f"{inside['network']['id']}. Port already has an attached device {r['id']}.")


def test_port_refusals(client: TestClient, inside: Json) -> None:
    r = router(client)
    used = port(client, inside["network"]["id"], device_id="vm-1", device_owner="compute:nova")
    error(action(client, r["id"], "add_router_interface", {"port_id": used["id"]}), 409,
          "PortInUse")
    bare_net = network(client)
    bare = port(client, bare_net["id"])
    error(action(client, r["id"], "add_router_interface", {"port_id": bare["id"]}), 400,
          "BadRequest", "Bad router request: Router port must have at least one fixed IP.")
    second = subnet(client, inside["network"]["id"], "10.5.0.0/24")
    two = port(client, inside["network"]["id"], fixed_ips=[
        {"subnet_id": inside["subnet"]["id"]}, {"subnet_id": second["id"]}])
    error(action(client, r["id"], "add_router_interface", {"port_id": two["id"]}), 400,
          "BadRequest", "Bad router request: Cannot have multiple IPv4 subnets on router port.")
    missing = "3e0a8f0e-8e56-4a49-9a57-4f0b1f4a8c77"
    error(action(client, r["id"], "add_router_interface", {"port_id": missing}), 404,
          "PortNotFound")
    assert client.get(f"/v2.0/ports/{two['id']}").json()["port"]["device_owner"] == ""


def test_remove_interface_by_subnet_and_by_port(
    client: TestClient, inside: Json, store: Store
) -> None:
    r = router(client)
    sub = inside["subnet"]
    added = add_subnet(client, r["id"], sub["id"])
    resp = action(client, r["id"], "remove_router_interface", {"subnet_id": sub["id"]})
    assert resp.status_code == 200, resp.text
    assert resp.json() == added
    assert client.get(f"/v2.0/ports/{added['port_id']}").status_code == 404
    p = port(client, inside["network"]["id"])
    action(client, r["id"], "add_router_interface", {"port_id": p["id"]})
    resp = action(client, r["id"], "remove_router_interface",
                  {"port_id": p["id"], "subnet_id": sub["id"]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["port_id"] == p["id"]
    assert client.get(f"/v2.0/ports/{p['id']}").status_code == 404
    assert show(client, r["id"])["revision_number"] == r["revision_number"] + 4
    assert router_records(store) == [
        ("create", []), ("update", [sub["id"]]), ("update", [sub["id"]]),
        ("update", [sub["id"]]), ("update", [sub["id"]])]


def test_remove_interface_refusals(client: TestClient, inside: Json) -> None:
    r = router(client)
    sub = inside["subnet"]
    error(action(client, r["id"], "remove_router_interface", {"subnet_id": sub["id"]}), 404,
          "RouterInterfaceNotFoundForSubnet",
          f"Router {r['id']} has no interface on subnet {sub['id']}")
    p = port(client, inside["network"]["id"])
    error(action(client, r["id"], "remove_router_interface", {"port_id": p["id"]}), 404,
          "RouterInterfaceNotFound",
          f"Router {r['id']} does not have an interface with id {p['id']}")
    info = add_subnet(client, r["id"], sub["id"])
    other = subnet(client, inside["network"]["id"], "10.6.0.0/24")
    error(action(client, r["id"], "remove_router_interface",
                 {"port_id": info["port_id"], "subnet_id": other["id"]}), 400,
          "SubnetMismatchForPort", f"Subnet on port {info['port_id']} does not match the "
          f"requested subnet {other['id']}.")


def test_router_with_interfaces_is_in_use(client: TestClient, inside: Json, store: Store
                                           ) -> None:
    r = router(client)
    info = add_subnet(client, r["id"], inside["subnet"]["id"])
    error(client.delete(f"/v2.0/routers/{r['id']}"), 409, "RouterInUse",
          f"Router {r['id']} has ports still attached: {info['port_id']}")
    error(client.delete(f"/v2.0/ports/{info['port_id']}"), 409, "ServicePortInUse",
          f"Port {info['port_id']} cannot be deleted directly via the port API: has device "
          "owner network:router_interface.")
    error(client.delete(f"/v2.0/subnets/{inside['subnet']['id']}"), 409, "SubnetInUse")
    error(client.delete(f"/v2.0/networks/{inside['network']['id']}"), 409, "NetworkInUse")
    action(client, r["id"], "remove_router_interface", {"subnet_id": inside["subnet"]["id"]})
    assert client.delete(f"/v2.0/routers/{r['id']}").status_code == 204
    assert router_records(store)[-1] == ("delete", [])
    assert client.delete(f"/v2.0/networks/{inside['network']['id']}").status_code == 204


# --- extra routes ----------------------------------------------------------------------------


def test_routes_via_attached_subnets(client: TestClient, inside: Json, external: Json) -> None:
    r = router(client, external_gateway_info={"network_id": external["network"]["id"]})
    add_subnet(client, r["id"], inside["subnet"]["id"])
    routes = [{"destination": "192.168.0.0/24", "nexthop": "10.0.0.5"},
              {"destination": "0.0.0.0/0", "nexthop": "203.0.113.254"}]
    resp = update(client, r["id"], routes=routes)
    assert resp.status_code == 200, resp.text
    assert resp.json()["router"]["routes"] == routes
    assert show(client, r["id"])["routes"] == routes
    assert update(client, r["id"], routes=[]).json()["router"]["routes"] == []


def test_route_refusals(client: TestClient, inside: Json) -> None:
    r = router(client)
    add_subnet(client, r["id"], inside["subnet"]["id"])
    far = [{"destination": "192.168.0.0/24", "nexthop": "172.16.0.1"}]
    error(update(client, r["id"], routes=far), 400, "InvalidRoutes",
          f"Invalid format for routes: {far}, the nexthop is not connected with router")
    own = [{"destination": "192.168.0.0/24", "nexthop": "10.0.0.1"}]
    error(update(client, r["id"], routes=own), 400, "InvalidRoutes",
          f"Invalid format for routes: {own}, the nexthop is used by router")
    many = [{"destination": f"192.168.{i}.0/24", "nexthop": "10.0.0.5"} for i in range(31)]
    error(update(client, r["id"], routes=many), 400, "RoutesExhausted",
          f"Unable to complete operation for {r['id']}. The number of routes exceeds the "
          "maximum 30.")
    twice = [{"destination": "192.168.0.0/24", "nexthop": "10.0.0.5"}] * 2
    error(update(client, r["id"], routes=twice), 400, "InvalidInput")
    error(update(client, r["id"], routes=[{"destination": "nonsense", "nexthop": "10.0.0.5"}]),
          400, "InvalidInput")
    assert show(client, r["id"])["routes"] == []


def test_add_and_remove_extraroutes(client: TestClient, inside: Json) -> None:
    r = router(client)
    add_subnet(client, r["id"], inside["subnet"]["id"])
    resp = action(client, r["id"], "add_extraroutes",
                  routes_body(("192.168.0.0/24", "10.0.0.5"), ("192.168.1.0/24", "10.0.0.6")))
    assert resp.status_code == 200, resp.text
    assert resp.json()["router"]["id"] == r["id"]
    resp = action(client, r["id"], "add_extraroutes",
                  routes_body(("192.168.0.0/24", "10.0.0.5"), ("192.168.0.0/24", "10.0.0.7")))
    assert resp.json()["router"]["routes"] == [
        {"destination": "192.168.0.0/24", "nexthop": "10.0.0.5"},
        {"destination": "192.168.1.0/24", "nexthop": "10.0.0.6"},
        {"destination": "192.168.0.0/24", "nexthop": "10.0.0.7"}]
    resp = action(client, r["id"], "remove_extraroutes",
                  routes_body(("192.168.0.0/24", "10.0.0.5"), ("10.9.0.0/16", "10.0.0.9")))
    assert resp.status_code == 200
    assert resp.json()["router"]["routes"] == [
        {"destination": "192.168.1.0/24", "nexthop": "10.0.0.6"},
        {"destination": "192.168.0.0/24", "nexthop": "10.0.0.7"}]
    error(action(client, r["id"], "add_extraroutes", routes_body(("10.8.0.0/16", "172.16.0.1"))),
          400, "InvalidRoutes")
    error(action(client, r["id"], "add_extraroutes", {"routes": []}), 400, "HTTPBadRequest")
    assert len(show(client, r["id"])["routes"]) == 2


def test_removing_an_interface_a_route_needs_is_refused(client: TestClient, inside: Json,
                                                        external: Json) -> None:
    r = router(client, external_gateway_info={"network_id": external["network"]["id"]})
    sub = inside["subnet"]
    add_subnet(client, r["id"], sub["id"])
    action(client, r["id"], "add_extraroutes", routes_body(("192.168.0.0/24", "10.0.0.5"),
                                                           ("198.18.0.0/15", "203.0.113.9")))
    error(action(client, r["id"], "remove_router_interface", {"subnet_id": sub["id"]}), 409,
          "RouterInterfaceInUseByRoute",
          f"Router interface for subnet {sub['id']} on router {r['id']} cannot be deleted, as "
          "it is required by one or more routes.")
    error(update(client, r["id"], external_gateway_info=None), 400, "InvalidRoutes")
    assert show(client, r["id"])["external_gateway_info"] is not None


# --- native paths ----------------------------------------------------------------------------


def test_native_paths(client: TestClient, inside: Json) -> None:
    resp = client.post("/project/proj-a/routers", json={"router": {"name": "native"}})
    assert resp.status_code == 201, resp.text
    r = resp.json()["router"]
    assert [x["id"] for x in client.get("/project/proj-a/routers").json()["routers"]] == [r["id"]]
    assert client.get("/project/proj-b/routers").json()["routers"] == []
    resp = action(client, r["id"], "add_router_interface", {"subnet_id": inside["subnet"]["id"]},
                  prefix="/project/proj-a")
    assert resp.status_code == 200, resp.text
    resp = action(client, r["id"], "add_extraroutes", routes_body(("192.168.0.0/24", "10.0.0.5")),
                  prefix="/project/proj-a")
    assert resp.json()["router"]["routes"] == [
        {"destination": "192.168.0.0/24", "nexthop": "10.0.0.5"}]
    action(client, r["id"], "remove_extraroutes", routes_body(("192.168.0.0/24", "10.0.0.5")),
           prefix="/project/proj-a")
    resp = action(client, r["id"], "remove_router_interface",
                  {"subnet_id": inside["subnet"]["id"]}, prefix="/project/proj-a")
    assert resp.status_code == 200, resp.text
    assert client.delete(f"/project/proj-a/routers/{r['id']}").status_code == 204


def test_extensions_list_routing(client: TestClient) -> None:
    aliases = {e["alias"] for e in client.get("/v2.0/extensions").json()["extensions"]}
    assert {"router", "ext-gw-mode", "extraroute", "extraroute-atomic",
            "fip-port-details"} <= aliases
    assert client.get("/v2.0/extensions/router").json()["extension"]["name"] == \
        "Neutron L3 Router"

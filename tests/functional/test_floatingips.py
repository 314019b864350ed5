"""Floating IPs through the HTTP API: allocation on external networks (address, subnet,
fallback, exhaustion), association through the router that reaches the port, Neutron's
refusals, status and port_details, disassociation when the port goes, the routers that
depend on them, the outbox records, and the native ``floatingips``/``elasticips`` paths."""

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


def router(client: TestClient, **attrs: Any) -> Json:
    resp = client.post("/v2.0/routers", json={"router": {"name": "r", **attrs}})
    assert resp.status_code == 201, resp.text
    return dict(resp.json()["router"])


def interface(client: TestClient, router_id: str, **body: str) -> Json:
    resp = client.put(f"/v2.0/routers/{router_id}/add_router_interface", json=body)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def create_fip(client: TestClient, net_id: str, **attrs: Any) -> Response:
    return client.post("/v2.0/floatingips",
                       json={"floatingip": {"floating_network_id": net_id, **attrs}})


def fip(client: TestClient, net_id: str, **attrs: Any) -> Json:
    resp = create_fip(client, net_id, **attrs)
    assert resp.status_code == 201, resp.text
    return dict(resp.json()["floatingip"])


def update(client: TestClient, fip_id: str, **attrs: Any) -> Response:
    return client.put(f"/v2.0/floatingips/{fip_id}", json={"floatingip": attrs})


def show(client: TestClient, fip_id: str) -> Json:
    resp = client.get(f"/v2.0/floatingips/{fip_id}")
    assert resp.status_code == 200, resp.text
    return dict(resp.json()["floatingip"])


def error(resp: Response, status: int, type_name: str, message: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()["NeutronError"]
    assert body["type"] == type_name, body
    if message is not None:
        assert body["message"] == message


def details(p: Json) -> Json:
    keys = ("name", "network_id", "mac_address", "admin_state_up", "status", "device_id",
            "device_owner")
    return {k: p[k] for k in keys}


def fip_records(store: Store) -> list[tuple[str, Json]]:
    rows = store.read(lambda txn: txn.select("outbox", {"resource_type": "floatingip"},
                                             order_by=("seq",)))
    return [(r["operation"], {k: v for k, v in r["detail"].items() if k != "committed_at"})
            for r in rows]


def free_address(client: TestClient, world: Json) -> str:
    """An address of the tenant subnet no port holds (addresses are handed out at random, so
    a fixed one could be taken)."""
    ports = client.get("/v2.0/ports", params={"network_id": world["net"]["id"]}).json()["ports"]
    taken = {ip["ip_address"] for p in ports for ip in p["fixed_ips"]}
    return next(f"10.0.0.{n}" for n in range(77, 100) if f"10.0.0.{n}" not in taken)


@pytest.fixture
def world(client: TestClient) -> Json:
    """An external network (203.0.113.0/24), a tenant subnet (10.0.0.0/24) behind router
    ``router`` (gateway on the external network), and a VM port on the tenant subnet."""
    ext = network(client, name="public", **{"router:external": True})
    ext_sub = subnet(client, ext["id"], "203.0.113.0/24")
    net = network(client, name="private")
    sub = subnet(client, net["id"], "10.0.0.0/24")
    r = router(client, external_gateway_info={"network_id": ext["id"]})
    interface(client, r["id"], subnet_id=sub["id"])
    vm = port(client, net["id"], device_id="vm-1", device_owner="compute:nova")
    return {"ext": ext, "ext_sub": ext_sub, "net": net, "sub": sub, "router": r, "vm": vm}


# --- allocation ------------------------------------------------------------------------------


def test_create_unassociated(client: TestClient, world: Json) -> None:
    resp = create_fip(client, world["ext"]["id"], description="spare")
    assert resp.status_code == 201
    f = resp.json()["floatingip"]
    assert f["project_id"] == f["tenant_id"] == "proj-a"
    assert f["floating_network_id"] == world["ext"]["id"]
    assert ipaddress.ip_address(f["floating_ip_address"]) in ipaddress.ip_network(
        "203.0.113.0/24")
    assert (f["port_id"], f["fixed_ip_address"], f["router_id"]) == (None, None, None)
    assert f["status"] == "DOWN" and f["port_details"] is None
    assert f["description"] == "spare" and f["tags"] == [] and f["revision_number"] == 0
    assert (f["dns_name"], f["dns_domain"], f["qos_policy_id"]) == ("", "", None)
    assert "subnet_id" not in f and "name" not in f
    [fp] = client.get(f"/v2.0/ports?device_id={f['id']}").json()["ports"]
    assert (fp["device_owner"], fp["project_id"]) == ("network:floatingip", "")
    assert fp["fixed_ips"] == [{"subnet_id": world["ext_sub"]["id"],
                                "ip_address": f["floating_ip_address"]}]


def test_asked_address_and_subnet(client: TestClient, world: Json) -> None:
    ext_id = world["ext"]["id"]
    f = fip(client, ext_id, floating_ip_address="203.0.113.77")
    assert f["floating_ip_address"] == "203.0.113.77"
    error(create_fip(client, ext_id, floating_ip_address="203.0.113.77"), 409,
          "IpAddressAlreadyAllocated")
    error(create_fip(client, ext_id, floating_ip_address="192.0.2.1"), 400,
          "InvalidIpForNetwork")
    second = subnet(client, ext_id, "198.51.100.0/24")
    f2 = fip(client, ext_id, subnet_id=second["id"])
    assert f2["floating_ip_address"].startswith("198.51.100.")
    f3 = fip(client, ext_id, subnet_id=second["id"], floating_ip_address="198.51.100.50")
    assert f3["floating_ip_address"] == "198.51.100.50"
    error(create_fip(client, ext_id, subnet_id=second["id"],
                     floating_ip_address="203.0.113.90"), 400, "InvalidIpForSubnet")


def test_allocation_falls_back_then_exhausts(client: TestClient) -> None:
    ext = network(client, **{"router:external": True})
    subnet(client, ext["id"], "192.0.2.0/30")  # one address each (.2 and .10)
    subnet(client, ext["id"], "192.0.2.8/30")
    made = {fip(client, ext["id"])["floating_ip_address"] for _ in range(2)}
    assert made == {"192.0.2.2", "192.0.2.10"}
    error(create_fip(client, ext["id"]), 409, "IpAddressGenerationFailure")
    v6 = subnet(client, ext["id"], "2001:db8::/64")
    error(create_fip(client, ext["id"], subnet_id=v6["id"]), 400, "ExternalIpAddressExhausted",
          f"Unable to find any IP address on external network {ext['id']}.")


def test_network_refusals(client: TestClient, world: Json) -> None:
    net_id = world["net"]["id"]
    error(create_fip(client, net_id), 400, "BadRequest",
          f"Bad floatingip request: Network {net_id} is not a valid external network.")
    v6_only = network(client, **{"router:external": True})
    subnet(client, v6_only["id"], "2001:db8:1::/64")
    error(create_fip(client, v6_only["id"]), 400, "BadRequest",
          f"Bad floatingip request: Network {v6_only['id']} does not contain any IPv4 subnet.")
    missing = "9d2b7e0e-3b5c-4f4e-8e56-0c1d2e3f4a5b"
    error(create_fip(client, missing), 404, "NetworkNotFound")
    error(client.post("/v2.0/floatingips", json={"floatingip": {}}), 400, "HTTPBadRequest")


def test_bulk_create_is_atomic(client: TestClient, world: Json) -> None:
    ext_id = world["ext"]["id"]
    resp = client.post("/v2.0/floatingips", json={"floatingips": [
        {"floating_network_id": ext_id}, {"floating_network_id": ext_id}]})
    assert resp.status_code == 201, resp.text
    made = resp.json()["floatingips"]
    assert len({f["floating_ip_address"] for f in made}) == 2
    resp = client.post("/v2.0/floatingips", json={"floatingips": [
        {"floating_network_id": ext_id}, {"floating_network_id": world["net"]["id"]}]})
    assert resp.status_code == 400
    assert len(client.get("/v2.0/floatingips").json()["floatingips"]) == 2
    fports = client.get("/v2.0/ports?device_owner=network:floatingip").json()["ports"]
    assert len(fports) == 2


# --- association -----------------------------------------------------------------------------


def test_associate_on_create(client: TestClient, world: Json) -> None:
    vm = world["vm"]
    f = fip(client, world["ext"]["id"], port_id=vm["id"])
    assert f["port_id"] == vm["id"]
    assert f["fixed_ip_address"] == vm["fixed_ips"][0]["ip_address"]
    assert f["router_id"] == world["router"]["id"]
    assert f["status"] == "ACTIVE"
    assert f["port_details"] == details(vm)
    listed = client.get(f"/v2.0/floatingips?port_id={vm['id']}").json()["floatingips"]
    assert [x["id"] for x in listed] == [f["id"]]
    by_router = client.get(f"/v2.0/floatingips?router_id={world['router']['id']}").json()
    assert [x["id"] for x in by_router["floatingips"]] == [f["id"]]


def test_associate_disassociate_by_update(client: TestClient, world: Json, store: Store
                                           ) -> None:
    f = fip(client, world["ext"]["id"])
    vm = world["vm"]
    resp = update(client, f["id"], port_id=vm["id"])
    assert resp.status_code == 200, resp.text
    assoc = resp.json()["floatingip"]
    assert (assoc["status"], assoc["router_id"]) == ("ACTIVE", world["router"]["id"])
    assert assoc["revision_number"] == 1
    kept = update(client, f["id"], description="web").json()["floatingip"]
    assert (kept["port_id"], kept["description"]) == (vm["id"], "web")
    resp = update(client, f["id"], port_id=None)
    assert resp.status_code == 200
    gone = resp.json()["floatingip"]
    assert (gone["port_id"], gone["fixed_ip_address"], gone["router_id"]) == (None, None, None)
    assert gone["status"] == "DOWN" and gone["port_details"] is None
    r_id = world["router"]["id"]
    assert fip_records(store) == [
        ("create", {"router_id": None, "port_id": None, "previous_port_id": None,
                    "previous_router_id": None}),
        ("update", {"router_id": r_id, "port_id": vm["id"], "previous_port_id": None,
                    "previous_router_id": None}),
        ("update", {"router_id": r_id, "port_id": vm["id"], "previous_port_id": vm["id"],
                    "previous_router_id": r_id}),
        ("update", {"router_id": None, "port_id": None, "previous_port_id": vm["id"],
                    "previous_router_id": r_id}),
    ]
    assert client.delete(f"/v2.0/floatingips/{f['id']}").status_code == 204
    assert fip_records(store)[-1] == ("delete", {
        "router_id": None, "port_id": None, "previous_port_id": None,
        "previous_router_id": None})


def test_no_router_reaches_the_port(client: TestClient, world: Json) -> None:
    lonely_net = network(client)
    lonely_sub = subnet(client, lonely_net["id"], "10.7.0.0/24")
    lonely = port(client, lonely_net["id"])
    ext_id = world["ext"]["id"]
    message = (f"External network {ext_id} is not reachable from subnet {lonely_sub['id']}.  "
               f"Therefore, cannot associate Port {lonely['id']} with a Floating IP.")
    error(create_fip(client, ext_id, port_id=lonely["id"]), 404,
          "ExternalGatewayForFloatingIPNotFound", message)
    r = router(client)
    interface(client, r["id"], subnet_id=lonely_sub["id"])
    error(create_fip(client, ext_id, port_id=lonely["id"]), 404,
          "ExternalGatewayForFloatingIPNotFound", message)
    assert client.get("/v2.0/floatingips").json()["floatingips"] == []
    assert client.get("/v2.0/ports?device_owner=network:floatingip").json()["ports"] == []


def test_fixed_address_choice(client: TestClient, world: Json) -> None:
    ext_id, net_id = world["ext"]["id"], world["net"]["id"]
    second = subnet(client, net_id, "10.1.0.0/24")
    interface(client, world["router"]["id"], subnet_id=second["id"])
    two = port(client, net_id, fixed_ips=[{"subnet_id": world["sub"]["id"]},
                                          {"subnet_id": second["id"]}])
    error(create_fip(client, ext_id, port_id=two["id"]), 400, "BadRequest",
          f"Bad floatingip request: Port {two['id']} has multiple fixed IPv4 addresses.  Must "
          "provide a specific IPv4 address when assigning a floating IP.")
    wanted = two["fixed_ips"][1]["ip_address"]
    f = fip(client, ext_id, port_id=two["id"], fixed_ip_address=wanted)
    assert f["fixed_ip_address"] == wanted
    error(create_fip(client, ext_id, port_id=two["id"], fixed_ip_address="10.9.9.9"), 400,
          "BadRequest", f"Bad floatingip request: Port {two['id']} does not have fixed ip "
          "10.9.9.9.")
    error(create_fip(client, ext_id, port_id=two["id"], fixed_ip_address="2001:db8::5"), 400,
          "BadRequest", "Bad floatingip request: Cannot process floating IP association with "
          "2001:db8::5, since that is not an IPv4 address.")
    error(create_fip(client, ext_id, fixed_ip_address=wanted), 400, "BadRequest",
          "Bad floatingip request: fixed_ip_address cannot be specified without a port_id.")
    error(update(client, f["id"], fixed_ip_address=wanted), 400, "BadRequest")


def test_port_refusals(client: TestClient, world: Json) -> None:
    ext_id = world["ext"]["id"]
    v6_net = network(client)
    subnet(client, v6_net["id"], "2001:db8:2::/64")
    v6_port = port(client, v6_net["id"])
    error(create_fip(client, ext_id, port_id=v6_port["id"]), 400, "BadRequest",
          f"Bad floatingip request: Cannot add floating IP to port {v6_port['id']} that has no "
          "fixed IPv4 addresses.")
    dhcp = port(client, world["net"]["id"], device_owner="network:dhcp", device_id="dhcp-1")
    error(create_fip(client, ext_id, port_id=dhcp["id"]), 400, "BadRequest",
          f"Bad floatingip request: Port {dhcp['id']} is unable to be assigned a floating IP.")
    missing = "6a0d8d4c-9e0b-4b66-8a7f-6b8f5a6a1e2d"
    error(create_fip(client, ext_id, port_id=missing), 404, "PortNotFound")


def test_one_floating_ip_per_fixed_address(client: TestClient, world: Json) -> None:
    ext_id, vm = world["ext"]["id"], world["vm"]
    first = fip(client, ext_id, port_id=vm["id"])
    spare = fip(client, ext_id)
    fixed = vm["fixed_ips"][0]["ip_address"]
    error(update(client, spare["id"], port_id=vm["id"]), 409,
          "FloatingIPPortAlreadyAssociated",
          f"Cannot associate floating IP {spare['floating_ip_address']} ({spare['id']}) with "
          f"port {vm['id']} using fixed IP {fixed}, as that fixed IP already has a floating "
          f"IP on external network {ext_id}.")
    error(create_fip(client, ext_id, port_id=vm["id"]), 409, "FloatingIPPortAlreadyAssociated")
    assert update(client, first["id"], port_id=vm["id"]).status_code == 200
    update(client, first["id"], port_id=None)
    assert update(client, spare["id"], port_id=vm["id"]).status_code == 200


def test_router_holding_the_gateway_ip_is_preferred(client: TestClient, world: Json) -> None:
    ext_id, net_id, sub = world["ext"]["id"], world["net"]["id"], world["sub"]
    side = router(client, external_gateway_info={"network_id": ext_id})
    side_port = port(client, net_id, fixed_ips=[{"subnet_id": sub["id"],
                                                 "ip_address": free_address(client, world)}])
    interface(client, side["id"], port_id=side_port["id"])
    f = fip(client, ext_id, port_id=world["vm"]["id"])
    assert f["router_id"] == world["router"]["id"]


# --- the fixed port, the floating port and the router ---------------------------------------


def test_deleting_the_fixed_port_disassociates(client: TestClient, world: Json) -> None:
    f = fip(client, world["ext"]["id"], port_id=world["vm"]["id"])
    assert client.delete(f"/v2.0/ports/{world['vm']['id']}").status_code == 204
    now = show(client, f["id"])
    assert (now["port_id"], now["fixed_ip_address"], now["router_id"]) == (None, None, None)
    assert now["status"] == "DOWN"
    assert now["revision_number"] == f["revision_number"] + 1
    assert now["floating_ip_address"] == f["floating_ip_address"]


def test_changing_the_fixed_address_disassociates_only_what_it_lost(
    client: TestClient, world: Json
) -> None:
    """A floating IP never points at an address its port no longer has."""
    old = world["vm"]["fixed_ips"][0]["ip_address"]
    new = free_address(client, world)
    f = fip(client, world["ext"]["id"], port_id=world["vm"]["id"])
    assert f["fixed_ip_address"] == old
    same = client.put(f"/v2.0/ports/{world['vm']['id']}", json={"port": {"name": "renamed"}})
    assert same.status_code == 200
    assert show(client, f["id"])["port_id"] == world["vm"]["id"]
    moved = client.put(f"/v2.0/ports/{world['vm']['id']}", json={"port": {"fixed_ips": [
        {"subnet_id": world["sub"]["id"], "ip_address": new}]}})
    assert moved.status_code == 200, moved.text
    now = show(client, f["id"])
    assert (now["port_id"], now["fixed_ip_address"], now["status"]) == (None, None, "DOWN")
    again = update(client, f["id"], port_id=world["vm"]["id"])
    assert again.status_code == 200, again.text
    assert again.json()["floatingip"]["fixed_ip_address"] == new


def test_a_port_removed_as_another_routers_interface_is_disassociated(
    client: TestClient, world: Json
) -> None:
    vm = port(client, world["net"]["id"])
    f = fip(client, world["ext"]["id"], port_id=vm["id"])
    other = router(client)
    interface(client, other["id"], port_id=vm["id"])
    resp = client.put(f"/v2.0/routers/{other['id']}/remove_router_interface",
                      json={"port_id": vm["id"]})
    assert resp.status_code == 200, resp.text
    assert client.get(f"/v2.0/ports/{vm['id']}").status_code == 404
    now = show(client, f["id"])
    assert (now["port_id"], now["router_id"], now["status"]) == (None, None, "DOWN")


def test_delete_frees_port_and_address(client: TestClient, world: Json) -> None:
    f = fip(client, world["ext"]["id"], floating_ip_address="203.0.113.99",
            port_id=world["vm"]["id"])
    [fp] = client.get(f"/v2.0/ports?device_id={f['id']}").json()["ports"]
    error(client.delete(f"/v2.0/ports/{fp['id']}"), 409, "ServicePortInUse",
          f"Port {fp['id']} cannot be deleted directly via the port API: has device owner "
          "network:floatingip.")
    assert client.delete(f"/v2.0/floatingips/{f['id']}").status_code == 204
    error(client.get(f"/v2.0/floatingips/{f['id']}"), 404, "FloatingIPNotFound",
          f"Floating IP {f['id']} could not be found")
    assert client.get(f"/v2.0/ports/{fp['id']}").status_code == 404
    again = fip(client, world["ext"]["id"], floating_ip_address="203.0.113.99",
                port_id=world["vm"]["id"])
    assert again["status"] == "ACTIVE"


def test_router_parts_in_use_by_floating_ips(client: TestClient, world: Json) -> None:
    r, sub = world["router"], world["sub"]
    f = fip(client, world["ext"]["id"], port_id=world["vm"]["id"])
    resp = client.put(f"/v2.0/routers/{r['id']}/remove_router_interface",
                      json={"subnet_id": sub["id"]})
    error(resp, 409, "RouterInterfaceInUseByFloatingIP",
          f"Router interface for subnet {sub['id']} on router {r['id']} cannot be deleted, as "
          "it is required by one or more floating IPs.")
    resp = client.put(f"/v2.0/routers/{r['id']}", json={"router": {"external_gateway_info": None}})
    error(resp, 409, "RouterExternalGatewayInUseByFloatingIp",
          f"Gateway cannot be updated for router {r['id']}, since a gateway to external "
          f"network {world['ext']['id']} is required by one or more floating IPs.")
    error(client.delete(f"/v2.0/networks/{world['ext']['id']}"), 409, "NetworkInUse")
    update(client, f["id"], port_id=None)
    resp = client.put(f"/v2.0/routers/{r['id']}/remove_router_interface",
                      json={"subnet_id": sub["id"]})
    assert resp.status_code == 200, resp.text
    resp = client.put(f"/v2.0/routers/{r['id']}", json={"router": {"external_gateway_info": None}})
    assert resp.status_code == 200, resp.text


# --- native paths ----------------------------------------------------------------------------


def test_native_floatingips_and_elasticips(client: TestClient, world: Json) -> None:
    ext_id, vm = world["ext"]["id"], world["vm"]
    resp = client.post("/project/proj-a/floatingips",
                       json={"floatingip": {"floating_network_id": ext_id}})
    assert resp.status_code == 201, resp.text
    native = resp.json()["floatingip"]
    resp = client.post("/project/proj-a/elasticips",
                       json={"elasticip": {"floating_network_id": ext_id, "port_id": vm["id"]}})
    assert resp.status_code == 201, resp.text
    elastic = resp.json()["elasticip"]
    assert elastic["router_id"] == world["router"]["id"]
    listed = client.get("/project/proj-a/elasticips").json()["elasticips"]
    assert sorted(x["id"] for x in listed) == sorted([native["id"], elastic["id"]])
    assert client.get("/project/proj-b/elasticips").json()["elasticips"] == []
    shown = client.get(f"/project/proj-a/elasticips/{native['id']}").json()["elasticip"]
    assert shown == show(client, native["id"])
    resp = client.put(f"/project/proj-a/elasticips/{elastic['id']}",
                      json={"elasticip": {"port_id": None}})
    assert resp.json()["elasticip"]["status"] == "DOWN"
    resp = client.post("/project/proj-a/elasticips", json={"elasticips": [
        {"floating_network_id": ext_id}]})
    assert resp.status_code == 201 and len(resp.json()["elasticips"]) == 1
    assert client.delete(f"/project/proj-a/elasticips/{elastic['id']}").status_code == 204
    assert client.delete(f"/project/proj-a/floatingips/{native['id']}").status_code == 204
    assert len(client.get("/v2.0/floatingips").json()["floatingips"]) == 1

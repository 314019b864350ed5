"""Subnets through the HTTP API: Neutron's shape and defaults, CIDR, gateway, pool, DNS,
route and IPv6-mode rules, overlap, bulk atomicity, router:external, updates and deletes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

# A real Neutron's subnet, as it answered a create.
SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "real-subnet.json"


def make_network(client: TestClient, **attrs: Any) -> dict[str, Any]:
    resp = client.post("/v2.0/networks", json={"network": {"name": "n", **attrs}})
    assert resp.status_code == 201, resp.text
    net: dict[str, Any] = resp.json()["network"]
    return net


def post_subnet(client: TestClient, network_id: str, cidr: str = "10.0.0.0/24",
                **attrs: Any) -> Any:
    version = 6 if ":" in cidr else 4
    body = {"network_id": network_id, "ip_version": version, "cidr": cidr, **attrs}
    return client.post("/v2.0/subnets", json={"subnet": body})


def make_subnet(client: TestClient, network_id: str, cidr: str = "10.0.0.0/24",
                **attrs: Any) -> dict[str, Any]:
    resp = post_subnet(client, network_id, cidr, **attrs)
    assert resp.status_code == 201, resp.text
    sub: dict[str, Any] = resp.json()["subnet"]
    return sub


def error(resp: Any) -> tuple[int, str, str]:
    err = resp.json()["NeutronError"]
    return resp.status_code, err["type"], err["message"]


@pytest.fixture
def net(client: TestClient) -> dict[str, Any]:
    return make_network(client)


def put_subnet(client: TestClient, subnet_id: str, **changes: Any) -> Any:
    return client.put(f"/v2.0/subnets/{subnet_id}", json={"subnet": changes})


# --- create: shape and defaults -----------------------------------------------------------


def test_create_subnet_returns_neutron_shape(client: TestClient, net: dict[str, Any]) -> None:
    sub = make_subnet(client, net["id"], "10.0.0.0/16", name="sub1")
    sample = json.loads(SAMPLE.read_text())["subnet"]
    assert set(sample) <= set(sub)
    assert sub["name"] == "sub1"
    assert sub["project_id"] == sub["tenant_id"] == "proj-a"
    assert sub["gateway_ip"] == "10.0.0.1"
    assert sub["allocation_pools"] == [{"start": "10.0.0.2", "end": "10.0.255.254"}]
    assert (sub["enable_dhcp"], sub["revision_number"], sub["router:external"]) == (
        True, 0, False)
    for key in ("host_routes", "dns_nameservers", "service_types", "tags"):
        assert sub[key] == []
    for key in ("ipv6_ra_mode", "ipv6_address_mode", "subnetpool_id", "segment_id"):
        assert sub[key] is None
    assert client.get(f"/v2.0/networks/{net['id']}").json()["network"]["subnets"] == [sub["id"]]


def test_cidr_is_stored_as_its_network(client: TestClient, net: dict[str, Any]) -> None:
    sub = make_subnet(client, net["id"], "10.0.0.5/24")
    assert (sub["cidr"], sub["gateway_ip"]) == ("10.0.0.0/24", "10.0.0.1")
    assert client.get("/v2.0/subnets?cidr=10.0.0.0/24").json()["subnets"][0]["id"] == sub["id"]


def test_ipv6_defaults(client: TestClient, net: dict[str, Any]) -> None:
    sub = make_subnet(client, net["id"], "2001:DB8:0:1::/64")
    assert sub["cidr"] == "2001:db8:0:1::/64"
    assert sub["gateway_ip"] == "2001:db8:0:1::1"
    assert sub["allocation_pools"] == [
        {"start": "2001:db8:0:1::2", "end": "2001:db8:0:1:ffff:ffff:ffff:ffff"}]


@pytest.mark.parametrize(("cidr", "message"), [
    ("10.0.0.5", "Invalid input for cidr. Reason: '10.0.0.5' isn't a recommended CIDR, "
                 "'10.0.0.5/32' is recommended."),
    ("10.0.0.0/33", "Invalid input for cidr. Reason: '10.0.0.0/33' is not a valid IP subnet."),
    ("bogus", "Invalid input for cidr. Reason: 'bogus' is not a valid IP subnet."),
])
def test_malformed_cidr_is_400(client: TestClient, net: dict[str, Any], cidr: str,
                               message: str) -> None:
    assert error(post_subnet(client, net["id"], cidr)) == (400, "InvalidInput", message)


def test_ip_version_must_match_cidr(client: TestClient, net: dict[str, Any]) -> None:
    resp = post_subnet(client, net["id"], "10.0.0.0/24", ip_version=6)
    assert error(resp) == (400, "InvalidInput", "Invalid input for operation: cidr "
                           "'10.0.0.0/24' does not match the ip_version '6'.")


def test_subnet_on_missing_network_is_404(client: TestClient) -> None:
    missing = "7f9d3f0e-7d1f-4f4a-9d39-6d4b0c3a7b11"
    assert error(post_subnet(client, missing)) == (
        404, "NetworkNotFound", f"Network {missing} could not be found.")


def test_overlapping_cidr_on_the_same_network_is_refused(
    client: TestClient, net: dict[str, Any]
) -> None:
    make_subnet(client, net["id"], "10.0.0.0/16")
    assert error(post_subnet(client, net["id"], "10.0.3.0/24")) == (
        400, "InvalidInput", "Invalid input for operation: Requested subnet with cidr: "
        f"10.0.3.0/24 for network: {net['id']} overlaps with another subnet.")
    make_subnet(client, make_network(client)["id"], "10.0.3.0/24")  # another network: fine
    make_subnet(client, net["id"], "2001:db8::/64")  # another family: fine


@pytest.mark.parametrize(("cidr", "attrs", "message"), [
    ("10.0.0.0/31", {}, "Subnet has a prefix length that is incompatible with DHCP service "
                        "enabled"),
    ("2001:db8::/127", {}, "Subnet has a prefix length that is incompatible with DHCP "
                           "service enabled"),
    ("224.0.0.0/24", {}, "Multicast IP subnet is not supported if enable_dhcp is True"),
    ("127.0.0.0/8", {}, "Loopback IP subnet is not supported if enable_dhcp is True"),
    ("0.0.0.0/8", {}, "First IP '0.0.0.0' of network is not supported if enable_dhcp is True"),
    ("0.0.0.0/0", {"enable_dhcp": False}, "0 is not allowed as CIDR prefix length"),
])
def test_prefixes_neutron_refuses(client: TestClient, net: dict[str, Any], cidr: str,
                                  attrs: dict[str, Any], message: str) -> None:
    assert error(post_subnet(client, net["id"], cidr, **attrs)) == (
        400, "InvalidInput", f"Invalid input for operation: {message}.")


def test_point_to_point_subnets_without_dhcp(client: TestClient, net: dict[str, Any]) -> None:
    p2p = make_subnet(client, net["id"], "10.0.0.4/31", enable_dhcp=False)
    assert (p2p["gateway_ip"], p2p["allocation_pools"]) == (
        "10.0.0.5", [{"start": "10.0.0.4", "end": "10.0.0.4"}])
    host = make_subnet(client, net["id"], "10.0.0.9/32", enable_dhcp=False, gateway_ip=None)
    assert host["allocation_pools"] == [{"start": "10.0.0.9", "end": "10.0.0.9"}]


@pytest.mark.parametrize(("attrs", "message"), [
    ({"subnetpool_id": "7f9d3f0e-7d1f-4f4a-9d39-6d4b0c3a7b11"},
     "Subnet pools are not supported: give a cidr, not subnetpool_id"),
    ({"use_default_subnetpool": True}, "No default subnetpool found for IPv4"),
    ({"prefixlen": 24, "cidr": None}, "Subnet pools are not supported: give a cidr, not prefixlen"),
    ({"prefixlen": 24}, "cidr and prefixlen must not be supplied together"),
    ({"cidr": None}, "a subnetpool must be specified in the absence of a cidr"),
])
def test_subnet_pool_requests_are_400(client: TestClient, net: dict[str, Any],
                                      attrs: dict[str, Any], message: str) -> None:
    body = {"network_id": net["id"], "ip_version": 4, "cidr": "10.0.0.0/24", **attrs}
    body = {k: v for k, v in body.items() if v is not None}
    resp = client.post("/v2.0/subnets", json={"subnet": body})
    assert error(resp) == (400, "BadRequest", f"Bad subnets request: {message}.")


# --- create: gateway and pools ------------------------------------------------------------


def test_null_gateway_means_no_gateway(client: TestClient, net: dict[str, Any]) -> None:
    sub = make_subnet(client, net["id"], gateway_ip=None)
    assert sub["gateway_ip"] is None
    assert sub["allocation_pools"] == [{"start": "10.0.0.1", "end": "10.0.0.254"}]


def test_gateway_in_the_middle_splits_the_default_pool(
    client: TestClient, net: dict[str, Any]
) -> None:
    sub = make_subnet(client, net["id"], gateway_ip="10.0.0.100")
    assert sub["allocation_pools"] == [{"start": "10.0.0.1", "end": "10.0.0.99"},
                                       {"start": "10.0.0.101", "end": "10.0.0.254"}]


@pytest.mark.parametrize("gateway", ["10.0.0.0", "10.0.0.255"])
def test_gateway_on_network_or_broadcast_is_400(
    client: TestClient, net: dict[str, Any], gateway: str
) -> None:
    assert error(post_subnet(client, net["id"], gateway_ip=gateway)) == (
        400, "InvalidInput", "Invalid input for operation: Gateway is not valid on subnet.")


def test_gateway_of_the_other_version_is_400(client: TestClient, net: dict[str, Any]) -> None:
    assert error(post_subnet(client, net["id"], gateway_ip="2001:db8::1")) == (
        400, "InvalidInput", "Invalid input for operation: gateway_ip '2001:db8::1' does not "
        "match the ip_version '4'.")


def test_gateway_outside_the_cidr_is_accepted_as_in_neutron(
    client: TestClient, net: dict[str, Any]
) -> None:
    sub = make_subnet(client, net["id"], gateway_ip="192.168.7.1")
    assert sub["gateway_ip"] == "192.168.7.1"
    assert sub["allocation_pools"] == [{"start": "10.0.0.1", "end": "10.0.0.254"}]


def test_given_pools_are_stored_in_order(client: TestClient, net: dict[str, Any]) -> None:
    pools = [{"start": "10.0.0.100", "end": "10.0.0.150"},
             {"start": "10.0.0.10", "end": "10.0.0.20"}]
    sub = make_subnet(client, net["id"], allocation_pools=pools)
    assert sub["allocation_pools"] == [pools[1], pools[0]]
    assert sub["gateway_ip"] == "10.0.0.1"


@pytest.mark.parametrize(("pools", "status", "kind"), [
    ([{"start": "10.0.0.20", "end": "10.0.0.10"}], 400, "InvalidAllocationPool"),
    ([{"start": "10.0.0.2", "end": "10.0.1.10"}], 400, "OutOfBoundsAllocationPool"),
    ([{"start": "10.0.0.2", "end": "10.0.0.50"}, {"start": "10.0.0.40", "end": "10.0.0.60"}],
     409, "OverlappingAllocationPools"),
    ([{"start": "10.0.0.1", "end": "10.0.0.50"}], 409, "GatewayConflictWithAllocationPools"),
    ([{"start": "10.0.0.2"}], 400, "InvalidInput"),
])
def test_bad_pools_are_refused(client: TestClient, net: dict[str, Any],
                               pools: list[dict[str, str]], status: int, kind: str) -> None:
    code, type_, _ = error(post_subnet(client, net["id"], allocation_pools=pools))
    assert (code, type_) == (status, kind)


def test_gateway_conflict_names_the_pool(client: TestClient, net: dict[str, Any]) -> None:
    pools = [{"start": "10.0.0.2", "end": "10.0.0.50"}]
    assert error(post_subnet(client, net["id"], gateway_ip="10.0.0.9", allocation_pools=pools)) \
        == (409, "GatewayConflictWithAllocationPools",
            "Gateway ip 10.0.0.9 conflicts with allocation pool 10.0.0.2-10.0.0.50.")


# --- create: dns, routes, service types, ipv6 modes ---------------------------------------


def test_dns_and_routes_are_stored(client: TestClient, net: dict[str, Any]) -> None:
    routes = [{"destination": "192.168.0.0/16", "nexthop": "10.0.0.254"}]
    sub = make_subnet(client, net["id"], dns_nameservers=["8.8.8.8", "1.1.1.1"],
                      host_routes=routes, service_types=["compute:nova"])
    assert sub["dns_nameservers"] == ["8.8.8.8", "1.1.1.1"]
    assert sub["host_routes"] == routes
    assert sub["service_types"] == ["compute:nova"]


@pytest.mark.parametrize(("attrs", "kind", "message"), [
    ({"dns_nameservers": ["2001:db8::53"]}, "InvalidInput",
     "Invalid input for operation: dns_nameserver '2001:db8::53' does not match the "
     "ip_version '4'."),
    ({"dns_nameservers": [f"10.1.1.{i}" for i in range(6)]}, "DNSNameServersExhausted",
     "Unable to complete operation for new subnet. The number of DNS nameservers exceeds "
     "the limit 5."),
    ({"host_routes": [{"destination": "2001:db8::/64", "nexthop": "10.0.0.9"}]},
     "InvalidInput", "Invalid input for operation: destination '2001:db8::/64' does not "
     "match the ip_version '4'."),
    ({"host_routes": [{"destination": "10.9.0.0/16", "nexthop": "::9"}]}, "InvalidInput",
     "Invalid input for operation: nexthop '::9' does not match the ip_version '4'."),
    ({"host_routes": [{"destination": "10.9.0.5/16", "nexthop": "10.0.0.9"}]}, "InvalidInput",
     "Invalid input for host_routes. Reason: '10.9.0.5/16' is not a recognized CIDR, "
     "'10.9.0.0/16' is recommended."),
    ({"dns_nameservers": ["8.8.8.8", "8.8.8.8"]}, "InvalidInput",
     "Invalid input for dns_nameservers. Reason: Duplicate nameserver '8.8.8.8'."),
    ({"service_types": ["bogus:thing"]}, "InvalidSubnetServiceType",
     "Subnet service type bogus:thing does not correspond to a valid device owner."),
])
def test_bad_dns_routes_and_service_types(client: TestClient, net: dict[str, Any],
                                          attrs: dict[str, Any], kind: str,
                                          message: str) -> None:
    assert error(post_subnet(client, net["id"], **attrs)) == (400, kind, message)


def test_slaac_subnet(client: TestClient, net: dict[str, Any]) -> None:
    sub = make_subnet(client, net["id"], "2001:db8::/64", ipv6_ra_mode="slaac",
                      ipv6_address_mode="slaac")
    assert (sub["ipv6_ra_mode"], sub["ipv6_address_mode"]) == ("slaac", "slaac")


@pytest.mark.parametrize(("cidr", "attrs", "message"), [
    ("10.0.0.0/24", {"ipv6_ra_mode": "slaac"}, "ipv6_ra_mode is not valid when ip_version is 4"),
    ("10.0.0.0/24", {"ipv6_address_mode": "slaac"},
     "ipv6_address_mode is not valid when ip_version is 4"),
    ("2001:db8::/64", {"ipv6_ra_mode": "slaac", "ipv6_address_mode": "dhcpv6-stateful"},
     "ipv6_ra_mode set to 'slaac' with ipv6_address_mode set to 'dhcpv6-stateful' is not "
     "valid. If both attributes are set, they must be the same value"),
    ("2001:db8::/64", {"ipv6_address_mode": "slaac", "enable_dhcp": False},
     "ipv6_ra_mode or ipv6_address_mode cannot be set when enable_dhcp is set to False"),
    ("2001:db8::/80", {"ipv6_address_mode": "slaac"},
     "Invalid CIDR 2001:db8::/80 for IPv6 address mode. OpenStack uses the EUI-64 address "
     "format, which requires the prefix to be /64"),
])
def test_bad_ipv6_modes(client: TestClient, net: dict[str, Any], cidr: str,
                        attrs: dict[str, Any], message: str) -> None:
    assert error(post_subnet(client, net["id"], cidr, **attrs)) == (
        400, "InvalidInput", f"Invalid input for operation: {message}.")


def test_stateful_dhcpv6_may_use_other_prefixes(client: TestClient, net: dict[str, Any]) -> None:
    make_subnet(client, net["id"], "2001:db8::/80", ipv6_address_mode="dhcpv6-stateful")


# --- bulk ---------------------------------------------------------------------------------


def test_bulk_create_returns_every_subnet(client: TestClient, net: dict[str, Any]) -> None:
    body = {"subnets": [{"network_id": net["id"], "ip_version": 4, "cidr": f"10.{i}.0.0/24"}
                        for i in range(5)]}
    resp = client.post("/v2.0/subnets", json=body)
    assert resp.status_code == 201
    assert [s["cidr"] for s in resp.json()["subnets"]] == [f"10.{i}.0.0/24" for i in range(5)]


def test_bulk_create_is_atomic(client: TestClient, net: dict[str, Any]) -> None:
    body = {"subnets": [
        {"network_id": net["id"], "ip_version": 4, "cidr": "10.0.0.0/24"},
        {"network_id": net["id"], "ip_version": 4, "cidr": "10.1.0.0/24"},
        {"network_id": net["id"], "ip_version": 4, "cidr": "10.0.0.0/25"},
    ]}
    assert client.post("/v2.0/subnets", json=body).status_code == 400
    assert client.get("/v2.0/subnets").json()["subnets"] == []


# --- read ---------------------------------------------------------------------------------


def test_router_external_mirrors_the_network(client: TestClient) -> None:
    ext = make_network(client, **{"router:external": True})
    internal = make_network(client)
    ext_sub = make_subnet(client, ext["id"], "203.0.113.0/24")
    int_sub = make_subnet(client, internal["id"])
    assert ext_sub["router:external"] is True
    listed = {s["id"]: s["router:external"] for s in client.get("/v2.0/subnets").json()["subnets"]}
    assert listed == {ext_sub["id"]: True, int_sub["id"]: False}
    client.put(f"/v2.0/networks/{ext['id']}", json={"network": {"router:external": False}})
    shown = client.get(f"/v2.0/subnets/{ext_sub['id']}").json()["subnet"]
    assert shown["router:external"] is False


def test_list_filters_by_network_and_version(client: TestClient) -> None:
    a, b = make_network(client), make_network(client)
    v4 = make_subnet(client, a["id"])
    v6 = make_subnet(client, a["id"], "2001:db8::/64")
    make_subnet(client, b["id"], "10.5.0.0/24")
    found = client.get(f"/v2.0/subnets?network_id={a['id']}&ip_version=6").json()["subnets"]
    assert [s["id"] for s in found] == [v6["id"]]
    found = client.get(f"/v2.0/subnets?network_id={a['id']}&fields=id&sort_key=ip_version")
    assert found.json()["subnets"] == [{"id": v4["id"]}, {"id": v6["id"]}]


def test_show_missing_subnet_is_404(client: TestClient) -> None:
    assert error(client.get("/v2.0/subnets/nope")) == (
        404, "SubnetNotFound", "Subnet nope could not be found.")


# --- update -------------------------------------------------------------------------------


def test_update_attributes_bumps_revision(client: TestClient, net: dict[str, Any]) -> None:
    sub = make_subnet(client, net["id"])
    resp = put_subnet(client, sub["id"], name="renamed", description="d",
                      dns_nameservers=["10.0.0.53"], enable_dhcp=False,
                      host_routes=[{"destination": "0.0.0.0/0", "nexthop": "10.0.0.254"}],
                      service_types=["network:foo"])
    assert resp.status_code == 200, resp.text
    new = resp.json()["subnet"]
    assert (new["name"], new["description"], new["enable_dhcp"]) == ("renamed", "d", False)
    assert new["dns_nameservers"] == ["10.0.0.53"]
    assert new["host_routes"] == [{"destination": "0.0.0.0/0", "nexthop": "10.0.0.254"}]
    assert new["service_types"] == ["network:foo"]
    assert new["revision_number"] == 1
    assert client.get(f"/v2.0/subnets/{sub['id']}").json()["subnet"] == new


def test_update_cidr_is_read_only(client: TestClient, net: dict[str, Any]) -> None:
    sub = make_subnet(client, net["id"])
    assert put_subnet(client, sub["id"], cidr="10.1.0.0/24").status_code == 400


def test_update_gateway_is_revalidated(client: TestClient, net: dict[str, Any]) -> None:
    sub = make_subnet(client, net["id"],
                      allocation_pools=[{"start": "10.0.0.100", "end": "10.0.0.200"}])
    assert error(put_subnet(client, sub["id"], gateway_ip="10.0.0.150")) == (
        409, "GatewayConflictWithAllocationPools",
        "Gateway ip 10.0.0.150 conflicts with allocation pool 10.0.0.100-10.0.0.200.")
    assert error(put_subnet(client, sub["id"], gateway_ip="10.0.0.255"))[1] == "InvalidInput"
    moved = put_subnet(client, sub["id"], gateway_ip="10.0.0.254").json()["subnet"]
    assert moved["gateway_ip"] == "10.0.0.254"
    cleared = put_subnet(client, sub["id"], gateway_ip=None).json()["subnet"]
    assert cleared["gateway_ip"] is None
    assert cleared["revision_number"] == 2


def test_update_pools_is_revalidated(client: TestClient, net: dict[str, Any]) -> None:
    sub = make_subnet(client, net["id"])
    assert error(put_subnet(client, sub["id"], allocation_pools=[
        {"start": "10.0.0.1", "end": "10.0.0.9"}]))[1] == "GatewayConflictWithAllocationPools"
    assert error(put_subnet(client, sub["id"], allocation_pools=[
        {"start": "10.0.0.9", "end": "10.0.1.9"}]))[1] == "OutOfBoundsAllocationPool"
    assert put_subnet(client, sub["id"], allocation_pools=None).status_code == 400
    new = put_subnet(client, sub["id"], allocation_pools=[
        {"start": "10.0.0.50", "end": "10.0.0.60"}, {"start": "10.0.0.10", "end": "10.0.0.20"}])
    assert new.json()["subnet"]["allocation_pools"] == [
        {"start": "10.0.0.10", "end": "10.0.0.20"}, {"start": "10.0.0.50", "end": "10.0.0.60"}]


def test_update_enabling_dhcp_rechecks_the_prefix(client: TestClient, net: dict[str, Any]) -> None:
    sub = make_subnet(client, net["id"], "10.0.0.4/31", enable_dhcp=False)
    assert error(put_subnet(client, sub["id"], enable_dhcp=True))[2] == (
        "Invalid input for operation: Subnet has a prefix length that is incompatible with "
        "DHCP service enabled.")


def test_update_cannot_disable_dhcp_of_a_slaac_subnet(
    client: TestClient, net: dict[str, Any]
) -> None:
    sub = make_subnet(client, net["id"], "2001:db8::/64", ipv6_ra_mode="slaac",
                      ipv6_address_mode="slaac")
    assert error(put_subnet(client, sub["id"], enable_dhcp=False)) == (
        400, "InvalidInput",
        "Invalid input for operation: Cannot disable enable_dhcp with ipv6 attributes set.")


def add_port(client: TestClient, network_id: str, subnet_id: str, ip: str,
             owner: str = "compute:nova") -> dict[str, Any]:
    body = {"network_id": network_id, "device_owner": owner,
            "fixed_ips": [{"subnet_id": subnet_id, "ip_address": ip}]}
    resp = client.post("/v2.0/ports", json={"port": body})
    assert resp.status_code == 201, resp.text
    port: dict[str, Any] = resp.json()["port"]
    return port


def test_update_gateway_to_an_address_a_port_holds_is_409(
    client: TestClient, net: dict[str, Any]
) -> None:
    sub = make_subnet(client, net["id"],
                      allocation_pools=[{"start": "10.0.0.100", "end": "10.0.0.200"}])
    add_port(client, net["id"], sub["id"], "10.0.0.50")
    assert error(put_subnet(client, sub["id"], gateway_ip="10.0.0.50")) == (
        409, "IpAddressInUse", f"Unable to complete operation for network {net['id']}. "
        "The IP address 10.0.0.50 is in use.")


def test_update_gateway_held_by_a_router_interface_is_409(
    client: TestClient, net: dict[str, Any]
) -> None:
    sub = make_subnet(client, net["id"],
                      allocation_pools=[{"start": "10.0.0.100", "end": "10.0.0.200"}])
    router_port = add_port(client, net["id"], sub["id"], "10.0.0.1", "network:router_interface")
    assert error(put_subnet(client, sub["id"], gateway_ip="10.0.0.2")) == (
        409, "GatewayIpInUse", f"Current gateway ip 10.0.0.1 already in use by port "
        f"{router_port['id']}. Unable to update.")
    assert put_subnet(client, sub["id"], name="same gateway").status_code == 200


def test_update_with_stale_revision_is_412(client: TestClient, net: dict[str, Any]) -> None:
    sub = make_subnet(client, net["id"])
    resp = client.put(f"/v2.0/subnets/{sub['id']}", json={"subnet": {"name": "x"}},
                      headers={"If-Match": "revision_number=5"})
    assert resp.status_code == 412


# --- delete -------------------------------------------------------------------------------


def test_delete_subnet(client: TestClient, net: dict[str, Any]) -> None:
    sub = make_subnet(client, net["id"], tags=["blue"])
    assert client.delete(f"/v2.0/subnets/{sub['id']}").status_code == 204
    assert client.get(f"/v2.0/subnets/{sub['id']}").status_code == 404
    assert client.get("/v2.0/subnets?tags=blue").json()["subnets"] == []
    assert client.get(f"/v2.0/networks/{net['id']}").json()["network"]["subnets"] == []


def test_delete_subnet_in_use_is_409(client: TestClient, net: dict[str, Any]) -> None:
    sub = make_subnet(client, net["id"])
    port = add_port(client, net["id"], sub["id"], "10.0.0.7")
    assert error(client.delete(f"/v2.0/subnets/{sub['id']}")) == (
        409, "SubnetInUse", f"Unable to complete operation on subnet {sub['id']}: One or more "
        "ports have an IP allocation from this subnet.")
    assert client.delete(f"/v2.0/ports/{port['id']}").status_code == 204
    assert client.delete(f"/v2.0/subnets/{sub['id']}").status_code == 204


def test_delete_subnet_releases_dhcp_port_addresses(
    client: TestClient, net: dict[str, Any]
) -> None:
    sub = make_subnet(client, net["id"])
    other = make_subnet(client, net["id"], "10.1.0.0/24")
    body = {"network_id": net["id"], "device_owner": "network:dhcp",
            "fixed_ips": [{"subnet_id": sub["id"]}, {"subnet_id": other["id"]}]}
    dhcp = client.post("/v2.0/ports", json={"port": body}).json()["port"]
    assert client.delete(f"/v2.0/subnets/{sub['id']}").status_code == 204
    after = client.get(f"/v2.0/ports/{dhcp['id']}").json()["port"]
    assert [ip["subnet_id"] for ip in after["fixed_ips"]] == [other["id"]]
    assert after["revision_number"] == dhcp["revision_number"] + 1
    assert client.get(f"/v2.0/ports?fixed_ips=subnet_id={sub['id']}").json()["ports"] == []


def test_deleting_the_network_deletes_its_subnets(client: TestClient, net: dict[str, Any]) -> None:
    subs = [make_subnet(client, net["id"], f"10.{i}.0.0/24") for i in range(3)]
    assert client.delete(f"/v2.0/networks/{net['id']}").status_code == 204
    for sub in subs:
        assert client.get(f"/v2.0/subnets/{sub['id']}").status_code == 404

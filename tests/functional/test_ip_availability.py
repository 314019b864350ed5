"""Network IP availability through the HTTP API: totals from allocation pools (exact, however
large for IPv6), used addresses from allocations, filters, fields, and the admin-only policy."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from alcor import errors
from alcor.context import RequestContext
from alcor.db.store import Store
from alcor.services.ip_availability import AvailabilityQuery, IpAvailabilityService

MEMBER = RequestContext(project_id="proj-a", is_admin=False, roles=("member",))


def make_network(client: TestClient, name: str = "n", project: str = "proj-a") -> str:
    resp = client.post("/v2.0/networks", json={"network": {"name": name}},
                       headers={"X-Project-Id": project})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["network"]["id"])


def make_subnet(client: TestClient, network_id: str, cidr: str, **attrs: Any) -> dict[str, Any]:
    version = ipaddress.ip_network(cidr).version
    resp = client.post("/v2.0/subnets", json={"subnet": {
        "network_id": network_id, "cidr": cidr, "ip_version": version, **attrs}})
    assert resp.status_code == 201, resp.text
    return dict(resp.json()["subnet"])


def make_port(client: TestClient, network_id: str) -> None:
    resp = client.post("/v2.0/ports", json={"port": {"network_id": network_id}})
    assert resp.status_code == 201, resp.text


def pools_size(subnet: dict[str, Any]) -> int:
    return sum(int(ipaddress.ip_address(p["end"])) - int(ipaddress.ip_address(p["start"])) + 1
               for p in subnet["allocation_pools"])


def listed(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    resp = client.get("/v2.0/network-ip-availabilities", params=params)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["network_ip_availabilities"])


def test_a_network_without_subnets_has_nothing(client: TestClient) -> None:
    net = make_network(client, "empty")
    assert listed(client) == [{
        "network_id": net, "network_name": "empty", "project_id": "proj-a",
        "tenant_id": "proj-a", "subnet_ip_availability": [], "total_ips": 0, "used_ips": 0}]


def test_totals_come_from_pools_and_used_from_allocations(client: TestClient) -> None:
    net = make_network(client, "private")
    v4 = make_subnet(client, net, "10.0.0.0/24", name="private-subnet")
    v6 = make_subnet(client, net, "fdbf:ac66:9be8::/64", name="ipv6-private-subnet")
    for _ in range(2):
        make_port(client, net)
    resp = client.get(f"/v2.0/network-ip-availabilities/{net}")
    assert resp.status_code == 200
    shown = resp.json()["network_ip_availability"]
    v6_total = pools_size(v6)
    assert v6_total > 2**63
    # Subnets come in creation order (the network's own ``subnets`` order).
    subnet_ids = client.get(f"/v2.0/networks/{net}").json()["network"]["subnets"]
    assert [s["subnet_id"] for s in shown["subnet_ip_availability"]] == subnet_ids
    shown["subnet_ip_availability"].sort(key=lambda s: s["ip_version"])
    assert shown == {
        "network_id": net, "network_name": "private", "project_id": "proj-a",
        "tenant_id": "proj-a", "total_ips": 253 + v6_total, "used_ips": 4,
        "subnet_ip_availability": [
            {"subnet_id": v4["id"], "subnet_name": "private-subnet", "cidr": "10.0.0.0/24",
             "ip_version": 4, "total_ips": 253, "used_ips": 2},
            {"subnet_id": v6["id"], "subnet_name": "ipv6-private-subnet",
             "cidr": "fdbf:ac66:9be8::/64", "ip_version": 6, "total_ips": v6_total,
             "used_ips": 2},
        ]}


def test_totals_beyond_64_bits_are_exact(client: TestClient) -> None:
    net = make_network(client)
    subnet = make_subnet(client, net, "fd00:1::/48")
    resp = client.get(f"/v2.0/network-ip-availabilities/{net}")
    # Parsed by the standard library: the integer is kept whole, not rounded to a float.
    shown = json.loads(resp.text)["network_ip_availability"]
    assert shown["total_ips"] == pools_size(subnet) > 2**79
    assert f'"total_ips":{pools_size(subnet)}' in resp.text


def test_explicit_pools_are_summed(client: TestClient) -> None:
    net = make_network(client)
    make_subnet(client, net, "192.168.0.0/24", allocation_pools=[
        {"start": "192.168.0.10", "end": "192.168.0.19"},
        {"start": "192.168.0.100", "end": "192.168.0.104"}])
    assert listed(client)[0]["total_ips"] == 15


def test_filters(client: TestClient) -> None:
    a = make_network(client, "a")
    b = make_network(client, "b", project="proj-b")
    c = make_network(client, "c")
    make_subnet(client, a, "10.0.0.0/24")
    make_subnet(client, a, "fd00:a::/64")
    make_subnet(client, b, "10.1.0.0/24")
    make_subnet(client, c, "fd00:c::/64")
    def ids(**params: Any) -> list[str]:
        return [n["network_id"] for n in listed(client, **params)]

    assert ids() == sorted([a, b, c])
    assert ids(network_id=[a, c]) == sorted([a, c])
    assert ids(network_name="b") == [b]
    assert ids(project_id="proj-b") == [b]
    assert ids(tenant_id="proj-a") == sorted([a, c])
    v6 = listed(client, ip_version=6)
    assert [n["network_id"] for n in v6] == sorted([a, c])
    assert [s["ip_version"] for n in v6 for s in n["subnet_ip_availability"]] == [6, 6]
    assert all(n["total_ips"] == n["subnet_ip_availability"][0]["total_ips"] for n in v6)
    assert listed(client, network_id="5c0cb560-4089-41dd-be29-469907a23b49") == []


def test_fields_and_the_underscore_path(client: TestClient) -> None:
    net = make_network(client)
    resp = client.get("/v2.0/network_ip_availabilities",
                      params={"fields": ["network_id", "used_ips"]})
    assert resp.json() == {"network_ip_availabilities": [{"network_id": net, "used_ips": 0}]}
    resp = client.get(f"/v2.0/network_ip_availabilities/{net}", params={"fields": "total_ips"})
    assert resp.json() == {"network_ip_availability": {"total_ips": 0}}


def test_bad_queries_are_refused(client: TestClient) -> None:
    resp = client.get("/v2.0/network-ip-availabilities", params={"colour": "red"})
    assert resp.status_code == 400
    assert resp.json()["NeutronError"]["message"] == "['colour'] is invalid attribute for filtering"
    resp = client.get("/v2.0/network-ip-availabilities", params={"ip_version": "four"})
    assert resp.status_code == 400
    assert resp.json()["NeutronError"]["type"] == "InvalidInput"
    # Sorting and paging keys are ignored, as Neutron does for this resource.
    assert client.get("/v2.0/network-ip-availabilities",
                      params={"limit": 1, "sort_key": "network_id"}).status_code == 200


def test_unknown_network_is_404(client: TestClient) -> None:
    resp = client.get("/v2.0/network-ip-availabilities/nope")
    assert resp.status_code == 404
    assert resp.json()["NeutronError"] == {
        "type": "NetworkNotFound", "message": "Network nope could not be found.", "detail": ""}


def test_the_extension_is_listed(client: TestClient) -> None:
    aliases = {e["alias"] for e in client.get("/v2.0/extensions").json()["extensions"]}
    assert "network-ip-availability" in aliases


def test_non_admins_see_nothing(client: TestClient, store: Store) -> None:
    net = make_network(client)
    service = IpAvailabilityService(store)
    assert service.list(MEMBER, AvailabilityQuery()) == []
    with pytest.raises(errors.NetworkNotFound):
        service.get(MEMBER, net)
    assert service.get(RequestContext.admin(), net)["network_id"] == net

"""Ports through the HTTP API: MAC and fixed IP allocation, security groups, binding, DNS and
extension attributes, bulk atomicity, updates that reallocate, and deletion that frees."""

from __future__ import annotations

import ipaddress
from typing import Any, Protocol

from starlette.testclient import TestClient

from alcor.db.store import Store

Json = dict[str, Any]


class Response(Protocol):
    """What the tests read of an HTTP answer (httpx's or httpx2's, as the client provides)."""

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


def create_port(client: TestClient, net_id: str, **attrs: Any) -> Response:
    return client.post("/v2.0/ports", json={"port": {"network_id": net_id, **attrs}})


def port(client: TestClient, net_id: str, **attrs: Any) -> Json:
    resp = create_port(client, net_id, **attrs)
    assert resp.status_code == 201, resp.text
    return dict(resp.json()["port"])


def update(client: TestClient, port_id: str, **attrs: Any) -> Response:
    return client.put(f"/v2.0/ports/{port_id}", json={"port": attrs})


def error(resp: Response, status: int, type_name: str, message: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()["NeutronError"]
    assert body["type"] == type_name
    if message is not None:
        assert body["message"] == message


def ips(p: Json) -> list[str]:
    return [f["ip_address"] for f in p["fixed_ips"]]


def in_pools(address: str, pools: list[Json]) -> bool:
    ip = int(ipaddress.ip_address(address))
    return any(int(ipaddress.ip_address(p["start"])) <= ip <= int(ipaddress.ip_address(p["end"]))
               for p in pools)


def subnet_order(client: TestClient, net_id: str) -> list[str]:
    """The network's subnets as it lists them (oldest first): the order ports fill them in."""
    return list(client.get(f"/v2.0/networks/{net_id}").json()["network"]["subnets"])


def default_group(client: TestClient) -> str:
    groups = client.get("/v2.0/security-groups?name=default").json()["security_groups"]
    return str(next(g["id"] for g in groups if g["project_id"] == "proj-a"))


def outbox(store: Store, resource_id: str) -> list[str]:
    rows = store.read(lambda txn: txn.select("outbox", {"resource_id": resource_id},
                                             order_by=("seq",)))
    return [r["operation"] for r in rows]


def allocations(store: Store, port_id: str) -> list[str]:
    return sorted(store.read(lambda txn: txn.scalars("ip_allocations", "ip_address",
                                                     {"port_id": port_id})))


# --- create: shape and defaults --------------------------------------------------------------


def test_create_port_returns_neutron_shape(client: TestClient, store: Store) -> None:
    net = network(client)
    sub = subnet(client, net["id"], "10.0.0.0/24")
    resp = create_port(client, net["id"], name="p1")
    assert resp.status_code == 201
    p = resp.json()["port"]
    assert p["name"] == "p1"
    assert p["project_id"] == p["tenant_id"] == "proj-a"
    assert p["status"] == "DOWN"
    assert p["admin_state_up"] is True
    assert p["mac_address"].startswith("fa:16:3e:")
    assert len(p["fixed_ips"]) == 1
    assert p["fixed_ips"][0]["subnet_id"] == sub["id"]
    assert in_pools(p["fixed_ips"][0]["ip_address"], sub["allocation_pools"])
    assert p["security_groups"] == [default_group(client)]
    assert p["port_security_enabled"] is True
    assert p["binding:vif_type"] == "unbound"
    assert p["binding:vif_details"] == {}
    assert p["binding:host_id"] == ""
    assert p["binding:vnic_type"] == "normal"
    assert p["binding:profile"] == {}
    assert p["allowed_address_pairs"] == []
    assert p["extra_dhcp_opts"] == []
    assert p["ip_allocation"] == "immediate"
    assert p["revision_number"] == 0
    assert p["device_id"] == p["device_owner"] == p["dns_name"] == ""
    ip = p["fixed_ips"][0]["ip_address"]
    host = "host-" + ip.replace(".", "-")
    assert p["dns_assignment"] == [
        {"ip_address": ip, "hostname": host, "fqdn": f"{host}.openstacklocal."}]
    assert client.get(f"/v2.0/ports/{p['id']}").json()["port"] == p
    assert outbox(store, p["id"]) == ["create"]
    assert allocations(store, p["id"]) == [ip]


def test_port_on_missing_network_is_404(client: TestClient) -> None:
    missing = "3f0e3a5e-2d4b-4a53-9b1e-7b8b2f2a0c11"
    error(create_port(client, missing), 404, "NetworkNotFound",
          f"Network {missing} could not be found.")


def test_network_without_subnets_gives_no_addresses(client: TestClient) -> None:
    net = network(client)
    p = port(client, net["id"])
    assert p["fixed_ips"] == []
    assert p["dns_assignment"] == []


def test_explicit_empty_fixed_ips_means_no_address(client: TestClient, store: Store) -> None:
    net = network(client)
    subnet(client, net["id"], "10.0.0.0/24")
    p = port(client, net["id"], fixed_ips=[])
    assert p["fixed_ips"] == []
    assert allocations(store, p["id"]) == []


def test_get_missing_port_is_404(client: TestClient) -> None:
    error(client.get("/v2.0/ports/does-not-exist"), 404, "PortNotFound",
          "Port does-not-exist could not be found.")


# --- create: fixed_ips ---------------------------------------------------------------------


def test_fixed_ip_by_subnet_id(client: TestClient) -> None:
    net = network(client)
    subnet(client, net["id"], "10.0.0.0/24")
    second = subnet(client, net["id"], "10.0.1.0/24")
    p = port(client, net["id"], fixed_ips=[{"subnet_id": second["id"]}])
    assert [f["subnet_id"] for f in p["fixed_ips"]] == [second["id"]]
    assert in_pools(ips(p)[0], second["allocation_pools"])


def test_fixed_ip_by_address_finds_its_subnet(client: TestClient) -> None:
    net = network(client)
    subnet(client, net["id"], "10.0.0.0/24")
    second = subnet(client, net["id"], "10.0.1.0/24")
    p = port(client, net["id"], fixed_ips=[{"ip_address": "10.0.1.77"}])
    assert p["fixed_ips"] == [{"subnet_id": second["id"], "ip_address": "10.0.1.77"}]


def test_fixed_ip_by_subnet_and_address(client: TestClient) -> None:
    net = network(client)
    sub = subnet(client, net["id"], "10.0.0.0/24")
    p = port(client, net["id"], fixed_ips=[{"subnet_id": sub["id"], "ip_address": "10.0.0.9"}])
    assert p["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.0.0.9"}]


def test_several_fixed_ips_keep_request_order(client: TestClient) -> None:
    net = network(client)
    sub = subnet(client, net["id"], "10.0.0.0/24")
    p = port(client, net["id"], fixed_ips=[
        {"ip_address": "10.0.0.50"}, {"subnet_id": sub["id"]}, {"ip_address": "10.0.0.5"}])
    assert len(p["fixed_ips"]) == 3
    assert ips(p)[0] == "10.0.0.50"
    assert ips(p)[2] == "10.0.0.5"
    assert len(set(ips(p))) == 3


def test_specific_address_outside_pools_is_allowed(client: TestClient) -> None:
    net = network(client)
    sub = subnet(client, net["id"], "10.0.0.0/24",
                 allocation_pools=[{"start": "10.0.0.100", "end": "10.0.0.110"}])
    p = port(client, net["id"], fixed_ips=[{"subnet_id": sub["id"], "ip_address": "10.0.0.20"}])
    assert ips(p) == ["10.0.0.20"]


def test_network_and_broadcast_addresses_are_refused(client: TestClient) -> None:
    net = network(client)
    sub = subnet(client, net["id"], "10.0.0.0/24")
    for address in ("10.0.0.0", "10.0.0.255"):
        resp = create_port(client, net["id"],
                           fixed_ips=[{"subnet_id": sub["id"], "ip_address": address}])
        error(resp, 400, "InvalidIpForSubnet",
              f"IP address {address} is not a valid IP for the specified subnet.")
        error(create_port(client, net["id"], fixed_ips=[{"ip_address": address}]), 400,
              "InvalidIpForNetwork",
              f"IP address {address} is not a valid IP for any of the subnets on the "
              "specified network.")


def test_address_outside_the_subnet_is_refused(client: TestClient) -> None:
    net = network(client)
    sub = subnet(client, net["id"], "10.0.0.0/24")
    resp = create_port(client, net["id"],
                       fixed_ips=[{"subnet_id": sub["id"], "ip_address": "10.9.9.9"}])
    error(resp, 400, "InvalidIpForSubnet",
          "IP address 10.9.9.9 is not a valid IP for the specified subnet.")


def test_subnet_of_another_network_is_invalid_input(client: TestClient) -> None:
    net, other = network(client), network(client)
    subnet(client, net["id"], "10.0.0.0/24")
    foreign = subnet(client, other["id"], "10.1.0.0/24")
    resp = create_port(client, net["id"], fixed_ips=[{"subnet_id": foreign["id"]}])
    error(resp, 400, "InvalidInput",
          f"Invalid input for operation: Failed to create port on network {other['id']}, "
          f"because fixed_ips included invalid subnet {foreign['id']}.")


def test_missing_subnet_is_404(client: TestClient) -> None:
    net = network(client)
    subnet(client, net["id"], "10.0.0.0/24")
    missing = "0b8b0f4e-55a8-4ad5-9a39-7e3cf56d7d4e"
    error(create_port(client, net["id"], fixed_ips=[{"subnet_id": missing}]), 404,
          "SubnetNotFound", f"Subnet {missing} could not be found.")


def test_fixed_ips_on_network_without_subnets_is_invalid(client: TestClient) -> None:
    net = network(client)
    resp = create_port(client, net["id"], fixed_ips=[{"ip_address": "10.0.0.5"}])
    error(resp, 400, "InvalidInput",
          "Invalid input for operation: IP allocation requires subnets for network.")


def test_fixed_ip_entry_needs_subnet_or_address(client: TestClient) -> None:
    net = network(client)
    subnet(client, net["id"], "10.0.0.0/24")
    error(create_port(client, net["id"], fixed_ips=[{}]), 400, "InvalidInput",
          "Invalid input for operation: IP allocation requires subnet_id or ip_address.")


def test_taken_address_is_conflict(client: TestClient) -> None:
    net = network(client)
    sub = subnet(client, net["id"], "10.0.0.0/24")
    port(client, net["id"], fixed_ips=[{"ip_address": "10.0.0.7"}])
    resp = create_port(client, net["id"], fixed_ips=[{"ip_address": "10.0.0.7"}])
    error(resp, 409, "IpAddressAlreadyAllocated",
          f"IP address 10.0.0.7 already allocated in subnet {sub['id']}")
    twice = create_port(client, net["id"], fixed_ips=[{"ip_address": "10.0.0.8"},
                                                      {"ip_address": "10.0.0.8"}])
    error(twice, 409, "IpAddressAlreadyAllocated")


def test_v6_address_is_normalized(client: TestClient) -> None:
    net = network(client)
    sub = subnet(client, net["id"], "fd00:1::/64")
    p = port(client, net["id"], fixed_ips=[{"ip_address": "fd00:1:0:0::0:5"}])
    assert p["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "fd00:1::5"}]
    resp = create_port(client, net["id"], fixed_ips=[{"ip_address": "fd00:1::5"}])
    error(resp, 409, "IpAddressAlreadyAllocated")


def test_dual_stack_gives_one_address_per_family(client: TestClient) -> None:
    net = network(client)
    v4 = {subnet(client, net["id"], "10.0.0.0/24")["id"],
          subnet(client, net["id"], "10.0.1.0/24")["id"]}
    v6 = subnet(client, net["id"], "fd00:2::/64")
    first_v4 = next(s for s in subnet_order(client, net["id"]) if s in v4)
    p = port(client, net["id"])
    assert [f["subnet_id"] for f in p["fixed_ips"]] == [first_v4, v6["id"]]
    v6_ip = ipaddress.ip_address(ips(p)[1])
    assert v6_ip in ipaddress.ip_network("fd00:2::/64")
    assert p["dns_assignment"][1]["hostname"] == "host-" + str(v6_ip).replace(":", "-")


def test_full_first_subnet_spills_into_the_next(client: TestClient) -> None:
    net = network(client)
    pools = [{"start": "10.0.0.2", "end": "10.0.0.6"}, {"start": "10.0.1.2", "end": "10.0.1.6"}]
    subnet(client, net["id"], "10.0.0.0/24", allocation_pools=pools[:1])
    subnet(client, net["id"], "10.0.1.0/24", allocation_pools=pools[1:])
    first, second = subnet_order(client, net["id"])
    ports = [port(client, net["id"]) for _ in range(10)]
    subnets_used = [p["fixed_ips"][0]["subnet_id"] for p in ports]
    assert subnets_used == [first] * 5 + [second] * 5
    error(create_port(client, net["id"]), 409, "IpAddressGenerationFailure")


def test_slaac_subnet_gives_eui64_address(client: TestClient) -> None:
    net = network(client)
    v4 = subnet(client, net["id"], "10.0.0.0/24")
    slaac = subnet(client, net["id"], "fd00:3::/64", ipv6_address_mode="slaac",
                   ipv6_ra_mode="slaac")
    p = port(client, net["id"], mac_address="fa:16:3e:12:34:56")
    assert p["fixed_ips"] == [
        {"subnet_id": v4["id"], "ip_address": p["fixed_ips"][0]["ip_address"]},
        {"subnet_id": slaac["id"], "ip_address": "fd00:3::f816:3eff:fe12:3456"},
    ]
    only_v4 = port(client, net["id"], fixed_ips=[{"subnet_id": v4["id"]}])
    assert [f["subnet_id"] for f in only_v4["fixed_ips"]] == [v4["id"], slaac["id"]]
    resp = create_port(client, net["id"], fixed_ips=[{"ip_address": "fd00:3::99"}])
    error(resp, 400, "AllocationOnAutoAddressSubnet",
          f"IPv6 address fd00:3::99 cannot be directly assigned to a port on subnet "
          f"{slaac['id']} as the subnet is configured for automatic addresses")


def test_router_port_may_take_v6_network_address(client: TestClient) -> None:
    net = network(client)
    subnet(client, net["id"], "fd00:4::/64")
    error(create_port(client, net["id"], fixed_ips=[{"ip_address": "fd00:4::"}]), 400,
          "InvalidIpForNetwork")
    p = port(client, net["id"], device_owner="network:router_interface",
             fixed_ips=[{"ip_address": "fd00:4::"}])
    assert ips(p) == ["fd00:4::"]


# --- create: exhaustion and reuse ------------------------------------------------------------


def test_exhausted_network_is_conflict(client: TestClient) -> None:
    net = network(client)
    sub = subnet(client, net["id"], "10.0.0.0/29")
    taken = {ips(port(client, net["id"]))[0] for _ in range(5)}
    assert taken == {f"10.0.0.{i}" for i in range(2, 7)}
    assert sub["gateway_ip"] not in taken
    error(create_port(client, net["id"]), 409, "IpAddressGenerationFailure",
          f"No more IP addresses available on network {net['id']}.")
    error(create_port(client, net["id"], fixed_ips=[{"subnet_id": sub["id"]}]), 409,
          "IpAddressGenerationFailure")


def test_freed_address_is_reused(client: TestClient, store: Store) -> None:
    net = network(client)
    subnet(client, net["id"], "10.0.0.0/29")
    ports = [port(client, net["id"]) for _ in range(5)]
    gone = ports[2]
    assert client.delete(f"/v2.0/ports/{gone['id']}").status_code == 204
    assert allocations(store, gone["id"]) == []
    again = port(client, net["id"])
    assert ips(again) == ips(gone)


def test_bulk_larger_than_pool_fails_whole(client: TestClient) -> None:
    net = network(client)
    subnet(client, net["id"], "10.0.0.0/29")
    resp = client.post("/v2.0/ports", json={"ports": [{"network_id": net["id"]}] * 6})
    error(resp, 409, "IpAddressGenerationFailure")
    assert client.get(f"/v2.0/ports?network_id={net['id']}").json()["ports"] == []
    full = client.post("/v2.0/ports", json={"ports": [{"network_id": net["id"]}] * 5})
    assert full.status_code == 201
    assert len({ips(p)[0] for p in full.json()["ports"]}) == 5


# --- create: MAC -------------------------------------------------------------------------------


def test_given_mac_is_used_and_unique_per_network(client: TestClient) -> None:
    net, other = network(client), network(client)
    p = port(client, net["id"], mac_address="FA:16:3E:AA:BB:CC")
    assert p["mac_address"] == "fa:16:3e:aa:bb:cc"
    resp = create_port(client, net["id"], mac_address="fa:16:3e:aa:bb:cc")
    error(resp, 409, "MacAddressInUse",
          f"Unable to complete operation for network {net['id']}. "
          "The mac address fa:16:3e:aa:bb:cc is in use.")
    assert port(client, other["id"], mac_address="fa:16:3e:aa:bb:cc")["mac_address"] == \
        "fa:16:3e:aa:bb:cc"


def test_bulk_with_repeated_mac_is_conflict(client: TestClient) -> None:
    net = network(client)
    body = {"ports": [{"network_id": net["id"], "mac_address": "fa:16:3e:00:00:01"}] * 2}
    error(client.post("/v2.0/ports", json=body), 409, "MacAddressInUse")
    assert client.get("/v2.0/ports").json()["ports"] == []


# --- create: bulk ------------------------------------------------------------------------------


def test_bulk_gives_distinct_addresses_and_macs(client: TestClient, store: Store) -> None:
    net = network(client)
    other = network(client)
    subnet(client, net["id"], "10.0.0.0/24")
    subnet(client, other["id"], "10.1.0.0/16")
    body = {"ports": [{"network_id": net["id"], "name": f"a{i}"} for i in range(100)]
            + [{"network_id": other["id"], "name": f"b{i}"} for i in range(100)]}
    resp = client.post("/v2.0/ports", json=body)
    assert resp.status_code == 201
    ports = resp.json()["ports"]
    assert [p["name"] for p in ports] == [b["name"] for b in body["ports"]]
    for net_id in (net["id"], other["id"]):
        mine = [p for p in ports if p["network_id"] == net_id]
        assert len({ips(p)[0] for p in mine}) == 100
        assert len({p["mac_address"] for p in mine}) == 100
    assert all(outbox(store, p["id"]) == ["create"] for p in ports[:3])


def test_bulk_is_atomic(client: TestClient, store: Store) -> None:
    net = network(client)
    subnet(client, net["id"], "10.0.0.0/24")
    port(client, net["id"], fixed_ips=[{"ip_address": "10.0.0.9"}])
    body = {"ports": [{"network_id": net["id"], "name": "ok"},
                      {"network_id": net["id"], "fixed_ips": [{"ip_address": "10.0.0.9"}]}]}
    error(client.post("/v2.0/ports", json=body), 409, "IpAddressAlreadyAllocated")
    names = [p["name"] for p in client.get("/v2.0/ports").json()["ports"]]
    assert names == [""]
    count = store.read(lambda txn: txn.count("ip_allocations"))
    assert count == 1


# --- create: security groups, port security, binding, extensions -------------------------------


def test_given_security_groups_are_bound(client: TestClient) -> None:
    net = network(client)
    sg = client.post("/v2.0/security-groups", json={"security_group": {"name": "web"}})
    assert sg.status_code == 201
    sg_id = sg.json()["security_group"]["id"]
    p = port(client, net["id"], security_groups=[sg_id])
    assert p["security_groups"] == [sg_id]
    bare = port(client, net["id"], security_groups=[])
    assert bare["security_groups"] == []


def test_missing_security_group_is_404(client: TestClient) -> None:
    net = network(client)
    missing = "c2a5a9f6-7a55-4a4f-8a3b-33c1f4b2a3d1"
    error(create_port(client, net["id"], security_groups=[missing]), 404,
          "SecurityGroupNotFound", f"Security group {missing} does not exist")


def test_port_security_disabled_means_no_groups(client: TestClient) -> None:
    net = network(client)
    p = port(client, net["id"], port_security_enabled=False)
    assert p["port_security_enabled"] is False
    assert p["security_groups"] == []
    resp = create_port(client, net["id"], port_security_enabled=False,
                       security_groups=[default_group(client)])
    error(resp, 400, "PortSecurityAndIPRequiredForSecurityGroups",
          "Port security must be enabled and port must have an IP address in order to use "
          "security groups.")
    resp = create_port(client, net["id"], port_security_enabled=False,
                       allowed_address_pairs=[{"ip_address": "10.0.0.1"}])
    error(resp, 409, "AddressPairAndPortSecurityRequired",
          "Port Security must be enabled in order to have allowed address pairs on a port.")


def test_port_security_defaults_to_the_network(client: TestClient) -> None:
    net = network(client, port_security_enabled=False)
    p = port(client, net["id"])
    assert p["port_security_enabled"] is False
    assert p["security_groups"] == []


def test_trusted_ports_get_no_default_group(client: TestClient) -> None:
    net = network(client)
    subnet(client, net["id"], "10.0.0.0/24")
    dhcp = port(client, net["id"], device_owner="network:dhcp")
    assert dhcp["security_groups"] == []
    assert dhcp["port_security_enabled"] is True


def test_binding_host_sets_vif_type(client: TestClient) -> None:
    net = network(client)
    p = port(client, net["id"], **{"binding:host_id": "compute-1"})
    assert p["binding:vif_type"] == "ovs"
    assert p["binding:vif_details"] == {"port_filter": True}
    unbound = update(client, p["id"], **{"binding:host_id": ""}).json()["port"]
    assert unbound["binding:vif_type"] == "unbound"
    assert unbound["binding:vif_details"] == {}
    rebound = update(client, p["id"], **{"binding:host_id": "compute-2"}).json()["port"]
    assert (rebound["binding:host_id"], rebound["binding:vif_type"]) == ("compute-2", "ovs")


def test_extension_attributes_are_stored(client: TestClient) -> None:
    net = network(client)
    subnet(client, net["id"], "10.0.0.0/24")
    p = port(client, net["id"], dns_name="web-1",
             allowed_address_pairs=[{"ip_address": "10.0.0.200"},
                                    {"ip_address": "10.0.5.0/24",
                                     "mac_address": "fa:16:3e:01:02:03"}],
             extra_dhcp_opts=[{"opt_name": "tftp-server", "opt_value": "10.0.0.5"},
                              {"opt_name": "bootfile-name", "opt_value": "pxelinux.0",
                               "ip_version": 6}],
             **{"binding:profile": {"pci_slot": "0000:03:00.1"}, "binding:vnic_type": "direct"})
    assert p["allowed_address_pairs"] == [
        {"ip_address": "10.0.0.200", "mac_address": p["mac_address"]},
        {"ip_address": "10.0.5.0/24", "mac_address": "fa:16:3e:01:02:03"}]
    assert p["extra_dhcp_opts"] == [
        {"opt_name": "tftp-server", "opt_value": "10.0.0.5", "ip_version": 4},
        {"opt_name": "bootfile-name", "opt_value": "pxelinux.0", "ip_version": 6}]
    assert p["dns_assignment"] == [{"ip_address": ips(p)[0], "hostname": "web-1",
                                    "fqdn": "web-1.openstacklocal."}]
    assert p["binding:profile"] == {"pci_slot": "0000:03:00.1"}
    assert p["binding:vnic_type"] == "direct"
    assert client.get(f"/v2.0/ports/{p['id']}").json()["port"] == p


def test_duplicate_address_pair_is_refused(client: TestClient) -> None:
    net = network(client)
    pair = {"ip_address": "10.0.0.1", "mac_address": "fa:16:3e:01:02:03"}
    resp = create_port(client, net["id"], allowed_address_pairs=[pair, pair])
    error(resp, 400, "DuplicateAddressPairInRequest",
          "Request contains duplicate address pair: mac_address fa:16:3e:01:02:03 "
          "ip_address 10.0.0.1.")


# --- list --------------------------------------------------------------------------------------


def test_list_filters_by_security_group_and_fixed_ip(client: TestClient) -> None:
    net = network(client)
    subnet(client, net["id"], "10.0.0.0/24")
    sg_id = client.post("/v2.0/security-groups",
                        json={"security_group": {"name": "web"}}).json()["security_group"]["id"]
    web = port(client, net["id"], security_groups=[sg_id], fixed_ips=[{"ip_address": "10.0.0.21"}])
    plain = port(client, net["id"])
    bare = port(client, net["id"], port_security_enabled=False)

    def listed(query: str) -> set[str]:
        resp = client.get(f"/v2.0/ports?{query}")
        assert resp.status_code == 200, resp.text
        return {p["id"] for p in resp.json()["ports"]}

    assert listed(f"security_groups={sg_id}") == {web["id"]}
    assert listed(f"security_groups={default_group(client)}") == {plain["id"]}
    assert listed(f"security_groups={sg_id}&security_groups={default_group(client)}") == {
        web["id"], plain["id"]}
    assert listed("security_groups=") == {bare["id"]}
    assert listed("fixed_ips=ip_address=10.0.0.21") == {web["id"]}


# --- update ------------------------------------------------------------------------------------


def test_update_fixed_ips_reallocates(client: TestClient, store: Store) -> None:
    net = network(client)
    sub = subnet(client, net["id"], "10.0.0.0/24")
    p = port(client, net["id"], fixed_ips=[{"ip_address": "10.0.0.10"},
                                          {"ip_address": "10.0.0.11"}])
    resp = update(client, p["id"], fixed_ips=[{"ip_address": "10.0.0.11"},
                                              {"ip_address": "10.0.0.12"}])
    assert resp.status_code == 200, resp.text
    new = resp.json()["port"]
    assert ips(new) == ["10.0.0.11", "10.0.0.12"]
    assert new["revision_number"] == 1
    assert allocations(store, p["id"]) == ["10.0.0.11", "10.0.0.12"]
    reuse = port(client, net["id"], fixed_ips=[{"ip_address": "10.0.0.10"}])
    assert ips(reuse) == ["10.0.0.10"]
    assert outbox(store, p["id"]) == ["create", "update"]
    # An entry naming only a subnet keeps an address the port has there (as Neutron does)
    # and takes a new one only beyond that.
    same = update(client, p["id"], fixed_ips=[{"subnet_id": sub["id"]},
                                              {"ip_address": "10.0.0.12"}]).json()["port"]
    assert ips(same) == ["10.0.0.11", "10.0.0.12"]
    more = update(client, p["id"], fixed_ips=[{"subnet_id": sub["id"]}, {"subnet_id": sub["id"]},
                                              {"subnet_id": sub["id"]}]).json()["port"]
    assert ips(more)[:2] == ["10.0.0.11", "10.0.0.12"]
    assert len(set(ips(more))) == 3
    assert allocations(store, p["id"]) == sorted(ips(more))


def test_update_to_taken_address_changes_nothing(client: TestClient, store: Store) -> None:
    net = network(client)
    subnet(client, net["id"], "10.0.0.0/24")
    port(client, net["id"], fixed_ips=[{"ip_address": "10.0.0.30"}])
    p = port(client, net["id"], fixed_ips=[{"ip_address": "10.0.0.31"}])
    resp = update(client, p["id"], fixed_ips=[{"ip_address": "10.0.0.30"}])
    error(resp, 409, "IpAddressAlreadyAllocated")
    assert client.get(f"/v2.0/ports/{p['id']}").json()["port"] == p
    assert allocations(store, p["id"]) == ["10.0.0.31"]


def test_update_fixed_ips_to_nothing_frees(client: TestClient, store: Store) -> None:
    net = network(client)
    subnet(client, net["id"], "10.0.0.0/24")
    p = port(client, net["id"])
    new = update(client, p["id"], fixed_ips=[]).json()["port"]
    assert new["fixed_ips"] == []
    assert new["dns_assignment"] == []
    assert allocations(store, p["id"]) == []


def test_update_mac(client: TestClient) -> None:
    net = network(client)
    port(client, net["id"], mac_address="fa:16:3e:00:00:0a")
    p = port(client, net["id"])
    error(update(client, p["id"], mac_address="fa:16:3e:00:00:0a"), 409, "MacAddressInUse")
    moved = update(client, p["id"], mac_address="fa:16:3e:00:00:0b").json()["port"]
    assert moved["mac_address"] == "fa:16:3e:00:00:0b"
    same = update(client, p["id"], mac_address="fa:16:3e:00:00:0b")
    assert same.status_code == 200
    bound = port(client, net["id"], **{"binding:host_id": "compute-1"})
    resp = update(client, bound["id"], mac_address="fa:16:3e:00:00:0c")
    error(resp, 409, "PortBound",
          f"Unable to complete operation on port {bound['id']}, port is already bound, port "
          f"type: ovs, old_mac {bound['mac_address']}, new_mac fa:16:3e:00:00:0c.")


def test_mac_change_moves_slaac_address(client: TestClient, store: Store) -> None:
    net = network(client)
    v4 = subnet(client, net["id"], "10.0.0.0/24")
    subnet(client, net["id"], "fd00:5::/64", ipv6_address_mode="slaac", ipv6_ra_mode="slaac")
    p = port(client, net["id"], mac_address="fa:16:3e:12:34:56")
    assert ips(p)[1] == "fd00:5::f816:3eff:fe12:3456"
    moved = update(client, p["id"], mac_address="fa:16:3e:65:43:21").json()["port"]
    assert ips(moved) == [ips(p)[0], "fd00:5::f816:3eff:fe65:4321"]
    assert allocations(store, p["id"]) == sorted(ips(moved))
    kept = update(client, p["id"], fixed_ips=[{"subnet_id": v4["id"]}]).json()["port"]
    assert ips(kept) == ips(moved)


def test_update_security_groups_rebinds(client: TestClient) -> None:
    net = network(client)
    sg_id = client.post("/v2.0/security-groups",
                        json={"security_group": {"name": "web"}}).json()["security_group"]["id"]
    p = port(client, net["id"])
    new = update(client, p["id"], security_groups=[sg_id]).json()["port"]
    assert new["security_groups"] == [sg_id]
    listed = client.get(f"/v2.0/ports?security_groups={sg_id}").json()["ports"]
    assert [x["id"] for x in listed] == [p["id"]]
    missing = "c2a5a9f6-7a55-4a4f-8a3b-33c1f4b2a3d1"
    error(update(client, p["id"], security_groups=[missing]), 404, "SecurityGroupNotFound")


def test_disabling_port_security_requires_no_groups(client: TestClient) -> None:
    net = network(client)
    p = port(client, net["id"])
    error(update(client, p["id"], port_security_enabled=False), 409,
          "PortSecurityPortHasSecurityGroup",
          "Port has security group associated. Cannot disable port security or IP address "
          "until security group is removed.")
    off = update(client, p["id"], port_security_enabled=False, security_groups=[])
    assert off.status_code == 200
    assert (off.json()["port"]["port_security_enabled"], off.json()["port"]["security_groups"]) \
        == (False, [])
    error(update(client, p["id"], security_groups=[default_group(client)]), 400,
          "PortSecurityAndIPRequiredForSecurityGroups")
    error(update(client, p["id"], allowed_address_pairs=[{"ip_address": "10.0.0.1"}]), 409,
          "AddressPairAndPortSecurityRequired")


def test_update_plain_attributes(client: TestClient) -> None:
    net = network(client)
    p = port(client, net["id"])
    resp = update(client, p["id"], name="renamed", device_id="vm-1",
                  device_owner="compute:nova", admin_state_up=False, dns_name="vm1")
    assert resp.status_code == 200
    new = resp.json()["port"]
    assert (new["name"], new["device_id"], new["device_owner"], new["admin_state_up"]) == (
        "renamed", "vm-1", "compute:nova", False)
    assert new["revision_number"] == p["revision_number"] + 1
    error(update(client, p["id"], status="ACTIVE"), 400, "HTTPBadRequest")


def test_update_merges_extra_dhcp_opts(client: TestClient) -> None:
    net = network(client)
    p = port(client, net["id"], extra_dhcp_opts=[
        {"opt_name": "tftp-server", "opt_value": "10.0.0.5"},
        {"opt_name": "bootfile-name", "opt_value": "a.0"}])
    new = update(client, p["id"], extra_dhcp_opts=[
        {"opt_name": "bootfile-name", "opt_value": "b.0"},
        {"opt_name": "tftp-server", "opt_value": None},
        {"opt_name": "server-ip-address", "opt_value": "10.0.0.6"}]).json()["port"]
    assert new["extra_dhcp_opts"] == [
        {"opt_name": "bootfile-name", "opt_value": "b.0", "ip_version": 4},
        {"opt_name": "server-ip-address", "opt_value": "10.0.0.6", "ip_version": 4}]


def test_update_with_stale_revision_is_412(client: TestClient) -> None:
    net = network(client)
    p = port(client, net["id"])
    resp = client.put(f"/v2.0/ports/{p['id']}", json={"port": {"name": "x"}},
                      headers={"If-Match": "revision_number=7"})
    error(resp, 412, "RevisionNumberConstraintFailed")


# --- delete ------------------------------------------------------------------------------------


def test_delete_frees_address_mac_and_tags(client: TestClient, store: Store) -> None:
    net = network(client)
    subnet(client, net["id"], "10.0.0.0/24")
    p = port(client, net["id"], tags=["a", "b"], fixed_ips=[{"ip_address": "10.0.0.40"}],
             mac_address="fa:16:3e:00:00:40")
    assert client.delete(f"/v2.0/ports/{p['id']}").status_code == 204
    assert client.get(f"/v2.0/ports/{p['id']}").status_code == 404
    assert outbox(store, p["id"]) == ["create", "delete"]
    assert store.read(lambda txn: txn.count("tags", {"resource_id": p["id"]})) == 0
    assert store.read(lambda txn: txn.count("port_security_groups", {"port_id": p["id"]})) == 0
    again = port(client, net["id"], fixed_ips=[{"ip_address": "10.0.0.40"}],
                 mac_address="fa:16:3e:00:00:40")
    assert ips(again) == ["10.0.0.40"]
    error(client.delete(f"/v2.0/ports/{p['id']}"), 404, "PortNotFound")


def test_network_delete_takes_dhcp_ports_along(client: TestClient, store: Store) -> None:
    net = network(client)
    subnet(client, net["id"], "10.0.0.0/24")
    dhcp = port(client, net["id"], device_owner="network:dhcp", tags=["x"])
    vm = port(client, net["id"], device_owner="compute:nova")
    error(client.delete(f"/v2.0/networks/{net['id']}"), 409, "NetworkInUse")
    assert client.delete(f"/v2.0/ports/{vm['id']}").status_code == 204
    assert client.delete(f"/v2.0/networks/{net['id']}").status_code == 204
    assert client.get(f"/v2.0/ports/{dhcp['id']}").status_code == 404
    assert outbox(store, dhcp["id"]) == ["create", "delete"]
    assert store.read(lambda txn: txn.count("ip_allocations")) == 0
    assert store.read(lambda txn: txn.count("tags", {"resource_id": dhcp["id"]})) == 0

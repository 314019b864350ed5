"""openstacksdk, unchanged, against a real ``alcor server`` process over TCP: networks, subnets,
ports, security groups and rules, pagination, tags, and the exceptions it raises from our
NeutronError bodies.  Every outcome is read back from the server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import openstack
import pytest
from openstack import exceptions
from openstack.connection import Connection

from tests.functional.server import AlcorServer


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real ``alcor server`` process for the module, on a fresh SQLite file."""
    db = tmp_path_factory.mktemp("sdk") / "alcor.db"
    with AlcorServer(f"sqlite:///{db}") as server:
        yield server.base_url + "/"


@pytest.fixture(scope="module")
def conn(server_url: str) -> Iterator[Connection]:
    c = openstack.connect(auth_type="none", network_endpoint_override=server_url,
                          load_yaml_config=False, load_envvars=False)
    yield c
    c.close()


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def net(conn: Connection) -> Any:
    return conn.network.create_network(name=_name("net"))


@pytest.fixture
def subnet(conn: Connection, net: Any) -> Any:
    return conn.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.0.0.0/24",
                                      name=_name("sub"))


# --- networks ----------------------------------------------------------------------------


def test_create_network_with_provider_shared_and_tags(conn: Connection) -> None:
    created = conn.network.create_network(
        name=_name("prov"), is_shared=True, provider_network_type="vxlan",
        provider_segmentation_id=70001, tags=["blue", "green"], description="d1",
    )
    got = conn.network.get_network(created.id)
    assert got.name == created.name
    assert got.description == "d1"
    assert got.is_shared is True
    assert got.provider_network_type == "vxlan"
    assert got.provider_segmentation_id == 70001
    assert got.provider_physical_network is None
    assert got.mtu == 1450
    assert got.status == "ACTIVE"
    assert got.is_admin_state_up is True
    assert got.is_router_external is False
    assert sorted(got.tags) == ["blue", "green"]
    assert got.project_id == "admin"
    assert got.revision_number == 0
    assert got.created_at.endswith("Z")


def test_create_vlan_provider_network(conn: Connection) -> None:
    created = conn.network.create_network(
        name=_name("vlan"), provider_network_type="vlan", provider_physical_network="physnet1",
        provider_segmentation_id=101,
    )
    got = conn.network.get_network(created.id)
    assert (got.provider_network_type, got.provider_physical_network,
            got.provider_segmentation_id) == ("vlan", "physnet1", 101)
    assert got.mtu == 1500


def test_list_get_and_find_network_by_name(conn: Connection) -> None:
    name = _name("find")
    created = conn.network.create_network(name=name)
    listed = list(conn.network.networks(name=name))
    assert [n.id for n in listed] == [created.id]
    assert created.id in {n.id for n in conn.network.networks()}
    assert conn.network.get_network(created.id).name == name
    found = conn.network.find_network(name)
    assert found is not None and found.id == created.id
    found_by_id = conn.network.find_network(created.id)
    assert found_by_id is not None and found_by_id.name == name
    assert conn.network.find_network(_name("absent")) is None


def test_update_network(conn: Connection, net: Any) -> None:
    new_name, revision = "renamed-" + net.name, net.revision_number
    conn.network.update_network(net, name=new_name, mtu=1400, is_admin_state_up=False,
                                description="new")
    got = conn.network.get_network(net.id)
    assert got.name == new_name
    assert (got.mtu, got.is_admin_state_up, got.description) == (1400, False, "new")
    assert got.revision_number == revision + 1


def test_network_tags_via_sdk(conn: Connection, net: Any) -> None:
    conn.network.set_tags(net, ["a", "b"])
    assert sorted(conn.network.get_network(net.id).tags) == ["a", "b"]
    conn.network.add_tag(net, "c")
    assert sorted(conn.network.get_network(net.id).tags) == ["a", "b", "c"]
    conn.network.remove_tag(net, "a")
    assert sorted(conn.network.get_network(net.id).tags) == ["b", "c"]
    tagged = {n.id for n in conn.network.networks(tags="b,c")}
    assert net.id in tagged
    assert net.id not in {n.id for n in conn.network.networks(tags="a")}
    assert net.id in {n.id for n in conn.network.networks(any_tags="a,c")}
    assert net.id not in {n.id for n in conn.network.networks(not_tags="b")}
    conn.network.remove_all_tags(net)
    assert conn.network.get_network(net.id).tags == []


def test_network_pagination_sees_every_item_once(conn: Connection) -> None:
    tag = _name("page")
    ids = {conn.network.create_network(name=_name("pg"), tags=[tag]).id for _ in range(5)}
    first = conn.network.get(f"/networks?limit=2&tags={tag}").json()
    assert len(first["networks"]) == 2
    assert [link["rel"] for link in first["networks_links"]] == ["next"]
    seen = [n.id for n in conn.network.networks(limit=2, tags=tag)]
    assert sorted(seen) == sorted(ids)
    desc = [n.name for n in conn.network.networks(limit=2, tags=tag, sort_key="name",
                                                   sort_dir="desc")]
    assert desc == sorted(desc, reverse=True) and len(desc) == 5


# --- subnets -----------------------------------------------------------------------------


def test_create_ipv4_subnet_with_gateway_pools_and_dns(conn: Connection, net: Any) -> None:
    created = conn.network.create_subnet(
        network_id=net.id, ip_version=4, cidr="10.1.0.0/24", gateway_ip="10.1.0.254",
        allocation_pools=[{"start": "10.1.0.10", "end": "10.1.0.100"}],
        dns_nameservers=["8.8.8.8", "1.1.1.1"], name=_name("v4"),
        host_routes=[{"destination": "192.168.0.0/16", "nexthop": "10.1.0.1"}],
    )
    got = conn.network.get_subnet(created.id)
    assert (got.network_id, got.ip_version, got.cidr) == (net.id, 4, "10.1.0.0/24")
    assert got.gateway_ip == "10.1.0.254"
    assert got.allocation_pools == [{"start": "10.1.0.10", "end": "10.1.0.100"}]
    assert got.dns_nameservers == ["8.8.8.8", "1.1.1.1"]
    assert got.host_routes == [{"destination": "192.168.0.0/16", "nexthop": "10.1.0.1"}]
    assert got.is_dhcp_enabled is True
    assert conn.network.get_network(net.id).subnet_ids == [created.id]
    found = conn.network.find_subnet(created.name)
    assert found is not None and found.id == created.id


def test_ipv4_subnet_defaults(conn: Connection, net: Any) -> None:
    created = conn.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.2.0.0/24")
    got = conn.network.get_subnet(created.id)
    assert got.gateway_ip == "10.2.0.1"
    assert got.allocation_pools == [{"start": "10.2.0.2", "end": "10.2.0.254"}]


def test_create_ipv6_subnet(conn: Connection, net: Any) -> None:
    created = conn.network.create_subnet(
        network_id=net.id, ip_version=6, cidr="fd00:1::/64", ipv6_ra_mode="slaac",
        ipv6_address_mode="slaac", name=_name("v6"),
    )
    got = conn.network.get_subnet(created.id)
    assert (got.ip_version, got.cidr, got.gateway_ip) == (6, "fd00:1::/64", "fd00:1::1")
    assert (got.ipv6_ra_mode, got.ipv6_address_mode) == ("slaac", "slaac")
    assert got.allocation_pools == [{"start": "fd00:1::2", "end": "fd00:1::ffff:ffff:ffff:ffff"}]
    assert [s.id for s in conn.network.subnets(network_id=net.id, ip_version=6)] == [created.id]


def test_update_subnet(conn: Connection, subnet: Any) -> None:
    revision = subnet.revision_number
    conn.network.update_subnet(subnet, name="renamed", dns_nameservers=["9.9.9.9"],
                               is_dhcp_enabled=False)
    got = conn.network.get_subnet(subnet.id)
    assert (got.name, got.dns_nameservers, got.is_dhcp_enabled) == ("renamed", ["9.9.9.9"],
                                                                     False)
    assert got.revision_number == revision + 1


# --- ports -------------------------------------------------------------------------------


def test_create_ports_by_subnet_explicit_ip_and_mac(conn: Connection, net: Any,
                                                    subnet: Any) -> None:
    by_subnet = conn.network.create_port(network_id=net.id, fixed_ips=[{"subnet_id": subnet.id}])
    explicit = conn.network.create_port(
        network_id=net.id, fixed_ips=[{"subnet_id": subnet.id, "ip_address": "10.0.0.50"}],
        name=_name("explicit"),
    )
    with_mac = conn.network.create_port(network_id=net.id, mac_address="fa:16:3e:00:11:22")

    got = conn.network.get_port(by_subnet.id)
    assert got.network_id == net.id
    assert len(got.fixed_ips) == 1 and got.fixed_ips[0]["subnet_id"] == subnet.id
    assert got.fixed_ips[0]["ip_address"].startswith("10.0.0.")
    assert got.mac_address.startswith("fa:16:3e:")
    assert got.status == "DOWN"
    assert got.binding_vnic_type == "normal"
    assert got.binding_vif_type == "unbound"
    default_sg = conn.network.find_security_group("default")
    assert default_sg is not None and got.security_group_ids == [default_sg.id]

    assert conn.network.get_port(explicit.id).fixed_ips == [
        {"subnet_id": subnet.id, "ip_address": "10.0.0.50"}]
    mac_port = conn.network.get_port(with_mac.id)
    assert mac_port.mac_address == "fa:16:3e:00:11:22"
    assert mac_port.fixed_ips[0]["subnet_id"] == subnet.id


def test_list_ports_filtered_by_network_and_fixed_ips(conn: Connection, net: Any,
                                                      subnet: Any) -> None:
    other = conn.network.create_network(name=_name("other"))
    conn.network.create_subnet(network_id=other.id, ip_version=4, cidr="10.0.0.0/24")
    a = conn.network.create_port(network_id=net.id,
                                 fixed_ips=[{"subnet_id": subnet.id, "ip_address": "10.0.0.21"}])
    b = conn.network.create_port(network_id=net.id,
                                 fixed_ips=[{"subnet_id": subnet.id, "ip_address": "10.0.0.22"}])
    c = conn.network.create_port(network_id=other.id,
                                 fixed_ips=[{"ip_address": "10.0.0.21"}])

    assert {p.id for p in conn.network.ports(network_id=net.id)} == {a.id, b.id}
    assert {p.id for p in conn.network.ports(network_id=other.id)} == {c.id}
    by_ip = {p.id for p in conn.network.ports(fixed_ips=["ip_address=10.0.0.21"])}
    assert {a.id, c.id} <= by_ip and b.id not in by_ip
    by_subnet = {p.id for p in conn.network.ports(fixed_ips=[f"subnet_id={subnet.id}"])}
    assert by_subnet == {a.id, b.id}
    both = {p.id for p in conn.network.ports(
        fixed_ips=[f"subnet_id={subnet.id}", "ip_address=10.0.0.22"])}
    assert both == {b.id}
    substr = {p.id for p in conn.network.ports(network_id=net.id,
                                               fixed_ips=["ip_address_substr=10.0.0.2"])}
    assert substr == {a.id, b.id}


def test_update_port(conn: Connection, net: Any, subnet: Any) -> None:
    port = conn.network.create_port(network_id=net.id, name=_name("upd"))
    revision = port.revision_number
    sg = conn.network.create_security_group(name=_name("portsg"))
    conn.network.update_port(
        port, name="renamed", is_admin_state_up=False, security_group_ids=[sg.id],
        fixed_ips=[{"subnet_id": subnet.id, "ip_address": "10.0.0.77"}],
        allowed_address_pairs=[{"ip_address": "10.0.0.200"}], device_owner="compute:nova",
    )
    got = conn.network.get_port(port.id)
    assert (got.name, got.is_admin_state_up) == ("renamed", False)
    assert got.security_group_ids == [sg.id]
    assert got.fixed_ips == [{"subnet_id": subnet.id, "ip_address": "10.0.0.77"}]
    assert got.allowed_address_pairs == [{"ip_address": "10.0.0.200",
                                          "mac_address": got.mac_address}]
    assert got.device_owner == "compute:nova"
    assert got.revision_number > revision


def test_port_pagination_sees_every_item_once(conn: Connection, net: Any) -> None:
    ids = {conn.network.create_port(network_id=net.id).id for _ in range(5)}
    first = conn.network.get(f"/ports?limit=2&network_id={net.id}").json()
    assert len(first["ports"]) == 2
    assert [link["rel"] for link in first["ports_links"]] == ["next"]
    seen = [p.id for p in conn.network.ports(limit=2, network_id=net.id)]
    assert len(seen) == 5 and set(seen) == ids


# --- security groups ---------------------------------------------------------------------


def test_security_group_with_rules(conn: Connection) -> None:
    sg = conn.network.create_security_group(name=_name("sg"), description="web")
    peer = conn.network.create_security_group(name=_name("peer"))
    tcp = conn.network.create_security_group_rule(
        security_group_id=sg.id, direction="ingress", ether_type="IPv4", protocol="tcp",
        port_range_min=8000, port_range_max=8080, remote_ip_prefix="192.168.0.0/16",
    )
    icmp = conn.network.create_security_group_rule(
        security_group_id=sg.id, direction="ingress", ether_type="IPv4", protocol="icmp",
        port_range_min=8, port_range_max=0,
    )
    group = conn.network.create_security_group_rule(
        security_group_id=sg.id, direction="ingress", ether_type="IPv6",
        remote_group_id=peer.id,
    )

    got = conn.network.get_security_group(sg.id)
    assert (got.name, got.description) == (sg.name, "web")
    assert {r["id"] for r in got.security_group_rules} >= {tcp.id, icmp.id, group.id}

    rule = conn.network.get_security_group_rule(tcp.id)
    assert (rule.direction, rule.ether_type, rule.protocol) == ("ingress", "IPv4", "tcp")
    assert (rule.port_range_min, rule.port_range_max) == (8000, 8080)
    assert rule.remote_ip_prefix == "192.168.0.0/16"
    icmp_rule = conn.network.get_security_group_rule(icmp.id)
    assert (icmp_rule.protocol, icmp_rule.port_range_min, icmp_rule.port_range_max) == (
        "icmp", 8, 0)
    assert conn.network.get_security_group_rule(group.id).remote_group_id == peer.id

    listed = list(conn.network.security_group_rules(security_group_id=sg.id))
    assert all(r.security_group_id == sg.id for r in listed)
    ours = {tcp.id, icmp.id, group.id}
    defaults = [r for r in listed if r.id not in ours]
    assert sorted((r.direction, r.ether_type) for r in defaults) == [
        ("egress", "IPv4"), ("egress", "IPv6")]
    assert {r.id for r in listed} >= ours
    ingress = {r.id for r in conn.network.security_group_rules(security_group_id=sg.id,
                                                                direction="ingress")}
    assert ingress == ours

    conn.network.update_security_group(sg, name="renamed-sg", description="changed")
    assert conn.network.get_security_group(sg.id).name == "renamed-sg"


def test_default_security_group_via_sdk(conn: Connection) -> None:
    groups = list(conn.network.security_groups(name="default"))
    assert len(groups) <= 1
    conn.network.create_port(network_id=conn.network.create_network(name=_name("d")).id)
    groups = list(conn.network.security_groups(name="default"))
    assert len(groups) == 1
    rules = list(conn.network.security_group_rules(security_group_id=groups[0].id))
    assert sorted((r.direction, r.ether_type, r.remote_group_id) for r in rules) == sorted([
        ("egress", "IPv4", None), ("egress", "IPv6", None),
        ("ingress", "IPv4", groups[0].id), ("ingress", "IPv6", groups[0].id)])


# --- bulk and conditional requests -------------------------------------------------------


def test_bulk_create_ports_and_rules(conn: Connection, net: Any, subnet: Any) -> None:
    ports = list(conn.network.create_ports([
        {"network_id": net.id, "name": "bulk-a",
         "fixed_ips": [{"subnet_id": subnet.id, "ip_address": "10.0.0.31"}]},
        {"network_id": net.id, "name": "bulk-b"},
    ]))
    assert sorted(p.name for p in ports) == ["bulk-a", "bulk-b"]
    listed = {p.name: p for p in conn.network.ports(network_id=net.id)}
    assert set(listed) == {"bulk-a", "bulk-b"}
    assert listed["bulk-a"].fixed_ips == [{"subnet_id": subnet.id, "ip_address": "10.0.0.31"}]

    sg = conn.network.create_security_group(name=_name("bulk"))
    rules = list(conn.network.create_security_group_rules([
        {"security_group_id": sg.id, "direction": "ingress", "protocol": "tcp",
         "port_range_min": 80, "port_range_max": 80},
        {"security_group_id": sg.id, "direction": "ingress", "protocol": "udp",
         "port_range_min": 53, "port_range_max": 53},
    ]))
    assert len(rules) == 2
    stored = {r.protocol for r in conn.network.security_group_rules(security_group_id=sg.id,
                                                                    direction="ingress")}
    assert stored == {"tcp", "udp"}


def test_if_revision_mismatch_raises_precondition_failed(conn: Connection, net: Any) -> None:
    current = conn.network.get_network(net.id).revision_number
    with pytest.raises(exceptions.PreconditionFailedException) as err:
        conn.network.update_network(net.id, name="stale", if_revision=current + 5)
    assert _neutron_type(err.value) == "RevisionNumberConstraintFailed"
    assert conn.network.get_network(net.id).name == net.name
    conn.network.update_network(net.id, name="fresh", if_revision=current)
    assert conn.network.get_network(net.id).name == "fresh"


# --- deletion ----------------------------------------------------------------------------


def test_delete_everything_in_reverse_order(conn: Connection) -> None:
    net = conn.network.create_network(name=_name("del"))
    sub4 = conn.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.9.0.0/24")
    sub6 = conn.network.create_subnet(network_id=net.id, ip_version=6, cidr="fd00:9::/64")
    sg = conn.network.create_security_group(name=_name("delsg"))
    rule = conn.network.create_security_group_rule(
        security_group_id=sg.id, direction="ingress", protocol="tcp", port_range_min=22,
        port_range_max=22)
    port = conn.network.create_port(network_id=net.id, security_group_ids=[sg.id])
    assert {f["subnet_id"] for f in conn.network.get_port(port.id).fixed_ips} == {sub4.id,
                                                                                  sub6.id}

    with pytest.raises(exceptions.ConflictException):
        conn.network.delete_security_group(sg, ignore_missing=False)
    conn.network.delete_port(port, ignore_missing=False)
    conn.network.delete_security_group_rule(rule, ignore_missing=False)
    conn.network.delete_security_group(sg, ignore_missing=False)
    conn.network.delete_subnet(sub6, ignore_missing=False)
    conn.network.delete_subnet(sub4, ignore_missing=False)
    assert conn.network.get_network(net.id).subnet_ids == []
    conn.network.delete_network(net, ignore_missing=False)

    for getter, res in ((conn.network.get_port, port),
                        (conn.network.get_security_group_rule, rule),
                        (conn.network.get_security_group, sg),
                        (conn.network.get_subnet, sub4), (conn.network.get_subnet, sub6),
                        (conn.network.get_network, net)):
        with pytest.raises(exceptions.NotFoundException):
            getter(res.id)
    assert list(conn.network.ports(network_id=net.id)) == []
    assert list(conn.network.security_group_rules(security_group_id=sg.id)) == []
    conn.network.delete_network(net, ignore_missing=True)


# --- errors ------------------------------------------------------------------------------


def _neutron_type(exc: exceptions.HttpException) -> str:
    assert exc.response is not None
    return str(exc.response.json()["NeutronError"]["type"])


def test_missing_network_raises_not_found(conn: Connection) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(exceptions.NotFoundException) as err:
        conn.network.get_network(missing)
    assert err.value.details == f"Network {missing} could not be found."
    assert _neutron_type(err.value) == "NetworkNotFound"
    with pytest.raises(exceptions.NotFoundException) as err:
        conn.network.update_network(missing, name="x")
    assert err.value.details == f"Network {missing} could not be found."
    with pytest.raises(exceptions.NotFoundException):
        conn.network.delete_network(missing, ignore_missing=False)


def test_mac_in_use_raises_conflict(conn: Connection, net: Any) -> None:
    mac = "fa:16:3e:aa:bb:cc"
    conn.network.create_port(network_id=net.id, mac_address=mac)
    with pytest.raises(exceptions.ConflictException) as err:
        conn.network.create_port(network_id=net.id, mac_address=mac)
    assert err.value.details == (f"Unable to complete operation for network {net.id}. "
                                 f"The mac address {mac} is in use.")
    assert _neutron_type(err.value) == "MacAddressInUse"


def test_ip_in_use_raises_conflict(conn: Connection, net: Any, subnet: Any) -> None:
    fixed = [{"subnet_id": subnet.id, "ip_address": "10.0.0.99"}]
    conn.network.create_port(network_id=net.id, fixed_ips=fixed)
    with pytest.raises(exceptions.ConflictException) as err:
        conn.network.create_port(network_id=net.id, fixed_ips=fixed)
    assert _neutron_type(err.value) == "IpAddressAlreadyAllocated"
    assert err.value.details == (f"IP address 10.0.0.99 already allocated in subnet "
                                 f"{subnet.id}")


def test_duplicate_rule_raises_conflict(conn: Connection) -> None:
    sg = conn.network.create_security_group(name=_name("dup"))
    spec = {"security_group_id": sg.id, "direction": "ingress", "protocol": "tcp",
            "port_range_min": 22, "port_range_max": 22, "ether_type": "IPv4"}
    first = conn.network.create_security_group_rule(**spec)
    with pytest.raises(exceptions.ConflictException) as err:
        conn.network.create_security_group_rule(**spec)
    assert err.value.details == f"Security group rule already exists. Rule id is {first.id}."
    assert _neutron_type(err.value) == "SecurityGroupRuleExists"


def test_bad_cidr_raises_bad_request(conn: Connection, net: Any) -> None:
    with pytest.raises(exceptions.BadRequestException) as err:
        conn.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.0.0.0/33")
    assert err.value.details == "Invalid input for cidr. Reason: '10.0.0.0/33' is not a valid " \
                                "IP subnet."
    assert _neutron_type(err.value) == "InvalidInput"
    assert list(conn.network.subnets(network_id=net.id)) == []


def test_network_in_use_raises_conflict(conn: Connection, net: Any) -> None:
    conn.network.create_port(network_id=net.id, device_owner="compute:nova")
    with pytest.raises(exceptions.ConflictException) as err:
        conn.network.delete_network(net, ignore_missing=False)
    assert err.value.details == (f"Unable to complete operation on network {net.id}. "
                                 "There are one or more ports still in use on the network.")
    assert conn.network.get_network(net.id).id == net.id

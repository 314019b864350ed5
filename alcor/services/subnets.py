"""Subnets: creation with Neutron's checks (CIDR and ip_version, DHCP-compatible prefixes,
gateway, allocation pools, DNS servers, host routes, IPv6 modes, overlap within the network),
``router:external`` mirrored from the network, re-validated updates, and deletion that refuses
while ports other than DHCP ports hold addresses from the subnet.

Address arithmetic lives in ``alcor.ipam.subnets``; addresses themselves are allocated by the
port service (table ``ip_allocations``), which this module only reads, or releases when a
subnet goes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, ClassVar

from alcor import errors
from alcor.context import RequestContext
from alcor.db.store import Transaction
from alcor.dpm import outbox
from alcor.ipam import subnets as cidrs
from alcor.ipam.subnets import IPAddress, IPNetwork, Pool
from alcor.query import Sharing
from alcor.services.resource import ResourceService, Row, stamp_new
from alcor.timestamps import utcnow

MAX_DNS_NAMESERVERS = 5
"""Neutron's ``max_dns_nameservers`` default."""
MAX_HOST_ROUTES = 20
"""Neutron's ``max_subnet_host_routes`` default."""

DHCP_OWNER = "network:dhcp"
"""Ports whose addresses go with the subnet instead of keeping it in use."""
ROUTER_INTERFACE_OWNERS = frozenset({
    "network:router_interface",
    "network:ha_router_replicated_interface",
    "network:router_interface_distributed",
})
AUTO_ADDRESS_MODES = ("slaac", "dhcpv6-stateless")
SERVICE_TYPE_PREFIXES = ("network:", "neutron:", "compute:")
WRITE_ONLY = ("prefixlen", "use_default_subnetpool")
"""Create-body keys that steer creation but are not stored."""


def _invalid(message: str) -> errors.InvalidInput:
    return errors.InvalidInput(error_message=message)


def _bad_request(message: str) -> errors.BadRequest:
    return errors.BadRequest(resource="subnets", msg=message)


# --- create-body checks (Neutron's _create_subnet_precommit order) -----------------------


def _check_cidr_requested(item: Mapping[str, Any]) -> None:
    """Refuse what would need a subnet pool, which Alcor does not offer."""
    has_cidr = item.get("cidr") is not None
    if has_cidr and item.get("prefixlen") is not None:
        raise _bad_request("cidr and prefixlen must not be supplied together")
    if item.get("use_default_subnetpool") and item.get("subnetpool_id"):
        raise _bad_request("subnetpool_id and use_default_subnetpool cannot both be specified")
    if item.get("subnetpool_id"):
        raise _bad_request("Subnet pools are not supported: give a cidr, not subnetpool_id")
    if item.get("use_default_subnetpool"):
        raise _bad_request(f"No default subnetpool found for IPv{item['ip_version']}")
    if item.get("prefixlen") is not None:
        raise _bad_request("Subnet pools are not supported: give a cidr, not prefixlen")
    if not has_cidr:
        raise _bad_request("a subnetpool must be specified in the absence of a cidr")


# --- attribute checks shared by create and update (Neutron's _validate_subnet) ----------


def _check_version(version: int, value: str, name: str) -> None:
    if ipaddress.ip_interface(value).version != version:
        raise _invalid(f"{name} '{value}' does not match the ip_version '{version}'")


def _check_dhcp_servable(net: IPNetwork) -> None:
    """Refuse DHCP on a range a DHCP server cannot serve (checked when DHCP gets enabled)."""
    if net.prefixlen > (30 if net.version == 4 else 126):
        raise _invalid("Subnet has a prefix length that is incompatible with DHCP service "
                       "enabled")
    if net.is_multicast:
        raise _invalid("Multicast IP subnet is not supported if enable_dhcp is True")
    if net.is_loopback:
        raise _invalid("Loopback IP subnet is not supported if enable_dhcp is True")
    if net.version == 4 and int(net.network_address) == 0:
        raise _invalid("First IP '0.0.0.0' of network is not supported if enable_dhcp is True")


def _check_gateway(net: IPNetwork, gateway: str) -> None:
    _check_version(net.version, gateway, "gateway_ip")
    if cidrs.gateway_is_invalid(net, ipaddress.ip_address(gateway)):
        raise _invalid("Gateway is not valid on subnet")


def _check_nameservers(version: int, servers: list[str], subnet_id: str) -> None:
    if len(servers) > MAX_DNS_NAMESERVERS:
        raise errors.DNSNameServersExhausted(subnet_id=subnet_id, quota=MAX_DNS_NAMESERVERS)
    for server in servers:
        _check_version(version, server, "dns_nameserver")


def _check_host_routes(version: int, routes: list[dict[str, str]], subnet_id: str) -> None:
    if len(routes) > MAX_HOST_ROUTES:
        raise errors.HostRoutesExhausted(subnet_id=subnet_id, quota=MAX_HOST_ROUTES)
    for route in routes:
        _check_version(version, route["nexthop"], "nexthop")
        _check_version(version, route["destination"], "destination")


def _normal_routes(routes: list[dict[str, str]]) -> list[dict[str, str]]:
    return [
        {"destination": str(ipaddress.ip_network(r["destination"], strict=False)),
         "nexthop": str(ipaddress.ip_address(r["nexthop"]))}
        for r in routes
    ]


def is_auto_address(subnet: Mapping[str, Any]) -> bool:
    """Whether hosts configure their own addresses (SLAAC or DHCPv6-stateless)."""
    return (subnet.get("ipv6_address_mode") in AUTO_ADDRESS_MODES
            or subnet.get("ipv6_ra_mode") in AUTO_ADDRESS_MODES)


def _check_v6_modes(spec: Mapping[str, Any], net: IPNetwork) -> None:
    ra_mode, address_mode = spec.get("ipv6_ra_mode"), spec.get("ipv6_address_mode")
    if (ra_mode or address_mode) and not spec.get("enable_dhcp", True):
        raise _invalid("ipv6_ra_mode or ipv6_address_mode cannot be set when enable_dhcp is "
                       "set to False")
    if ra_mode and address_mode and ra_mode != address_mode:
        raise _invalid(f"ipv6_ra_mode set to '{ra_mode}' with ipv6_address_mode set to "
                       f"'{address_mode}' is not valid. If both attributes are set, they must "
                       "be the same value")
    if is_auto_address(spec) and net.prefixlen != 64:
        raise _invalid(f"Invalid CIDR {net} for IPv6 address mode. OpenStack uses the EUI-64 "
                       "address format, which requires the prefix to be /64")


def _check_v6_dhcp_update(changes: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    if "enable_dhcp" in changes and not changes["enable_dhcp"] and (
        current.get("ipv6_ra_mode") or current.get("ipv6_address_mode")
    ):
        raise _invalid("Cannot disable enable_dhcp with ipv6 attributes set")


def _check_modes(spec: Mapping[str, Any], net: IPNetwork, current: Row | None) -> None:
    if net.version == 4:
        for name in ("ipv6_ra_mode", "ipv6_address_mode"):
            if spec.get(name) is not None:
                raise _invalid(f"{name} is not valid when ip_version is 4")
    elif current is None:
        _check_v6_modes(spec, net)
    else:
        _check_v6_dhcp_update(spec, current)


def _check_service_types(service_types: list[str]) -> None:
    for service_type in service_types:
        if not service_type.startswith(SERVICE_TYPE_PREFIXES):
            raise errors.InvalidSubnetServiceType(service_type=service_type)


def check_spec(spec: Mapping[str, Any], net: IPNetwork, current: Row | None = None) -> None:
    """Check a create body, or an update's changes (``current`` is then the stored row)."""
    _check_version(spec["ip_version"], str(net), "cidr")
    dhcp_was_enabled = bool(current and current["enable_dhcp"])
    if spec.get("enable_dhcp") and not dhcp_was_enabled:
        _check_dhcp_servable(net)
    subnet_id = current["id"] if current else "new subnet"
    if spec.get("gateway_ip") is not None:
        _check_gateway(net, spec["gateway_ip"])
    if spec.get("dns_nameservers"):
        _check_nameservers(net.version, spec["dns_nameservers"], subnet_id)
    if spec.get("host_routes"):
        _check_host_routes(net.version, spec["host_routes"], subnet_id)
    _check_modes(spec, net, current)
    if spec.get("service_types"):
        _check_service_types(spec["service_types"])


# --- reads over other tables -------------------------------------------------------------


def _network_visible(ctx: RequestContext, network: Mapping[str, Any]) -> bool:
    return (ctx.is_admin or network["project_id"] == ctx.project_id or bool(network["shared"])
            or bool(network["router:external"]))


def _check_cidr_free(txn: Transaction, net: IPNetwork, network_id: str) -> None:
    """Neutron refuses /0 and any overlap with another subnet of the same network."""
    if net.prefixlen == 0:
        raise _invalid("0 is not allowed as CIDR prefix length")
    for cidr in txn.scalars("subnets", "cidr", {"network_id": network_id}):
        other = cidrs.parse_cidr(cidr)
        if other.version == net.version and other.overlaps(net):
            raise _invalid(f"Requested subnet with cidr: {net} for network: {network_id} "
                           "overlaps with another subnet")


def _holders(txn: Transaction, subnet_id: str, ip: str) -> list[Row]:
    """The ports holding ``ip`` in this subnet (id and device_owner)."""
    port_ids = txn.scalars("ip_allocations", "port_id", {"subnet_id": subnet_id, "ip_address": ip})
    if not port_ids:
        return []
    return txn.select("ports", {"id": port_ids}, columns=("id", "device_owner"))


def _check_gateway_change(txn: Transaction, row: Row, new: IPAddress) -> None:
    """Moving the gateway: the old one must not be a router's, the new one nobody else's."""
    if row["gateway_ip"] is not None:
        for port in _holders(txn, row["id"], row["gateway_ip"]):
            if port["device_owner"] in ROUTER_INTERFACE_OWNERS:
                raise errors.GatewayIpInUse(ip_address=row["gateway_ip"], port_id=port["id"])
    for port in _holders(txn, row["id"], str(new)):
        if port["device_owner"] not in ROUTER_INTERFACE_OWNERS:
            raise errors.IpAddressInUse(net_id=row["network_id"], ip_address=str(new))


# --- writes beyond the subnet row -------------------------------------------------------


def _release_addresses(txn: Transaction, subnet_id: str, ports: list[Row]) -> None:
    """Drop the subnet's allocations and its entries in those ports' fixed_ips."""
    txn.delete("ip_allocations", {"subnet_id": subnet_id})
    now = utcnow()
    for port in ports:
        values = {
            "fixed_ips": [f for f in port["fixed_ips"] if f.get("subnet_id") != subnet_id],
            "revision_number": port["revision_number"] + 1,
            "updated_at": now,
        }
        txn.update("ports", {"id": port["id"]}, values)
        outbox.append(txn, "port", {**port, **values}, outbox.UPDATE)


def _remove(txn: Transaction, row: Row) -> None:
    txn.delete("tags", {"resource_id": row["id"]})
    txn.delete("subnets", {"id": row["id"]})
    outbox.append(txn, "subnet", row, outbox.DELETE)


def delete_network_subnets(txn: Transaction, network_id: str) -> None:
    """Delete every subnet of a network that is being deleted (its ports are gone already)."""
    for row in txn.select("subnets", {"network_id": network_id}, order_by=("created_at", "id")):
        txn.delete("ip_allocations", {"subnet_id": row["id"]})
        _remove(txn, row)


class SubnetService(ResourceService):
    table: ClassVar[str] = "subnets"
    resource_type: ClassVar[str] = "subnet"
    not_found = errors.SubnetNotFound
    not_found_key = "subnet_id"
    sharing = Sharing(parent_key="network_id", parent_table="networks",
                      parent_columns=("shared", "router:external"))

    def find_visible(self, txn: Transaction, ctx: RequestContext, id_: str) -> Row:
        """The subnet, visible to its project, admins, and everyone who sees its network
        (the network's project, and everyone on a shared or external network)."""
        row = txn.get(self.table, id_)
        if row is None or not (self.visible(ctx, row) or any(
            _network_visible(ctx, n) for n in txn.select(
                "networks", {"id": row["network_id"]},
                columns=("id", "project_id", "shared", "router:external"))
        )):
            raise errors.SubnetNotFound(subnet_id=id_)
        return row

    # --- create ---------------------------------------------------------------------------

    def create_one(self, txn: Transaction, ctx: RequestContext, item: Row) -> Row:
        _check_cidr_requested(item)
        net = cidrs.parse_cidr(item["cidr"])
        check_spec(item, net)
        self._lock_network(txn, ctx, item["network_id"])
        gateway = _creation_gateway(item, net)
        pools = _creation_pools(item, net, gateway)
        _check_cidr_free(txn, net, item["network_id"])
        row = stamp_new({k: v for k, v in item.items() if k not in WRITE_ONLY})
        row.update({
            "cidr": str(net),
            "gateway_ip": None if gateway is None else str(gateway),
            "allocation_pools": [p.as_dict() for p in pools],
            "host_routes": _normal_routes(item.get("host_routes") or []),
            "subnetpool_id": None,
        })
        txn.insert(self.table, row)
        return row

    def _lock_network(self, txn: Transaction, ctx: RequestContext, network_id: str) -> Row:
        """The subnet's network, locked so concurrent creates check overlap in turn."""
        found = txn.select("networks", {"id": network_id},
                           columns=("id", "project_id", "shared", "router:external"),
                           for_update=True)
        if not found or not _network_visible(ctx, found[0]):
            raise errors.NetworkNotFound(net_id=network_id)
        network = found[0]
        if not ctx.is_admin and network["project_id"] != ctx.project_id:
            if network["shared"]:
                raise errors.PolicyNotAuthorized(action="rule:create_subnet")
            raise errors.HTTPForbidden(msg=f"Tenant {ctx.project_id} not allowed to create "
                                       "subnet on this network")
        return network

    # --- read -----------------------------------------------------------------------------

    def decorate(self, txn: Transaction, rows: list[Row]) -> list[Row]:
        """Mirror each network's ``router:external`` (one query for the whole page)."""
        if not rows:
            return rows
        network_ids = sorted({r["network_id"] for r in rows})
        external = {
            n["id"]: bool(n["router:external"])
            for n in txn.select("networks", {"id": network_ids},
                                columns=("id", "router:external"))
        }
        for r in rows:
            r["router:external"] = external.get(r["network_id"], False)
        return rows

    # --- update ---------------------------------------------------------------------------

    def before_update(self, txn: Transaction, ctx: RequestContext, row: Row, changes: Row) -> Row:
        net = cidrs.parse_cidr(row["cidr"])
        check_spec({**changes, "ip_version": row["ip_version"]}, net, current=row)
        old_gateway = _address_or_none(row["gateway_ip"])
        gateway = old_gateway
        if "gateway_ip" in changes:
            gateway = _address_or_none(changes["gateway_ip"])
            if gateway is not None and gateway != old_gateway:
                _check_gateway_change(txn, row, gateway)
            changes["gateway_ip"] = None if gateway is None else str(gateway)
        new_pools = None
        if changes.get("allocation_pools") is not None:
            new_pools = cidrs.pools_from_request(net, changes["allocation_pools"])
            changes["allocation_pools"] = [p.as_dict() for p in new_pools]
        if gateway != old_gateway or new_pools is not None:
            pools = new_pools if new_pools is not None else cidrs.pools_from_rows(
                row["allocation_pools"])
            cidrs.check_gateway_outside_pools(gateway, pools)
        if "host_routes" in changes:
            changes["host_routes"] = _normal_routes(changes["host_routes"] or [])
        return changes

    # --- delete ---------------------------------------------------------------------------

    def before_delete(self, txn: Transaction, ctx: RequestContext, row: Row) -> None:
        """Refuse while a router interface, or (unless the subnet is auto-addressed) any port
        but a DHCP port, holds an address from the subnet; release the remaining addresses."""
        # Lock the row first: a port allocating from this subnet concurrently waits for us
        # (and then fails its foreign key) instead of slipping past the check below.
        txn.select(self.table, {"id": row["id"]}, columns=("id",), for_update=True)
        port_ids = sorted(set(txn.scalars("ip_allocations", "port_id", {"subnet_id": row["id"]})))
        if not port_ids:
            return
        ports = txn.select("ports", {"id": port_ids},
                           columns=("id", "project_id", "device_owner", "fixed_ips",
                                    "revision_number"))
        owners = {p["device_owner"] for p in ports}
        if owners & ROUTER_INTERFACE_OWNERS:
            raise errors.SubnetInUse(subnet_id=row["id"])
        if not is_auto_address(row) and owners - {DHCP_OWNER}:
            raise errors.SubnetInUse(subnet_id=row["id"])
        _release_addresses(txn, row["id"], ports)


def _address_or_none(value: str | None) -> IPAddress | None:
    return None if value is None else ipaddress.ip_address(value)


def _creation_gateway(item: Mapping[str, Any], net: IPNetwork) -> IPAddress | None:
    """The gateway asked for; Neutron's default when the body names none; None for null."""
    if "gateway_ip" not in item:
        return cidrs.default_gateway(net)
    return _address_or_none(item["gateway_ip"])


def _creation_pools(item: Mapping[str, Any], net: IPNetwork, gateway: IPAddress | None
                    ) -> list[Pool]:
    if item.get("allocation_pools") is None:
        return cidrs.default_pools(net, gateway)
    pools = cidrs.pools_from_request(net, item["allocation_pools"])
    cidrs.check_gateway_outside_pools(gateway, pools)
    return pools

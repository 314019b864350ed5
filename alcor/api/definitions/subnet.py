"""The subnet resource: an IPv4 or IPv6 range of a network with its gateway, pools,
DHCP and DNS settings."""

from __future__ import annotations

import ipaddress
from typing import Any

from alcor.api import validators as v
from alcor.api.attributes import NO_DEFAULT, REQUIRED, Attribute, Resource, build
from alcor.api.definitions.standard import standard

IPV6_MODES = (None, "slaac", "dhcpv6-stateful", "dhcpv6-stateless")


def _pool(entry: dict[str, Any]) -> str | None:
    return v.ip_address(entry["start"]) or v.ip_address(entry["end"])


def _subnet_cidr(value: Any) -> str | None:
    """Neutron's ``type:subnet``: a prefix with its length, IPv4 written canonically.

    Host bits are allowed; the service stores the network (``10.0.0.5/24`` is kept as
    ``10.0.0.0/24``).
    """
    if not isinstance(value, str) or any(c.isspace() for c in value):
        return f"'{value}' is not a valid IP subnet"
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        return f"'{value}' is not a valid IP subnet"
    if "/" not in value or (iface.version == 4 and str(iface) != value):
        return f"'{value}' isn't a recommended CIDR, '{iface.network}' is recommended"
    return None


def _route_cidr(value: Any) -> str | None:
    """Neutron's ``type:route_cidr``: a network address with its length, not loopback."""
    if not isinstance(value, str) or any(c.isspace() for c in value):
        return f"'{value}' is not a valid CIDR"
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        return f"'{value}' is not a valid CIDR"
    if "/" not in value or iface.ip != iface.network.network_address:
        return f"'{value}' is not a recognized CIDR, '{iface.network}' is recommended"
    if iface.network.is_loopback:
        return f"'{value}' is not a routable CIDR"
    return None


def _route(entry: dict[str, Any]) -> str | None:
    return _route_cidr(entry["destination"]) or v.ip_address(entry["nexthop"])


_route_list = v.list_of_dicts(["destination", "nexthop"], item=_route)


def _host_routes(value: Any) -> str | None:
    if (msg := _route_list(value)) is not None:
        return msg
    seen: set[tuple[str, str]] = set()
    for route in value:
        key = (route["destination"], route["nexthop"])
        if key in seen:
            return f"Duplicate hostroute '{route}'"
        seen.add(key)
    return None


def _nameservers(value: Any) -> str | None:
    if not isinstance(value, list):
        return f"Invalid data format for nameserver: '{value}'"
    seen: set[Any] = set()
    for item in value:
        if (msg := v.ip_address(item)) is not None:
            return f"'{item}' is not a valid nameserver. {msg}"
        if item in seen:
            return f"Duplicate nameserver '{item}'"
        seen.add(item)
    return None


def _gateway(value: Any) -> str | None:
    return None if value is None else v.ip_address(value)


RESOURCE = Resource(
    name="subnet",
    collection="subnets",
    table="subnets",
    description="An IP address block of a network.",
    attributes=build(
        *standard(),
        Attribute("network_id", default=REQUIRED, validate=v.uuid_value, is_filter=True,
                  is_sort_key=True),
        Attribute("ip_version", kind="integer", default=REQUIRED, convert=v.to_int,
                  validate=v.values([4, 6]), is_filter=True, is_sort_key=True),
        Attribute("cidr", default=NO_DEFAULT, validate=_subnet_cidr, is_filter=True,
                  is_sort_key=True),
        Attribute("prefixlen", kind="integer", default=NO_DEFAULT, convert=v.to_int,
                  is_visible=False),
        Attribute("gateway_ip", allow_put=True, default=NO_DEFAULT, validate=_gateway,
                  is_filter=True, is_sort_key=True),
        Attribute("allocation_pools", kind="array", allow_put=True, default=NO_DEFAULT,
                  validate=v.list_of_dicts(["start", "end"], item=_pool)),
        Attribute("dns_nameservers", kind="array", allow_put=True, default=list,
                  convert=v.to_list, validate=_nameservers),
        Attribute("host_routes", kind="array", allow_put=True, default=list,
                  convert=v.to_list, validate=_host_routes),
        Attribute("enable_dhcp", kind="boolean", allow_put=True, default=True,
                  convert=v.to_boolean, is_filter=True, is_sort_key=True),
        Attribute("ipv6_ra_mode", default=None, validate=v.values(IPV6_MODES),
                  is_filter=True, is_sort_key=True),
        Attribute("ipv6_address_mode", default=None, validate=v.values(IPV6_MODES),
                  is_filter=True, is_sort_key=True),
        Attribute("service_types", kind="array", allow_put=True, default=list,
                  convert=v.to_list, validate=v.string_list(255)),
        Attribute("segment_id", allow_put=True, default=None, validate=v.uuid_or_none,
                  is_filter=True),
        Attribute("subnetpool_id", default=None, validate=v.uuid_or_none, is_filter=True),
        Attribute("use_default_subnetpool", kind="boolean", default=False,
                  convert=v.to_boolean, is_visible=False),
        Attribute("dns_publish_fixed_ip", kind="boolean", allow_put=True, default=False,
                  convert=v.to_boolean),
        Attribute("router:external", kind="boolean", allow_post=False, is_filter=False),
    ),
)

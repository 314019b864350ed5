"""The router resource: a distributed L3 router joining subnets, with an optional external
gateway (router, ext-gw-mode), extra routes (extraroute) and the DVR, HA, flavor and
availability-zone attributes Neutron shows."""

from __future__ import annotations

from typing import Any

from alcor.api import validators as v
from alcor.api.attributes import Attribute, Resource, build
from alcor.api.definitions.standard import standard
from alcor.api.definitions.subnet import RESOURCE as SUBNET

GATEWAY_KEYS = ("network_id", "enable_snat", "external_fixed_ips")

ROUTES: Attribute = SUBNET.attributes["host_routes"]
"""Neutron checks a router's routes with the subnet's ``type:hostroutes`` validator."""


def _external_fixed_ips(value: Any) -> list[dict[str, Any]]:
    """Neutron's ``type:fixed_ips``: dicts with a valid ``ip_address`` and/or ``subnet_id``,
    no address twice."""
    entries = v.to_list(value)
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            raise ValueError(f"Invalid data format for fixed IP: '{entry}'")
        if extra := sorted(entry.keys() - {"ip_address", "subnet_id"}):
            raise ValueError(f"Unexpected keys supplied: {', '.join(extra)}")
        if "ip_address" in entry:
            if entry["ip_address"] in seen:
                raise ValueError(f"Duplicate IP address '{entry['ip_address']}'")
            if (msg := v.ip_address(entry["ip_address"])) is not None:
                raise ValueError(msg)
            seen.add(entry["ip_address"])
        if "subnet_id" in entry and (msg := v.uuid_value(entry["subnet_id"])) is not None:
            raise ValueError(msg)
    return entries


def to_gateway_info(value: Any) -> dict[str, Any] | None:
    """Neutron's ``type:dict_or_nodata`` for ``external_gateway_info``: null or ``{}`` (no
    gateway), else ``network_id`` (required), ``enable_snat``, ``external_fixed_ips``."""
    if value is None or value == {}:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"'{value}' is not a dictionary")
    if "network_id" not in value:
        raise ValueError("Validation of dictionary's keys failed. Expected keys: "
                         f"{{'network_id'}} Provided keys: {set(value)}")
    if extra := sorted(value.keys() - set(GATEWAY_KEYS)):
        raise ValueError(f"Unexpected keys supplied: {', '.join(extra)}")
    if (msg := v.uuid_value(value["network_id"])) is not None:
        raise ValueError(msg)
    info: dict[str, Any] = {"network_id": value["network_id"]}
    if "enable_snat" in value:
        info["enable_snat"] = v.to_boolean(value["enable_snat"])
    if value.get("external_fixed_ips") is not None:
        info["external_fixed_ips"] = _external_fixed_ips(value["external_fixed_ips"])
    return info


RESOURCE = Resource(
    name="router",
    collection="routers",
    table="routers",
    description="An L3 router between subnets, with an optional gateway to an external "
                "network.",
    attributes=build(
        *standard(),
        Attribute("admin_state_up", kind="boolean", allow_put=True, default=True,
                  convert=v.to_boolean, is_filter=True, is_sort_key=True),
        Attribute("status", allow_post=False, is_filter=True, is_sort_key=True),
        Attribute("external_gateway_info", kind="object", allow_put=True, default=None,
                  convert=to_gateway_info),
        Attribute("routes", kind="array", allow_post=False, allow_put=True,
                  convert=v.to_list, validate=ROUTES.validate),
        Attribute("distributed", kind="boolean", allow_put=True, default=False,
                  convert=v.to_boolean, is_filter=True, admin_only=True),
        Attribute("ha", kind="boolean", allow_put=True, default=False, convert=v.to_boolean,
                  is_filter=True, admin_only=True),
        Attribute("flavor_id", default=None, validate=v.uuid_or_none, is_filter=True),
        Attribute("availability_zone_hints", kind="array", default=list,
                  convert=v.to_list, validate=v.string_list(255)),
        Attribute("availability_zones", kind="array", allow_post=False, constant=list),
    ),
)

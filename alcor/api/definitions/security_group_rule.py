"""The security group rule resource: one allowed direction, protocol, port range and peer."""

from __future__ import annotations

from typing import Any

from alcor.api import validators as v
from alcor.api.attributes import REQUIRED, Attribute, Resource, build
from alcor.api.definitions.standard import standard

DIRECTIONS = ("ingress", "egress")
ETHERTYPES = ("IPv4", "IPv6")


def _ethertype(value: Any) -> Any:
    if isinstance(value, str):
        for known in ETHERTYPES:
            if value.lower() == known.lower():
                return known
    return value


def _protocol(value: Any) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        return value.lower()
    raise ValueError(f"'{value}' is not a valid protocol")


RESOURCE = Resource(
    name="security_group_rule",
    collection="security-group-rules",
    table="security_group_rules",
    description="One rule of a security group.",
    attributes=build(
        *[a for a in standard() if a.name not in ("name", "tags")],
        Attribute("security_group_id", default=REQUIRED, validate=v.uuid_value,
                  is_filter=True, is_sort_key=True),
        Attribute("direction", default=REQUIRED, validate=v.values(DIRECTIONS),
                  is_filter=True, is_sort_key=True),
        Attribute("ethertype", default="IPv4", convert=_ethertype,
                  validate=v.values(ETHERTYPES), is_filter=True, is_sort_key=True),
        Attribute("protocol", default=None, convert=_protocol,
                  validate=v.string_or_none(40), is_filter=True, is_sort_key=True),
        Attribute("port_range_min", kind="integer", default=None, convert=v.to_int_or_none,
                  validate=v.int_range(0, 65535), is_filter=True, is_sort_key=True),
        Attribute("port_range_max", kind="integer", default=None, convert=v.to_int_or_none,
                  validate=v.int_range(0, 65535), is_filter=True, is_sort_key=True),
        Attribute("remote_ip_prefix", default=None, validate=v.string_or_none(64),
                  is_filter=True, is_sort_key=True),
        Attribute("remote_group_id", default=None, validate=v.uuid_or_none, is_filter=True,
                  is_sort_key=True),
        Attribute("remote_address_group_id", default=None, validate=v.uuid_or_none,
                  is_filter=True),
        Attribute("normalized_cidr", allow_post=False),
        Attribute("belongs_to_default_sg", kind="boolean", allow_post=False),
    ),
    tags=False,
)

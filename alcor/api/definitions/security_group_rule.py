"""The security group rule resource: one allowed direction, protocol, port range and peer
(security-group, security-groups-normalized-cidr, security-groups-remote-address-group and
security-groups-rules-belongs-to-default-sg extensions).

Rules cannot be updated: Neutron's API reference offers list, create, show and delete only,
so no attribute allows PUT.  Converters raise Neutron's own exceptions, as its converters do.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import Any

from alcor import errors
from alcor.api import validators as v
from alcor.api.attributes import REQUIRED, Attribute, Resource, build
from alcor.api.definitions.standard import standard
from alcor.services.security_groups import ETHERTYPES, PROTOCOL_ANY, SUPPORTED_PROTOCOLS

DIRECTIONS = ("ingress", "egress")
_NUMBER = re.compile(r"[0-9]{1,3}")


def _ethertype(value: Any) -> str:
    if isinstance(value, str):
        for known in ETHERTYPES:
            if value.lower() == known.lower():
                return known
    raise errors.SecurityGroupRuleInvalidEtherType(ethertype=value, values=list(ETHERTYPES))


def _protocol(value: Any) -> str | None:
    """A protocol name (lower case) or number 0-255 as a string; ``any`` is no protocol."""
    if value is None:
        return None
    if isinstance(value, str) and value.lower() in SUPPORTED_PROTOCOLS:
        return None if value.lower() == PROTOCOL_ANY else value.lower()
    if isinstance(value, int | str) and not isinstance(value, bool):
        digits = str(value).strip()
        if _NUMBER.fullmatch(digits) and int(digits) <= 255:
            return str(int(digits))
    raise errors.SecurityGroupRuleInvalidProtocol(protocol=value, values=SUPPORTED_PROTOCOLS)


def _port(value: Any) -> int | None:
    if value is None:
        return None
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise errors.SecurityGroupInvalidPortValue(port=value) from None
    if isinstance(value, bool) or not 0 <= port <= 65535:
        raise errors.SecurityGroupInvalidPortValue(port=value)
    return port


def _remote_ip_prefix(value: Any) -> str | None:
    """An address or prefix, always with its length (``10.0.0.5`` -> ``10.0.0.5/32``); the
    host bits stay as given, ``normalized_cidr`` carries the network."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise errors.InvalidCIDR(input=value)
    try:
        return ipaddress.ip_interface(value).with_prefixlen
    except ValueError:
        raise errors.InvalidCIDR(input=value) from None


def _read_only_description() -> Attribute:
    described = next(a for a in standard() if a.name == "description")
    return dataclasses.replace(described, allow_put=False)


RESOURCE = Resource(
    name="security_group_rule",
    collection="security-group-rules",
    table="security_group_rules",
    description="One rule of a security group.",
    attributes=build(
        *[a for a in standard() if a.name not in ("name", "tags", "description")],
        _read_only_description(),
        Attribute("security_group_id", default=REQUIRED, validate=v.string(36),
                  is_filter=True, is_sort_key=True),
        Attribute("direction", default=REQUIRED, validate=v.values(DIRECTIONS),
                  is_filter=True, is_sort_key=True),
        Attribute("ethertype", default="IPv4", convert=_ethertype, is_filter=True,
                  is_sort_key=True),
        Attribute("protocol", default=None, convert=_protocol, is_filter=True,
                  is_sort_key=True),
        Attribute("port_range_min", kind="integer", default=None, convert=_port,
                  is_filter=True, is_sort_key=True),
        Attribute("port_range_max", kind="integer", default=None, convert=_port,
                  is_filter=True, is_sort_key=True),
        Attribute("remote_ip_prefix", default=None, convert=_remote_ip_prefix,
                  is_filter=True, is_sort_key=True),
        Attribute("remote_group_id", default=None, validate=v.string_or_none(36),
                  is_filter=True, is_sort_key=True),
        Attribute("remote_address_group_id", default=None, validate=v.string_or_none(36),
                  is_filter=True, is_sort_key=True),
        Attribute("normalized_cidr", allow_post=False, is_filter=True, is_sort_key=True),
        Attribute("belongs_to_default_sg", kind="boolean", allow_post=False),
    ),
    tags=False,
)

"""The floating IP resource: an address of an external network, optionally associated with a
fixed address of a port behind a router (router, fip-port-details, dns-integration).

Alcor's native API serves it as ``floatingips`` and, upstream's name, ``elasticips``
(``ELASTIC_IP``: the same resource with bodies keyed ``elasticip``/``elasticips``)."""

from __future__ import annotations

import dataclasses

from alcor.api import validators as v
from alcor.api.attributes import REQUIRED, Attribute, Resource, build
from alcor.api.definitions.standard import standard

RESOURCE = Resource(
    name="floatingip",
    collection="floatingips",
    table="floatingips",
    description="An external address, translated to a port's fixed address by its router.",
    attributes=build(
        *[a for a in standard() if a.name != "name"],
        Attribute("floating_network_id", default=REQUIRED, validate=v.uuid_value,
                  is_filter=True, is_sort_key=True),
        Attribute("floating_ip_address", default=None, validate=v.ip_address_or_none,
                  is_filter=True, is_sort_key=True, admin_set=True),
        Attribute("subnet_id", default=None, validate=v.uuid_or_none, is_visible=False),
        Attribute("port_id", allow_put=True, default=None, validate=v.uuid_or_none,
                  is_filter=True, is_sort_key=True),
        Attribute("fixed_ip_address", allow_put=True, default=None,
                  validate=v.ip_address_or_none, is_filter=True, is_sort_key=True),
        Attribute("router_id", allow_post=False, is_filter=True, is_sort_key=True),
        Attribute("status", allow_post=False, is_filter=True, is_sort_key=True),
        Attribute("port_details", kind="object", allow_post=False),
        Attribute("dns_name", default="", validate=v.dns_name, is_filter=True),
        Attribute("dns_domain", default="", validate=v.dns_name, is_filter=True),
        Attribute("qos_policy_id", allow_put=True, default=None, validate=v.uuid_or_none,
                  is_filter=True),
    ),
)

ELASTIC_IP = dataclasses.replace(RESOURCE, native_name="elasticip",
                                 native_collection="elasticips")
"""Upstream Alcor's name for floating IPs on the native paths (``/project/{id}/elasticips``)."""

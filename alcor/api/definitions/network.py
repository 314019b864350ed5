"""The network (VPC) resource: core attributes plus provider, external-net, net-mtu,
port-security, dns and availability-zone extensions."""

from __future__ import annotations

from alcor.api import validators as v
from alcor.api.attributes import NO_DEFAULT, Attribute, Resource, build
from alcor.api.definitions.standard import standard

NETWORK_TYPES = ("vxlan", "flat", "vlan", "local", "geneve")

RESOURCE = Resource(
    name="network",
    collection="networks",
    table="networks",
    native_name="network",
    native_collection="vpcs",
    description="An isolated L2 domain (a VPC in Alcor's own words).",
    attributes=build(
        *standard(),
        Attribute("admin_state_up", kind="boolean", allow_put=True, default=True,
                  convert=v.to_boolean, is_filter=True, is_sort_key=True),
        Attribute("status", allow_post=False, is_filter=True, is_sort_key=True),
        Attribute("subnets", kind="array", allow_post=False, is_filter=False),
        Attribute("shared", kind="boolean", allow_put=True, default=False,
                  convert=v.to_boolean, is_filter=True, is_sort_key=True, admin_set=True),
        Attribute("mtu", kind="integer", allow_put=True, default=NO_DEFAULT,
                  convert=v.to_int, validate=v.int_range(68, 9000), is_filter=True,
                  is_sort_key=True),
        Attribute("router:external", kind="boolean", allow_put=True, default=False,
                  convert=v.to_boolean, is_filter=True, is_sort_key=True, admin_set=True),
        Attribute("port_security_enabled", kind="boolean", allow_put=True, default=True,
                  convert=v.to_boolean, is_filter=True),
        Attribute("provider:network_type", default=NO_DEFAULT,
                  validate=v.values(NETWORK_TYPES), is_filter=True, is_sort_key=True,
                  admin_only=True),
        Attribute("provider:physical_network", default=NO_DEFAULT,
                  validate=v.string_or_none(64), is_filter=True, is_sort_key=True,
                  admin_only=True),
        Attribute("provider:segmentation_id", kind="integer", default=NO_DEFAULT,
                  convert=v.to_int_or_none, validate=v.int_range(1, 16_777_215),
                  is_filter=True, is_sort_key=True, admin_only=True),
        Attribute("dns_domain", allow_put=True, default="", validate=v.dns_name,
                  is_filter=True),
        Attribute("vlan_transparent", kind="boolean", default=False, convert=v.to_boolean,
                  is_filter=True),
        Attribute("is_default", kind="boolean", allow_put=True, default=False,
                  convert=v.to_boolean, is_filter=True, admin_set=True),
        Attribute("qos_policy_id", allow_put=True, default=None, validate=v.uuid_or_none,
                  is_filter=True),
        Attribute("availability_zone_hints", kind="array", default=list,
                  convert=v.to_list, validate=v.string_list(255)),
        Attribute("availability_zones", kind="array", allow_post=False, constant=list),
        Attribute("ipv4_address_scope", allow_post=False, constant=None),
        Attribute("ipv6_address_scope", allow_post=False, constant=None),
        Attribute("l2_adjacency", kind="boolean", allow_post=False, constant=True),
    ),
)

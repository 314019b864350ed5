"""The port resource: a virtual NIC on a network with its addresses, MAC, security groups,
binding to a host, and allowed-address-pairs, extra DHCP options and DNS extensions."""

from __future__ import annotations

from typing import Any

from alcor.api import validators as v
from alcor.api.attributes import NO_DEFAULT, REQUIRED, Attribute, Resource, build
from alcor.api.definitions.standard import standard

VNIC_TYPES = (
    "normal", "macvtap", "direct", "baremetal", "direct-physical", "virtio-forwarder",
    "smart-nic", "vdpa", "accelerator-direct", "accelerator-direct-physical", "remote-managed",
)


def _fixed_ip(entry: dict[str, Any]) -> str | None:
    if "ip_address" in entry and (msg := v.ip_address(entry["ip_address"])):
        return msg
    if "subnet_id" in entry and (msg := v.uuid_value(entry["subnet_id"])):
        return msg
    return None


def _address_pair(entry: dict[str, Any]) -> str | None:
    if (msg := v.ip_or_cidr(entry["ip_address"])) is not None:
        return msg
    if "mac_address" in entry and (msg := v.mac_address(entry["mac_address"])):
        return msg
    return None


def _dhcp_opt(entry: dict[str, Any]) -> str | None:
    if not isinstance(entry["opt_name"], str) or not entry["opt_name"]:
        return f"'{entry['opt_name']}' is not a valid option name"
    if entry.get("ip_version", 4) not in (4, 6):
        return f"'{entry.get('ip_version')}' is not a valid IP version"
    return None


RESOURCE = Resource(
    name="port",
    collection="ports",
    table="ports",
    description="A virtual interface on a network, with its addresses and binding.",
    extra_filters=("fixed_ips",),
    attributes=build(
        *standard(),
        Attribute("network_id", default=REQUIRED, validate=v.uuid_value, is_filter=True,
                  is_sort_key=True),
        Attribute("admin_state_up", kind="boolean", allow_put=True, default=True,
                  convert=v.to_boolean, is_filter=True, is_sort_key=True),
        Attribute("mac_address", allow_put=True, default=NO_DEFAULT, convert=v.to_mac,
                  validate=v.mac_address, is_filter=True, is_sort_key=True),
        Attribute("fixed_ips", kind="array", allow_put=True, default=NO_DEFAULT,
                  convert=v.to_list,
                  validate=v.list_of_dicts([], ["ip_address", "subnet_id"], item=_fixed_ip)),
        Attribute("device_id", allow_put=True, default="", validate=v.string(255),
                  is_filter=True, is_sort_key=True),
        Attribute("device_owner", allow_put=True, default="", validate=v.string(255),
                  is_filter=True, is_sort_key=True),
        Attribute("status", allow_post=False, is_filter=True, is_sort_key=True),
        Attribute("security_groups", kind="array", allow_put=True, default=NO_DEFAULT,
                  convert=v.to_list, validate=v.uuid_list, is_filter=True),
        Attribute("port_security_enabled", kind="boolean", allow_put=True, default=NO_DEFAULT,
                  convert=v.to_boolean, is_filter=True),
        Attribute("binding:host_id", allow_put=True, default="", validate=v.string(255),
                  is_filter=True, is_sort_key=True, admin_only=True),
        Attribute("binding:vnic_type", allow_put=True, default="normal",
                  validate=v.values(VNIC_TYPES), is_filter=True, is_sort_key=True),
        Attribute("binding:profile", kind="object", allow_put=True, default=dict,
                  convert=lambda x: {} if x is None else x, validate=v.dict_value,
                  admin_only=True),
        Attribute("binding:vif_type", allow_post=False, is_filter=True, admin_only=True),
        Attribute("binding:vif_details", kind="object", allow_post=False, admin_only=True),
        Attribute("allowed_address_pairs", kind="array", allow_put=True, default=list,
                  convert=v.to_list,
                  validate=v.list_of_dicts(["ip_address"], ["mac_address"], item=_address_pair)),
        Attribute("extra_dhcp_opts", kind="array", allow_put=True, default=list,
                  convert=v.to_list,
                  validate=v.list_of_dicts(["opt_name", "opt_value"], ["ip_version"],
                                           item=_dhcp_opt)),
        Attribute("dns_name", allow_put=True, default="", validate=v.dns_name,
                  is_filter=True),
        Attribute("dns_assignment", kind="array", allow_post=False),
        Attribute("qos_policy_id", allow_put=True, default=None, validate=v.uuid_or_none,
                  is_filter=True),
        Attribute("qos_network_policy_id", allow_post=False, constant=None),
        Attribute("ip_allocation", allow_post=False, is_filter=True),
        Attribute("resource_request", allow_post=False, constant=None),
        Attribute("propagate_uplink_status", kind="boolean", allow_post=False, constant=False),
    ),
)

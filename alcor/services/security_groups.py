"""Security groups and their rules, including each project's default group."""

from __future__ import annotations

from typing import Any, ClassVar

from alcor import errors
from alcor.db.store import Transaction
from alcor.dpm import outbox
from alcor.services.resource import ResourceService, Row, new_id, stamp_new

DEFAULT_NAME = "default"


def rule_fingerprint(rule: dict[str, Any]) -> str:
    """The identity of a rule within its group: two rules with one fingerprint are the same."""
    keys = ("direction", "ethertype", "protocol", "port_range_min", "port_range_max",
            "remote_ip_prefix", "remote_group_id", "remote_address_group_id")
    return "|".join("" if rule.get(k) is None else str(rule[k]) for k in keys)


def _default_rules(group_id: str, project_id: str) -> list[Row]:
    rules = []
    for ethertype in ("IPv4", "IPv6"):
        rules.append({"direction": "egress", "ethertype": ethertype})
        rules.append({"direction": "ingress", "ethertype": ethertype,
                      "remote_group_id": group_id})
    rows = []
    for rule in rules:
        row = stamp_new({
            "project_id": project_id, "security_group_id": group_id, "name": "",
            "description": "", "protocol": None, "port_range_min": None,
            "port_range_max": None, "remote_ip_prefix": None,
            "remote_group_id": None, "remote_address_group_id": None,
            "normalized_cidr": None, **rule,
        })
        row["fingerprint"] = rule_fingerprint(row)
        rows.append(row)
    return rows


def ensure_default_security_group(txn: Transaction, project_id: str) -> str:
    """The id of the project's ``default`` group, created with Neutron's rules on first need.

    Race-free: the project's row in ``default_security_groups`` is unique, so of two
    concurrent creators one commits and the other retries and finds it.
    """
    found = txn.scalars("default_security_groups", "security_group_id",
                        {"project_id": project_id})
    if found:
        return str(found[0])
    group = stamp_new({"id": new_id(), "project_id": project_id, "name": DEFAULT_NAME,
                       "description": "Default security group", "stateful": True,
                       "shared": False})
    txn.insert("security_groups", group)
    txn.insert("default_security_groups",
               {"project_id": project_id, "security_group_id": group["id"]})
    rules = _default_rules(group["id"], project_id)
    txn.insert("security_group_rules", rules)
    outbox.append(txn, "security_group", group, outbox.CREATE)
    return str(group["id"])


class SecurityGroupService(ResourceService):
    table: ClassVar[str] = "security_groups"
    resource_type: ClassVar[str] = "security_group"
    not_found = errors.SecurityGroupNotFound


class SecurityGroupRuleService(ResourceService):
    table: ClassVar[str] = "security_group_rules"
    resource_type: ClassVar[str] = "security_group_rule"
    not_found = errors.SecurityGroupRuleNotFound

"""Security groups and their rules, including each project's default group.

A rule is checked and put in Neutron's canonical form before any transaction (legacy IPv6
ICMP names, the whole port range as no range, prefixes with their length); its identity is
its fingerprint, unique per group in the database, so a duplicate is refused even when two
requests race.  Every rule change appends an outbox record and bumps its group's revision.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any, ClassVar

from alcor import errors
from alcor.context import RequestContext
from alcor.db.store import Store, Transaction
from alcor.dpm import outbox
from alcor.query import ListQuery, Page, Sharing
from alcor.services.resource import ResourceService, Row, new_id, stamp_new
from alcor.timestamps import utcnow

DEFAULT_NAME = "default"
ETHERTYPES = ("IPv4", "IPv6")
RULE_TYPE = "security_group_rule"

IP_PROTOCOL_MAP: dict[str, int] = {
    "ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "hopopt": 0, "icmp": 1, "igmp": 2,
    "ip": 0, "ipip": 4, "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58, "icmpv6": 58,
    "ipv6-nonxt": 59, "ipv6-opts": 60, "ipv6-route": 43, "ospf": 89, "pgm": 113, "rsvp": 46,
    "sctp": 132, "tcp": 6, "udp": 17, "udplite": 136, "vrrp": 112,
}
"""Neutron's protocol names (neutron_lib.constants.IP_PROTOCOL_MAP) and their numbers."""
PROTOCOL_ANY = "any"
SUPPORTED_PROTOCOLS: tuple[str | None, ...] = (None, PROTOCOL_ANY, *IP_PROTOCOL_MAP)
PORT_PROTOCOLS = {"dccp": 33, "sctp": 132, "tcp": 6, "udp": 17, "udplite": 136}
ICMP_NUMBERS = (1, 58)
IPV6_ICMP_LEGACY = ("icmp", "icmpv6")
IPV6_ONLY_PROTOCOLS = frozenset({
    "ipv6-encap", "ipv6-frag", "ipv6-icmp", "icmpv6", "ipv6-nonxt", "ipv6-opts", "ipv6-route",
    "41", "44", "58", "59", "60", "43",
})
ANY_PREFIXES = ("0.0.0.0/0", "::/0")

RULE_VIEW_KEYS = (
    "id", "project_id", "security_group_id", "direction", "ethertype", "protocol",
    "port_range_min", "port_range_max", "remote_ip_prefix", "remote_group_id",
    "remote_address_group_id", "normalized_cidr", "description", "revision_number",
    "created_at", "updated_at",
)
"""What a rule shows inside its group (the rule resource's own attributes)."""


# --- rule identity and canonical form (pure) ---------------------------------------------


def protocol_number(protocol: str | None, ethertype: str | None = None) -> int | None:
    """The IP protocol number a rule's protocol means (legacy IPv6 ICMP spellings -> 58)."""
    if protocol is None or protocol == PROTOCOL_ANY:
        return None
    if ethertype == "IPv6" and protocol in (*IPV6_ICMP_LEGACY, "1"):
        return 58
    return IP_PROTOCOL_MAP[protocol] if protocol in IP_PROTOCOL_MAP else int(protocol)


def rule_fingerprint(rule: dict[str, Any]) -> str:
    """The identity of a rule within its group: two rules with one fingerprint are the same.

    As Neutron's ``_rule_to_key``: a protocol name and its number are one protocol, and a
    prefix covering every address is the same as no prefix.
    """
    prefix = rule.get("remote_ip_prefix")
    parts = (
        rule.get("direction"), rule.get("ethertype"),
        protocol_number(rule.get("protocol"), rule.get("ethertype")),
        rule.get("port_range_min"), rule.get("port_range_max"),
        None if prefix in ANY_PREFIXES else prefix,
        rule.get("remote_group_id"), rule.get("remote_address_group_id"),
    )
    return "|".join("" if p is None else str(p) for p in parts)


def canonical_rule(item: Row) -> Row:
    """Check a rule's attributes together and return its canonical form with fingerprint and
    normalized CIDR (Neutron's ``_validate_base_security_group_rule_attributes``)."""
    rule = dict(item)
    _canonical_ipv6_icmp(rule)
    _canonical_port_range(rule)
    _check_port_range(rule)
    rule["normalized_cidr"] = _normalized_cidr(rule)
    _check_ethertype_protocol(rule)
    _check_single_remote(rule)
    rule["fingerprint"] = rule_fingerprint(rule)
    return rule


def _canonical_ipv6_icmp(rule: Row) -> None:
    if rule.get("ethertype") == "IPv6":
        if rule.get("protocol") in IPV6_ICMP_LEGACY:
            rule["protocol"] = "ipv6-icmp"
        elif rule.get("protocol") == "1":
            rule["protocol"] = "58"


def _canonical_port_range(rule: Row) -> None:
    if (rule.get("port_range_min"), rule.get("port_range_max")) == (1, 65535):
        rule["port_range_min"] = rule["port_range_max"] = None


def _check_port_range(rule: Row) -> None:
    low, high = rule.get("port_range_min"), rule.get("port_range_max")
    if low is None and high is None:
        return
    if not rule.get("protocol"):
        raise errors.SecurityGroupProtocolRequiredWithPorts()
    number = protocol_number(rule["protocol"])
    if number in PORT_PROTOCOLS.values():
        if low == 0 or high == 0:
            raise errors.SecurityGroupInvalidPortValue(port=0)
        if low is None or high is None or low > high:
            raise errors.SecurityGroupInvalidPortRange()
    elif number in ICMP_NUMBERS:
        _check_icmp(low, high)
    else:
        raise errors.SecurityGroupInvalidProtocolForPort(
            protocol=number, valid_port_protocols=", ".join(p.upper() for p in PORT_PROTOCOLS))


def _check_icmp(icmp_type: int | None, code: int | None) -> None:
    for value, field, attr in ((icmp_type, "type", "port_range_min"),
                               (code, "code", "port_range_max")):
        if value is not None and not 0 <= value <= 255:
            raise errors.SecurityGroupInvalidIcmpValue(field=field, attr=attr, value=value)
    if icmp_type is None and code is not None:
        raise errors.SecurityGroupMissingIcmpType(value=code)


def _normalized_cidr(rule: Row) -> str | None:
    prefix = rule.get("remote_ip_prefix")
    if not prefix:
        return None
    interface = ipaddress.ip_interface(prefix)
    if rule.get("ethertype") != f"IPv{interface.version}":
        raise errors.SecurityGroupRuleParameterConflict(ethertype=rule.get("ethertype"),
                                                        cidr=prefix)
    return str(interface.network)


def _check_ethertype_protocol(rule: Row) -> None:
    if rule.get("protocol") in IPV6_ONLY_PROTOCOLS and rule.get("ethertype") == "IPv4":
        raise errors.SecurityGroupEthertypeConflictWithProtocol(
            ethertype=rule["ethertype"], protocol=rule["protocol"])


def _check_single_remote(rule: Row) -> None:
    remotes = ("remote_ip_prefix", "remote_group_id", "remote_address_group_id")
    if sum(1 for key in remotes if rule.get(key)) > 1:
        raise errors.SecurityGroupMultipleRemoteEntites()


def check_bulk(rules: list[Row]) -> None:
    """One group and one project per request, and no rule twice in it."""
    if len({r["security_group_id"] for r in rules}) > 1:
        raise errors.SecurityGroupNotSingleGroupRules()
    if len({r.get("project_id") for r in rules}) > 1:
        raise errors.SecurityGroupRulesNotSingleProject()
    if len({r["fingerprint"] for r in rules}) != len(rules):
        raise errors.DuplicateSecurityGroupRuleInPost()


# --- rows, outbox and revisions ----------------------------------------------------------


def _new_rule(group_id: str, project_id: str, **attrs: Any) -> Row:
    row = stamp_new({
        "project_id": project_id, "security_group_id": group_id, "name": "",
        "description": "", "protocol": None, "port_range_min": None,
        "port_range_max": None, "remote_ip_prefix": None,
        "remote_group_id": None, "remote_address_group_id": None,
        "normalized_cidr": None, **attrs,
    })
    row["fingerprint"] = rule_fingerprint(row)
    return row


def rule_view(row: Row, in_default_group: bool) -> Row:
    """A rule as clients see it inside its group."""
    view = {key: row[key] for key in RULE_VIEW_KEYS}
    view["tenant_id"] = row["project_id"]
    view["belongs_to_default_sg"] = in_default_group
    return view


def record_rules(txn: Transaction, rows: Iterable[Row], operation: str) -> None:
    for row in rows:
        outbox.append(txn, RULE_TYPE, row, operation,
                      detail={"security_group_id": row["security_group_id"]})


def touch_groups(txn: Transaction, group_ids: Iterable[str]) -> None:
    """Bump the revision of groups whose rules changed (as Neutron's revision plugin does)."""
    ids = sorted(set(group_ids))
    if not ids:
        return
    now = utcnow()
    for group in txn.select("security_groups", {"id": ids}, columns=("id", "revision_number"),
                            for_update=True):
        txn.update("security_groups", {"id": group["id"]},
                   {"revision_number": group["revision_number"] + 1, "updated_at": now})


def default_group_ids(txn: Transaction, group_ids: Iterable[str]) -> set[str]:
    """Which of these groups are their project's default group."""
    ids = list(set(group_ids))
    if not ids:
        return set()
    found = txn.scalars("default_security_groups", "security_group_id",
                        {"security_group_id": ids})
    return {str(i) for i in found}


def group_in_use(txn: Transaction, group_id: str) -> bool:
    return txn.exists("port_security_groups", {"security_group_id": group_id})


# --- the default group -------------------------------------------------------------------


def _default_rules(group_id: str, project_id: str) -> list[Row]:
    rules = []
    for ethertype in ETHERTYPES:
        rules.append(_new_rule(group_id, project_id, direction="egress", ethertype=ethertype))
        rules.append(_new_rule(group_id, project_id, direction="ingress", ethertype=ethertype,
                               remote_group_id=group_id))
    return rules


def ensure_default_security_group(txn: Transaction, project_id: str) -> str:
    """The id of the project's ``default`` group, created with Neutron's rules on first need.

    Race-free: the project's row in ``default_security_groups`` is unique, so of two
    concurrent creators one commits and the other retries and finds it.
    """
    found = txn.scalars("default_security_groups", "security_group_id",
                        {"project_id": project_id})
    if found:
        return str(found[0])
    # Revision 1: creating its rules already bumped the new group once, as in Neutron.
    group = stamp_new({"id": new_id(), "project_id": project_id, "name": DEFAULT_NAME,
                       "description": "Default security group", "stateful": True,
                       "shared": False}, revision=1)
    txn.insert("security_groups", group)
    txn.insert("default_security_groups",
               {"project_id": project_id, "security_group_id": group["id"]})
    rules = _default_rules(group["id"], project_id)
    txn.insert("security_group_rules", rules)
    outbox.append(txn, "security_group", group, outbox.CREATE)
    record_rules(txn, rules, outbox.CREATE)
    return str(group["id"])


def _has_default(txn: Transaction, project_id: str) -> bool:
    return txn.exists("default_security_groups", {"project_id": project_id})


def ensure_default_for(store: Store, project_id: str) -> None:
    """Create the project's default group unless it exists (a read first, a write if not)."""
    if not store.read(_has_default, project_id):
        store.write(ensure_default_security_group, project_id)


def listed_project(ctx: RequestContext, query: ListQuery) -> str:
    """The project whose default group a list request makes sure of (Neutron: the first
    ``project_id``/``tenant_id`` filter value, else the caller's project; a non-admin's own
    project only)."""
    if not ctx.is_admin:
        return ctx.project_id
    named = [p for p in query.filters.get("project_id", []) if p]
    if named:
        return str(named[0])
    if query.project_ids:
        return query.project_ids[0]
    return ctx.project_id


# --- services ----------------------------------------------------------------------------


class SecurityGroupService(ResourceService):
    table: ClassVar[str] = "security_groups"
    resource_type: ClassVar[str] = "security_group"
    not_found = errors.SecurityGroupNotFound
    sharing = Sharing(columns=("shared",))

    def visible(self, ctx: RequestContext, row: Any) -> bool:
        return ctx.is_admin or row["project_id"] == ctx.project_id or bool(row["shared"])

    def create_one(self, txn: Transaction, ctx: RequestContext, item: Row) -> Row:
        ensure_default_security_group(txn, item["project_id"])
        row = stamp_new({**item, "shared": False}, revision=1)
        txn.insert(self.table, row)
        rules = [_new_rule(row["id"], row["project_id"], direction="egress", ethertype=e)
                 for e in ETHERTYPES]
        txn.insert("security_group_rules", rules)
        record_rules(txn, rules, outbox.CREATE)
        return row

    def decorate(self, txn: Transaction, rows: list[Row]) -> list[Row]:
        if not rows:
            return rows
        ids = [r["id"] for r in rows]
        defaults = default_group_ids(txn, ids)
        by_group: dict[str, list[Row]] = {i: [] for i in ids}
        for rule in txn.select("security_group_rules", {"security_group_id": ids},
                               order_by=("created_at", "id")):
            group_id = rule["security_group_id"]
            by_group[group_id].append(rule_view(rule, group_id in defaults))
        for row in rows:
            row["security_group_rules"] = by_group[row["id"]]
        return rows

    def list(self, ctx: RequestContext, query: ListQuery) -> Page:
        ensure_default_for(self.store, listed_project(ctx, query))
        return super().list(ctx, query)

    def before_update(self, txn: Transaction, ctx: RequestContext, row: Row, changes: Row) -> Row:
        if "name" in changes and default_group_ids(txn, [row["id"]]):
            raise errors.SecurityGroupCannotUpdateDefault()
        stateful = changes.get("stateful", row["stateful"])
        if stateful != row["stateful"] and group_in_use(txn, row["id"]):
            raise errors.SecurityGroupInUse(id=row["id"])
        return changes

    def before_delete(self, txn: Transaction, ctx: RequestContext, row: Row) -> None:
        if group_in_use(txn, row["id"]):
            raise errors.SecurityGroupInUse(id=row["id"])
        if default_group_ids(txn, [row["id"]]):
            raise errors.SecurityGroupCannotRemoveDefault()
        _delete_group_rules(txn, row["id"])


def _delete_group_rules(txn: Transaction, group_id: str) -> None:
    """Delete a group's rules and the other groups' rules that name it as their remote."""
    own = txn.select("security_group_rules", {"security_group_id": group_id})
    remote = [r for r in txn.select("security_group_rules", {"remote_group_id": group_id})
              if r["security_group_id"] != group_id]
    rules = own + remote
    if not rules:
        return
    txn.delete("security_group_rules", {"id": [r["id"] for r in rules]})
    record_rules(txn, rules, outbox.DELETE)
    touch_groups(txn, (r["security_group_id"] for r in remote))


class SecurityGroupRuleService(ResourceService):
    table: ClassVar[str] = "security_group_rules"
    resource_type: ClassVar[str] = RULE_TYPE
    not_found = errors.SecurityGroupRuleNotFound
    sharing = Sharing(parent_key="security_group_id", parent_table="security_groups",
                      parent_columns=("shared",))

    def find_visible(self, txn: Transaction, ctx: RequestContext, id_: str) -> Row:
        """The rule, visible to its project, admins, and whoever sees its group (the group's
        project, everyone for a shared group)."""
        row = txn.get(self.table, id_)
        if row is None or not (self.visible(ctx, row) or any(
            ctx.project_id == g["project_id"] or g["shared"] for g in txn.select(
                "security_groups", {"id": row["security_group_id"]},
                columns=("id", "project_id", "shared"))
        )):
            raise errors.SecurityGroupRuleNotFound(id=id_)
        return row

    def writable(self, txn: Transaction, ctx: RequestContext, row: Any) -> bool:
        """Admins; members for their project's rules and the rules of their groups."""
        return ctx.is_admin or (ctx.can_write and (
            row["project_id"] == ctx.project_id
            or txn.exists("security_groups", {"id": row["security_group_id"],
                                              "project_id": ctx.project_id})))

    def prepare_create(self, ctx: RequestContext, items: list[Row]) -> list[Row]:
        rules = [canonical_rule(item) for item in items]
        check_bulk(rules)
        return rules

    def create_one(self, txn: Transaction, ctx: RequestContext, item: Row) -> Row:
        if item.get("remote_group_id"):
            self._group(txn, ctx, item["remote_group_id"])
        if item.get("remote_address_group_id"):
            raise errors.AddressGroupNotFound(address_group_id=item["remote_address_group_id"])
        group = self._group(txn, ctx, item["security_group_id"], lock=True)
        same = txn.scalars(self.table, "id", {"security_group_id": group["id"],
                                              "fingerprint": item["fingerprint"]})
        if same:
            raise errors.SecurityGroupRuleExists(rule_id=same[0])
        row = stamp_new({**item, "name": ""})
        txn.insert(self.table, row)
        return row

    def _group(self, txn: Transaction, ctx: RequestContext, group_id: str,
               lock: bool = False) -> Row:
        found = txn.select("security_groups", {"id": group_id},
                           columns=("id", "project_id"), for_update=lock)
        if not found or not self.visible(ctx, found[0]):
            raise errors.SecurityGroupNotFound(id=group_id)
        return found[0]

    def after_create(self, txn: Transaction, ctx: RequestContext, rows: list[Row]) -> None:
        record_rules(txn, rows, outbox.CREATE)
        touch_groups(txn, (r["security_group_id"] for r in rows))

    def decorate(self, txn: Transaction, rows: list[Row]) -> list[Row]:
        defaults = default_group_ids(txn, (r["security_group_id"] for r in rows))
        for row in rows:
            row["belongs_to_default_sg"] = row["security_group_id"] in defaults
        return rows

    def list(self, ctx: RequestContext, query: ListQuery) -> Page:
        ensure_default_for(self.store, listed_project(ctx, query))
        return super().list(ctx, query)

    def before_update(self, txn: Transaction, ctx: RequestContext, row: Row, changes: Row) -> Row:
        raise errors.BadRequest(resource=RULE_TYPE, msg="security group rules cannot be updated")

    def remove(self, txn: Transaction, row: Row) -> None:
        txn.delete(self.table, {"id": row["id"]})
        record_rules(txn, [row], outbox.DELETE)
        touch_groups(txn, [row["security_group_id"]])

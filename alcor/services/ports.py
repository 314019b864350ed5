"""Ports: MAC and fixed IP allocation, security group binding, port binding and DNS
attributes, updates that reallocate, and deletion that frees everything.

Each operation is one transaction.  A create, single or bulk, costs per batch one read of
the networks, one of their subnets, one of each project's default security group, the
address choice per subnet, and one batched insert each into ``ports``, ``ip_allocations``,
``port_security_groups`` and ``outbox``; a bulk is atomic.

Choices where Neutron leaves room:

* ``binding:vif_type`` is ``unbound`` while ``binding:host_id`` is empty and ``ovs`` with
  ``binding:vif_details`` ``{"port_filter": true}`` once a host is set: Alcor's host agent
  binds every port itself and filters it (security groups), as ML2/OVS reports.
* ``status`` stays ``DOWN`` here; the data-plane manager reports ``ACTIVE``.  An update of a
  bound port sets it ``DOWN`` in its own transaction: its hosts hold the previous revision
  until the controller has them acknowledge the new one.
* Every outbox record of a port carries ``change_detail`` (network, host, subnets, and on
  update the previous host and subnets), so the data-plane manager can place a change even
  after the port is gone.
* ``fixed_ips`` are stored denormalized on the port in the order allocated (the rows in
  ``ip_allocations`` are what makes them unique), and so are ``security_groups`` (the rows in
  ``port_security_groups`` are what listing filters and group deletion look at).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from alcor import errors
from alcor.config import IpamSettings
from alcor.context import RequestContext
from alcor.db.store import Store, Transaction
from alcor.dpm import outbox
from alcor.ipam import addresses, mac
from alcor.services.floatingips import FLOATINGIP_OWNER, disassociate_port
from alcor.services.resource import ResourceService, Row, stamp_new
from alcor.services.routers import GATEWAY_OWNER, INTERFACE_OWNER
from alcor.services.security_groups import ensure_default_security_group
from alcor.timestamps import utcnow

VIF_UNBOUND = "unbound"
VIF_BOUND = "ovs"
BOUND_VIF_DETAILS: dict[str, Any] = {"port_filter": True}
UNPLUGGED_VIF_TYPES = (VIF_UNBOUND, "binding_failed")
TRUSTED_OWNER_PREFIX = "network:"
L3_OWNERS = {INTERFACE_OWNER: "routers", GATEWAY_OWNER: "routers", FLOATINGIP_OWNER: "floatingips"}
"""Ports a router or floating IP (the row ``device_id`` names in that table) owns."""
"""Neutron's trusted ports (DHCP, router): no security groups, not even the default one."""


def binding_attributes(host: str) -> Row:
    """``binding:vif_type`` and ``binding:vif_details`` for a port bound to ``host`` (or not)."""
    if host:
        return {"binding:vif_type": VIF_BOUND, "binding:vif_details": dict(BOUND_VIF_DETAILS)}
    return {"binding:vif_type": VIF_UNBOUND, "binding:vif_details": {}}


def dns_assignment(fixed_ips: Iterable[Mapping[str, str]], dns_name: str, domain: str
                   ) -> list[Row]:
    """Neutron's derived ``dns_assignment``: one hostname and FQDN per fixed IP."""
    out = []
    for ip in fixed_ips:
        address = ip["ip_address"]
        hostname = dns_name or "host-" + address.replace(".", "-").replace(":", "-")
        fqdn = hostname if hostname.endswith(".") or not domain else f"{hostname}.{domain}"
        out.append({"ip_address": address, "hostname": hostname, "fqdn": fqdn})
    return out


def address_pairs(pairs: Sequence[Mapping[str, str]], port_mac: str) -> list[Row]:
    """Allowed address pairs as stored: the port's MAC where none is given, no repeats."""
    out: list[Row] = []
    seen: set[tuple[str, str]] = set()
    for pair in pairs:
        entry = {"ip_address": pair["ip_address"], "mac_address": pair.get("mac_address")
                 or port_mac}
        key = (entry["mac_address"], entry["ip_address"])
        if key in seen:
            raise errors.DuplicateAddressPairInRequest(mac_address=key[0], ip_address=key[1])
        seen.add(key)
        out.append(entry)
    return out


def _dhcp_key(opt: Mapping[str, Any]) -> tuple[str, int]:
    return (opt["opt_name"], int(opt.get("ip_version") or 4))


def dhcp_options(current: Sequence[Mapping[str, Any]], changes: Sequence[Mapping[str, Any]]
                 ) -> list[Row]:
    """Extra DHCP options merged as Neutron does: a change replaces the option of the same
    name and IP version, a null value removes it, a new name is added."""
    merged: dict[tuple[str, int], Row] = {_dhcp_key(o): dict(o) for o in current}
    for opt in changes:
        key = _dhcp_key(opt)
        if opt.get("opt_value") is None:
            merged.pop(key, None)
        else:
            merged[key] = {"opt_name": key[0], "opt_value": opt["opt_value"],
                           "ip_version": key[1]}
    return list(merged.values())


def is_trusted(device_owner: str) -> bool:
    return device_owner.startswith(TRUSTED_OWNER_PREFIX)


def _subnet_ids(fixed_ips: Iterable[Mapping[str, Any]]) -> list[str]:
    return sorted({ip["subnet_id"] for ip in fixed_ips})


def change_detail(row: Mapping[str, Any], old: Mapping[str, Any] | None = None) -> Row:
    """The outbox detail of a port change: what placement needs even once the port is gone
    (its network, host and subnets; on update also the host and subnets it had before)."""
    detail: Row = {
        "network_id": row["network_id"],
        "binding:host_id": row["binding:host_id"],
        "subnet_ids": _subnet_ids(row["fixed_ips"]),
    }
    if old is not None:
        detail["old_host_id"] = old["binding:host_id"]
        detail["old_subnet_ids"] = _subnet_ids(old["fixed_ips"])
    return detail


class PortService(ResourceService):
    table: ClassVar[str] = "ports"
    resource_type: ClassVar[str] = "port"
    not_found = errors.PortNotFound
    not_found_key = "port_id"

    def __init__(self, store: Store, ipam: IpamSettings) -> None:
        super().__init__(store)
        self.ipam = ipam
        mac.parse_oui(self.ipam.mac_oui)  # a bad prefix fails at start, not per request

    # --- create --------------------------------------------------------------------------

    def create_rows(self, txn: Transaction, ctx: RequestContext, items: list[Row]) -> list[Row]:
        networks = self._networks(txn, ctx, {i["network_id"] for i in items})
        psecs = [_port_security(item, networks[item["network_id"]]) for item in items]
        groups = self._groups_for(txn, ctx, items, psecs)
        rows = [self._new_row(item, psec, sgs)
                for item, psec, sgs in zip(items, psecs, groups, strict=True)]
        self._assign_macs(txn, rows)
        allocations = self._assign_addresses(txn, items, rows)
        # Rows go in key order, so concurrent PostgreSQL writers take unique-index locks in
        # one order and do not deadlock; the answer keeps the request's order.
        txn.insert("ports", sorted(rows, key=lambda r: (r["network_id"], r["mac_address"])))
        txn.insert("ip_allocations",
                   sorted(allocations, key=lambda a: (a["subnet_id"], a["ip_address"])))
        txn.insert("port_security_groups", [
            {"port_id": r["id"], "security_group_id": g} for r in rows
            for g in r["security_groups"]
        ])
        for row in rows:
            if row["tags"]:
                self._write_tags(txn, row["id"], row["tags"])
        self.after_create(txn, ctx, rows)
        return self.decorate(txn, rows)

    def after_create(self, txn: Transaction, ctx: RequestContext, rows: list[Row]) -> None:
        outbox.append_many(txn, self.resource_type, rows, outbox.CREATE,
                           [change_detail(row) for row in rows])

    def _networks(self, txn: Transaction, ctx: RequestContext, ids: set[str]) -> dict[str, Row]:
        """The ports' networks: the caller's, shared, or (admins) any; another project's
        external network is visible but refused (403), any other is not found."""
        rows = txn.select("networks", {"id": sorted(ids)},
                          columns=("id", "project_id", "shared", "router:external",
                                   "port_security_enabled"))
        found = {n["id"]: n for n in rows
                 if ctx.is_admin or n["shared"] or n["project_id"] == ctx.project_id}
        for net_id in sorted(ids - found.keys()):
            if any(n["id"] == net_id and n["router:external"] for n in rows):
                raise errors.HTTPForbidden(msg=f"Tenant {ctx.project_id} not allowed to create "
                                           "port on this network")
            raise errors.NetworkNotFound(net_id=net_id)
        return found

    def _groups_for(
        self, txn: Transaction, ctx: RequestContext, items: list[Row], psecs: list[bool]
    ) -> list[list[str]]:
        """The security groups each new port is bound to (checked, defaults filled in)."""
        defaults: dict[str, str] = {}
        out = [self._groups_for_one(txn, item, psec, defaults)
               for item, psec in zip(items, psecs, strict=True)]
        named = {(g, i["project_id"]) for i, gs in zip(items, out, strict=True) for g in gs
                 if g not in defaults.values()}
        self._check_groups(txn, ctx, named)
        return out

    @staticmethod
    def _groups_for_one(
        txn: Transaction, item: Row, psec: bool, defaults: dict[str, str]
    ) -> list[str]:
        given: list[str] | None = item.get("security_groups")
        if not psec:
            if given:
                raise errors.PortSecurityAndIPRequiredForSecurityGroups()
            if item.get("allowed_address_pairs"):
                raise errors.AddressPairAndPortSecurityRequired()
            return []
        if is_trusted(item.get("device_owner", "")):
            return []
        if given is not None:
            return list(given)
        project = item["project_id"]
        if project not in defaults:
            defaults[project] = ensure_default_security_group(txn, project)
        return [defaults[project]]

    @staticmethod
    def _check_groups(txn: Transaction, ctx: RequestContext, named: set[tuple[str, str]]
                      ) -> None:
        """Every named group exists and may be used by the port's project.

        Raises:
            SecurityGroupNotFound: naming every group that is missing.
        """
        if not named:
            return
        found = {r["id"]: r for r in txn.select(
            "security_groups", {"id": sorted({g for g, _ in named})},
            columns=("id", "project_id", "shared"))}

        def usable(group_id: str, project: str) -> bool:
            row = found.get(group_id)
            return row is not None and (ctx.is_admin or row["shared"]
                                        or row["project_id"] == project)

        missing = sorted({g for g, p in named if not usable(g, p)})
        if missing:
            raise errors.SecurityGroupNotFound(id=", ".join(missing))

    @staticmethod
    def _new_row(item: Row, psec: bool, groups: list[str]) -> Row:
        host = item.get("binding:host_id", "")
        return stamp_new({
            "project_id": item["project_id"],
            "name": item.get("name", ""),
            "description": item.get("description", ""),
            "tags": list(dict.fromkeys(item.get("tags", []))),
            "network_id": item["network_id"],
            "admin_state_up": item.get("admin_state_up", True),
            "status": "DOWN",
            "mac_address": item.get("mac_address", ""),
            "device_id": item.get("device_id", ""),
            "device_owner": item.get("device_owner", ""),
            "port_security_enabled": psec,
            "binding:host_id": host,
            **binding_attributes(host),
            "binding:vnic_type": item.get("binding:vnic_type", "normal"),
            "binding:profile": item.get("binding:profile", {}),
            "fixed_ips": [],
            "security_groups": groups,
            "allowed_address_pairs": item.get("allowed_address_pairs", []),
            "extra_dhcp_opts": dhcp_options([], item.get("extra_dhcp_opts", [])),
            "dns_name": item.get("dns_name", ""),
            "qos_policy_id": item.get("qos_policy_id"),
            "ip_allocation": "immediate",
        })

    def _assign_macs(self, txn: Transaction, rows: list[Row]) -> None:
        """Requested MACs checked, the others generated, per network; then address pairs
        (which default to the port's MAC) are completed."""
        for net_id, group in _by_network(rows).items():
            wanted = [r["mac_address"] for r in group if r["mac_address"]]
            mac.check_requested(txn, net_id, wanted)
            blank = [r for r in group if not r["mac_address"]]
            fresh = mac.generate(txn, net_id, self.ipam.mac_oui, len(blank), reserved=wanted)
            for row, value in zip(blank, fresh, strict=True):
                row["mac_address"] = value
        for row in rows:
            row["allowed_address_pairs"] = address_pairs(row["allowed_address_pairs"],
                                                         row["mac_address"])

    def _assign_addresses(self, txn: Transaction, items: list[Row], rows: list[Row]
                          ) -> list[Row]:
        """Fill each row's ``fixed_ips``; return the ``ip_allocations`` rows to insert."""
        subnets = addresses.load_subnets(txn, {r["network_id"] for r in rows})
        fixed = {row["id"]: item.get("fixed_ips") for item, row in zip(items, rows, strict=True)}
        allocations: list[Row] = []
        for net_id, group in _by_network(rows).items():
            requests = [
                (r["id"], addresses.wants_for_port(txn, subnets[net_id], fixed[r["id"]], net_id,
                                                   r["device_owner"], r["mac_address"]))
                for r in group
            ]
            chosen = addresses.AddressPlan(txn, net_id).allocate(requests)
            for row in group:
                row["fixed_ips"] = chosen[row["id"]]
                allocations += addresses.allocation_rows(net_id, row["id"], row["fixed_ips"])
        return allocations

    # --- read ----------------------------------------------------------------------------

    def decorate(self, txn: Transaction, rows: list[Row]) -> list[Row]:
        domain = self.ipam.dns_domain
        for row in rows:
            row["dns_assignment"] = dns_assignment(row["fixed_ips"], row["dns_name"], domain)
        return rows

    # --- update --------------------------------------------------------------------------

    def before_update(self, txn: Transaction, ctx: RequestContext, row: Row, changes: Row) -> Row:
        values = dict(changes)
        if values.get("mac_address", row["mac_address"]) == row["mac_address"]:
            values.pop("mac_address", None)
        else:
            self._check_mac_change(txn, row, values["mac_address"])
        if "fixed_ips" in values or "mac_address" in values:
            self._update_addresses(txn, row, values)
            disassociate_port(txn, row["id"], keep={ip["ip_address"] for ip in values["fixed_ips"]})
        self._update_security(txn, ctx, row, values)
        if "binding:host_id" in values:
            values.update(binding_attributes(values["binding:host_id"]))
        if "allowed_address_pairs" in values:
            values["allowed_address_pairs"] = address_pairs(
                values["allowed_address_pairs"], values.get("mac_address") or row["mac_address"])
        if "extra_dhcp_opts" in values:
            values["extra_dhcp_opts"] = dhcp_options(row["extra_dhcp_opts"],
                                                     values["extra_dhcp_opts"])
        return values

    @staticmethod
    def _check_mac_change(txn: Transaction, row: Row, new_mac: str) -> None:
        if row["binding:vif_type"] not in UNPLUGGED_VIF_TYPES:
            raise errors.PortBound(port_id=row["id"], vif_type=row["binding:vif_type"],
                                   old_mac=row["mac_address"], new_mac=new_mac)
        mac.check_requested(txn, row["network_id"], [new_mac], exclude_port=row["id"])

    def _update_addresses(self, txn: Transaction, row: Row, values: Row) -> None:
        """Reallocate: keep addresses still asked for, free the others, allocate new ones;
        a new MAC moves the port's SLAAC (EUI-64) addresses along."""
        net_id, owner = row["network_id"], row["device_owner"]
        new_mac: str = values.get("mac_address") or row["mac_address"]
        subnets = addresses.load_subnets(txn, [net_id])[net_id]
        stale = _stale_eui64(row, subnets, new_mac)
        original = [ip for ip in row["fixed_ips"] if ip["ip_address"] not in stale]
        requested = values.get("fixed_ips", original)
        requested = [e for e in requested if _canonical(e.get("ip_address")) not in stale]
        change = addresses.diff_fixed_ips(original, requested, subnets, owner)
        wants = addresses.wants_for_entries(txn, change.add, subnets, net_id, owner)
        handled = {ip["subnet_id"] for ip in change.keep} | {w.subnets[0].id for w in wants}
        wants += addresses.auto_address_wants(subnets, owner, new_mac, handled)
        addresses.release(txn, row["id"], [*change.remove, *(
            ip for ip in row["fixed_ips"] if ip["ip_address"] in stale)])
        added = addresses.AddressPlan(txn, net_id).allocate([(row["id"], wants)])[row["id"]]
        txn.insert("ip_allocations", addresses.allocation_rows(net_id, row["id"], added))
        values["fixed_ips"] = [*change.keep, *added]

    def _update_security(self, txn: Transaction, ctx: RequestContext, row: Row, values: Row
                         ) -> None:
        psec = values.get("port_security_enabled", row["port_security_enabled"])
        pairs = values.get("allowed_address_pairs", row["allowed_address_pairs"])
        if "security_groups" in values:
            groups = list(values["security_groups"])
            if groups and not psec:
                raise errors.PortSecurityAndIPRequiredForSecurityGroups()
            self._check_groups(txn, ctx, {(g, row["project_id"]) for g in groups})
            if groups != row["security_groups"]:
                txn.delete("port_security_groups", {"port_id": row["id"]})
                txn.insert("port_security_groups",
                           [{"port_id": row["id"], "security_group_id": g} for g in groups])
            values["security_groups"] = groups
        elif not psec and row["security_groups"]:
            raise errors.PortSecurityPortHasSecurityGroup()
        if pairs and not psec:
            raise errors.AddressPairAndPortSecurityRequired()

    def save(self, txn: Transaction, row: Row, values: Row) -> Row:
        """ResourceService.save, with the change's detail in the outbox record."""
        values = {k: v for k, v in values.items() if k in row}
        values["revision_number"] = row["revision_number"] + 1
        values["updated_at"] = utcnow()
        if row["status"] != "DOWN" and (row["binding:host_id"]
                                        or values.get("binding:host_id")):
            # The hosts hold the old revision: ACTIVE again once they hold this one.
            values["status"] = "DOWN"
        txn.update(self.table, {"id": row["id"]}, values)
        new = {**row, **values}
        outbox.append(txn, self.resource_type, new, outbox.UPDATE, change_detail(new, row))
        return self.decorate(txn, [new])[0]

    # --- delete --------------------------------------------------------------------------

    def before_delete(self, txn: Transaction, ctx: RequestContext, row: Row) -> None:
        """Refuse a port its router or floating IP owns (Neutron's
        ``prevent_l3_port_deletion``): those go with their router or floating IP."""
        owner = L3_OWNERS.get(row["device_owner"])
        if owner is not None and txn.exists(owner, {"id": row["device_id"]}):
            raise errors.ServicePortInUse(port_id=row["id"],
                                          reason=f"has device owner {row['device_owner']}")
    # The row's deletion cascades to its ip_allocations and port_security_groups rows, which
    # frees its addresses and MAC at once.

    def remove(self, txn: Transaction, row: Row) -> None:
        """ResourceService.remove, with the change's detail in the outbox record; the
        floating IPs associated with the port lose their association."""
        disassociate_port(txn, row["id"])
        txn.delete("tags", {"resource_id": row["id"]})
        txn.delete(self.table, {"id": row["id"]})
        outbox.append(txn, self.resource_type, row, outbox.DELETE, change_detail(row))


def _port_security(item: Row, network: Row) -> bool:
    """``port_security_enabled`` as given, else the network's."""
    given = item.get("port_security_enabled")
    return bool(network["port_security_enabled"] if given is None else given)


def _by_network(rows: Iterable[Row]) -> dict[str, list[Row]]:
    grouped: dict[str, list[Row]] = {}
    for row in rows:
        grouped.setdefault(row["network_id"], []).append(row)
    return grouped


def _canonical(ip: str | None) -> str | None:
    return None if ip is None else str(ipaddress.ip_address(ip))


def _stale_eui64(row: Row, subnets: Sequence[addresses.Subnet], new_mac: str) -> set[str]:
    """The port's SLAAC addresses that a MAC change makes wrong."""
    if new_mac == row["mac_address"]:
        return set()
    auto = {s.id: s for s in subnets if s.auto_address}
    return {
        ip["ip_address"] for ip in row["fixed_ips"]
        if ip["subnet_id"] in auto
        and ip["ip_address"] == auto[ip["subnet_id"]].text(
            auto[ip["subnet_id"]].eui64(row["mac_address"]))
    }


def delete_network_ports(txn: Transaction, network_id: str) -> None:
    """Delete the ports left on a network that is being deleted (only auto-deletable ones
    remain by then): their tags go, their allocations and bindings cascade, and each
    deletion is recorded in the outbox."""
    rows = txn.select("ports", {"network_id": network_id})
    if not rows:
        return
    ids = [r["id"] for r in rows]
    txn.delete("tags", {"resource_id": ids})
    txn.delete("ports", {"id": ids})
    outbox.append_many(txn, "port", rows, outbox.DELETE, [change_detail(r) for r in rows])

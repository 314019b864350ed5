"""Floating IPs: an address allocated on a ``router:external`` network (its own port,
``network:floatingip``, project ``""``), associated with a port's fixed IPv4 address through
the router that has a gateway on that network and an interface on the fixed address's subnet.

Neutron's rules: one floating IP per fixed address and external network; a port with several
IPv4 addresses needs ``fixed_ip_address``; ``status`` is ACTIVE while associated and DOWN
otherwise; ``port_details`` shows the associated port.  Deleting a fixed port disassociates
its floating IPs (``disassociate_port``, called by the port service); deleting a floating IP
frees its port and address.

Every write appends a ``floatingip`` outbox record whose detail carries ``router_id`` and
``port_id`` (after the change; for a deletion the router it had), ``previous_port_id`` and
``previous_router_id`` (before the change), so placement reaches the hosts of both ports.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from alcor import errors
from alcor.context import RequestContext
from alcor.db.store import Store, Transaction
from alcor.dpm import outbox
from alcor.services.resource import ResourceService, Row, new_id, stamp_new
from alcor.services.routers import INTERFACE_OWNER, elevated
from alcor.timestamps import utcnow

if TYPE_CHECKING:
    from alcor.services.ports import PortService

FLOATINGIP_OWNER = "network:floatingip"
DHCP_OWNER = "network:dhcp"
ACTIVE = "ACTIVE"
DOWN = "DOWN"
PORT_DETAILS = ("name", "network_id", "mac_address", "admin_state_up", "status", "device_id",
                "device_owner")
"""The associated port's attributes shown in ``port_details`` (fip-port-details)."""


def _bad_request(msg: str) -> errors.BadRequest:
    return errors.BadRequest(resource="floatingip", msg=msg)


def change_detail(new: Mapping[str, Any] | None, old: Mapping[str, Any] | None) -> Row:
    """The outbox detail of a floating IP change (``new`` is None for a deletion)."""
    return {
        "router_id": (new or old or {}).get("router_id"),
        "port_id": new["port_id"] if new else None,
        "previous_port_id": old["port_id"] if old else None,
        "previous_router_id": old["router_id"] if old else None,
    }


def _unassociated() -> Row:
    return {"port_id": None, "fixed_ip_address": None, "router_id": None, "status": DOWN}


def disassociate_port(txn: Transaction, port_id: str, keep: Collection[str] = ()) -> None:
    """The fixed port ``port_id`` is going, or lost addresses: its floating IPs whose fixed
    address is not in ``keep`` keep their own address and lose the association (Neutron's
    ``disassociate_floatingips``)."""
    now = utcnow()
    for row in txn.select("floatingips", {"port_id": port_id}):
        if row["fixed_ip_address"] in keep:
            continue
        values = {**_unassociated(), "revision_number": row["revision_number"] + 1,
                  "updated_at": now}
        txn.update("floatingips", {"id": row["id"]}, values)
        new = {**row, **values}
        outbox.append(txn, "floatingip", new, outbox.UPDATE, change_detail(new, row))


def _fixed_address(port: Row, wanted: str | None) -> tuple[str, str]:
    """(subnet_id, address) of the port's fixed IPv4 address to translate to."""
    if wanted:
        address = ipaddress.ip_address(wanted)
        if address.version != 4:
            raise _bad_request(f"Cannot process floating IP association with {wanted}, since "
                               "that is not an IPv4 address")
        for ip in port["fixed_ips"]:
            if ipaddress.ip_address(ip["ip_address"]) == address:
                return ip["subnet_id"], ip["ip_address"]
        raise _bad_request(f"Port {port['id']} does not have fixed ip {wanted}")
    v4 = [ip for ip in port["fixed_ips"] if ipaddress.ip_address(ip["ip_address"]).version == 4]
    if not v4:
        raise _bad_request(f"Cannot add floating IP to port {port['id']} that has no fixed "
                           "IPv4 addresses")
    if len(v4) > 1:
        raise _bad_request(f"Port {port['id']} has multiple fixed IPv4 addresses.  Must "
                           "provide a specific IPv4 address when assigning a floating IP")
    return v4[0]["subnet_id"], v4[0]["ip_address"]


class FloatingIPService(ResourceService):
    table: ClassVar[str] = "floatingips"
    resource_type: ClassVar[str] = "floatingip"
    not_found = errors.FloatingIPNotFound
    not_found_key = "floatingip_id"
    locks_rows = True

    def __init__(self, store: Store, ports: PortService) -> None:
        super().__init__(store)
        self.ports = ports

    # --- reading -------------------------------------------------------------------------

    def decorate(self, txn: Transaction, rows: list[Row]) -> list[Row]:
        """``port_details`` of each associated port (one query per page)."""
        ids = sorted({r["port_id"] for r in rows if r["port_id"]})
        ports = {p["id"]: p for p in txn.select(
            "ports", {"id": ids}, columns=("id", *PORT_DETAILS))} if ids else {}
        for row in rows:
            port = ports.get(row["port_id"] or "")
            row["port_details"] = {k: port[k] for k in PORT_DETAILS} if port else None
        return rows

    # --- create --------------------------------------------------------------------------

    def create_one(self, txn: Transaction, ctx: RequestContext, item: Row) -> Row:
        network_id = item["floating_network_id"]
        v4_subnets = self._external_v4_subnets(txn, ctx, network_id)
        fip_id = new_id()
        port = self._floating_port(txn, ctx, item, v4_subnets, fip_id)
        address = next((ip["ip_address"] for ip in port["fixed_ips"]
                        if ipaddress.ip_address(ip["ip_address"]).version == 4), None)
        if address is None:
            raise errors.ExternalIpAddressExhausted(net_id=network_id)
        row = stamp_new({
            "id": fip_id, "project_id": item["project_id"], "name": "",
            "description": item.get("description", ""), "tags": item.get("tags", []),
            "floating_network_id": network_id, "floating_ip_address": address,
            "floating_port_id": port["id"], "dns_name": item.get("dns_name", ""),
            "dns_domain": item.get("dns_domain", ""), "qos_policy_id": item.get("qos_policy_id"),
            **_unassociated(),
        })
        row.update(self._association(txn, ctx, row, item))
        txn.insert(self.table, row)
        return row

    def after_create(self, txn: Transaction, ctx: RequestContext, rows: list[Row]) -> None:
        outbox.append_many(txn, self.resource_type, rows, outbox.CREATE,
                           [change_detail(row, None) for row in rows])

    @staticmethod
    def _external_v4_subnets(txn: Transaction, ctx: RequestContext, network_id: str
                             ) -> list[str]:
        network = txn.get("networks", network_id)
        if network is None or not (ctx.is_admin or network["shared"] or network["router:external"]
                                   or network["project_id"] == ctx.project_id):
            raise errors.NetworkNotFound(net_id=network_id)
        if not network["router:external"]:
            raise _bad_request(f"Network {network_id} is not a valid external network")
        v4 = [s["id"] for s in txn.select("subnets", {"network_id": network_id},
                                          columns=("id", "ip_version"),
                                          order_by=("created_at", "id"))
              if s["ip_version"] == 4]
        if not v4:
            raise _bad_request(f"Network {network_id} does not contain any IPv4 subnet")
        return v4

    def _floating_port(
        self, txn: Transaction, ctx: RequestContext, item: Row, v4_subnets: list[str],
        fip_id: str,
    ) -> Row:
        """The floating IP's port: on the asked subnet and/or address, else on the first
        IPv4 subnet with a free address."""
        base: Row = {"project_id": "", "network_id": item["floating_network_id"], "name": "",
                     "admin_state_up": True, "device_id": fip_id,
                     "device_owner": FLOATINGIP_OWNER}
        asked: Row = {}
        if item.get("subnet_id"):
            asked["subnet_id"] = item["subnet_id"]
        if item.get("floating_ip_address"):
            asked["ip_address"] = item["floating_ip_address"]
        admin = elevated(ctx)
        if asked:
            return self.ports.create_rows(txn, admin, [{**base, "fixed_ips": [asked]}])[0]
        for subnet_id in v4_subnets[:-1]:
            try:
                return self.ports.create_rows(
                    txn, admin, [{**base, "fixed_ips": [{"subnet_id": subnet_id}]}])[0]
            except errors.IpAddressGenerationFailure:
                continue  # nothing was written: the next subnet may have room
        return self.ports.create_rows(
            txn, admin, [{**base, "fixed_ips": [{"subnet_id": v4_subnets[-1]}]}])[0]

    # --- association ---------------------------------------------------------------------

    def _association(self, txn: Transaction, ctx: RequestContext, fip: Row, body: Row) -> Row:
        """Neutron's ``_check_and_get_fip_assoc``: port_id, fixed_ip_address, router_id and
        status the floating IP gets from ``body`` (a create body or update changes)."""
        port_id, wanted = body.get("port_id"), body.get("fixed_ip_address")
        if wanted and not port_id:
            raise _bad_request("fixed_ip_address cannot be specified without a port_id")
        if not port_id:
            return _unassociated()
        port = self._fixed_port(txn, ctx, fip, port_id)
        subnet_id, address = _fixed_address(port, wanted)
        router_id = self._router_for(txn, port, subnet_id, fip["floating_network_id"])
        taken = [r for r in txn.select("floatingips", {
            "floating_network_id": fip["floating_network_id"], "port_id": port_id,
            "fixed_ip_address": address}, columns=("id",)) if r["id"] != fip["id"]]
        if taken:
            raise errors.FloatingIPPortAlreadyAssociated(
                port_id=port_id, fip_id=fip["id"], floating_ip_address=fip["floating_ip_address"],
                fixed_ip=address, net_id=fip["floating_network_id"])
        return {"port_id": port_id, "fixed_ip_address": address, "router_id": router_id,
                "status": ACTIVE}

    @staticmethod
    def _fixed_port(txn: Transaction, ctx: RequestContext, fip: Row, port_id: str) -> Row:
        port = txn.get("ports", port_id)
        if port is None or not (ctx.is_admin or port["project_id"] == ctx.project_id):
            raise errors.PortNotFound(port_id=port_id)
        if port["project_id"] != fip["project_id"] and not ctx.is_admin:
            raise _bad_request(f"Cannot process floating IP association with Port {port_id}, "
                               "since that port is owned by a different tenant")
        if port["device_owner"] == DHCP_OWNER:
            raise _bad_request(f"Port {port_id} is unable to be assigned a floating IP")
        return port

    @staticmethod
    def _router_for(txn: Transaction, port: Row, subnet_id: str, network_id: str) -> str:
        """Neutron's ``get_router_for_floatingip``: a router with an interface on the subnet
        and its gateway on the floating network, preferably the one holding the subnet's
        gateway IP.  The candidates are locked, so a concurrent interface or gateway removal
        either sees this association or happens first."""
        subnet = txn.get("subnets", subnet_id)
        assert subnet is not None
        if not subnet["gateway_ip"]:
            raise _bad_request(f"Cannot add floating IP to port on subnet {subnet_id} which has "
                               "no gateway_ip")
        where = {"subnet_id": subnet_id, "port_type": INTERFACE_OWNER}
        router_ids = sorted(set(txn.scalars("router_ports", "router_id", where)))
        served = {r["id"] for r in txn.select("routers", {"id": router_ids},
                                                columns=("id", "external_gateway_info"),
                                                for_update=True)
                  if (r["external_gateway_info"] or {}).get("network_id") == network_id
                  } if router_ids else set()
        links = sorted((link["router_id"], link["port_id"])
                       for link in txn.select("router_ports", where)
                       if link["router_id"] in served)
        if links:
            holders = set(txn.scalars("ip_allocations", "port_id",
                                      {"subnet_id": subnet_id, "ip_address": subnet["gateway_ip"]}))
            return str(next((r for r, p in links if p in holders), links[0][0]))
        raise errors.ExternalGatewayForFloatingIPNotFound(
            subnet_id=subnet_id, external_network_id=network_id, port_id=port["id"])

    # --- update and delete ---------------------------------------------------------------

    def before_update(self, txn: Transaction, ctx: RequestContext, row: Row, changes: Row) -> Row:
        values = dict(changes)
        if "port_id" in changes or "fixed_ip_address" in changes:
            values.update(self._association(txn, ctx, row, changes))
        return values

    def save(self, txn: Transaction, row: Row, values: Row) -> Row:
        """ResourceService.save, with the association change in the outbox record."""
        values = {k: v for k, v in values.items() if k in row}
        values["revision_number"] = row["revision_number"] + 1
        values["updated_at"] = utcnow()
        txn.update(self.table, {"id": row["id"]}, values)
        new = {**row, **values}
        outbox.append(txn, self.resource_type, new, outbox.UPDATE, change_detail(new, row))
        return self.decorate(txn, [new])[0]

    def remove(self, txn: Transaction, row: Row) -> None:
        """Delete the floating IP, then its port (which frees the address)."""
        txn.delete("tags", {"resource_id": row["id"]})
        txn.delete(self.table, {"id": row["id"]})
        outbox.append(txn, self.resource_type, row, outbox.DELETE, change_detail(None, row))
        port = txn.get("ports", row["floating_port_id"])
        if port is not None:
            self.ports.remove(txn, port)

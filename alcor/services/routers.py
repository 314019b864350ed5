"""Routers: create, update and delete with Neutron's checks, the external gateway (its port on
a ``router:external`` network, SNAT mode, chosen addresses), interfaces added and removed by
subnet or by port, and extra routes, set whole or edited atomically.

A router's ports are rows of ``ports`` made through the port service (so they allocate
addresses and append port outbox records like any port) plus one ``router_ports`` row each:
an interface (``network:router_interface``, in the router's project, on the subnet's gateway
IP when added by subnet) or the gateway (``network:router_gateway``, project ``""``).

Every router write appends a ``router`` outbox record whose detail carries ``subnet_ids``:
the subnets attached before and after the change, so the data-plane manager reaches every
host the router is or was present on.  Each write locks the router row first
(``find_writable``: ``locks_rows``), so interface, gateway and route checks see settled
state.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from alcor import errors
from alcor.context import RequestContext
from alcor.db.store import Store, Transaction
from alcor.dpm import outbox
from alcor.services.resource import ResourceService, Row, stamp_new
from alcor.timestamps import utcnow

if TYPE_CHECKING:
    from alcor.services.ports import PortService

INTERFACE_OWNER = "network:router_interface"
GATEWAY_OWNER = "network:router_gateway"
MAX_ROUTES = 30
"""Neutron's ``max_routes`` default."""


def _bad_request(msg: str) -> errors.BadRequest:
    return errors.BadRequest(resource="router", msg=msg)


def elevated(ctx: RequestContext) -> RequestContext:
    """The context for ports a router or floating IP makes on the side (any network)."""
    return dataclasses.replace(ctx, is_admin=True)


def interface_info(router_id: str, port: Mapping[str, Any], subnet_ids: list[str]) -> Row:
    """Neutron's answer to add/remove_router_interface."""
    return {"id": router_id, "tenant_id": port["project_id"], "project_id": port["project_id"],
            "port_id": port["id"], "network_id": port["network_id"],
            "subnet_id": subnet_ids[0], "subnet_ids": subnet_ids}


def normal_routes(routes: Iterable[Mapping[str, str]]) -> list[dict[str, str]]:
    """Routes with canonical addresses, each once, in the order given."""
    out: list[dict[str, str]] = []
    for route in routes:
        entry = {"destination": str(ipaddress.ip_network(route["destination"], strict=False)),
                 "nexthop": str(ipaddress.ip_address(route["nexthop"]))}
        if entry not in out:
            out.append(entry)
    return out


def _gateway_ips(fixed_ips: Iterable[Mapping[str, str]]) -> list[dict[str, str]]:
    return [{"subnet_id": ip["subnet_id"], "ip_address": ip["ip_address"]} for ip in fixed_ips]


def _ips_change(port: Mapping[str, Any] | None, wanted: Sequence[Mapping[str, str]]) -> bool:
    """Neutron's ``_check_for_external_ip_change``: asked-for gateway addresses differ."""
    if not wanted:
        return False
    if port is None:
        return True
    if {ip["subnet_id"] for ip in port["fixed_ips"]} != {w["subnet_id"] for w in wanted
                                                         if w.get("subnet_id")}:
        return True
    return {ip["ip_address"] for ip in port["fixed_ips"]} != {
        str(ipaddress.ip_address(w["ip_address"])) for w in wanted if w.get("ip_address")}


def _check_address_mode(subnet: Mapping[str, Any]) -> None:
    """IPv6 subnets served by an outside router's advertisements cannot join a router."""
    if (subnet["ip_version"] == 6 and subnet["ipv6_ra_mode"] is None
            and subnet["ipv6_address_mode"] is not None):
        raise _bad_request(f"IPv6 subnet {subnet['id']} configured to receive RAs from an "
                           "external router cannot be added to Neutron Router.")


def _check_no_overlap(old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    a, b = ipaddress.ip_network(old["cidr"]), ipaddress.ip_network(new["cidr"])
    if a.version == b.version and a.overlaps(b):
        raise _bad_request(f"Cidr {new['cidr']} of subnet {new['id']} overlaps with cidr "
                           f"{old['cidr']} of subnet {old['id']}")


def _in_subnet(address: str | None, subnet: Mapping[str, Any]) -> bool:
    if not address:
        return False
    ip, net = ipaddress.ip_address(address), ipaddress.ip_network(subnet["cidr"])
    return ip.version == net.version and ip in net


class RouterService(ResourceService):
    table: ClassVar[str] = "routers"
    resource_type: ClassVar[str] = "router"
    not_found = errors.RouterNotFound
    not_found_key = "router_id"
    locks_rows = True

    def __init__(self, store: Store, ports: PortService) -> None:
        super().__init__(store)
        self.ports = ports

    # --- reading -------------------------------------------------------------------------

    def decorate(self, txn: Transaction, rows: list[Row]) -> list[Row]:
        """The gateway's addresses as its port holds them now (one query per page)."""
        gw_ids = sorted({r["gw_port_id"] for r in rows if r.get("gw_port_id")})
        if not gw_ids:
            return rows
        fixed = {p["id"]: p["fixed_ips"] for p in txn.select(
            "ports", {"id": gw_ids}, columns=("id", "fixed_ips"))}
        for row in rows:
            info = row.get("external_gateway_info")
            if info and row["gw_port_id"] in fixed:
                row["external_gateway_info"] = {
                    **info, "external_fixed_ips": _gateway_ips(fixed[row["gw_port_id"]])}
        return rows

    def _attached(self, txn: Transaction, router_id: str) -> list[Row]:
        """The router's ports (interfaces and gateway), oldest first."""
        ids = txn.scalars("router_ports", "port_id", {"router_id": router_id})
        if not ids:
            return []
        return txn.select("ports", {"id": sorted(ids)}, order_by=("created_at", "id"))

    def _interface_subnets(self, txn: Transaction, router_id: str) -> list[str]:
        return sorted(txn.scalars("router_ports", "subnet_id",
                                  {"router_id": router_id, "port_type": INTERFACE_OWNER}))

    # --- create --------------------------------------------------------------------------

    def prepare_create(self, ctx: RequestContext, items: list[Row]) -> list[Row]:
        for item in items:
            _check_gateway_policy(ctx, item.get("external_gateway_info"), "create_router")
        return items

    def create_one(self, txn: Transaction, ctx: RequestContext, item: Row) -> Row:
        if item.get("flavor_id") is not None:
            raise errors.FlavorNotFound(flavor_id=item["flavor_id"])
        gateway = item.get("external_gateway_info")
        row = stamp_new({**item, "status": "ACTIVE", "routes": [], "gw_port_id": None,
                         "external_gateway_info": None})
        txn.insert(self.table, row)
        if gateway is not None:
            values = self._gateway_change(txn, ctx, row, gateway)
            txn.update(self.table, {"id": row["id"]}, values)
            row.update(values)
        return row

    def after_create(self, txn: Transaction, ctx: RequestContext, rows: list[Row]) -> None:
        outbox.append_many(txn, self.resource_type, rows, outbox.CREATE,
                           [{"subnet_ids": []} for _ in rows])

    # --- update --------------------------------------------------------------------------

    def before_update(self, txn: Transaction, ctx: RequestContext, row: Row, changes: Row) -> Row:
        values = dict(changes)
        if "external_gateway_info" in changes:
            _check_gateway_policy(ctx, changes["external_gateway_info"], "update_router")
            values.update(self._gateway_change(txn, ctx, row, changes["external_gateway_info"]))
        if "routes" in changes:
            values["routes"] = normal_routes(changes["routes"])
        if "routes" in changes or "external_gateway_info" in changes:
            routes: list[Row] = values["routes"] if "routes" in values else row["routes"]
            self._check_routes(txn, row["id"], routes)
        return values

    def save(self, txn: Transaction, row: Row, values: Row,
             subnet_ids: Iterable[str] | None = None) -> Row:
        """Store ``values`` on ``row`` (revision bumped); the outbox record names the attached
        subnets, ``subnet_ids`` when given (those before and after an interface change)."""
        values = {k: v for k, v in values.items() if k in row}
        values["revision_number"] = row["revision_number"] + 1
        values["updated_at"] = utcnow()
        txn.update(self.table, {"id": row["id"]}, values)
        new = {**row, **values}
        ids = self._interface_subnets(txn, row["id"]) if subnet_ids is None else subnet_ids
        outbox.append(txn, self.resource_type, new, outbox.UPDATE,
                      {"subnet_ids": sorted(set(ids))})
        return self.decorate(txn, [new])[0]

    # --- delete --------------------------------------------------------------------------

    def before_delete(self, txn: Transaction, ctx: RequestContext, row: Row) -> None:
        """Refuse while interfaces remain (RouterInUse); the gateway port goes along."""
        interfaces = txn.scalars("router_ports", "port_id",
                                 {"router_id": row["id"], "port_type": INTERFACE_OWNER})
        if interfaces:
            raise errors.RouterInUse(router_id=row["id"], reason="has ports still attached: "
                                     + ", ".join(sorted(interfaces)))
        gateway = txn.get("ports", row["gw_port_id"]) if row["gw_port_id"] else None
        if gateway is not None:
            self._drop_gateway(txn, row, gateway)

    def remove(self, txn: Transaction, row: Row) -> None:
        txn.delete("tags", {"resource_id": row["id"]})
        txn.delete(self.table, {"id": row["id"]})
        outbox.append(txn, self.resource_type, row, outbox.DELETE, {"subnet_ids": []})

    # --- external gateway ----------------------------------------------------------------

    def _gateway_change(
        self, txn: Transaction, ctx: RequestContext, router: Row, info: Row | None
    ) -> Row:
        """Neutron's ``_update_router_gw_info``: set, move, readdress or clear the gateway;
        the router columns that change."""
        wanted = (info or {}).get("external_fixed_ips") or []
        network_id = info["network_id"] if info else None
        if network_id is not None:
            self._check_external(txn, ctx, network_id, wanted)
        port = txn.get("ports", router["gw_port_id"]) if router["gw_port_id"] else None
        if port is not None and port["network_id"] == network_id and _ips_change(port, wanted):
            admin = elevated(ctx)
            port = self.ports.save(txn, port, self.ports.before_update(
                txn, admin, port, {"fixed_ips": wanted}))
        else:
            if port is not None and port["network_id"] != network_id:
                self._drop_gateway(txn, router, port)
                port = None
            if network_id is not None and port is None:
                port = self._new_gateway(txn, ctx, router, network_id, wanted)
        if port is None or info is None:
            return {"external_gateway_info": None, "gw_port_id": None}
        return {"gw_port_id": port["id"], "external_gateway_info": {
            "network_id": port["network_id"],
            "external_fixed_ips": _gateway_ips(port["fixed_ips"]),
            "enable_snat": info.get("enable_snat", True),
        }}

    @staticmethod
    def _check_external(
        txn: Transaction, ctx: RequestContext, network_id: str, wanted: Sequence[Row]
    ) -> None:
        network = txn.get("networks", network_id)
        if network is None or not (ctx.is_admin or network["shared"] or network["router:external"]
                                   or network["project_id"] == ctx.project_id):
            raise errors.NetworkNotFound(net_id=network_id)
        if not network["router:external"]:
            raise _bad_request(f"Network {network_id} is not an external network")
        gateways = {ipaddress.ip_address(g) for g in txn.scalars(
            "subnets", "gateway_ip", {"network_id": network_id}) if g}
        for entry in wanted:
            if entry.get("ip_address") and ipaddress.ip_address(entry["ip_address"]) in gateways:
                raise _bad_request(f"External IP {entry['ip_address']} is the same as the "
                                   "gateway IP")

    def _new_gateway(
        self, txn: Transaction, ctx: RequestContext, router: Row, network_id: str,
        wanted: Sequence[Row],
    ) -> Row:
        subnets = txn.select("subnets", {"network_id": network_id}, columns=("id", "cidr"),
                             order_by=("created_at", "id"))
        self._check_subnets_free(txn, router["id"], subnets)
        item: Row = {"project_id": "", "network_id": network_id, "name": "",
                     "admin_state_up": True, "device_id": router["id"],
                     "device_owner": GATEWAY_OWNER}
        if wanted:
            item["fixed_ips"] = [dict(w) for w in wanted]
        [port] = self.ports.create_rows(txn, elevated(ctx), [item])
        txn.insert("router_ports", {"port_id": port["id"], "router_id": router["id"],
                                    "subnet_id": None, "port_type": GATEWAY_OWNER})
        return port

    def _drop_gateway(self, txn: Transaction, router: Row, port: Row) -> None:
        """Delete the gateway port, unless floating IPs are served through it."""
        if txn.exists("floatingips", {"router_id": router["id"]}):
            raise errors.RouterExternalGatewayInUseByFloatingIp(
                router_id=router["id"], net_id=port["network_id"])
        self.ports.remove(txn, port)

    # --- interfaces ----------------------------------------------------------------------

    def add_interface(
        self, ctx: RequestContext, router_id: str, port_id: str | None, subnet_id: str | None
    ) -> Row:
        return self.store.write(self.add_interface_txn, ctx, router_id, port_id, subnet_id)

    def add_interface_txn(
        self, txn: Transaction, ctx: RequestContext, router_id: str, port_id: str | None,
        subnet_id: str | None,
    ) -> Row:
        """Attach a subnet (a new port on its gateway IP) or an unused port; Neutron's answer."""
        router = self.find_writable(txn, ctx, router_id, "add_router_interface")
        before = self._interface_subnets(txn, router_id)
        if port_id is not None:
            port, subnet = self._attach_port(txn, ctx, router, port_id)
        else:
            assert subnet_id is not None
            port, subnet = self._attach_subnet(txn, ctx, router, subnet_id)
        txn.insert("router_ports", {"port_id": port["id"], "router_id": router["id"],
                                    "subnet_id": subnet["id"], "port_type": INTERFACE_OWNER})
        self.save(txn, router, {}, [*before, subnet["id"]])
        return interface_info(router["id"], port, [subnet["id"]])

    def _attach_subnet(
        self, txn: Transaction, ctx: RequestContext, router: Row, subnet_id: str
    ) -> tuple[Row, Row]:
        subnet = _visible_subnet(txn, ctx, subnet_id)
        if not subnet["gateway_ip"]:
            raise _bad_request("Subnet for router interface must have a gateway IP")
        if subnet["project_id"] != ctx.project_id and not ctx.is_admin:
            raise _bad_request(f"Cannot add interface to router because subnet {subnet_id} is "
                               "not owned by project making the request")
        _check_address_mode(subnet)
        self._check_subnets_free(txn, router["id"], [subnet])
        item = {"project_id": router["project_id"], "network_id": subnet["network_id"],
                "name": "", "admin_state_up": True, "device_id": router["id"],
                "device_owner": INTERFACE_OWNER,
                "fixed_ips": [{"subnet_id": subnet["id"], "ip_address": subnet["gateway_ip"]}]}
        [port] = self.ports.create_rows(txn, elevated(ctx), [item])
        return port, subnet

    def _attach_port(
        self, txn: Transaction, ctx: RequestContext, router: Row, port_id: str
    ) -> tuple[Row, Row]:
        port = txn.get("ports", port_id)
        if port is None or not (ctx.is_admin or port["project_id"] == ctx.project_id):
            raise errors.PortNotFound(port_id=port_id)
        if port["device_id"]:
            raise errors.PortInUse(port_id=port_id, net_id=port["network_id"],
                                   device_id=port["device_id"])
        if not port["fixed_ips"]:
            raise _bad_request("Router port must have at least one fixed IP")
        subnets = txn.select("subnets", {"id": [ip["subnet_id"] for ip in port["fixed_ips"]]})
        for subnet in subnets:
            _check_address_mode(subnet)
        self._check_subnets_free(txn, router["id"], subnets)
        if sum(1 for s in subnets if s["ip_version"] == 4) > 1:
            raise _bad_request("Cannot have multiple IPv4 subnets on router port")
        if len(port["fixed_ips"]) > 1:
            raise _bad_request(f"Router port {port_id} must have exactly one fixed IP, it has "
                               f"{len(port['fixed_ips'])}")
        port = self.ports.save(txn, port, {"device_id": router["id"],
                                           "device_owner": INTERFACE_OWNER})
        return port, subnets[0]

    def _check_subnets_free(
        self, txn: Transaction, router_id: str, new: Sequence[Mapping[str, Any]]
    ) -> None:
        """Neutron's ``_check_for_dup_router_subnets``: no second port on a subnet, no CIDR
        overlapping an interface's or the external network's."""
        new_ids = {s["id"] for s in new}
        compare: set[str] = set()
        for port in self._attached(txn, router_id):
            for ip in port["fixed_ips"]:
                if ip["subnet_id"] in new_ids:
                    raise _bad_request(f"Router already has a port on subnet {ip['subnet_id']}")
                compare.add(ip["subnet_id"])
            if port["device_owner"] == GATEWAY_OWNER:
                compare.update(txn.scalars("subnets", "id", {"network_id": port["network_id"]}))
        if not compare:
            return
        for old in txn.select("subnets", {"id": sorted(compare)}, columns=("id", "cidr"),
                              order_by=("created_at", "id")):
            for subnet in new:
                _check_no_overlap(old, subnet)

    def remove_interface(
        self, ctx: RequestContext, router_id: str, port_id: str | None, subnet_id: str | None
    ) -> Row:
        return self.store.write(self.remove_interface_txn, ctx, router_id, port_id, subnet_id)

    def remove_interface_txn(
        self, txn: Transaction, ctx: RequestContext, router_id: str, port_id: str | None,
        subnet_id: str | None,
    ) -> Row:
        """Detach an interface (by port, or by subnet) and delete its port; Neutron's answer."""
        router = self.find_writable(txn, ctx, router_id, "remove_router_interface")
        before = self._interface_subnets(txn, router_id)
        if port_id is not None:
            port, subnets = self._interface_by_port(txn, router, port_id, subnet_id)
        else:
            assert subnet_id is not None
            port, subnets = self._interface_by_subnet(txn, ctx, router, subnet_id)
        for subnet in subnets:
            self._check_interface_unused(txn, router, subnet)
        self.ports.remove(txn, port)
        self.save(txn, router, {}, before)
        return interface_info(router["id"], port, [s["id"] for s in subnets])

    @staticmethod
    def _interface_by_port(
        txn: Transaction, router: Row, port_id: str, subnet_id: str | None
    ) -> tuple[Row, list[Row]]:
        port = txn.get("ports", port_id) if txn.exists("router_ports", {
            "port_id": port_id, "router_id": router["id"], "port_type": INTERFACE_OWNER}) else None
        if port is None:
            raise errors.RouterInterfaceNotFound(router_id=router["id"], port_id=port_id)
        subnet_ids = [ip["subnet_id"] for ip in port["fixed_ips"]]
        if subnet_id and subnet_id not in subnet_ids:
            raise errors.SubnetMismatchForPort(port_id=port_id, subnet_id=subnet_id)
        return port, txn.select("subnets", {"id": subnet_ids}) if subnet_ids else []

    @staticmethod
    def _interface_by_subnet(
        txn: Transaction, ctx: RequestContext, router: Row, subnet_id: str
    ) -> tuple[Row, list[Row]]:
        subnet = _visible_subnet(txn, ctx, subnet_id)
        port_ids = txn.scalars("router_ports", "port_id", {
            "router_id": router["id"], "subnet_id": subnet_id, "port_type": INTERFACE_OWNER})
        port = txn.get("ports", port_ids[0]) if port_ids else None
        if port is None:
            raise errors.RouterInterfaceNotFoundForSubnet(router_id=router["id"],
                                                          subnet_id=subnet_id)
        return port, [subnet]

    @staticmethod
    def _check_interface_unused(txn: Transaction, router: Row, subnet: Row) -> None:
        """Floating IPs translated on this subnet, or routes via it, keep the interface."""
        for address in txn.scalars("floatingips", "fixed_ip_address", {"router_id": router["id"]}):
            if _in_subnet(address, subnet):
                raise errors.RouterInterfaceInUseByFloatingIP(router_id=router["id"],
                                                              subnet_id=subnet["id"])
        for route in router["routes"]:
            if _in_subnet(route["nexthop"], subnet):
                raise errors.RouterInterfaceInUseByRoute(router_id=router["id"],
                                                         subnet_id=subnet["id"])

    # --- extra routes --------------------------------------------------------------------

    def add_routes(self, ctx: RequestContext, router_id: str, routes: list[Row]) -> Row:
        return self.store.write(self.add_routes_txn, ctx, router_id, routes)

    def add_routes_txn(
        self, txn: Transaction, ctx: RequestContext, router_id: str, routes: list[Row]
    ) -> Row:
        """``add_extraroutes``: the router's routes plus these (an exact repeat is kept once)."""
        router = self.find_writable(txn, ctx, router_id, "add_extraroutes")
        merged = normal_routes([*router["routes"], *routes])
        self._check_routes(txn, router_id, merged)
        return self.save(txn, router, {"routes": merged})

    def remove_routes(self, ctx: RequestContext, router_id: str, routes: list[Row]) -> Row:
        return self.store.write(self.remove_routes_txn, ctx, router_id, routes)

    def remove_routes_txn(
        self, txn: Transaction, ctx: RequestContext, router_id: str, routes: list[Row]
    ) -> Row:
        """``remove_extraroutes``: the router's routes but these (absent ones are no error)."""
        router = self.find_writable(txn, ctx, router_id, "remove_extraroutes")
        gone = normal_routes(routes)
        kept = [r for r in router["routes"] if r not in gone]
        self._check_routes(txn, router_id, kept)
        return self.save(txn, router, {"routes": kept})

    def _check_routes(self, txn: Transaction, router_id: str, routes: list[Row]) -> None:
        """Neutron's ``_validate_routes``: at most MAX_ROUTES, each next hop on a subnet of
        one of the router's ports and not one of the router's own addresses."""
        if len(routes) > MAX_ROUTES:
            raise errors.RoutesExhausted(router_id=router_id, quota=MAX_ROUTES)
        if not routes:
            return
        fixed = [ip for port in self._attached(txn, router_id) for ip in port["fixed_ips"]]
        subnet_ids = sorted({ip["subnet_id"] for ip in fixed})
        subnets = txn.select("subnets", {"id": subnet_ids}, columns=("cidr",)) if fixed else []
        own = {ipaddress.ip_address(ip["ip_address"]) for ip in fixed}
        for route in routes:
            if not any(_in_subnet(route["nexthop"], s) for s in subnets):
                raise errors.InvalidRoutes(routes=routes,
                                           reason="the nexthop is not connected with router")
            if ipaddress.ip_address(route["nexthop"]) in own:
                raise errors.InvalidRoutes(routes=routes, reason="the nexthop is used by router")


GATEWAY_ADMIN_KEYS = ("enable_snat", "external_fixed_ips")
"""Parts of ``external_gateway_info`` only admins may choose (Neutron's default policy)."""


def _check_gateway_policy(ctx: RequestContext, info: Mapping[str, Any] | None,
                          action: str) -> None:
    """A non-admin may name the external network, not SNAT or the gateway's addresses."""
    if ctx.is_admin or not info:
        return
    for key in GATEWAY_ADMIN_KEYS:
        if key in info:
            raise errors.PolicyNotAuthorized(
                action=f"(rule:{action} and rule:{action}:external_gateway_info:{key})")


def _visible_subnet(txn: Transaction, ctx: RequestContext, subnet_id: str) -> Row:
    """The subnet as its project, an admin, or anyone on a shared network sees it."""
    subnet = txn.get("subnets", subnet_id)
    if subnet is None or not (
        ctx.is_admin or subnet["project_id"] == ctx.project_id
        or txn.exists("networks", {"id": subnet["network_id"], "shared": True})
    ):
        raise errors.SubnetNotFound(subnet_id=subnet_id)
    return subnet

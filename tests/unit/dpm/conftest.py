"""Fixtures of the data-plane manager's unit tests: a ``World`` that stores intent through
the real services (as the API would), routers and floating IPs by direct table inserts with
the outbox records the routing design specifies, and golden files of compiled goal states.

``pytest tests/unit/dpm --update-golden`` rewrites the files under ``tests/golden/`` from
what the compiler produces now; review the diff before committing it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from alcor.api.app import Services
from alcor.api.attributes import apply_create
from alcor.api.definitions import RESOURCES
from alcor.api.nodes import check_create
from alcor.cli.wiring import build_services, open_store
from alcor.config import load
from alcor.context import RequestContext
from alcor.db.store import Transaction
from alcor.dpm import outbox
from alcor.dpm.compiler.routers import external_mac, transit_mac
from alcor.dpm.compiler.subnets import gateway_mac
from alcor.rpc._generated import goalstate_pb2
from alcor.services.nodes import NodeService
from alcor.timestamps import utcnow

GOLDEN = Path(__file__).resolve().parents[2] / "golden"

Row = dict[str, Any]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/golden/*.json from the compiler's current output")


class World:
    """Stored intent built through the services; names make ids readable in golden files."""

    def __init__(self, services: Services, ctx: RequestContext) -> None:
        self.services = services
        self.store = services.store
        self.ctx = ctx
        self.nodes = NodeService(self.store)

    def _create(self, collection: str, **body: Any) -> Row:
        service = self.services.by_collection[collection]
        item = apply_create(RESOURCES[collection], body, self.ctx.project_id)
        return service.create(self.ctx, service.prepare_create(self.ctx, [item]))[0]

    def _update(self, collection: str, id_: str, **changes: Any) -> Row:
        return self.services.by_collection[collection].update(self.ctx, id_, changes)

    def node(self, node_id: str, node_name: str, local_ip: str, mac: str = "",
             dvr_mac: str = "") -> Row:
        item = check_create({"node_id": node_id, "node_name": node_name,
                             "local_ip": local_ip, "mac_address": mac, "host_dvr_mac": dvr_mac})
        rows: list[Row] = self.store.write(self.nodes.create_txn, [item])
        return rows[0]

    def node_row(self, node_id: str) -> Row:
        return self.store.read(lambda txn: txn.select("nodes", {"node_id": node_id})[0])

    def network(self, name: str, vni: int, **body: Any) -> Row:
        return self._create("networks", name=name, **{"provider:segmentation_id": vni}, **body)

    def subnet(self, network: Row, name: str, cidr: str, **body: Any) -> Row:
        version = 6 if ":" in cidr else 4
        return self._create("subnets", network_id=network["id"], name=name, cidr=cidr,
                            ip_version=version, **body)

    def port(self, network: Row, name: str, host: str, mac: str, ips: list[Row] | None = None,
             **body: Any) -> Row:
        if ips is not None:
            body["fixed_ips"] = ips
        return self._create("ports", network_id=network["id"], name=name, mac_address=mac,
                            **{"binding:host_id": host}, **body)

    def update_port(self, port: Row, **changes: Any) -> Row:
        return self._update("ports", port["id"], **changes)

    def group(self, name: str) -> Row:
        return self._create("security-groups", name=name)

    def rule(self, group: Row, **body: Any) -> Row:
        return self._create("security-group-rules", security_group_id=group["id"], **body)

    def delete_port(self, port: Row) -> None:
        self.services.by_collection["ports"].delete(self.ctx, port["id"])

    # --- routing, by direct inserts (with the outbox records the design specifies) ----------

    def router(self, name: str, routes: list[Row] | None = None) -> Row:
        now = utcnow()
        row = {"id": str(uuid.uuid4()), "project_id": self.ctx.project_id, "name": name,
               "description": "", "tags": [], "revision_number": 0, "created_at": now,
               "updated_at": now, "admin_state_up": True, "status": "ACTIVE",
               "external_gateway_info": None, "gw_port_id": None, "routes": routes or [],
               "distributed": True, "ha": False, "flavor_id": None,
               "availability_zone_hints": []}

        def create(txn: Transaction) -> None:
            txn.insert("routers", row)
            outbox.append(txn, "router", row, outbox.CREATE, {"subnet_ids": []})

        self.store.write(create)
        return row

    def router_row(self, router: Row) -> Row:
        return self.store.read(lambda txn: txn.get("routers", router["id"]))

    def _router_changed(self, txn: Transaction, router_id: str, values: Row,
                        before: set[str]) -> None:
        row = txn.get("routers", router_id)
        values = {**values, "revision_number": row["revision_number"] + 1}
        txn.update("routers", {"id": router_id}, values)
        after = set(txn.scalars("router_ports", "subnet_id", {"router_id": router_id})) - {None}
        outbox.append(txn, "router", {**row, **values}, outbox.UPDATE,
                      {"subnet_ids": sorted(before | after)})

    def _attached(self, txn: Transaction, router_id: str) -> set[str]:
        return set(txn.scalars("router_ports", "subnet_id", {"router_id": router_id})) - {None}

    def interface(self, router: Row, network: Row, subnet: Row, mac: str,
                  ip: str | None = None) -> Row:
        """Attach ``subnet`` (through a port at ``ip``, by default the subnet's gateway)."""
        port = self.port(network, f"{router['name']}-{subnet['name']}", "", mac,
                         [{"subnet_id": subnet["id"], "ip_address": ip or subnet["gateway_ip"]}],
                         device_owner="network:router_interface", device_id=router["id"])

        def attach(txn: Transaction) -> None:
            before = self._attached(txn, router["id"])
            txn.insert("router_ports", {"port_id": port["id"], "router_id": router["id"],
                                        "subnet_id": subnet["id"],
                                        "port_type": "network:router_interface"})
            self._router_changed(txn, router["id"], {}, before)

        self.store.write(attach)
        return port

    def remove_interface(self, router: Row, port: Row) -> None:
        ports = self.services.by_collection["ports"]

        def detach(txn: Transaction) -> None:
            before = self._attached(txn, router["id"])
            txn.delete("router_ports", {"port_id": port["id"]})
            ports.remove(txn, txn.get("ports", port["id"]))
            self._router_changed(txn, router["id"], {}, before)

        self.store.write(detach)

    def gateway(self, router: Row, network: Row, subnet: Row, mac: str, ip: str,
                host: str = "", enable_snat: bool = True) -> Row:
        port = self.port(network, f"{router['name']}-gateway", host, mac,
                         [{"subnet_id": subnet["id"], "ip_address": ip}],
                         device_owner="network:router_gateway", device_id=router["id"])
        info = {"network_id": network["id"], "enable_snat": enable_snat,
                "external_fixed_ips": [{"subnet_id": subnet["id"], "ip_address": ip}]}

        def set_gateway(txn: Transaction) -> None:
            txn.insert("router_ports", {"port_id": port["id"], "router_id": router["id"],
                                        "subnet_id": None, "port_type": "network:router_gateway"})
            self._router_changed(txn, router["id"], {"external_gateway_info": info,
                                                     "gw_port_id": port["id"]},
                                 self._attached(txn, router["id"]))

        self.store.write(set_gateway)
        return port

    def routes(self, router: Row, routes: list[Row]) -> None:
        self.store.write(lambda txn: self._router_changed(
            txn, router["id"], {"routes": routes}, self._attached(txn, router["id"])))

    def floating_ip(self, router: Row, network: Row, subnet: Row, address: str, mac: str,
                    port: Row | None = None) -> Row:
        fip_id = str(uuid.uuid4())
        fip_port = self.port(network, f"fip-{address}", "", mac,
                             [{"subnet_id": subnet["id"], "ip_address": address}],
                             device_owner="network:floatingip", device_id=fip_id)
        now = utcnow()
        row = {"id": fip_id, "project_id": self.ctx.project_id, "name": "", "description": "",
               "tags": [], "revision_number": 0, "created_at": now, "updated_at": now,
               "floating_network_id": network["id"], "floating_ip_address": address,
               "floating_port_id": fip_port["id"], "port_id": None, "fixed_ip_address": None,
               "router_id": None, "status": "DOWN", "dns_name": "", "dns_domain": "",
               "qos_policy_id": None}

        def create(txn: Transaction) -> None:
            txn.insert("floatingips", row)
            outbox.append(txn, "floatingip", row, outbox.CREATE,
                          {"router_id": None, "port_id": None, "previous_port_id": None})

        self.store.write(create)
        if port is not None:
            self.associate(row, router, port)
        return row

    def associate(self, fip: Row, router: Row | None, port: Row | None) -> None:
        """Associate ``fip`` with ``port`` (on ``router``), or disassociate it (None)."""
        def update(txn: Transaction) -> None:
            row = txn.get("floatingips", fip["id"])
            values = {"port_id": port["id"] if port else None,
                      "fixed_ip_address": port["fixed_ips"][0]["ip_address"] if port else None,
                      "router_id": router["id"] if router and port else None,
                      "status": "ACTIVE" if port else "DOWN",
                      "revision_number": row["revision_number"] + 1}
            txn.update("floatingips", {"id": fip["id"]}, values)
            outbox.append(txn, "floatingip", {**row, **values}, outbox.UPDATE,
                          {"router_id": values["router_id"] or row["router_id"],
                           "port_id": values["port_id"], "previous_port_id": row["port_id"]})

        self.store.write(update)

    def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.store.read(fn, *args)

    def symbols(self) -> dict[str, str]:
        """Every stored id (and value derived from one) -> a readable name (``port-a1``,
    ``rule-web-2``...)."""
        return self.store.read(_symbols)


def _symbols(txn: Transaction) -> dict[str, str]:
    out: dict[str, str] = {}
    nodes = txn.scalars("nodes", "node_id")
    for table, prefix in (("networks", "net"), ("subnets", "subnet"), ("ports", "port"),
                          ("security_groups", "sg"), ("routers", "router")):
        for row in txn.select(table, columns=("id", "name")):
            out[row["id"]] = f"{prefix}-{row['name']}"
            if table == "subnets":
                out[gateway_mac(row["id"])] = f"gateway-mac-of-{row['name']}"
            if table == "routers":
                for node in nodes:
                    out[transit_mac(row["id"], node)] = f"transit-mac-of-{row['name']}-on-{node}"
                    out[external_mac(row["id"], node)] = (
                        f"external-mac-of-{row['name']}-on-{node}")
    for fip in txn.select("floatingips", columns=("id", "floating_ip_address")):
        out[fip["id"]] = f"fip-{fip['floating_ip_address']}"
    groups = {g["id"]: g["name"] for g in txn.select("security_groups", columns=("id", "name"))}
    rules = sorted(txn.select("security_group_rules",
                              columns=("id", "security_group_id", "fingerprint")),
                   key=lambda r: (groups[r["security_group_id"]], r["fingerprint"]))
    count: dict[str, int] = {}
    for rule in rules:
        group = groups[rule["security_group_id"]]
        count[group] = count.get(group, 0) + 1
        out[rule["id"]] = f"rule-{group}-{count[group]}"
    return out


def _rename(value: Any, symbols: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {_rename(k, symbols): _rename(v, symbols) for k, v in value.items()}
    if isinstance(value, list):
        return [_rename(v, symbols) for v in value]
    if isinstance(value, str):
        for id_, name in symbols.items():
            value = value.replace(id_, name)
    return value


def readable(message: goalstate_pb2.GoalStateV2, symbols: Mapping[str, str]) -> Any:
    """A goal state as JSON-ready data with ids renamed; lists whose order follows the ids
    (host resources, rules, routing tables) re-sorted by the new names."""
    data = _rename(json_format.MessageToDict(message, preserving_proto_field_name=True),
                   symbols)
    for host in data.get("host_resources", {}).values():
        host["resources"] = sorted(host.get("resources", []),
                                   key=lambda r: (r.get("type", "VPC"), r["id"]))
    for state in data.get("security_group_states", {}).values():
        rules = state["configuration"].get("security_group_rules", [])
        rules.sort(key=lambda r: r["id"])
    for state in data.get("router_states", {}).values():
        tables = state["configuration"].get("subnet_routing_tables", [])
        tables.sort(key=lambda t: t["subnet_id"])
    return data


@pytest.fixture
def world(services: Services, ctx: RequestContext) -> World:
    return World(services, ctx)


@pytest.fixture
def pg_world(pg_url: str, ctx: RequestContext) -> Iterator[World]:
    """A World on a fresh PostgreSQL database (the compiler's and placement's plain SQL)."""
    settings = load({}, db__url=pg_url)
    store = open_store(settings)
    try:
        yield World(build_services(settings, store), ctx)
    finally:
        store.dispose()


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, Any], None]:
    """``golden(case, data)``: compare ``data`` with tests/golden/<case>.json (or rewrite it)."""
    update = bool(request.config.getoption("--update-golden", default=False))

    def check(case: str, data: Any) -> None:
        path = GOLDEN / f"{case}.json"
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            return
        assert path.exists(), f"{path} is missing: run pytest tests/unit/dpm --update-golden"
        assert json.loads(path.read_text()) == json.loads(text), (
            f"{case}: the compiled goal state differs from {path.name} "
            "(if the change is intended, rerun with --update-golden and review the diff)")

    return check


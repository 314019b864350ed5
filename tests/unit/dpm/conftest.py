"""Fixtures of the data-plane manager's unit tests: a ``World`` that stores intent through
the real services (as the API would), and golden files of compiled goal states.

``pytest tests/unit/dpm --update-golden`` rewrites the files under ``tests/golden/`` from
what the compiler produces now; review the diff before committing it.
"""

from __future__ import annotations

import json
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
from alcor.dpm.compiler.subnets import gateway_mac
from alcor.rpc._generated import goalstate_pb2
from alcor.services.nodes import NodeService

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

    def node(self, node_id: str, node_name: str, local_ip: str, mac: str = "") -> Row:
        item = check_create({"node_id": node_id, "node_name": node_name,
                             "local_ip": local_ip, "mac_address": mac})
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

    def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.store.read(fn, *args)

    def symbols(self) -> dict[str, str]:
        """Every stored id (and value derived from one) -> a readable name (``port-a1``,
    ``rule-web-2``...)."""
        return self.store.read(_symbols)


def _symbols(txn: Transaction) -> dict[str, str]:
    out: dict[str, str] = {}
    for table, prefix in (("networks", "net"), ("subnets", "subnet"), ("ports", "port"),
                          ("security_groups", "sg")):
        for row in txn.select(table, columns=("id", "name")):
            out[row["id"]] = f"{prefix}-{row['name']}"
            if table == "subnets":
                out[gateway_mac(row["id"])] = f"gateway-mac-of-{row['name']}"
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
    (host resources, rules) re-sorted by the new names."""
    data = _rename(json_format.MessageToDict(message, preserving_proto_field_name=True),
                   symbols)
    for host in data.get("host_resources", {}).values():
        host["resources"] = sorted(host.get("resources", []),
                                   key=lambda r: (r.get("type", "VPC"), r["id"]))
    for state in data.get("security_group_states", {}).values():
        rules = state["configuration"].get("security_group_rules", [])
        rules.sort(key=lambda r: r["id"])
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


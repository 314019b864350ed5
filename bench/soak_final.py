"""The churn soak's end: waiting for quiet, then every agent against its goal state compiled
from the server's database.

Quiet: every port the API lists is ACTIVE, the outbox is empty and every registered node has
acknowledged its latest generation (``host_states``), twice in a row half a second apart.
Then, on one read transaction of the server's SQLite file (opened like ``alcor server`` opens
it, ``alcor.cli.wiring.open_store``), ``alcor.dpm.compiler.compile_host`` gives each node's
full goal state; per resource kind its ids and configuration bytes must be exactly what the
node's agent realized (``AgentState.realized``: kind -> id -> serialized configuration).
Each resource missing, extra or different is one mismatch; non-sweeping agents are held to
the same standard.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from alcor.agent.programmer import PARSERS
from alcor.agent.state import DELETE, STATE_FIELDS, desired_from_v2
from alcor.cli.wiring import open_store
from alcor.config import load
from alcor.db.store import Store, Transaction
from alcor.dpm.compiler import compile_host
from alcor.rpc._generated import goalstate_pb2
from bench.sim_agents import Fleet

KIND_NAMES = {kind: name.removesuffix("_states") for kind, name in STATE_FIELDS}
EXAMPLES = 4


@dataclass
class Quiet:
    reached: bool
    waited: float
    not_active: list[str] = field(default_factory=list)
    dirty_hosts: list[str] = field(default_factory=list)
    outbox: int = 0


@dataclass
class Mismatches:
    hosts: int = 0
    """Hosts with at least one mismatch."""
    by_kind: dict[str, int] = field(default_factory=dict)
    non_sweeping_hosts: int = 0
    examples: list[str] = field(default_factory=list)

    def total(self) -> int:
        return sum(self.by_kind.values())


def open_database(db_url: str) -> Store:
    """The server's store, opened as ``alcor server`` does (already migrated by it)."""
    return open_store(load({}, db__url=db_url), migrate=False)


def _progress(txn: Transaction) -> tuple[int, list[str]]:
    """Outbox rows left, and the registered nodes that did not acknowledge their generation."""
    registered = set(txn.scalars("nodes", "node_id"))
    dirty = [row["node_id"] for row in txn.select("host_states")
             if row["node_id"] in registered and row["generation"] > row["acked_generation"]]
    return txn.count("outbox"), sorted(dirty)


async def wait_quiet(client: httpx.AsyncClient, store: Store, timeout: float) -> Quiet:
    began = time.perf_counter()
    calm = 0
    quiet = Quiet(False, 0.0)
    while calm < 2:
        response = await client.get("/v2.0/ports?fields=id&fields=status")
        response.raise_for_status()
        ports = orjson.loads(response.content)["ports"]
        outbox, dirty = await asyncio.to_thread(store.read, _progress)
        quiet = Quiet(False, time.perf_counter() - began,
                      sorted(p["id"] for p in ports if p["status"] != "ACTIVE"), dirty, outbox)
        calm = calm + 1 if not (quiet.not_active or dirty or outbox) else 0
        if quiet.waited > timeout:
            return quiet
        await asyncio.sleep(0.5)
    quiet.reached = True
    return quiet


def _compile_all(txn: Transaction) -> dict[str, tuple[str, bytes]]:
    return {node["node_id"]: (node["local_ip"], compile_host(txn, node))
            for node in txn.select("nodes")}


def expected_state(local_ip: str, goal_state: bytes) -> dict[int, dict[str, bytes]]:
    """kind -> id -> configuration bytes a compiled goal state asks the host to hold, as the
    agent serializes what it realizes."""
    goal = goalstate_pb2.GoalStateV2.FromString(goal_state)
    expected: dict[int, dict[str, bytes]] = {kind: {} for kind, _ in STATE_FIELDS}
    for desired in desired_from_v2(goal, local_ip):
        if desired.operation != DELETE and desired.config is not None:
            expected[desired.kind][desired.resource_id] = desired.config.SerializeToString()
    return expected


async def compare_exact(store: Store, fleet: Fleet) -> Mismatches:
    compiled = await asyncio.to_thread(store.read, _compile_all)
    agents = fleet.by_id()
    result = Mismatches()
    examples: list[tuple[bool, str]] = []
    for node_id, (local_ip, goal_state) in sorted(compiled.items()):
        agent = agents.get(node_id)
        if agent is None:
            continue
        differences = _diff(expected_state(local_ip, goal_state), agent.state.realized)
        if not differences:
            continue
        result.hosts += 1
        sweeping = agent.state.implicit_deletes
        result.non_sweeping_hosts += not sweeping
        for kind, _, _ in differences:
            name = KIND_NAMES.get(kind, str(kind))
            result.by_kind[name] = result.by_kind.get(name, 0) + 1
        kind, resource_id, what = differences[0]
        examples.append((not sweeping, f"{node_id} ({'' if sweeping else 'non-'}sweeping, "
                         f"{len(differences)} mismatches): {KIND_NAMES.get(kind, str(kind))} "
                         f"{resource_id} {what}"))
    result.examples = [text for _, text in sorted(examples, key=lambda e: e[0])][:EXAMPLES]
    return result


def _diff(expected: Mapping[int, Mapping[str, bytes]],
          realized: Mapping[int, Mapping[str, bytes]]) -> list[tuple[int, str, str]]:
    out: list[tuple[int, str, str]] = []
    for kind in sorted(set(expected) | set(realized)):
        want: Mapping[str, Any] = expected.get(kind, {})
        have: Mapping[str, Any] = realized.get(kind, {})
        out += [(kind, rid, "is in the goal state but not held") for rid in want.keys() - have]
        out += [(kind, rid, "is held but not in the goal state") for rid in have.keys() - want]
        out += [(kind, rid, f"is held at revision {_revision(kind, have[rid])}, the goal state "
                            f"has revision {_revision(kind, want[rid])} (other bytes)")
                for rid in want.keys() & have.keys() if want[rid] != have[rid]]
    return out


def _revision(kind: int, raw: bytes) -> int:
    return PARSERS[kind](raw).revision_number

"""W3 (compile): one host's goal state with 10,000 neighbours (shared/reference/performance.md).

Stores a network whose subnet holds ``--neighbours`` ports on 99 other hosts plus 100 ports on
the compiled host (through the real services, on a SQLite file), then times
``compile_host`` in one read transaction: cold (an empty neighbour cache, so every neighbour
entry is serialized) and warm (every entry cached: only the intent is read and the bytes
spliced).  It also times the reference build (one protobuf message, no cache), checks that
both give the same bytes, and splits the warm figure into reading the intent from the
database and building the message, and times all hosts compiled together on one snapshot
(``compile_hosts``: each network's neighbours read once).  The calibration line builds and
serializes 10,000 NeighborState messages with protobuf on this machine.
Usage: ``python -m bench.w3_compile [--neighbours N] [--runs R]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alcor.api.attributes import apply_create
from alcor.api.definitions import RESOURCES
from alcor.api.nodes import check_create
from alcor.cli.wiring import build_services, open_store
from alcor.config import load
from alcor.context import RequestContext
from alcor.db.store import Store
from alcor.dpm.compiler import compile_host, compile_hosts, compile_intent, goal_state, intent
from alcor.dpm.compiler.neighbors import NeighbourCache
from alcor.rpc._generated import common_pb2, neighbor_pb2
from alcor.services.nodes import NodeService
from bench.server import UNLIMITED

TARGET_MS = 20.0
LOCAL_PORTS = 100
HOSTS = 100
BATCH = 1000


def seed(store: Store, settings: Any, neighbours: int) -> dict[str, Any]:
    """The network, its nodes and ports; returns the compiled host's node row."""
    services = build_services(settings, store).by_collection
    ctx = RequestContext.admin("bench")

    def create(collection: str, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        items = [apply_create(RESOURCES[collection], b, ctx.project_id) for b in bodies]
        rows: list[dict[str, Any]] = services[collection].create(ctx, items)
        return rows

    nodes = NodeService(store)
    store.write(nodes.create_txn, [check_create({
        "node_id": f"node-{i}", "node_name": f"host-{i}",
        "local_ip": f"10.255.{i // 250}.{i % 250 + 1}",
        "mac_address": f"52:54:00:00:{i // 256:02x}:{i % 256:02x}"}) for i in range(HOSTS)])
    net = create("networks", [{"name": "w3", "provider:segmentation_id": 3000}])[0]
    create("subnets", [{"network_id": net["id"], "cidr": "10.0.0.0/16", "ip_version": 4}])
    bodies = [{"network_id": net["id"], "binding:host_id": "host-0"} for _ in range(LOCAL_PORTS)]
    bodies += [{"network_id": net["id"], "binding:host_id": f"host-{1 + i % (HOSTS - 1)}"}
               for i in range(neighbours)]
    for start in range(0, len(bodies), BATCH):
        create("ports", bodies[start:start + BATCH])
    node: dict[str, Any] = store.read(lambda txn: txn.select("nodes", {"node_id": "node-0"})[0])
    return node


def timed(fn: Callable[[], Any], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def calibration(count: int = 10_000) -> float:
    """Milliseconds to build and serialize ``count`` NeighborState messages with protobuf."""
    def build() -> None:
        for i in range(count):
            neighbor_pb2.NeighborState(
                operation_type=common_pb2.CREATE,
                configuration=neighbor_pb2.NeighborConfiguration(
                    revision_number=1, id=f"L2/{i:036d}", vpc_id="v" * 36,
                    mac_address="fa:16:3e:00:00:01", host_ip_address="10.0.0.1",
                    fixed_ips=[neighbor_pb2.NeighborConfiguration.FixedIp(
                        subnet_id="s" * 36, ip_address="10.0.0.2", tunnel_id=3000)],
                )).SerializeToString()
    return statistics.median(timed(build, 5))


def summary(label: str, values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"{label}: median {statistics.median(values):.1f} ms, p90 {p90:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--neighbours", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        settings = load({}, db__url=f"sqlite:///{Path(workdir)}/w3.db",
                        db__sqlite_synchronous="OFF", **UNLIMITED)
        store = open_store(settings)
        try:
            print(f"calibration: 10,000 NeighborState built and serialized by protobuf: "
                  f"{calibration():.1f} ms", flush=True)
            seed_start = time.perf_counter()
            node = seed(store, settings, args.neighbours)
            print(f"stored {LOCAL_PORTS + args.neighbours} ports on {HOSTS} hosts in "
                  f"{time.perf_counter() - seed_start:.1f} s", flush=True)
            report(store, node, args.runs)
        finally:
            store.dispose()


def report(store: Store, node: dict[str, Any], runs: int) -> None:
    warm_cache = NeighbourCache()
    spliced = store.read(compile_host, node, warm_cache)
    expected = store.read(goal_state, node).SerializeToString(deterministic=True)
    assert spliced == expected, "the spliced goal state differs from the reference build"
    held = store.read(intent.load, node)
    print(f"goal state: {len(held.neighbours)} neighbours, {len(held.ports)} ports, "
          f"{len(spliced) / 1e6:.2f} MB", flush=True)
    cold = timed(lambda: store.read(compile_host, node, NeighbourCache()), max(3, runs // 5))
    warm = timed(lambda: store.read(compile_host, node, warm_cache), runs)
    reading = timed(lambda: store.read(intent.load, node), runs)
    building = timed(lambda: store.read(compile_intent, held, warm_cache), runs)
    reference = timed(lambda: store.read(goal_state, node), max(3, runs // 5))
    nodes = store.read(lambda txn: txn.select("nodes", order_by=("node_id",)))
    together = [t / len(nodes) for t in timed(
        lambda: store.read(compile_hosts, nodes, warm_cache), max(3, runs // 10))]
    print(summary("reference build (one protobuf message, no cache)", reference))
    print(summary("compile cold (empty cache)", cold))
    print(summary("compile warm (every neighbour cached)", warm))
    print(summary("  of which reading the intent from the database", reading))
    print(summary("  of which building the message (cached entries spliced)", building))
    print(summary(f"compile warm, {len(nodes)} hosts on one snapshot (per host)", together))
    print("\nW3 compile summary (figure / target), medians:")
    print(f"  warm compile, 10k neighbours: {statistics.median(warm):.1f} / <= {TARGET_MS:.0f} ms "
          f"(reading {statistics.median(reading):.1f} + building "
          f"{statistics.median(building):.1f})")
    print(f"  cold compile, 10k neighbours: {statistics.median(cold):.1f} ms")
    print(f"  warm compile per host, {len(nodes)} hosts together: "
          f"{statistics.median(together):.1f} / <= {TARGET_MS:.0f} ms")


if __name__ == "__main__":
    main()

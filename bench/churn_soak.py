"""Churn soak: hundreds of simulated hosts, minutes of creates, bulks, deletes and moves, the
convergence invariant checked from outside all along, and every host's exact state at the end.

Runs a real ``alcor server`` (API and controller, SQLite in a temp dir, pinned to core 0) and
``--hosts`` simulated agents in this process (``bench/sim_agents.py``, state mode: the agent's
real AgentState with a counting programmer, each on its own 127.1.x.y address, pinned to core
1).  Every fourth agent is non-sweeping (``implicit_deletes=False``: a full goal state deletes
only what it names with DELETE, like upstream's agent); a fifth of them register late, while
the churn runs.  Then, for ``--minutes``:

- the driver (``bench/soak_driver.py``) writes ports through the Neutron API at ``--rate``
  requests/s, keeping at most ``--max-ports`` (single, bulk and burst creates, deletes,
  moves), registers the late hosts and restarts an agent now and then;
- the checker (``bench/soak_checks.py``) lists the ports every ``--interval`` seconds and
  judges the agents against the list (see its docstring for exactly what counts), telling a
  push still on its way from a stale host by fences (``bench/soak_fence.py``: one more
  simulated host, the beacon, whose port is renamed twice a second to expose the controller's
  epochs);
- the lag meter (``bench/soak_lag.py``) times each write from the API's answer until the
  agents hold it.

Then it stops writing, waits for quiet and compares every agent with the goal state compiled
from the server's database (``bench/soak_final.py``).  Printed, each next to its target:
violations (0), exact-state mismatches (0), quiet reached, convergence lag p50/p99/max (no
target) and the writes done per second; the exit status is 1 if any violation or mismatch,
or if quiet was not reached.  The last line is ``summary: {json}``.

Usage: ``python -m bench.churn_soak --hosts 200 --minutes 30 [--seed N]`` (``make soak``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from alcor.db.store import Store
from bench.server import ALCOR, free_port, pin, start_alcor, stop
from bench.sim_agents import Fleet, register, start_agents
from bench.soak_checks import CATEGORIES, Checker, Findings
from bench.soak_driver import Driver, Tally, build_topology
from bench.soak_fence import Fences, beacon_port
from bench.soak_final import Mismatches, Quiet, compare_exact, open_database, wait_quiet
from bench.soak_lag import LagMeter, Lags, quantile
from bench.soak_ledger import Ledger, Revisions

NON_SWEEPING_EVERY = 4
LATE_SHARE = 0.2
FIRST_STATE_S = 120.0
"""How long the early agents may take to get their first goal state before the churn."""


class Server:
    """``alcor server`` with its controller on a fresh SQLite file under ``workdir``."""

    def __init__(self, workdir: Path, log: IO[str]) -> None:
        self.port = free_port()
        self.grpc = f"127.0.0.1:{free_port()}"
        self.base = f"http://127.0.0.1:{self.port}"
        self.db_url = f"sqlite:///{workdir}/alcor.db"
        self.proc = start_alcor(
            ["server", "--port", str(self.port), "--db-url", self.db_url,
             "--grpc-listen", self.grpc, "--log-level", "warning"],
            self.base, command=[str(ALCOR)], stderr=log)

    def cpu_seconds(self) -> float:
        """User and system CPU the server used so far (Linux /proc; 0 elsewhere)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        stop(self.proc)


@dataclass
class Outcome:
    hosts: int
    non_sweeping: int
    late: int
    churn_s: float
    tally: Tally
    live_ports: int
    findings: Findings
    lags: Lags
    quiet: Quiet
    mismatches: Mismatches
    cpu: tuple[float, float, float]
    """(server, soak process, wall) seconds from the churn's start to the end check."""

    def failed(self) -> bool:
        return bool(self.findings.total() or self.mismatches.total() or not self.quiet.reached)

    def summary(self) -> dict[str, Any]:
        lags = self.lags.all()
        return {
            "violations": self.findings.total(),
            "by_category": {c: len(v) for c, v in self.findings.violations.items()},
            "transient": dict(self.findings.transient),
            "mismatches": self.mismatches.total(),
            "mismatched_hosts": self.mismatches.hosts,
            "quiet": self.quiet.reached,
            "requests": sum(self.tally.requests.values()),
            "ops_per_s": round(sum(self.tally.requests.values()) / self.churn_s, 1),
            "errors": sum(self.tally.errors.values()),
            "lag_p50_ms": round(quantile(lags, 0.5) * 1000, 1),
            "lag_p99_ms": round(quantile(lags, 0.99) * 1000, 1),
            "lag_max_ms": round(max(lags, default=float("nan")) * 1000, 1),
            "lag_timed_out": sum(self.lags.timed_out.values()),
        }


def _roles(hosts: int) -> tuple[set[int], list[int]]:
    """Agent indexes that do not sweep, and those that register late."""
    non_sweeping = {i for i in range(hosts) if i % NON_SWEEPING_EVERY == NON_SWEEPING_EVERY - 1}
    late = max(1, round(hosts * LATE_SHARE)) if hosts > 2 else 0
    return non_sweeping, list(range(hosts - late, hosts))


async def soak(args: argparse.Namespace, server: Server) -> Outcome:
    rng = random.Random(args.seed)
    non_sweeping, late_idx = _roles(args.hosts)
    # one more agent than the churn's hosts: the fences' beacon (bench/soak_fence.py)
    fleet = await start_agents(args.hosts + 1, prefix="soak", distinct_ips=True,
                               non_sweeping=non_sweeping)
    store = open_database(server.db_url)
    try:
        async with httpx.AsyncClient(base_url=server.base, timeout=60.0,
                                     headers={"X-Project-Id": "soak"}) as client:
            return await _run(args, server, fleet, client, store, rng, non_sweeping, late_idx)
    finally:
        await fleet.stop()
        store.dispose()


async def _run(args: argparse.Namespace, server: Server, fleet: Fleet,
               client: httpx.AsyncClient, store: Store, rng: random.Random,
               non_sweeping: set[int], late_idx: list[int]) -> Outcome:
    *hosts, beacon = fleet.agents
    late = [hosts[i].node_id for i in late_idx]
    early = [a for a in hosts if a.node_id not in late]
    await register(Fleet([*early, beacon], fleet.changed), server.base)
    ledger = Ledger()
    ledger.register([a.node_id for a in early], time.perf_counter())
    topology = await build_topology(client, [a.node_id for a in hosts], rng)
    fences = Fences(client, beacon, await beacon_port(client, beacon.node_id), store)
    await fleet.wait_until(lambda: all(a.generation >= 1 for a in [*early, beacon]),
                           FIRST_STATE_S)
    revisions = Revisions()
    lag = LagMeter(fleet, revisions, args.lag_timeout)
    checker = Checker(client, fleet, ledger, revisions, fences, interval=args.interval,
                      persist=args.persist)
    driver = Driver(client, fleet, ledger, lag, topology, rng, api_url=server.base,
                    controller=server.grpc, max_ports=args.max_ports, rate=args.rate,
                    restart_every=args.restart_every, late=late)
    stop_checks = asyncio.Event()
    tasks = [asyncio.create_task(lag.run()), asyncio.create_task(fences.run())]
    checks = asyncio.create_task(checker.run(stop_checks))
    began = time.perf_counter()
    cpu0 = (server.cpu_seconds(), time.process_time())
    try:
        await driver.run(args.minutes * 60)
        churn_s = time.perf_counter() - began
        await fences.past(time.perf_counter())
        tasks.pop().cancel()  # no more renames: the beacon would never let it be quiet
        quiet = await wait_quiet(client, store, args.quiet_timeout)
        stop_checks.set()
        await checks
        await checker.round()  # one more look once quiet: nothing may be left
        lag.poll()
        lag.finish()
        cpu = (server.cpu_seconds() - cpu0[0], time.process_time() - cpu0[1],
               time.perf_counter() - began)
        mismatches = await compare_exact(store, fleet)
    finally:
        stop_checks.set()
        for task in [*tasks, checks]:
            task.cancel()
    return Outcome(args.hosts, len(non_sweeping), len(late), churn_s, driver.tally,
                   ledger.live, checker.findings, lag.lags, quiet, mismatches, cpu)


# --- report ------------------------------------------------------------------------------------

def report(args: argparse.Namespace, out: Outcome) -> None:
    t = out.tally
    requests = sum(t.requests.values())
    print(f"churn soak: {out.hosts} hosts ({out.non_sweeping} non-sweeping, {out.late} "
          f"registered late), {out.churn_s / 60:.1f} min of churn, seed {args.seed}")
    print(f"  writes          {requests} requests ({_counts(t.requests)}), {t.ports_written} "
          f"port writes, {t.restarts} agent restarts, {out.live_ports} ports live at the end "
          f"(max {args.max_ports})")
    print(f"  ops/s done      {requests / out.churn_s:8.1f}      (asked {args.rate:g}/s; "
          f"{sum(t.errors.values())} request errors{_opt(t.errors)})")
    for example in t.error_examples:
        print(f"      e.g. {example}")
    answers = [s for values in t.latencies.values() for s in values]
    print(f"  API answers     p50 {quantile(answers, 0.5) * 1000:.0f} ms, p99 "
          f"{quantile(answers, 0.99) * 1000:.0f} ms  ("
          + ", ".join(f"{k} p50 {quantile(v, 0.5) * 1000:.0f}" for k, v in
                      sorted(t.latencies.items())) + ")")
    server_s, soak_s, wall_s = out.cpu
    print(f"  cpu             server {server_s / wall_s:4.0%} of a core, soak (agents, driver, "
          f"checks) {soak_s / wall_s:4.0%} of a core, over {wall_s:.0f} s")
    _report_findings(out.findings)
    _report_end(out.quiet, out.mismatches)
    _report_lags(out.lags)
    print(f"  result          {'FAIL' if out.failed() else 'PASS'}")
    print(f"summary: {json.dumps(out.summary())}", flush=True)


def _report_findings(f: Findings) -> None:
    rounds = sorted(f.round_seconds)
    print(f"  violations      {f.total():8d}      (target 0)  {_verdict(f.total() == 0)}   "
          f"[{f.rounds} check rounds, median {quantile(rounds, 0.5) * 1000:.0f} ms]")
    for category in CATEGORIES:
        found = f.violations[category]
        print(f"    {category:<18} {len(found):6d}   (transient, not counted: "
              f"{f.transient.get(category, 0)})")
        for example in list(found.values())[:2]:
            print(f"      e.g. {example}")


def _report_end(quiet: Quiet, m: Mismatches) -> None:
    state = (f"after {quiet.waited:.1f} s" if quiet.reached else
             f"NOT after {quiet.waited:.0f} s: {len(quiet.not_active)} ports not ACTIVE, "
             f"{len(quiet.dirty_hosts)} hosts unacknowledged, {quiet.outbox} outbox rows")
    print(f"  quiet           {state}   (every port ACTIVE, every host acknowledged)  "
          f"{_verdict(quiet.reached)}")
    if not quiet.reached and quiet.not_active:
        print(f"      e.g. ports {', '.join(quiet.not_active[:3])}")
    print(f"  exact-state mismatches {m.total():5d}   (target 0)  {_verdict(m.total() == 0)}   "
          f"[{m.hosts} hosts, {m.non_sweeping_hosts} of them non-sweeping{_opt(m.by_kind)}]")
    for example in m.examples:
        print(f"      e.g. {example}")


def _report_lags(lags: Lags) -> None:
    values = lags.all()
    print(f"  lag p50/p99/max {quantile(values, 0.5) * 1000:.0f} / "
          f"{quantile(values, 0.99) * 1000:.0f} / {max(values, default=float('nan')) * 1000:.0f}"
          f" ms   (target —)   [{len(values)} writes timed; {lags.superseded} superseded, "
          f"{sum(lags.timed_out.values())} never converged{_opt(lags.timed_out)}]")
    for what in ("create", "move", "delete"):
        v = lags.seconds.get(what, [])
        if v:
            print(f"    {what:<7} p50 {quantile(v, 0.5) * 1000:6.0f} ms  p99 "
                  f"{quantile(v, 0.99) * 1000:6.0f} ms  max {max(v) * 1000:6.0f} ms  "
                  f"({len(v)})")
    for example in lags.examples:
        print(f"      e.g. {example}")


def _counts(counter: Any) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(counter.items())) or "none"


def _opt(counter: Any) -> str:
    return f": {_counts(counter)}" if counter else ""


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# --- command line ------------------------------------------------------------------------------

def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.churn_soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-ports", type=int, help="default: 10 per host, at most 3,000")
    parser.add_argument("--rate", type=float, default=20.0, help="write requests per second")
    parser.add_argument("--restart-every", type=float, default=15.0,
                        help="seconds between agent restarts (jittered)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between checks")
    parser.add_argument("--persist", type=float, default=2.0,
                        help="seconds a neighbour or stale discrepancy must last to count")
    parser.add_argument("--lag-timeout", type=float, default=60.0)
    parser.add_argument("--quiet-timeout", type=float, default=120.0)
    parser.add_argument("--server-log", type=Path, help="keep the server's log here")
    args = parser.parse_args(argv)
    if args.max_ports is None:
        args.max_ports = min(3000, 10 * args.hosts)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if pin(1):
        os.sched_setaffinity(0, {1})
    with tempfile.TemporaryDirectory(prefix="alcor-soak-") as tmp, \
            open(args.server_log or os.devnull, "w") as log:
        server = Server(Path(tmp), log)
        try:
            outcome = asyncio.run(soak(args, server))
        finally:
            server.stop()
    report(args, outcome)
    return 1 if outcome.failed() else 0


if __name__ == "__main__":
    sys.exit(main())

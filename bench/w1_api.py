"""W1: port CRUD through HTTP with durable storage (shared/reference/performance.md).

Runs a real `alcor server` on its SQLite file (pinned to core 0) and drives it with wrk (pinned
to core 1): single port creates at concurrency 1/16/64, bulk creates in 1,000-port requests,
and a list of ports filtered by network_id with 100,000 ports stored.  Prints each figure next to
its target.  Usage: ``python -m bench.w1_api [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.server import free_port, pin, start_alcor, stop

TARGETS = {
    "single_c16_rps": 2000.0,
    "single_c16_p99_ms": 25.0,
    "bulk_ports_per_s": 20000.0,
    "list_filtered_ms": 50.0,
}


class Server:
    def __init__(self, workdir: Path, db_url: str | None = None, role: str = "api") -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        url = db_url or f"sqlite:///{workdir}/alcor.db"
        # stderr is dropped: a PIPE nobody reads would stall a chatty server.
        self.proc = start_alcor([role, "--port", str(self.port), "--db-url", url,
                                 "--log-level", "warning"], self.base, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        stop(self.proc, 10)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None


def _setup_network(server: Server, cidr: str, name: str) -> str:
    net = server.call("POST", "/v2.0/networks", {"network": {"name": name}})["network"]
    server.call("POST", "/v2.0/subnets", {"subnet": {
        "network_id": net["id"], "cidr": cidr, "ip_version": 4}})
    return str(net["id"])


_LAT = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk_post(server: Server, path: str, body: dict[str, Any], conns: int, seconds: int,
             workdir: Path) -> dict[str, float]:
    script = workdir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    cmd = [*pin(1), "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s",
           str(script), server.base + path]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    lat = {int(p): _ms(v, u) for p, v, u in _LAT.findall(out)}
    non2xx = _NON2XX.search(out)
    rps = _RPS.search(out)
    return {"rps": float(rps.group(1)) if rps else 0.0, "p50_ms": lat.get(50, 0.0),
            "p99_ms": lat.get(99, 0.0), "errors": float(non2xx.group(1)) if non2xx else 0.0}


def wrk_get(server: Server, path: str, conns: int, seconds: int) -> dict[str, float]:
    cmd = [*pin(1), "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency",
           server.base + path]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = _RPS.search(out)
    return {"rps": float(rps.group(1)) if rps else 0.0}


def bench_single(server: Server, net_id: str, workdir: Path, seconds: int) -> dict[int, Any]:
    results = {}
    body = {"port": {"network_id": net_id, "device_owner": "compute:nova",
                     "binding:host_id": "host-1"}}
    wrk_post(server, "/v2.0/ports", body, 16, 2, workdir)  # warm-up
    for conns in (1, 16, 64):
        results[conns] = wrk_post(server, "/v2.0/ports", body, conns, seconds, workdir)
        r = results[conns]
        print(f"single create c{conns:<3} {r['rps']:8.0f} ports/s  p50 {r['p50_ms']:6.2f} ms  "
              f"p99 {r['p99_ms']:6.2f} ms  non-2xx {r['errors']:.0f}", flush=True)
    return results


def bench_bulk(server: Server, net_id: str, requests: int) -> float:
    body = {"ports": [{"network_id": net_id} for _ in range(1000)]}
    server.call("POST", "/v2.0/ports", body)  # warm-up
    start = time.perf_counter()
    for _ in range(requests):
        server.call("POST", "/v2.0/ports", body)
    rate = requests * 1000 / (time.perf_counter() - start)
    print(f"bulk create {rate:10.0f} ports/s  ({requests} requests of 1,000 ports)", flush=True)
    return rate


def seed(server: Server, networks: int, per_network: int) -> tuple[list[str], int]:
    """Add ``networks`` networks of ``per_network`` ports each; return them and the port total."""
    net_ids = [_setup_network(server, f"10.{i // 64}.{(i % 64) * 4}.0/22", f"seed-{i}")
               for i in range(networks)]
    for net_id in net_ids:
        for start in range(0, per_network, 500):
            n = min(500, per_network - start)
            server.call("POST", "/v2.0/ports", {"ports": [{"network_id": net_id}] * n})
    total = len(server.call("GET", "/v2.0/ports?fields=id")["ports"])
    return net_ids, total


def bench_list(server: Server, net_id: str, rounds: int) -> tuple[float, float, int]:
    path = f"/v2.0/ports?network_id={net_id}"
    count = len(server.call("GET", path)["ports"])
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        with urllib.request.urlopen(server.base + path, timeout=60) as resp:
            resp.read()  # time to the last byte; parsing on the client is not the server's
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    p50 = statistics.median(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(f"list ports?network_id ({count} of the stored ports): p50 {p50:.1f} ms  "
          f"p99 {p99:.1f} ms", flush=True)
    return p50, p99, count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument("--db-url", help="run against this database instead of SQLite")
    parser.add_argument("--role", default="api", choices=["api", "server"],
                        help="api: the API tier alone (default); server: the all-in-one, "
                             "whose data-plane controller shares the core")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is required: apt-get install wrk", file=sys.stderr)
        return 2
    seconds = 3 if args.quick else 10
    with tempfile.TemporaryDirectory(prefix="alcor-w1-") as tmp:
        workdir = Path(tmp)
        server = Server(workdir, args.db_url, args.role)
        print(f"role: alcor {args.role}", flush=True)
        try:
            net_id = _setup_network(server, "10.128.0.0/9", "bench")
            # This machine's speed right now: the same server answering GET / (no database) at
            # c16.  Shared machines vary run to run; the ratio to this ceiling does not.
            ceiling = wrk_get(server, "/", 16, seconds)["rps"]
            print(f"calibration: GET / at c16 {ceiling:.0f} req/s (HTTP ceiling, no database)",
                  flush=True)
            single = bench_single(server, net_id, workdir, seconds)
            bulk = bench_bulk(server, net_id, 3 if args.quick else 10)
            nets, total = seed(server, 100, 200 if args.quick else 1000)
            print(f"stored ports: {total}", flush=True)
            p50, _, _ = bench_list(server, nets[0], 20 if args.quick else 100)
        finally:
            server.stop()
    c16 = single[16]
    print("\nW1 summary (figure / target):")
    print(f"  single create c16: {c16['rps']:.0f} / >= {TARGETS['single_c16_rps']:.0f} ports/s, "
          f"p99 {c16['p99_ms']:.1f} / <= {TARGETS['single_c16_p99_ms']:.0f} ms "
          f"({c16['rps'] / ceiling:.0%} of this run's HTTP ceiling)")
    print(f"  bulk create:       {bulk:.0f} / >= {TARGETS['bulk_ports_per_s']:.0f} ports/s")
    print(f"  filtered list:     {p50:.1f} / <= {TARGETS['list_filtered_ms']:.0f} ms (p50)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Ports created in parallel against a real ``alcor server`` process: a small subnet hands out
each address exactly once, the surplus requests get a clean 409, and nothing is duplicated in
the database.

``race_for_addresses`` takes any number of server URLs, so the same race can be run against
several API processes sharing one database.
"""

from __future__ import annotations

import ipaddress
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from alcor.config import DbSettings
from alcor.db.store import Store
from tests.functional.server import AlcorServer

THREADS = 64
HEADERS = {"X-Project-Id": "proj-a"}


@dataclass
class RaceResult:
    created: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)


def setup_network(base_url: str, cidr: str) -> tuple[str, dict[str, Any]]:
    with httpx.Client(base_url=base_url, headers=HEADERS, timeout=30) as c:
        net = c.post("/v2.0/networks", json={"network": {"name": "race"}}).json()["network"]
        resp = c.post("/v2.0/subnets", json={"subnet": {
            "network_id": net["id"], "cidr": cidr, "ip_version": 4}})
        assert resp.status_code == 201, resp.text
        return str(net["id"]), dict(resp.json()["subnet"])


def race_for_addresses(base_urls: list[str], network_id: str, threads: int = THREADS
                       ) -> RaceResult:
    """``threads`` clients, spread over ``base_urls``, each create one port at the same time."""
    result = RaceResult()
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def worker(i: int) -> None:
        with httpx.Client(base_url=base_urls[i % len(base_urls)], headers=HEADERS,
                          timeout=60) as c:
            start.wait()
            resp = c.post("/v2.0/ports", json={"port": {"network_id": network_id,
                                                        "name": f"p{i}"}})
        with lock:
            result.statuses[resp.status_code] += 1
            if resp.status_code == 201:
                result.created.append(resp.json()["port"])
            elif resp.status_code == 409:
                result.refused.append(resp.json()["NeutronError"])

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return result


def pool_addresses(subnet: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for p in subnet["allocation_pools"]:
        first, last = ipaddress.ip_address(p["start"]), ipaddress.ip_address(p["end"])
        out |= {str(first + i) for i in range(int(last) - int(first) + 1)}
    return out


def assert_no_duplicates(db_url: str) -> None:
    """The database itself holds no address or MAC twice (per subnet / per network)."""
    store = Store.connect(DbSettings(url=db_url))
    try:
        allocs = store.read(lambda txn: txn.select("ip_allocations"))
        ports = store.read(lambda txn: txn.select("ports", columns=("network_id", "mac_address",
                                                                   "fixed_ips", "id")))
    finally:
        store.dispose()
    keys = [(a["subnet_id"], a["ip_address"]) for a in allocs]
    assert len(keys) == len(set(keys))
    macs = [(p["network_id"], p["mac_address"]) for p in ports]
    assert len(macs) == len(set(macs))
    denormalized = sorted((f["subnet_id"], f["ip_address"]) for p in ports for f in p["fixed_ips"])
    assert denormalized == sorted(keys)


def check_exhaustion_race(result: RaceResult, network_id: str, subnet: dict[str, Any],
                          threads: int = THREADS) -> None:
    pool = pool_addresses(subnet)
    assert result.statuses[500] == 0, result.statuses
    assert set(result.statuses) <= {201, 409}, result.statuses
    assert len(result.created) == len(pool)
    assert {p["fixed_ips"][0]["ip_address"] for p in result.created} == pool
    assert len({p["mac_address"] for p in result.created}) == len(pool)
    assert len(result.refused) == threads - len(pool)
    message = f"No more IP addresses available on network {network_id}."
    assert all(e == {"type": "IpAddressGenerationFailure", "message": message, "detail": ""}
               for e in result.refused), result.refused[:3]


def test_parallel_creates_exhaust_a_small_subnet_exactly(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path}/alcor.db"
    with AlcorServer(db_url) as server:
        network_id, subnet = setup_network(server.base_url, "10.20.0.0/28")
        assert len(pool_addresses(subnet)) == 13
        result = race_for_addresses([server.base_url], network_id)
        check_exhaustion_race(result, network_id, subnet)
        listed = httpx.get(server.url(f"/v2.0/ports?network_id={network_id}"), headers=HEADERS)
        assert len(listed.json()["ports"]) == 13
    assert_no_duplicates(db_url)


def test_parallel_creates_and_deletes_reuse_addresses(tmp_path: Path) -> None:
    """After the race, deleting every port and racing again hands out the same 13 addresses."""
    db_url = f"sqlite:///{tmp_path}/alcor.db"
    with AlcorServer(db_url) as server:
        network_id, subnet = setup_network(server.base_url, "10.30.0.0/28")
        first = race_for_addresses([server.base_url], network_id)
        with httpx.Client(base_url=server.base_url, headers=HEADERS) as c:
            for p in first.created:
                assert c.delete(f"/v2.0/ports/{p['id']}").status_code == 204
        second = race_for_addresses([server.base_url], network_id)
        check_exhaustion_race(second, network_id, subnet)
    assert_no_duplicates(db_url)

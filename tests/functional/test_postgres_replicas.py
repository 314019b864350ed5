"""Two real ``alcor server`` processes on one PostgreSQL database: they start together (one
migrates, the other waits for it), and 64 clients creating ports through both at once get
each address of a small subnet exactly once, a clean 409 for the rest and never a 5xx."""

from __future__ import annotations

import ipaddress
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from alcor.config import DbSettings
from alcor.db.store import Store
from tests.functional.server import AlcorServer

CLIENTS = 64
CIDR = "10.9.0.0/28"
HEADERS = {"X-Project-Id": "proj-a"}


@pytest.fixture
def replicas(pg_url: str) -> Iterator[tuple[AlcorServer, AlcorServer]]:
    """Two servers started at the same moment on one fresh (unmigrated) database."""
    servers = (AlcorServer(pg_url), AlcorServer(pg_url))
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(AlcorServer.start, servers))
        yield servers
    finally:
        for server in servers:
            server.stop()


def pool_size(subnet: dict[str, Any]) -> int:
    return sum(
        int(ipaddress.ip_address(p["end"])) - int(ipaddress.ip_address(p["start"])) + 1
        for p in subnet["allocation_pools"]
    )


def create_network(base_url: str) -> tuple[str, dict[str, Any]]:
    with httpx.Client(base_url=base_url, headers=HEADERS, timeout=30) as c:
        resp = c.post("/v2.0/networks", json={"network": {"name": "replicas"}})
        assert resp.status_code == 201, resp.text
        net = resp.json()["network"]
        resp = c.post("/v2.0/subnets", json={"subnet": {
            "network_id": net["id"], "cidr": CIDR, "ip_version": 4}})
        assert resp.status_code == 201, resp.text
        return str(net["id"]), dict(resp.json()["subnet"])


def create_ports(urls: list[str], network_id: str) -> list[httpx.Response]:
    """``CLIENTS`` clients, alternating between ``urls``, each POST one port at once."""
    start = threading.Barrier(CLIENTS)

    def client(i: int) -> httpx.Response:
        with httpx.Client(base_url=urls[i % len(urls)], headers=HEADERS, timeout=120) as c:
            start.wait(timeout=60)
            return c.post("/v2.0/ports", json={"port": {"network_id": network_id,
                                                        "name": f"p{i}"}})

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(client, range(CLIENTS)))


def stored_ports(db_url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    store = Store.connect(DbSettings(url=db_url))
    try:
        ports = store.read(lambda txn: txn.select(
            "ports", columns=("id", "network_id", "mac_address", "fixed_ips")))
        allocations = store.read(lambda txn: txn.select("ip_allocations"))
    finally:
        store.dispose()
    return ports, allocations


def test_two_replicas_hand_out_each_address_once(
    pg_url: str, replicas: tuple[AlcorServer, AlcorServer]
) -> None:
    urls = [server.base_url for server in replicas]
    network_id, subnet = create_network(urls[0])
    size = pool_size(subnet)
    assert size in (13, 14)

    responses = create_ports(urls, network_id)

    statuses = Counter(r.status_code for r in responses)
    logs = "\n".join(server.log() for server in replicas)
    assert not [s for s in statuses if s >= 500], f"{statuses}\n{logs}"
    assert statuses == {201: size, 409: CLIENTS - size}, statuses
    message = f"No more IP addresses available on network {network_id}."
    refused = [r.json()["NeutronError"] for r in responses if r.status_code == 409]
    assert all(e["type"] == "IpAddressGenerationFailure" and e["message"] == message
               for e in refused), refused[:3]
    created = [r.json()["port"] for r in responses if r.status_code == 201]
    addresses = [ip["ip_address"] for p in created for ip in p["fixed_ips"]]
    assert len(addresses) == len(set(addresses)) == size
    assert all(ipaddress.ip_address(a) in ipaddress.ip_network(CIDR) for a in addresses)

    ports, allocations = stored_ports(pg_url)
    assert sorted(p["id"] for p in ports) == sorted(p["id"] for p in created)
    macs = [p["mac_address"] for p in ports]
    assert len(macs) == len(set(macs)) == size
    allocated = [(a["subnet_id"], a["ip_address"]) for a in allocations]
    assert len(allocated) == len(set(allocated)) == size
    assert sorted(ip for _, ip in allocated) == sorted(addresses)

    listed = httpx.get(f"{urls[1]}/v2.0/ports", params={"network_id": network_id},
                       headers=HEADERS, timeout=30)
    assert sorted(p["id"] for p in listed.json()["ports"]) == sorted(p["id"] for p in created)

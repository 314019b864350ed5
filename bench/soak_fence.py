"""Fences: generation values known to cover every change the soak saw answered before a given
time, so a check can tell "this host's goal state must already reflect that change" from "the
push is still on its way" without guessing a delay.

The controller gives each claim of outbox records one epoch from a counter shared by all
hosts, in the order the changes committed (SQLite serializes them; ``alcor/dpm/hosts.py``),
and marks the hosts it affects with it; a goal state carrying generation ``G`` reflects every
change claimed at an epoch ``<= G``.  The epochs are not visible through the API, so a beacon
makes them visible: one simulated host of its own (not a churn host), in a network of its own
with one port bound to it, so only changes of that port ever mark it.  Every ``INTERVAL``
seconds the fence renames that port and waits until the beacon's agent applies a generation
newer than the one it held before the rename: that can only be the epoch ``E`` of the rename's
claim.  Any change answered before the rename was sent committed before it, so was claimed at
an epoch ``<= E``: a host whose agent holds a generation ``>= E`` must reflect it.

The first fence waits until the beacon is idle (its ``host_states`` row acknowledged, read
from the database once), so no older epoch of its can be mistaken for the first rename's.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from typing import Any

import httpx

from alcor.db.store import Store, Transaction
from bench.sim_agents import SimAgent

INTERVAL = 0.5
POLL_S = 0.01
BEACON_CIDR = "10.199.0.0/24"


async def beacon_port(client: httpx.AsyncClient, node_id: str) -> str:
    """A network and subnet of the beacon's own, and one port there bound to it; its id."""
    network = await _post(client, "networks", {"name": "soak-beacon"})
    subnet = await _post(client, "subnets", {"network_id": network["id"],
                                             "cidr": BEACON_CIDR, "ip_version": 4})
    port = await _post(client, "ports", {
        "network_id": network["id"], "device_owner": "compute:nova", "name": "fence-0",
        "binding:host_id": node_id, "fixed_ips": [{"subnet_id": subnet["id"]}]})
    return str(port["id"])


async def _post(client: httpx.AsyncClient, collection: str, body: dict[str, Any]
                ) -> dict[str, Any]:
    response = await client.post(f"/v2.0/{collection}", json={collection[:-1]: body})
    response.raise_for_status()
    answer: dict[str, Any] = response.json()[collection[:-1]]
    return answer


class Fences:
    def __init__(self, client: httpx.AsyncClient, beacon: SimAgent, port_id: str,
                 store: Store) -> None:
        self.client = client
        self.beacon = beacon
        self.port_id = port_id
        self.store = store
        self._sent: list[float] = []
        self._epochs: list[int] = []
        self.error: BaseException | None = None
        """Why ``run`` stopped, if it failed."""

    def after(self, moment: float) -> int | None:
        """The epoch of the first rename sent after ``moment`` (perf_counter), once known: a
        generation covering every change answered before ``moment``."""
        at = bisect.bisect_right(self._sent, moment)
        return self._epochs[at] if at < len(self._epochs) else None

    def covers(self, generation: int, moment: float) -> bool:
        """Whether a goal state of ``generation`` reflects every change answered before
        ``moment`` (False while no fence is known yet)."""
        epoch = self.after(moment)
        return epoch is not None and generation >= epoch

    async def past(self, moment: float, timeout: float = 120.0) -> None:
        """Return once a fence covers the changes answered before ``moment``."""
        async with asyncio.timeout(timeout):
            while self.after(moment) is None:
                if self.error is not None:
                    raise RuntimeError("the fences stopped") from self.error
                await asyncio.sleep(POLL_S * 10)

    async def run(self) -> None:
        """Raise fences until cancelled."""
        try:
            await self._raise_fences()
        except Exception as exc:
            self.error = exc
            raise

    async def _raise_fences(self) -> None:
        await self._beacon_idle()
        n = 0
        while True:
            held = self.beacon.state.generation
            sent = time.perf_counter()
            n += 1
            response = await self.client.put(f"/v2.0/ports/{self.port_id}",
                                              json={"port": {"name": f"fence-{n}"}})
            response.raise_for_status()
            while self.beacon.state.generation <= held:
                await asyncio.sleep(POLL_S)
            self._sent.append(sent)
            self._epochs.append(self.beacon.state.generation)
            await asyncio.sleep(max(0.0, sent + INTERVAL - time.perf_counter()))

    async def _beacon_idle(self) -> None:
        node = self.beacon.node_id

        def acknowledged(txn: Transaction) -> int | None:
            rows = txn.select("host_states", {"node_id": node})
            if not rows or rows[0]["generation"] != rows[0]["acked_generation"]:
                return None
            return int(rows[0]["generation"])

        while True:
            generation = await asyncio.to_thread(self.store.read, acknowledged)
            if generation is not None and self.beacon.state.generation == generation:
                return
            await asyncio.sleep(0.1)

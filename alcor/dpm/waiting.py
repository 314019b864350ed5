"""Waiting until ports are programmed (``X-Alcor-Wait``): a request holds until every port it
wrote is settled (ACTIVE or ERROR at the revision written) or its timeout passes.

In ``alcor server`` the controller of the process tells waiting requests what it settles
(``Settlements``); an API process without a controller (``Poller``) sees settlements by
polling the database.  Either way the answer is the ports' state and their hosts' outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from alcor.config import DpmSettings
from alcor.db.store import Store
from alcor.dpm import status
from alcor.dpm.placement import affected_hosts

T = TypeVar("T")


@dataclass(eq=False)
class Subscription:
    """A waiting request: the ports it waits for (id -> revision) and those settled since."""

    wanted: Mapping[str, int]
    settled: set[str] = field(default_factory=set)
    event: asyncio.Event = field(default_factory=asyncio.Event)


class Settlements:
    """Ports the controller of this process settled, told to the requests waiting for them."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()

    def subscribe(self, wanted: Mapping[str, int]) -> Subscription:
        subscription = Subscription(wanted)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def publish(self, settled: Iterable[tuple[str, int | None]]) -> None:
        """(port id, revision settled; None for a deleted port)."""
        if not self._subscriptions:
            return
        items = list(settled)
        for sub in self._subscriptions:
            wanted = sub.wanted
            hits = [pid for pid, revision in items if pid in wanted
                    and (revision is None or revision >= wanted[pid])]
            if hits:
                sub.settled.update(hits)
                sub.event.set()


async def wait_for_ports(
    read: Callable[..., Awaitable[Any]],
    ports: Mapping[str, int],
    timeout: float,
    settlements: Settlements | None,
    poll_interval: float,
    placement: status.Placement,
) -> dict[str, Any]:
    """Hold until every port in ``ports`` (id -> revision written) is settled or ``timeout``
    passes: told by ``settlements`` (this process's controller) and checked in the database
    every ``poll_interval``; then the ports' state and their hosts' outcome
    (``status.outcome``) with ``complete`` and ``elapsed_ms``."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + max(0.0, timeout)
    remaining = dict(ports)
    subscription = settlements.subscribe(ports) if settlements is not None else None
    event = subscription.event if subscription is not None else asyncio.Event()
    next_poll = started
    try:
        while remaining:
            if loop.time() >= next_poll:
                done: set[str] = await read(status.settled, remaining)
                remaining = {p: r for p, r in remaining.items() if p not in done}
                next_poll = loop.time() + poll_interval
            if subscription is not None:
                event.clear()
                remaining = {p: r for p, r in remaining.items()
                             if p not in subscription.settled}
            now = loop.time()
            if not remaining or now >= deadline:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(deadline, next_poll) - now)
    finally:
        if subscription is not None and settlements is not None:
            settlements.unsubscribe(subscription)
    result: dict[str, Any] = await read(status.outcome, dict(ports), placement)
    result["complete"] = not remaining
    result["elapsed_ms"] = round((loop.time() - started) * 1000.0, 3)
    return result


class Poller:
    """``wait`` for an API process without a controller: settlements are seen by polling
    the database every ``poll_interval``."""

    def __init__(self, store: Store, settings: DpmSettings,
                 placement: status.Placement | None = None) -> None:
        self.store = store
        self.settings = settings
        self.placement: status.Placement = placement or affected_hosts

    def changed(self) -> None:
        """Another process's controller consumes the outbox."""

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        call = functools.partial(self.store.read, fn, *args)
        return await asyncio.get_running_loop().run_in_executor(None, call)

    async def wait(self, ports: Mapping[str, int], timeout: float) -> dict[str, Any]:
        return await wait_for_ports(self.read, ports, timeout, None,
                                    self.settings.poll_interval, self.placement)

    def metrics_text(self) -> str:
        return "# no data-plane controller runs in this process\n"

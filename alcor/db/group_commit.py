"""Group commit: concurrent write requests share one database transaction and one commit.

On SQLite every write transaction is serialized anyway and the commit (a WAL append and, with
``synchronous=FULL``, an fsync) is a large share of a small request.  The committer queues the
transaction functions of the requests that arrive within one event-loop turn and runs them in
one transaction, each inside its own savepoint: a function that fails (bad input, lost race)
is rolled back to its savepoint alone and answered with its error, the others go on, and nobody
is answered before the shared commit is durable.  Running them one after another inside one
transaction is equivalent to running them serially, so isolation is unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from alcor.db.store import Store

LOG = logging.getLogger(__name__)

T = TypeVar("T")

MAX_BATCH = 128
"""Most requests in one transaction: bounds the latency one batch adds to its last member."""


class GroupCommitter:
    """Coalesces write transactions submitted from the event loop thread."""

    def __init__(self, store: Store, max_batch: int = MAX_BATCH) -> None:
        self.store = store
        self.max_batch = max_batch
        self._queue: list[tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]] = []
        self._scheduled = False
        self.batches = 0
        """Transactions run so far (for tests and metrics)."""

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(txn, *args)`` in the next shared transaction; its result or its error."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((fn, args, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        if self._queue:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        calls = [(fn, args) for fn, args, _ in batch]
        try:
            outcomes = self.store.write_each(calls)
        except BaseException as exc:  # the shared commit failed: nobody's change is durable
            LOG.warning("group commit of %d requests failed: %s", len(batch), exc)
            outcomes = [exc] * len(batch)
        self.batches += 1
        for (_, _, future), outcome in zip(batch, outcomes, strict=True):
            if future.cancelled():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


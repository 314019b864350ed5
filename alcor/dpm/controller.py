"""The data-plane manager's loop: committed changes in, acknowledged goal states out.

1. **Outbox.** A transaction claims a batch of change records (``FOR UPDATE SKIP LOCKED`` on
   PostgreSQL, so several controllers share the work), asks placement which hosts they
   affect, gives those hosts a new generation (``hosts.py``), writes the ports' provisioning
   records (``status.py``) and deletes the claimed records.  Once it commits, the changes are
   owed to the hosts through their generations, which survive a crash as the records did.
   The loop wakes when the API says something committed in this process (``changed()``) and
   polls every ``poll_interval`` for other processes' commits.
2. **Hosts.** One task per dirty host: read the host's generation and compile its whole goal
   state on one snapshot (many changes to a host thus cost one compile and one push), push it
   (at most ``push_concurrency`` at once), record the acknowledgement or the error.  Hosts
   waiting to be compiled are compiled together, in batches on one read transaction each
   (``compile_concurrency`` batches at once, as compiling is CPU-bound), so hosts sharing a
   network read its neighbours once; each host's push starts as soon as its own goal state
   is ready.  An unreachable
   host is retried with exponential backoff (capped); the user's resources are never rolled
   back.
3. **Status.** Each reply settles the ports it completes (``status.Tracker``): ACTIVE, or ERROR
   with the agent's reason; waiting requests (``wait``) are woken.
4. **Reconciler.** Every ``reconcile_interval`` (and at start) lagging hosts are pushed again
   and unsettled ports picked up (``reconciler.py``).

Database work runs in a small thread pool, so compiling and committing never stall the event
loop the API (in ``alcor server``) and the pushes share.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from alcor import errors
from alcor.config import DpmSettings
from alcor.db.store import Store, Transaction
from alcor.dpm import compiler, hosts, reconciler, status
from alcor.dpm.deltas import DeltaBook
from alcor.dpm.holdings import Holdings, Keys
from alcor.dpm.metrics import Metrics
from alcor.dpm.placement import affected_hosts, port_changes
from alcor.dpm.pusher import GoalStatePusher, PushResult, ResourceStatus
from alcor.dpm.waiting import Settlements, wait_for_ports
from alcor.rpc._generated import common_pb2

LOG = logging.getLogger(__name__)

T = TypeVar("T")

FAILED = (common_pb2.FAILURE, common_pb2.INVALID_ARG)
SUMMARY_ITEMS = 5


@dataclass(slots=True)
class Claim:
    """What one outbox claim committed."""

    rows: int
    hosts: set[str]
    epoch: int | None = None
    full: set[str] | None = None
    """Hosts needing their whole goal state (None: all of ``hosts``); the others only the
    neighbour entries of ``ports``."""
    ports: set[str] = field(default_factory=set)
    entries: list[status.Entry] = field(default_factory=list)
    settled: list[tuple[str, int]] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)
    untracked: set[str] = field(default_factory=set)
    """Claimed ports with nothing to wait for (unbound, or their host is unknown)."""
    nodes_gone: set[str] = field(default_factory=set)
    """Nodes deregistered."""


def claim_txn(
    txn: Transaction, limit: int, now: float, placement: status.Placement
) -> Claim | None:
    """Claim up to ``limit`` outbox records and turn them into dirty hosts and provisioning
    records; the records are deleted in the same transaction."""
    rows = txn.claim("outbox", "seq", limit)
    if not rows:
        return None
    changes = status.distinct_changes(rows)
    affected = set(placement(txn, changes))
    plan = status.plan_claim(txn, rows, placement, now)
    dirty = affected | plan.hosts
    epoch = hosts.mark_dirty(txn, dirty)
    split = port_changes(txn, changes)
    # Every claimed port, not only the distinct changes placement read: alike ports of a bulk
    # share one placed record, but each has its own neighbour entry to deliver.
    claimed_ports = {str(r["resource_id"]) for r in rows if r["resource_type"] == "port"}
    claim = Claim(len(rows), dirty, epoch,
                  None if split is None else split[0] | set(plan.own.values()),
                  set() if split is None else claimed_ports, gone=plan.gone, nodes_gone={
        str(r["resource_id"]) for r in rows
        if r["resource_type"] == "node" and r["operation"] == "delete"})
    if plan.ports:
        if epoch is None:
            epoch = claim.epoch = hosts.next_epoch(txn)
        claim.entries, claim.settled = status.record_claim(txn, plan, epoch)
        claim.untracked = set(plan.ports) - {e.port_id for e in claim.entries}
    seqs = [r["seq"] for r in rows]
    for start in range(0, len(seqs), 5000):
        txn.delete("outbox", {"seq": seqs[start:start + 5000]})
    return claim


def claim_unplaceable(txn: Transaction) -> Claim | None:
    """Claim the first outbox record alone when placing it fails: every registered host gets
    a new generation instead (a full recompute is always correct), so nothing is lost and
    the queue moves on."""
    rows = txn.claim("outbox", "seq", 1)
    if not rows:
        return None
    every = set(txn.scalars("nodes", "node_id"))
    epoch = hosts.mark_dirty(txn, every)
    txn.delete("outbox", {"seq": rows[0]["seq"]})
    return Claim(1, every, epoch)


def has_changes(txn: Transaction) -> bool:
    return txn.count("outbox") > 0


def _settle(future: asyncio.Future[T], value: T) -> None:
    if not future.done():  # a transaction run again delivers its hosts again
        future.set_result(value)


def refused_any(result: PushResult) -> bool:
    """Whether the agent refused the goal state as out of order (it applied nothing)."""
    return any(s.operation_status == common_pb2.OUT_OF_ORDER for s in result.statuses)


def failed_deletes(result: PushResult, deleted: Keys) -> Keys:
    """The explicit deletions the agent reported it failed (it may still hold them)."""
    out: Keys = {}
    for s in result.statuses:
        if s.operation_status in FAILED and s.resource_id in deleted.get(s.resource_type, ()):
            out.setdefault(s.resource_type, set()).add(s.resource_id)
    return out


def _port_outcomes(unsuccessful: Sequence[ResourceStatus], statuses: Sequence[ResourceStatus]
                   ) -> list[tuple[str, bool]]:
    """(port or neighbour id, failed) for the failures, and for every port or neighbour in
    ``statuses`` (passed only while the host blocks some port: a reply lists thousands)."""
    kinds = (common_pb2.PORT, common_pb2.NEIGHBOR)
    out = [(s.resource_id, True) for s in unsuccessful
           if s.operation_status in FAILED and s.resource_type in kinds]
    out += [(s.resource_id, s.operation_status in FAILED) for s in statuses
            if s.resource_type in kinds]
    return out


def summarize(failures: Mapping[str, str]) -> str | None:
    """``last_error`` for a host that failed to program some resources."""
    if not failures:
        return None
    shown = "; ".join(f"{rid}: {reason or 'failed'}"
                      for rid, reason in list(failures.items())[:SUMMARY_ITEMS])
    more = len(failures) - SUMMARY_ITEMS
    return f"{len(failures)} resource(s) failed: {shown}" + (f" (+{more} more)" if more > 0
                                                             else "")


SERVER_POLL = 1.0
"""Seconds between database checks of a waiting request in a process whose controller tells
it what settles (the checks only catch what other processes' controllers settled)."""


class Controller:
    """One controller: the outbox consumer, the host pushers and the reconciler.

    Also what the API in the same process uses to wait for ports (``changed``, ``wait``,
    ``metrics_text``).  Belongs to the event loop ``start`` runs on.
    """

    def __init__(
        self,
        store: Store,
        settings: DpmSettings,
        pusher: GoalStatePusher,
        *,
        compile_host: hosts.Compile | None = None,
        placement: status.Placement | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.pusher = pusher
        self.compile_host: hosts.Compile = compile_host or compiler.compile_host
        self.placement: status.Placement = placement or affected_hosts
        self.clock = clock
        self.tracker = status.Tracker()
        self.deltas = DeltaBook()
        self.holdings = Holdings()
        self.metrics = Metrics()
        self.backoff = hosts.Backoff(settings.backoff_initial, settings.backoff_max)
        self.retry_backoff = hosts.Backoff(settings.reconcile_interval,
                                           max(settings.backoff_max, settings.reconcile_interval))
        self._retry_after: dict[str, float] = {}
        self._heard: set[str] = set()
        """Hosts that have answered a push of this controller."""
        self._executor: ThreadPoolExecutor | None = None
        self._wake = asyncio.Event()
        self.settlements = Settlements()
        self._activity = asyncio.Event()
        self._to_compile: dict[str, asyncio.Future[hosts.Snapshot | None]] = {}
        self._compile_batches: set[asyncio.Task[None]] = set()
        self._pushing = asyncio.Semaphore(max(1, settings.push_concurrency))
        self._dirty: set[str] = set()
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._paused: dict[str, asyncio.Event] = {}
        self._urgent: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._claiming = asyncio.Lock()
        self._replies: list[tuple[status.Reply, list[str], asyncio.Future[None]]] = []
        self._reply_task: asyncio.Task[None] | None = None
        self._stopping = False

    # --- database ------------------------------------------------------------------------

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            threads = max(2, self.settings.compile_concurrency + 1)
            self._executor = ThreadPoolExecutor(threads, thread_name_prefix="alcor-dpm")
        return self._executor

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(txn, *args)`` on one snapshot, in the controller's thread pool."""
        call = functools.partial(self.store.read, fn, *args)
        return await asyncio.get_running_loop().run_in_executor(self._pool(), call)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        call = functools.partial(self.store.write, fn, *args)
        return await asyncio.get_running_loop().run_in_executor(self._pool(), call)

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Pick up what a previous run left (lagging hosts, unsettled ports), then run the
        outbox consumer and the reconciler in the background."""
        self._stopping = False
        await self.reconcile()
        self._tasks = [asyncio.create_task(self._consume(), name="alcor-dpm-outbox"),
                       asyncio.create_task(self._reconcile_forever(), name="alcor-dpm-reconcile")]
        self._wake.set()

    def _running(self) -> list[asyncio.Task[None]]:
        return [t for t in (*self._tasks, *self._workers.values(), *self._compile_batches,
                            *([self._reply_task] if self._reply_task is not None else []))
                if not t.done()]

    async def stop(self) -> None:
        """Cancel every task of this controller, again while any is left: Python 3.11's
        ``wait_for`` can swallow a cancellation that meets its inner task's completion, and a
        task going on may start another (a compile batch, the reply recorder)."""
        self._stopping = True
        while pending := self._running():
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=0.5)
        self._tasks = []
        self._reply_task = None
        self._workers.clear()
        self._paused.clear()
        self._to_compile.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # --- what the API uses ---------------------------------------------------------------

    def changed(self) -> None:
        """Something committed in this process: consume the outbox now."""
        self._wake.set()

    async def wait(self, ports: Mapping[str, int], timeout: float) -> dict[str, Any]:
        """Hold until ``ports`` are settled (see ``wait_for_ports``)."""
        self._wake.set()
        return await wait_for_ports(self.read, ports, timeout, self.settlements,
                                    max(self.settings.poll_interval, SERVER_POLL),
                                    self.placement)

    def metrics_text(self) -> str:
        return self.metrics.render({
            "alcor_hosts_syncing": len(self._workers) - len(self._paused),
            "alcor_hosts_backing_off": len(self._paused),
            "alcor_ports_pending": len(self.tracker),
        })

    # --- outbox --------------------------------------------------------------------------

    async def _consume(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)
            except TimeoutError:
                try:
                    if not await self.read(has_changes):
                        continue
                except Exception:
                    LOG.exception("outbox poll failed")
                    continue
            self._wake.clear()
            try:
                await self.drain_outbox()
            except Exception:
                LOG.exception("outbox claim failed; retrying at the next poll")

    async def drain_outbox(self) -> int:
        """Claim outbox records until none is left; returns how many were consumed."""
        total = 0
        batch = self.settings.claim_batch
        async with self._claiming:
            while True:
                began = time.perf_counter()
                try:
                    claim = await self.write(claim_txn, batch, self.clock(), self.placement)
                except (errors.Unavailable, errors.Conflict):
                    raise  # the database: try again at the next poll
                except Exception:
                    if batch > 1:  # find the record that fails, then get past it
                        batch = 1
                        continue
                    LOG.exception("an outbox record could not be placed; every host gets a "
                                  "new generation instead")
                    claim = await self.write(claim_unplaceable)
                    batch = self.settings.claim_batch
                if claim is None:
                    return total
                LOG.debug("claimed %d outbox records for %d hosts in %.3fs", claim.rows,
                          len(claim.hosts), time.perf_counter() - began)
                total += claim.rows
                self._after_claim(claim)
                if claim.nodes_gone:
                    self.tracker.drop_hosts(claim.nodes_gone)
                    await self._complete_satisfied()
                if claim.rows < batch:
                    return total

    def _after_claim(self, claim: Claim) -> None:
        self.metrics.outbox_claimed += claim.rows
        full = claim.hosts if claim.full is None else claim.full
        self.deltas.observe(claim.epoch, full, claim.hosts - full, claim.ports)
        for node_id in claim.nodes_gone:
            self.deltas.forget(node_id)
            self.holdings.forget(node_id)
        self.tracker.discard(claim.gone | claim.untracked)
        self.tracker.add(claim.entries)
        for node_id in sorted(claim.hosts):
            self.kick(node_id)
        self.settlements.publish([*claim.settled, *((pid, None) for pid in claim.gone)])

    # --- hosts ---------------------------------------------------------------------------

    def kick(self, node_id: str, *, now: bool = False) -> None:
        """Push ``node_id`` its goal state if it is dirty; ``now`` skips a pending backoff."""
        if self._stopping or node_id == hosts.EPOCH_ROW:
            return
        self._dirty.add(node_id)
        if now:
            self.backoff.reset(node_id)
            self._urgent.add(node_id)
            paused = self._paused.pop(node_id, None)
            if paused is not None:
                paused.set()
        if node_id not in self._workers:
            self._workers[node_id] = asyncio.create_task(self._host_loop(node_id),
                                                         name=f"alcor-dpm-host-{node_id}")

    async def _host_loop(self, node_id: str) -> None:
        try:
            while node_id in self._dirty and not self._stopping:
                self._dirty.discard(node_id)
                self._urgent.discard(node_id)
                try:
                    delivered = await self._sync(node_id)
                except Exception as exc:
                    LOG.exception("syncing host %s failed", node_id)
                    delivered = False
                    await self._record_error(node_id, f"controller error: {exc}")
                if not delivered:
                    self._dirty.add(node_id)
                    if node_id in self._urgent:  # kicked during this attempt: no backoff
                        self._urgent.discard(node_id)
                        continue
                    await self._pause(node_id)
        finally:
            self._workers.pop(node_id, None)
            self._activity.set()

    async def _pause(self, node_id: str) -> None:
        delay = self.backoff.next_delay(node_id)
        event = self._paused[node_id] = asyncio.Event()
        self._activity.set()
        try:
            await asyncio.wait_for(event.wait(), delay)
        except TimeoutError:
            pass
        finally:
            if self._paused.get(node_id) is event:
                del self._paused[node_id]

    async def _record_error(self, node_id: str, error: str) -> None:
        try:
            await self.write(hosts.record_failure, node_id, self.clock(), error)
        except Exception:
            LOG.exception("recording the failure of host %s failed", node_id)

    async def _sync(self, node_id: str) -> bool:
        """Push a dirty host its goal state once; False if it must be retried later."""
        began = time.perf_counter()
        snap = await self._snapshot(node_id)
        if snap is None:
            self.backoff.reset(node_id)
            return True
        local_ip = str(snap.node.get("local_ip", ""))
        goal_state, carried = self.holdings.prepare(node_id, local_ip, snap.goal_state,
                                                    snap.base)
        snap = hosts.Snapshot(snap.node, snap.generation, goal_state, snap.base)
        compiled = time.perf_counter()
        async with self._pushing:
            pushed_at = self.clock()
            result = await self._push(snap)
            LOG.debug("host %s generation %d: compiled %d bytes in %.3fs, pushed in %.3fs",
                      node_id, snap.generation, len(snap.goal_state), compiled - began,
                      time.perf_counter() - compiled)
        self.metrics.pushes += 1
        if result.error is not None or refused_any(result):
            self.holdings.uncertain(node_id, carried)
        else:
            self.holdings.delivered(node_id, carried, failed_deletes(result, carried.deleted))
        if result.error is not None:
            self.metrics.push_failures += 1
            LOG.warning("push of generation %d to host %s failed: %s", snap.generation,
                        node_id, result.error)
            await self.write(hosts.record_failure, node_id, pushed_at, result.error)
            return False
        unsuccessful = [s for s in result.statuses if s.operation_status != common_pb2.SUCCESS]
        refused = any(s.operation_status == common_pb2.OUT_OF_ORDER for s in unsuccessful)
        if refused and snap.base is not None:
            self.metrics.deltas_refused += 1
            self.deltas.forget(node_id)  # the host holds something else: send it all
            self._urgent.add(node_id)
            return False
        if refused:
            if await self.read(hosts.acked_at_least, node_id, snap.generation):
                return True  # a newer goal state got there first (another controller's)
            await self.write(hosts.record_failure, node_id, pushed_at,
                             f"the agent refused generation {snap.generation} as older than "
                             "the goal state it holds")
            return False
        await self._acknowledged(node_id, snap.generation, pushed_at, result, unsuccessful,
                                 full=snap.base is None)
        self.deltas.acknowledged(node_id, snap.generation)
        if any(s.operation_status in FAILED for s in unsuccessful):
            # Only a full goal state makes an agent retry what it failed: no delta until one
            # has gone through (the reconciler pushes hosts with failures again).
            self.deltas.forget(node_id)
        if snap.base is not None:
            self.metrics.deltas += 1
        self.backoff.reset(node_id)
        return True

    async def _snapshot(self, node_id: str) -> hosts.Snapshot | None:
        """The host's goal state, compiled in the next batch (see the module docstring)."""
        future = self._to_compile.get(node_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._to_compile[node_id] = future
        if len(self._compile_batches) < max(1, self.settings.compile_concurrency):
            task = asyncio.create_task(self._compile_batch(), name="alcor-dpm-compile")
            self._compile_batches.add(task)
        return await asyncio.shield(future)

    async def _compile_batch(self) -> None:
        """Compile every host waiting, on one transaction; again while more are waiting.

        The task leaves ``_compile_batches`` in the same step that finds nothing waiting, so
        a host queued after that step always finds room to start a new batch."""
        loop = asyncio.get_running_loop()
        try:
            while self._to_compile:
                batch, self._to_compile = self._to_compile, {}
                asked = {node_id: self.deltas.request(node_id) for node_id in batch}
                # Deltas are quick: compile them before the full goal states of the batch.
                requests = dict(sorted(asked.items(), key=lambda item: item[1] is None))

                def ready(node_id: str, snap: hosts.Snapshot | None,
                          batch: dict[str, asyncio.Future[hosts.Snapshot | None]] = batch
                          ) -> None:
                    loop.call_soon_threadsafe(_settle, batch[node_id], snap)

                try:
                    await self.read(hosts.snapshots, requests, self.compile_host, ready,
                                    self.deltas.covers)
                except Exception as exc:
                    for future in batch.values():
                        if not future.done():
                            future.set_exception(exc)
        finally:
            current = asyncio.current_task()
            if current is not None:
                self._compile_batches.discard(current)

    async def _push(self, snap: hosts.Snapshot) -> PushResult:
        node_id = str(snap.node["node_id"])
        try:
            return await asyncio.wait_for(
                self.pusher.push(snap.node, snap.generation, snap.goal_state, base=snap.base),
                self.settings.push_deadline + 1.0)
        except TimeoutError:
            return PushResult(node_id, snap.generation, [], "push deadline exceeded")

    async def _acknowledged(
        self, node_id: str, generation: int, pushed_at: float, result: PushResult,
        unsuccessful: Sequence[ResourceStatus], *, full: bool = True,
    ) -> None:
        """Queue the reply for the next ``record_replies`` transaction and wait for it;
        ``full``: the push was a full goal state (its reply settles every neighbour entry)."""
        failures = {s.resource_id: s.error or "" for s in unsuccessful
                    if s.operation_status in FAILED}
        self.metrics.resource_failures += len(failures)
        port_failures = {s.resource_id: s.error or "" for s in unsuccessful
                         if s.operation_status in FAILED and s.resource_type == common_pb2.PORT}
        failed = self.tracker.failed
        successes = [s.resource_id for s in result.statuses
                     if s.resource_id in failed and s.operation_status == common_pb2.SUCCESS
                     and s.resource_type == common_pb2.PORT] if failed else []
        ports = status.PortOutcomes.of(full, _port_outcomes(
            unsuccessful, result.statuses if self.tracker.blocked_on(node_id) else ()))
        reply = status.Reply(node_id, generation, pushed_at, self.clock(), summarize(failures),
                             port_failures, ports)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._replies.append((reply, successes, future))
        if self._reply_task is None or self._reply_task.done():
            self._reply_task = asyncio.create_task(self._record_replies(),
                                                   name="alcor-dpm-replies")
        await future

    async def _record_replies(self) -> None:
        """Record queued replies, all that arrived meanwhile in one transaction each time.

        One at a time, so each batch sees the acknowledgements of the batches before it: a
        port needing hosts A and B completes whichever of them answers last."""
        while self._replies:
            batch, self._replies = self._replies, []
            failed = set(self.tracker.failed)
            recovered: set[str] = set()
            for reply, successes, _ in batch:
                self._heard.add(reply.node_id)
                self.tracker.note_acked({reply.node_id: reply.generation})
                self.tracker.note_ports(reply.node_id, reply.ports)
                recovered |= self.tracker.owned(reply.node_id, successes)
            failed -= recovered
            for reply, _, _ in batch:
                own = self.tracker.owned(reply.node_id, reply.failures)
                failed |= own
                recovered -= own
            completed = self.tracker.completions([r.node_id for r, _, _ in batch], failed)
            try:
                outcome = await self.write(status.record_replies, [r for r, _, _ in batch],
                                           completed, self.clock())
            except Exception as exc:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.tracker.apply(outcome, recovered)
            self._observe(outcome)
            for _, _, future in batch:
                if not future.done():
                    future.set_result(None)

    def _observe(self, outcome: status.ReplyOutcome) -> None:
        for _, latency in outcome.active:
            self.metrics.observe_latency(latency)
        self.metrics.ports_active += len(outcome.active)
        self.metrics.ports_error += len(outcome.failed)
        self.settlements.publish([*((e.port_id, e.revision) for e, _ in outcome.active),
                                  *((f.port_id, f.revision) for f in outcome.failed)])

    async def agent_restarted(self, local_ip: str) -> list[str]:
        """An agent at ``local_ip`` (re)started: push its nodes their whole goal state now."""
        node_ids, epoch = await self.write(hosts.mark_restarted, local_ip)
        self.deltas.observe(epoch, node_ids)
        for node_id in node_ids:
            self.deltas.forget(node_id)
            self.kick(node_id, now=True)
        return node_ids

    # --- reconciler ----------------------------------------------------------------------

    async def _reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reconcile_interval)
            try:
                await self.reconcile()
            except Exception:
                LOG.exception("reconciler pass failed")

    async def reconcile(self) -> None:
        """One reconciler pass (see ``reconciler.py``)."""
        survey = await self.read(reconciler.survey, list(self.tracker.entries),
                                 list(self.tracker.by_host), self.placement)
        self.tracker.add(survey.entries, survey.failed_ports)
        # A host that reported failures counts once it has answered this controller: only a
        # reply says which ports it failed (after a restart the tracker knows none).
        self.tracker.note_acked({h: g for h, g in survey.acked.items()
                                 if h not in survey.erring or h in self._heard})
        self.tracker.drop_hosts(set(self.tracker.by_host) - survey.registered)
        await self._complete_satisfied()
        for node_id in survey.dirty:
            if node_id not in self._workers:
                self.kick(node_id)
        await self._retry_failed(survey.failed)

    async def _complete_satisfied(self) -> None:
        """Set ACTIVE the tracked ports whose every host has acknowledged them (as the
        database says: acknowledgements other controllers recorded count)."""
        done = self.tracker.satisfied()
        if done:
            outcome = await self.write(status.complete, done, self.clock())
            self.tracker.settle(outcome)
            self._observe(outcome)

    async def _retry_failed(self, node_ids: Sequence[str]) -> None:
        now = self.clock()
        due = [n for n in node_ids if self._retry_after.get(n, 0.0) <= now
               and n not in self._workers]
        for node_id in set(self._retry_after) - set(node_ids):
            self._retry_after.pop(node_id, None)
            self.retry_backoff.reset(node_id)
        if not due:
            return
        retried, epoch = await self.write(reconciler.retry_failed, due)
        self.deltas.observe(epoch, retried)
        for node_id in retried:
            self._retry_after[node_id] = now + self.retry_backoff.next_delay(node_id)
            self.kick(node_id)

    # --- tests and benchmarks ------------------------------------------------------------

    async def quiesce(self) -> None:
        """Return once the outbox is empty and no host is being pushed (hosts waiting out a
        backoff do not count)."""
        while True:
            self._activity.clear()
            await self.drain_outbox()
            if all(n in self._paused for n in self._workers):
                if not await self.read(has_changes):
                    return
                continue
            await self._activity.wait()

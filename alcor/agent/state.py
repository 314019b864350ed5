"""The agent's desired versus realized state, the plan between them, and the generation rules.

State is keyed by (resource kind, id) and holds each resource's configuration as serialized
bytes (compact, and the bytes are what the plan compares).  Applying a goal state:

1. Generation (from the controller's ``alcor-generation`` metadata): older than the highest
   applied -> every resource in the message is answered OUT_OF_ORDER and nothing is applied.
   Equal or newer -> the message is planned against what is realized, so a repeated goal state
   programs nothing (its resources are unchanged) and only retries what failed before.
2. With a generation the goal state is FULL: it is everything the host must hold, and whatever
   is realized but absent is deleted.  A generation with a base generation is a DELTA: the
   changes from the base to the new generation, each resource by its operation type (DELETE
   removes it), applied only if the base is exactly the generation held; otherwise every
   resource is OUT_OF_ORDER and nothing is applied (the controller then sends a FULL one).
   Without a generation (an upstream controller: "newer than anything") each state is
   applied by its own operation_type and nothing else is touched; a resource whose
   revision_number is lower than the realized one is then OUT_OF_ORDER.
3. The plan (create / update / delete / unchanged) runs through the programmer: deletes first
   (dependants first), then creates and updates in dependency order.  A programmer exception
   makes that resource FAILURE with the reason, and the rest goes on.  A failed create is not
   realized, a failed update keeps the previous configuration realized, a failed delete keeps
   the resource; each is tried again by the next goal state that still calls for it.

Every outcome carries the microseconds spent in the programmer and since the message arrived.
Once the first FULL goal state since the agent started has been applied, the programmer's
``sweep()`` (if it has one) removes what the kernel holds from before and nobody asked for
again; a sweep failure is logged, not reported against any resource.
Not thread-safe: the server applies one goal state at a time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from alcor.agent.programmer import APPLY_ORDER, PARSERS, Configuration, Programmer
from alcor.rpc._generated import common_pb2, goalstate_pb2

log = logging.getLogger(__name__)

CREATE = common_pb2.CREATE
UPDATE = common_pb2.UPDATE
DELETE = common_pb2.DELETE
UNCHANGED = common_pb2.INFO
"""Plan actions are OperationType values; an unchanged resource is reported as INFO."""

SUCCESS = common_pb2.SUCCESS
FAILURE = common_pb2.FAILURE
INVALID_ARG = common_pb2.INVALID_ARG
OUT_OF_ORDER = common_pb2.OUT_OF_ORDER

STATE_FIELDS: tuple[tuple[int, str], ...] = (
    (common_pb2.VPC, "vpc_states"),
    (common_pb2.SUBNET, "subnet_states"),
    (common_pb2.PORT, "port_states"),
    (common_pb2.DHCP, "dhcp_states"),
    (common_pb2.NEIGHBOR, "neighbor_states"),
    (common_pb2.SECURITYGROUP, "security_group_states"),
    (common_pb2.ROUTER, "router_states"),
    (common_pb2.GATEWAY, "gateway_states"),
)
"""Resource kind -> the field holding its states, in GoalStateV2 and GoalState alike."""

_MAX_UINT32 = 0xFFFFFFFF


@dataclass(slots=True)
class Desired:
    """One resource a goal state asks for; ``config`` is None when the message lists the
    resource in host_resources without carrying its state."""

    kind: int
    resource_id: str
    operation: int
    config: Configuration | None


@dataclass(slots=True)
class Step:
    """One planned action: ``encoded`` is the new configuration's bytes (empty for a delete),
    ``previous`` the realized bytes (None if nothing is realized)."""

    action: int
    kind: int
    resource_id: str
    config: Configuration | None
    encoded: bytes
    previous: bytes | None


@dataclass(slots=True)
class Plan:
    steps: list[Step] = field(default_factory=list)
    """Deletes (reverse dependency order), then creates, updates and unchanged resources."""
    invalid: list[Desired] = field(default_factory=list)
    """Resources the message lists but does not carry."""
    out_of_order: list[Desired] = field(default_factory=list)
    """Resources older than what is realized (only without a generation)."""

    def actions(self) -> dict[tuple[int, str], int]:
        """(kind, id) -> action: what a test or a log wants to see."""
        return {(s.kind, s.resource_id): s.action for s in self.steps}


@dataclass(slots=True)
class Outcome:
    kind: int
    resource_id: str
    operation: int
    status: int
    error: str | None
    dataplane_us: int
    elapsed_us: int


@dataclass(slots=True)
class Report:
    """What applying one goal state did: one outcome per resource it concerned."""

    generation: int | None
    outcomes: list[Outcome]
    total_us: int
    programmed: int
    """Programmer calls made (0 when the goal state changed nothing)."""

    def failures(self) -> dict[str, str]:
        return {o.resource_id: o.error or "" for o in self.outcomes if o.status == FAILURE}

    def summary(self) -> str:
        """e.g. "2 created, 1 deleted, 40 unchanged, 1 failed in 812 us" (in that order)."""
        counts: dict[str, int] = {}
        for o in self.outcomes:
            if o.status == SUCCESS:
                word = _DONE.get(o.operation, "applied")
            else:
                word = _NOT_DONE.get(o.status, "pending")
            counts[word] = counts.get(word, 0) + 1
        words = [*_DONE.values(), "applied", *_NOT_DONE.values(), "pending"]
        parts = [f"{counts[word]} {word}" for word in words if word in counts] or ["nothing"]
        return f"{', '.join(parts)} in {self.total_us} us"


_DONE: dict[int, str] = {
    CREATE: "created", UPDATE: "updated", DELETE: "deleted", UNCHANGED: "unchanged"}
_NOT_DONE: dict[int, str] = {
    FAILURE: "failed", INVALID_ARG: "invalid", OUT_OF_ORDER: "refused (out of order)"}


def desired_from_v2(goal: goalstate_pb2.GoalStateV2, local_ip: str) -> list[Desired]:
    """The resources a GoalStateV2 asks this host for: the ones host_resources lists under
    ``local_ip`` if it has that key, otherwise every state in the message.

    A message addressed to this host alone whose index counts as many resources as it
    carries (what the controller sends) is taken whole, without a lookup per listed id."""
    hosts = goal.host_resources
    if local_ip and local_ip in hosts:
        index = hosts[local_ip]
        carried = sum(len(getattr(goal, name)) for _, name in STATE_FIELDS)
        if len(hosts) > 1 or len(index.resources) != carried:
            return list(_listed(goal, index))
    return [
        Desired(kind, key, state.operation_type, state.configuration)
        for kind, name in STATE_FIELDS
        for key, state in getattr(goal, name).items()
    ]


def _listed(
    goal: goalstate_pb2.GoalStateV2, index: goalstate_pb2.HostResources
) -> Iterator[Desired]:
    maps = {kind: getattr(goal, name) for kind, name in STATE_FIELDS}
    for ref in index.resources:
        states = maps.get(ref.type)
        state = states.get(ref.id) if states is not None else None
        if state is None:
            yield Desired(ref.type, ref.id, CREATE, None)
        else:
            yield Desired(ref.type, ref.id, state.operation_type, state.configuration)


def desired_from_v1(goal: goalstate_pb2.GoalState) -> list[Desired]:
    """Every state of a v1 GoalState (addressed to this host as a whole), keyed by its id."""
    return [
        Desired(kind, state.configuration.id, state.operation_type, state.configuration)
        for kind, name in STATE_FIELDS
        for state in getattr(goal, name)
    ]


def plan(
    realized: Mapping[int, Mapping[str, bytes]], desired: Iterable[Desired], *, full: bool
) -> Plan:
    """Compare what is asked for with what is realized.  ``full``: anything realized and not
    asked for is deleted; otherwise only states marked DELETE are."""
    result = Plan()
    deletes: dict[int, list[Step]] = {kind: [] for kind in APPLY_ORDER}
    applies: dict[int, list[Step]] = {kind: [] for kind in APPLY_ORDER}
    seen: dict[int, set[str]] = {kind: set() for kind in APPLY_ORDER}
    nothing: Mapping[str, bytes] = {}
    for item in desired:
        seen_kind = seen.get(item.kind)
        if item.config is None or seen_kind is None:
            result.invalid.append(item)
            continue
        if item.resource_id in seen_kind:
            continue  # listed twice: the first one counts
        seen_kind.add(item.resource_id)
        have = realized.get(item.kind, nothing).get(item.resource_id)
        if item.operation == DELETE:
            deletes[item.kind].append(Step(DELETE, item.kind, item.resource_id, None, b"", have))
            continue
        step = _apply_step(item, have)
        if not full and step.action == UPDATE and _older(item, have):
            result.out_of_order.append(item)
        else:
            applies[item.kind].append(step)
    if full:
        for kind, held in realized.items():
            for rid in held.keys() - seen.get(kind, set()):
                deletes[kind].append(Step(DELETE, kind, rid, None, b"", held[rid]))
    for kind in reversed(APPLY_ORDER):
        result.steps.extend(deletes[kind])
    for kind in APPLY_ORDER:
        result.steps.extend(applies[kind])
    return result


def _apply_step(item: Desired, have: bytes | None) -> Step:
    assert item.config is not None
    encoded = item.config.SerializeToString()
    if have is None:
        action = CREATE
    elif have == encoded:
        action = UNCHANGED
    else:
        action = UPDATE
    return Step(action, item.kind, item.resource_id, item.config, encoded, have)


def _older(item: Desired, have: bytes | None) -> bool:
    """Whether the asked-for configuration has a lower revision than the realized one."""
    if have is None or item.config is None:
        return False
    return item.config.revision_number < PARSERS[item.kind](have).revision_number


def _us(seconds: float) -> int:
    """Microseconds, capped to fit the reply's uint32 fields."""
    return min(int(seconds * 1_000_000), _MAX_UINT32)


class AgentState:
    """Desired and realized state of one host, applied through ``programmer``."""

    def __init__(self, programmer: Programmer, local_ip: str = "", *,
                 implicit_deletes: bool = True) -> None:
        self.programmer = programmer
        self.local_ip = local_ip
        self.implicit_deletes = implicit_deletes
        """False: a FULL goal state deletes only what it names with DELETE, as upstream's
        agent does (it never sweeps what a goal state leaves out); generations still hold."""
        self.generation = 0
        """The highest generation applied (0: none since the agent started)."""
        self.desired: dict[int, dict[str, bytes]] = {kind: {} for kind in APPLY_ORDER}
        self.realized: dict[int, dict[str, bytes]] = {kind: {} for kind in APPLY_ORDER}
        self.failures: dict[tuple[int, str], str] = {}
        """(kind, id) -> the reason its last programming failed (until it succeeds)."""
        self.last_report: Report | None = None
        self.swept = False
        """Whether the programmer's sweep ran (after the first full goal state)."""

    def apply_v2(
        self, goal: goalstate_pb2.GoalStateV2, generation: int | None,
        started: float | None = None, base: int | None = None,
    ) -> Report:
        return self.apply(desired_from_v2(goal, self.local_ip), generation, started, base)

    def apply_v1(
        self, goal: goalstate_pb2.GoalState, generation: int | None,
        started: float | None = None, base: int | None = None,
    ) -> Report:
        return self.apply(desired_from_v1(goal), generation, started, base)

    def apply(
        self, desired: list[Desired], generation: int | None, started: float | None = None,
        base: int | None = None,
    ) -> Report:
        """Apply one goal state (see the module docstring); ``started`` is the perf_counter
        value when the message arrived (default: now); ``base``: the generation a delta
        applies to."""
        t0 = time.perf_counter() if started is None else started
        refusal = self._refusal(generation, base)
        if refusal is not None:
            outcomes = [Outcome(d.kind, d.resource_id, d.operation, OUT_OF_ORDER, refusal, 0, 0)
                        for d in desired]
            return self._report(generation, outcomes, t0, 0)
        full = generation is not None and base is None
        the_plan = plan(self.realized, desired, full=full and self.implicit_deletes)
        outcomes = [Outcome(d.kind, d.resource_id, d.operation, INVALID_ARG,
                            "listed in host_resources but not in the message", 0, 0)
                    for d in the_plan.invalid]
        outcomes += [Outcome(d.kind, d.resource_id, d.operation, OUT_OF_ORDER,
                             "revision is older than the realized one", 0, 0)
                     for d in the_plan.out_of_order]
        self._record_desired(the_plan, full and self.implicit_deletes)
        programmed = 0
        for step in the_plan.steps:
            outcome, called = self._run(step, t0)
            outcomes.append(outcome)
            programmed += called
        if generation is not None:
            self.generation = generation
        self._flush()
        report = self._report(generation, outcomes, t0, programmed)
        if full and self.implicit_deletes:
            self._sweep_once()
        return report

    def _refusal(self, generation: int | None, base: int | None) -> str | None:
        """Why a goal state is refused as out of order (None: it is applied)."""
        if generation is None:
            return None
        if generation < self.generation:
            return f"generation {generation} is older than {self.generation}"
        if base is not None and base != self.generation:
            return (f"delta from generation {base} does not apply to the generation held "
                    f"({self.generation})")
        return None

    def _flush(self) -> None:
        """Let the programmer finish what it batches across one goal state's resources."""
        flush = getattr(self.programmer, "flush", None)
        if flush is not None:
            flush()

    def _sweep_once(self) -> None:
        if self.swept:
            return
        self.swept = True
        sweep = getattr(self.programmer, "sweep", None)
        if sweep is None:
            return
        try:
            sweep()
        except Exception:  # stale leftovers stay; the data plane asked for is programmed
            log.exception("sweeping stale data-plane objects failed")

    def _record_desired(self, the_plan: Plan, full: bool) -> None:
        if full:
            self.desired = {kind: {} for kind in APPLY_ORDER}
            self.failures = {}
        for step in the_plan.steps:
            if step.action == DELETE:
                self.desired[step.kind].pop(step.resource_id, None)
            else:
                self.desired[step.kind][step.resource_id] = step.encoded

    def _run(self, step: Step, t0: float) -> tuple[Outcome, int]:
        """Carry out one step; returns its outcome and whether the programmer was called."""
        key = (step.kind, step.resource_id)
        if step.action == UNCHANGED or (step.action == DELETE and step.previous is None):
            self.failures.pop(key, None)
            return self._outcome(step, SUCCESS, None, 0, t0), 0
        previous = None if step.previous is None else PARSERS[step.kind](step.previous)
        began = time.perf_counter()
        try:
            if step.action == DELETE:
                assert previous is not None
                self.programmer.delete(step.kind, step.resource_id, previous)
            else:
                assert step.config is not None
                self.programmer.apply(step.kind, step.resource_id, step.config, previous)
        except Exception as exc:  # the driver's failure is this resource's outcome
            reason = str(exc) or type(exc).__name__
            self.failures[key] = reason
            return self._outcome(step, FAILURE, reason, _us(time.perf_counter() - began), t0), 1
        dataplane = _us(time.perf_counter() - began)
        self.failures.pop(key, None)
        if step.action == DELETE:
            self.realized[step.kind].pop(step.resource_id, None)
        else:
            self.realized[step.kind][step.resource_id] = step.encoded
        return self._outcome(step, SUCCESS, None, dataplane, t0), 1

    @staticmethod
    def _outcome(step: Step, status: int, error: str | None, dataplane: int, t0: float) -> Outcome:
        elapsed = min(int((time.perf_counter() - t0) * 1_000_000), _MAX_UINT32)
        return Outcome(step.kind, step.resource_id, step.action, status, error, dataplane, elapsed)

    def _report(self, generation: int | None, outcomes: list[Outcome], t0: float,
                programmed: int) -> Report:
        report = Report(generation, outcomes, _us(time.perf_counter() - t0), programmed)
        self.last_report = report
        return report

    def realized_ids(self, kind: int) -> set[str]:
        return set(self.realized[kind])

    def realized_config(self, kind: int, resource_id: str) -> Configuration:
        """The configuration a resource is realized with (KeyError if it is not)."""
        return PARSERS[kind](self.realized[kind][resource_id])

    def lagging(self) -> set[tuple[int, str]]:
        """Resources desired but not realized as desired (their programming failed)."""
        return {(kind, rid) for kind, held in self.desired.items()
                for rid, encoded in held.items() if self.realized[kind].get(rid) != encoded}

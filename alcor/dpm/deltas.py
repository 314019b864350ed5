"""Which hosts may be sent a delta instead of their whole goal state, and of what.

A host whose own resources did not change, only some of its neighbours (and no router's
state: ``placement.port_changes`` says when a port batch may change one), needs just those
neighbours' entries: a one-port change in a network spread over a thousand hosts then costs a
thousand tiny messages instead of a thousand full ones.  A delta is only correct against the
exact goal state the host holds, so this controller remembers, per host:

* ``base``: the generation it last pushed to the host and saw acknowledged;
* the changes owed since: ports whose neighbour entry changed (with the generation that
  carried each change), or "full" from the generation of any other change.

and sends a delta only if the host's stored generations say the base is still what the
host holds (``acked_generation == base``) and every generation handed out after the base, up
to the one the delta is compiled at, was handed out by this controller *and observed before
the delta was asked for* (``epochs`` with their observation order: another controller's change
to the host would be missing from what this one knows, and so would one of its own claims
that committed after the request was taken but before the compile read the host's
generation -- the delta would then be acknowledged at a generation whose change it does
not carry, and the change would be lost for good).  Everything else, including the first
push after a controller start, is a full goal state; the agent refuses a delta whose base it
does not hold, and the next push is full.  Memory only: losing it costs full pushes, never a change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

MAX_DELTA_PORTS = 2000
"""From this many changed ports on a full goal state costs about the same: send that."""
PRUNE_FROM = 4096
"""Epochs remembered before the first pruning (then twice what survived the last)."""
MAX_EPOCH_SPAN = 100_000
"""A base this many generations old is not checked epoch by epoch: full."""


@dataclass(frozen=True, slots=True)
class DeltaRequest:
    """Send ``ports``' neighbour entries (or deletions) on top of generation ``base``;
    ``seen``: the book's observation count when asked (epochs observed later are not
    covered by ``ports``)."""

    base: int
    ports: frozenset[str]
    seen: int = 0


@dataclass(slots=True)
class _Owed:
    full_upto: int | None = None
    """Generation of the newest change needing a full goal state (None: none owed): only a
    goal state acknowledged at or after it settles the debt."""
    ports: dict[str, int] = field(default_factory=dict)
    """Port id -> the newest generation that changed its neighbour entry."""


class DeltaBook:
    """This controller's knowledge of what its hosts hold (see the module docstring).

    Updated on the event loop; ``covers`` is read from compile threads (dict lookups
    only)."""

    def __init__(self) -> None:
        self._base: dict[str, int] = {}
        self._owed: dict[str, _Owed] = {}
        self._epochs: dict[int, int] = {}
        """Epoch -> the observation count when it was observed."""
        self._seen = 0
        self._prune_at = PRUNE_FROM

    def observe(self, epoch: int | None, full: Iterable[str], neighbours: Iterable[str] = (),
                ports: Iterable[str] = ()) -> None:
        """A transaction of this controller gave hosts generation ``epoch``: ``full`` need
        their whole goal state, ``neighbours`` only the entries of ``ports``."""
        if epoch is None:
            for node_id in full:
                self._base.pop(node_id, None)
            return
        self._seen += 1
        self._epochs[epoch] = self._seen
        for node_id in full:
            owed = self._owed.setdefault(node_id, _Owed())
            # The newest: acknowledging an older full goal state must not settle this one.
            owed.full_upto = epoch if owed.full_upto is None else max(owed.full_upto, epoch)
        changed = list(ports)
        for node_id in neighbours:
            owed = self._owed.setdefault(node_id, _Owed())
            for port_id in changed:
                owed.ports[port_id] = epoch

    def request(self, node_id: str) -> DeltaRequest | None:
        """What a delta to the host would carry, or None: send the full goal state."""
        base = self._base.get(node_id)
        owed = self._owed.get(node_id)
        if base is None or owed is None or owed.full_upto is not None:
            return None
        if len(owed.ports) > MAX_DELTA_PORTS:
            return None
        return DeltaRequest(base, frozenset(owed.ports), self._seen)

    def covers(self, request: DeltaRequest, generation: int) -> bool:
        """Whether every generation after the request's base up to ``generation`` was handed
        out here and observed before ``request`` was taken (so its changes are in it)."""
        if generation - request.base > MAX_EPOCH_SPAN:
            return False
        epochs, seen = self._epochs, request.seen
        return all(epochs.get(e, seen + 1) <= seen
                   for e in range(request.base + 1, generation + 1))

    def acknowledged(self, node_id: str, generation: int) -> None:
        """The host applied ``generation`` pushed by this controller: it is the new base, and
        whatever was owed up to it is delivered."""
        self._base[node_id] = generation
        owed = self._owed.get(node_id)
        if owed is None:
            return
        if owed.full_upto is not None and owed.full_upto <= generation:
            owed.full_upto = None
        owed.ports = {p: e for p, e in owed.ports.items() if e > generation}
        if owed.full_upto is None and not owed.ports:
            del self._owed[node_id]
        self._prune()

    def forget(self, node_id: str) -> None:
        """The host's state is unknown (refused a delta, restarted, deregistered)."""
        self._base.pop(node_id, None)

    def _prune(self) -> None:
        """Forget epochs no base can need; amortized (a lagging host keeps old ones)."""
        if len(self._epochs) < self._prune_at:
            return
        floor = min(self._base.values(), default=max(self._epochs))
        self._epochs = {e: n for e, n in self._epochs.items() if e > floor}
        self._prune_at = max(PRUNE_FROM, 2 * len(self._epochs))

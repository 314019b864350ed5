"""gRPC metadata of the fast path beyond upstream's messages (shared by the controller's
pusher and the agent's server, so neither imports the other).

Both are optional: an upstream controller sends no generation, an upstream agent sends no
error trailer, and each side then behaves as upstream does.
"""

from __future__ import annotations

GENERATION = "alcor-generation"
"""Request metadata on PushGoalStatesStream / PushNetworkResourceStates: the host's goal-state
generation as a decimal string.  Present: the goal state is FULL and ordered by generation."""

BASE_GENERATION = "alcor-base-generation"
"""Request metadata with ``alcor-generation``: the goal state is a DELTA from this generation
(each resource by its operation type), to be applied only by an agent holding exactly it."""

ERRORS = "alcor-errors-bin"
"""Trailing metadata of a reply: JSON ``{resource_id: reason}`` for resources that FAILED
(GoalStateOperationStatus has no field for the reason).  Bounded by ``MAX_ERRORS`` entries of
at most ``MAX_ERROR_CHARS`` characters, to stay under gRPC's metadata size limit."""

MAX_ERRORS = 20
MAX_ERROR_CHARS = 160

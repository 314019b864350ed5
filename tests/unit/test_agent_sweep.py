"""AgentState's sweep hook: the programmer's ``sweep()`` runs once, after the first full
goal state (one with a generation) has been applied, never for partial goal states; a failing
sweep is logged and changes no resource's outcome; a programmer without one is fine."""

from __future__ import annotations

import logging

import pytest

from alcor.agent.programmer import RecordingProgrammer
from alcor.agent.state import SUCCESS, AgentState, Desired
from alcor.rpc._generated import common_pb2, vpc_pb2


class SweepingProgrammer(RecordingProgrammer):
    """A recording programmer that also notes when it was swept, and what it held then."""

    def __init__(self, broken: bool = False) -> None:
        super().__init__()
        self.sweeps: list[set[str]] = []
        self.broken = broken

    def sweep(self) -> None:
        self.sweeps.append(self.ids(common_pb2.VPC))
        if self.broken:
            raise RuntimeError("the kernel said no")


def vpcs(*ids: str) -> list[Desired]:
    return [Desired(common_pb2.VPC, i, common_pb2.CREATE,
                    vpc_pb2.VpcConfiguration(id=i, tunnel_id=100)) for i in ids]


def test_the_sweep_runs_once_after_the_first_full_goal_state() -> None:
    programmer = SweepingProgrammer()
    state = AgentState(programmer)
    state.apply(vpcs("v1"), generation=None)  # partial: no sweep
    assert programmer.sweeps == [] and not state.swept
    state.apply(vpcs("v1", "v2"), generation=3)
    assert programmer.sweeps == [{"v1", "v2"}]  # after the goal state was applied
    state.apply(vpcs("v2"), generation=4)
    assert programmer.sweeps == [{"v1", "v2"}]


def test_a_failing_sweep_is_logged_and_changes_no_outcome(
        caplog: pytest.LogCaptureFixture) -> None:
    state = AgentState(SweepingProgrammer(broken=True))
    with caplog.at_level(logging.ERROR, logger="alcor.agent.state"):
        report = state.apply(vpcs("v1"), generation=1)
    assert [o.status for o in report.outcomes] == [SUCCESS]
    assert "sweeping stale data-plane objects failed" in caplog.text
    assert "the kernel said no" in caplog.text


def test_a_programmer_without_a_sweep_is_fine() -> None:
    state = AgentState(RecordingProgrammer())
    assert state.apply(vpcs("v1"), generation=1).failures() == {}
    assert state.swept

"""The agent's state machine with the recording programmer: the plan between desired and
realized state, idempotence, deletes, the generation rules, failures of single resources,
goal states without a generation (upstream controllers), host_resources, and v1 goal states."""

from __future__ import annotations

from typing import Any

import pytest

from alcor.agent.programmer import Configuration, RecordingProgrammer
from alcor.agent.state import (
    CREATE,
    DELETE,
    FAILURE,
    INVALID_ARG,
    OUT_OF_ORDER,
    STATE_FIELDS,
    SUCCESS,
    UNCHANGED,
    UPDATE,
    AgentState,
    Report,
    desired_from_v2,
    plan,
)
from alcor.rpc._generated import (
    common_pb2,
    goalstate_pb2,
    neighbor_pb2,
    port_pb2,
    subnet_pb2,
    vpc_pb2,
)

IP = "10.0.0.1"
VPC, SUBNET = common_pb2.VPC, common_pb2.SUBNET
PORT, NEIGHBOR = common_pb2.PORT, common_pb2.NEIGHBOR
FIELD = dict(STATE_FIELDS)

Item = tuple[int, Any]


def vpc(rid: str = "vpc-1", rev: int = 1, vni: int = 100) -> Item:
    return VPC, vpc_pb2.VpcConfiguration(revision_number=rev, id=rid, update_type=common_pb2.FULL,
                                         tunnel_id=vni, cidr="10.1.0.0/16")


def subnet(rid: str = "sub-1", rev: int = 1) -> Item:
    return SUBNET, subnet_pb2.SubnetConfiguration(revision_number=rev, id=rid, vpc_id="vpc-1",
                                                  update_type=common_pb2.FULL, cidr="10.1.0.0/24")


def port(rid: str = "port-1", rev: int = 1, mac: str = "fa:16:3e:00:00:01") -> Item:
    return PORT, port_pb2.PortConfiguration(revision_number=rev, id=rid, vpc_id="vpc-1",
                                            update_type=common_pb2.FULL, mac_address=mac)


def neighbor(port_id: str = "port-9", rev: int = 1, host_ip: str = "10.0.0.9") -> Item:
    rid = f"L2/{port_id}"
    return NEIGHBOR, neighbor_pb2.NeighborConfiguration(
        revision_number=rev, id=rid, vpc_id="vpc-1", update_type=common_pb2.FULL,
        mac_address="fa:16:3e:00:00:09", host_ip_address=host_ip)


def goal(*items: Item, ip: str = IP, op: int = CREATE) -> goalstate_pb2.GoalStateV2:
    message = goalstate_pb2.GoalStateV2(format_version=1)
    index = message.host_resources[ip]
    for kind, config in items:
        state = getattr(message, FIELD[kind])[config.id]
        state.operation_type = op
        state.configuration.CopyFrom(config)
        index.resources.add(type=kind, id=config.id)
    return message


def statuses(report: Report) -> dict[str, tuple[int, int]]:
    """resource id -> (operation, status)."""
    return {o.resource_id: (o.operation, o.status) for o in report.outcomes}


@pytest.fixture
def programmer() -> RecordingProgrammer:
    return RecordingProgrammer()


@pytest.fixture
def state(programmer: RecordingProgrammer) -> AgentState:
    return AgentState(programmer, IP)


FULL_HOST = (neighbor(), port(), subnet(), vpc())  # listed out of order on purpose


def test_a_first_full_state_creates_everything_in_dependency_order(state, programmer):
    report = state.apply_v2(goal(*FULL_HOST), 1)
    assert programmer.calls == [
        ("create", VPC, "vpc-1"), ("create", SUBNET, "sub-1"), ("create", PORT, "port-1"),
        ("create", NEIGHBOR, "L2/port-9"),
    ]
    assert statuses(report) == {rid: (CREATE, SUCCESS)
                                for rid in ("vpc-1", "sub-1", "port-1", "L2/port-9")}
    assert report.programmed == 4 and state.generation == 1
    assert state.realized_ids(PORT) == {"port-1"}
    assert programmer.config(NEIGHBOR, "L2/port-9").host_ip_address == "10.0.0.9"


def test_outcomes_carry_programming_and_elapsed_microseconds(state):
    report = state.apply_v2(goal(*FULL_HOST), 1)
    assert all(0 <= o.dataplane_us <= o.elapsed_us <= report.total_us for o in report.outcomes)
    elapsed = [o.elapsed_us for o in report.outcomes]
    assert elapsed == sorted(elapsed)  # measured from the message's arrival, in apply order


def test_applying_the_same_state_twice_programs_nothing_the_second_time(state, programmer):
    state.apply_v2(goal(*FULL_HOST), 1)
    calls = list(programmer.calls)
    again = state.apply_v2(goal(*FULL_HOST), 2)
    assert programmer.calls == calls and again.programmed == 0
    assert statuses(again) == {rid: (UNCHANGED, SUCCESS)
                               for rid in ("vpc-1", "sub-1", "port-1", "L2/port-9")}
    assert all(o.dataplane_us == 0 for o in again.outcomes)
    assert state.generation == 2


class PreviousRecorder(RecordingProgrammer):
    """Also keeps the ``previous`` configuration each call was given."""

    def __init__(self) -> None:
        super().__init__()
        self.previous: list[tuple[str, Configuration | None]] = []

    def apply(self, kind: int, resource_id: str, config: Configuration,
              previous: Configuration | None) -> None:
        super().apply(kind, resource_id, config, previous)
        self.previous.append((resource_id, previous))

    def delete(self, kind: int, resource_id: str, previous: Configuration) -> None:
        super().delete(kind, resource_id, previous)
        self.previous.append((resource_id, previous))


def test_a_changed_configuration_or_revision_is_an_update_given_the_previous_one():
    programmer = PreviousRecorder()
    state = AgentState(programmer, IP)
    state.apply_v2(goal(vpc(), port(), neighbor()), 1)
    programmer.previous.clear()
    report = state.apply_v2(goal(vpc(rev=2), port(), neighbor(host_ip="10.0.0.10")), 2)
    assert statuses(report) == {"vpc-1": (UPDATE, SUCCESS), "port-1": (UNCHANGED, SUCCESS),
                                "L2/port-9": (UPDATE, SUCCESS)}
    previous = dict(programmer.previous)
    assert previous["vpc-1"].revision_number == 1
    assert previous["L2/port-9"].host_ip_address == "10.0.0.9"
    assert state.realized_config(NEIGHBOR, "L2/port-9").host_ip_address == "10.0.0.10"
    assert programmer.config(VPC, "vpc-1").revision_number == 2


def test_what_a_full_state_no_longer_holds_is_deleted_dependants_first(state, programmer):
    state.apply_v2(goal(vpc(), subnet(), port(), port("port-2"), neighbor()), 1)
    programmer.calls.clear()
    report = state.apply_v2(goal(vpc(), port("port-2")), 2)
    assert programmer.calls == [
        ("delete", NEIGHBOR, "L2/port-9"), ("delete", PORT, "port-1"), ("delete", SUBNET, "sub-1"),
    ]
    assert statuses(report) == {
        "L2/port-9": (DELETE, SUCCESS), "port-1": (DELETE, SUCCESS), "sub-1": (DELETE, SUCCESS),
        "vpc-1": (UNCHANGED, SUCCESS), "port-2": (UNCHANGED, SUCCESS),
    }
    assert state.realized_ids(PORT) == {"port-2"} and state.realized_ids(NEIGHBOR) == set()
    assert set(programmer.programmed) == {(VPC, "vpc-1"), (PORT, "port-2")}


def test_an_empty_full_state_deletes_everything(state, programmer):
    state.apply_v2(goal(*FULL_HOST), 1)
    state.apply_v2(goalstate_pb2.GoalStateV2(format_version=1), 2)
    assert programmer.programmed == {}
    assert all(not held for held in state.realized.values())


def test_the_plan_is_computed_without_programming_anything():
    realized = {VPC: {"vpc-1": vpc()[1].SerializeToString()},
                PORT: {"port-1": port()[1].SerializeToString(),
                       "port-old": port("port-old")[1].SerializeToString()}}
    desired = desired_from_v2(goal(vpc(), port(mac="fa:16:3e:00:00:02"), neighbor()), IP)
    the_plan = plan(realized, desired, full=True)
    assert [(s.action, s.resource_id) for s in the_plan.steps] == [
        (DELETE, "port-old"), (UNCHANGED, "vpc-1"), (UPDATE, "port-1"), (CREATE, "L2/port-9"),
    ]
    partial = plan(realized, desired, full=False)
    assert partial.actions() == {(VPC, "vpc-1"): UNCHANGED, (PORT, "port-1"): UPDATE,
                                 (NEIGHBOR, "L2/port-9"): CREATE}


def test_an_older_generation_is_out_of_order_for_every_resource_and_not_applied(
    state, programmer
):
    state.apply_v2(goal(vpc(), port()), 5)
    calls = list(programmer.calls)
    report = state.apply_v2(goal(vpc(rev=2), port("port-2")), 4)
    assert statuses(report) == {"vpc-1": (CREATE, OUT_OF_ORDER), "port-2": (CREATE, OUT_OF_ORDER)}
    assert programmer.calls == calls and report.programmed == 0
    assert state.generation == 5 and state.realized_ids(PORT) == {"port-1"}
    assert state.realized_config(VPC, "vpc-1").revision_number == 1


def test_the_same_generation_again_is_success_without_reprogramming(state, programmer):
    state.apply_v2(goal(*FULL_HOST), 7)
    calls = list(programmer.calls)
    report = state.apply_v2(goal(*FULL_HOST), 7)
    assert {status for _, status in statuses(report).values()} == {SUCCESS}
    assert programmer.calls == calls and report.programmed == 0 and state.generation == 7


def test_a_failing_resource_is_reported_with_its_reason_and_the_rest_goes_on(state, programmer):
    programmer.fail("port-1", "tap device missing")
    report = state.apply_v2(goal(vpc(), port(), port("port-2"), neighbor()), 1)
    assert statuses(report)["port-1"] == (CREATE, FAILURE)
    assert report.failures() == {"port-1": "tap device missing"}
    assert {rid for rid, (_, status) in statuses(report).items() if status == SUCCESS} == {
        "vpc-1", "port-2", "L2/port-9"}
    assert state.realized_ids(PORT) == {"port-2"}
    assert state.failures == {(PORT, "port-1"): "tap device missing"}
    assert state.lagging() == {(PORT, "port-1")}
    programmer.heal("port-1")
    retry = state.apply_v2(goal(vpc(), port(), port("port-2"), neighbor()), 1)
    assert retry.programmed == 1 and statuses(retry)["port-1"] == (CREATE, SUCCESS)
    assert state.failures == {} and state.lagging() == set()


def test_a_failed_update_keeps_the_previous_configuration_realized(state, programmer):
    state.apply_v2(goal(vpc(), port()), 1)
    programmer.fail("port-1", "cannot set MAC")
    report = state.apply_v2(goal(vpc(), port(rev=2, mac="fa:16:3e:00:00:02")), 2)
    assert statuses(report)["port-1"] == (UPDATE, FAILURE)
    assert state.realized_config(PORT, "port-1").revision_number == 1
    programmer.heal("port-1")
    retry = state.apply_v2(goal(vpc(), port(rev=2, mac="fa:16:3e:00:00:02")), 3)
    assert statuses(retry)["port-1"] == (UPDATE, SUCCESS)
    assert programmer.config(PORT, "port-1").mac_address == "fa:16:3e:00:00:02"


def test_a_failed_delete_keeps_the_resource_and_the_next_state_retries_it(state, programmer):
    state.apply_v2(goal(vpc(), port()), 1)
    programmer.fail("port-1", "busy")
    report = state.apply_v2(goal(vpc()), 2)
    assert statuses(report)["port-1"] == (DELETE, FAILURE)
    assert state.realized_ids(PORT) == {"port-1"}
    programmer.heal("port-1")
    retry = state.apply_v2(goal(vpc()), 3)
    assert statuses(retry)["port-1"] == (DELETE, SUCCESS) and state.realized_ids(PORT) == set()


def test_without_a_generation_states_apply_by_their_operation_type(state, programmer):
    state.apply_v2(goal(vpc(), port(), port("port-2")), None)
    report = state.apply_v2(goal(port("port-3")), None)
    assert statuses(report) == {"port-3": (CREATE, SUCCESS)}
    assert state.realized_ids(PORT) == {"port-1", "port-2", "port-3"}  # nothing else deleted
    gone = state.apply_v2(goal(port("port-2"), port("port-missing"), op=DELETE), None)
    assert statuses(gone) == {"port-2": (DELETE, SUCCESS), "port-missing": (DELETE, SUCCESS)}
    assert state.realized_ids(PORT) == {"port-1", "port-3"}
    assert state.generation == 0


def test_without_a_generation_an_older_revision_is_out_of_order(state, programmer):
    state.apply_v2(goal(vpc(rev=3)), None)
    report = state.apply_v2(goal(vpc(rev=2, vni=200)), None)
    assert statuses(report) == {"vpc-1": (CREATE, OUT_OF_ORDER)}
    assert state.realized_config(VPC, "vpc-1").tunnel_id == 100


def test_a_generation_after_states_without_one_is_full(state, programmer):
    state.apply_v2(goal(vpc(), port()), None)
    state.apply_v2(goal(vpc()), 1)
    assert state.realized_ids(PORT) == set()


def test_only_this_hosts_entry_of_host_resources_is_applied(state, programmer):
    message = goal(vpc(), port())
    other = goal(port("port-b"), ip="10.0.0.2")
    message.port_states["port-b"].CopyFrom(other.port_states["port-b"])
    message.host_resources["10.0.0.2"].CopyFrom(other.host_resources["10.0.0.2"])
    message.host_resources[IP].resources.add(type=PORT, id="port-absent")
    report = state.apply_v2(message, 1)
    assert statuses(report) == {"vpc-1": (CREATE, SUCCESS), "port-1": (CREATE, SUCCESS),
                                "port-absent": (CREATE, INVALID_ARG)}
    assert state.realized_ids(PORT) == {"port-1"}


def test_without_an_entry_for_this_host_every_state_is_applied(programmer):
    state = AgentState(programmer, "192.168.0.1")
    state.apply_v2(goal(vpc(), port()), 1)
    assert state.realized_ids(PORT) == {"port-1"} and state.realized_ids(VPC) == {"vpc-1"}


def test_a_v1_goal_state_takes_the_same_path(state, programmer):
    message = goalstate_pb2.GoalState(format_version=1)
    message.vpc_states.add(operation_type=CREATE, configuration=vpc()[1])
    message.port_states.add(operation_type=CREATE, configuration=port()[1])
    report = state.apply_v1(message, 1)
    assert statuses(report) == {"vpc-1": (CREATE, SUCCESS), "port-1": (CREATE, SUCCESS)}
    assert programmer.calls == [("create", VPC, "vpc-1"), ("create", PORT, "port-1")]
    again = state.apply_v1(message, 2)
    assert again.programmed == 0


def test_a_listed_resource_the_message_does_not_carry_is_invalid(state, programmer):
    message = goal(vpc(), port())
    message.host_resources[IP].resources.add(type=NEIGHBOR, id="L2/absent")
    report = state.apply_v2(message, 1)
    assert statuses(report) == {"vpc-1": (CREATE, SUCCESS), "port-1": (CREATE, SUCCESS),
                                "L2/absent": (CREATE, INVALID_ARG)}


def test_a_report_summarises_what_was_done(state, programmer):
    state.apply_v2(goal(vpc(), port(), port("port-2")), 1)
    programmer.fail("port-3", "no tap")
    report = state.apply_v2(goal(vpc(rev=2), port(), port("port-3")), 2)
    assert report.summary().startswith("1 updated, 1 deleted, 1 unchanged, 1 failed in ")
    refused = state.apply_v2(goal(vpc()), 1)
    assert refused.summary().startswith("1 refused (out of order) in ")


def test_a_delta_applies_only_on_its_base_generation() -> None:
    state = AgentState(RecordingProgrammer())
    state.apply_v2(goal(neighbor("port-8"), *FULL_HOST), 5)
    delta = goal(neighbor("port-new"))
    delta.neighbor_states["L2/port-8"].operation_type = common_pb2.DELETE
    delta.neighbor_states["L2/port-8"].configuration.id = "L2/port-8"
    delta.host_resources[IP].resources.add(type=NEIGHBOR, id="L2/port-8")
    refused = state.apply_v2(delta, 7, base=6)
    assert {o.status for o in refused.outcomes} == {common_pb2.OUT_OF_ORDER}
    assert "delta from generation 6" in (refused.outcomes[0].error or "")
    assert state.generation == 5 and "L2/port-new" not in state.realized_ids(NEIGHBOR)
    applied = state.apply_v2(delta, 7, base=5)
    assert {o.status for o in applied.outcomes} == {common_pb2.SUCCESS}
    assert state.generation == 7
    # A delta touches only what it names: the rest of the full state stays.
    assert state.realized_ids(NEIGHBOR) == {"L2/port-9", "L2/port-new"}
    assert state.realized_ids(PORT) == {"port-1"} and state.realized_ids(VPC) == {"vpc-1"}
    # A delta from an older base afterwards is refused too.
    assert {o.status for o in state.apply_v2(delta, 8, base=5).outcomes} == {
        common_pb2.OUT_OF_ORDER}

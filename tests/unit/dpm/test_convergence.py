"""Regressions of convergence under churn, each a bug the model-based test or the issue's
probe agents found: a delta acknowledged at a generation whose change it did not carry, alike
ports of a bulk whose neighbour entries were never sent, deletes left to the agent's sweep,
and a port left ACTIVE while an update of it was on its way."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from alcor.api.app import Services
from alcor.api.attributes import apply_create
from alcor.api.definitions import port as port_def
from alcor.context import RequestContext
from alcor.db.store import Store
from alcor.dpm.controller import claim_txn
from alcor.dpm.deltas import DeltaBook
from alcor.dpm.placement import affected_hosts
from alcor.dpm.pusher import RecordingPusher
from alcor.rpc._generated import common_pb2, goalstate_pb2
from tests.unit.dpm.test_controller import (
    FailingPusher,
    Fleet,
    controller,
    full_compile,
    goal,
    held,
    run,
)

Row = dict[str, Any]


@pytest.fixture
def fleet(store: Store, services: Services, ctx: RequestContext) -> Fleet:
    return Fleet(store, services, ctx)


def states(fleet: Fleet, node_id: str) -> goalstate_pb2.GoalStateV2:
    """The node's full compile without its index: what a node holding it has."""
    message = full_compile(fleet, node_id)
    message.ClearField("host_resources")
    return message


def test_a_delta_request_does_not_cover_an_epoch_observed_after_it() -> None:
    book = DeltaBook()
    book.observe(2, ["host-a"])
    book.acknowledged("host-a", 2)
    book.observe(3, [], ["host-a"], ["port-b"])
    request = book.request("host-a")
    assert request is not None and request.ports == {"port-b"}
    book.observe(4, ["host-a"])  # host-a's own port, claimed after the request was taken
    assert book.covers(request, 3)
    assert not book.covers(request, 4)
    assert book.request("host-a") is None  # and the next request is a full goal state


def test_an_older_full_goal_state_acknowledged_late_does_not_settle_a_newer_need() -> None:
    """Found by the model-based test: host-a owed a full goal state from epoch 1 (pushed, not
    yet acknowledged) and another from epoch 3 (its own new port); the book kept the oldest,
    so the acknowledgement of generation 1 settled both and a delta at 3 went out without
    the port, which turned ACTIVE."""
    book = DeltaBook()
    book.observe(1, ["host-a"])
    book.observe(2, [], ["host-a"], ["port-b"])
    book.observe(3, ["host-a"])
    book.acknowledged("host-a", 1)
    assert book.request("host-a") is None
    book.acknowledged("host-a", 3)
    book.observe(4, [], ["host-a"], ["port-c"])
    request = book.request("host-a")
    assert request is not None and (request.base, request.ports) == (3, {"port-c"})


def test_a_claim_between_a_delta_request_and_its_compile_is_not_lost(fleet: Fleet) -> None:
    """The issue's smallest reproducer: host-a owed a neighbour entry (a delta was due), then
    its own new port was claimed after the delta was asked for but before the compile read
    the host's generation; the delta went out at that generation without the port, was
    acknowledged, and the port turned ACTIVE on a host that never received it."""
    fleet.port("host-a")
    fleet.port("host-b")
    pusher = RecordingPusher()
    raced: list[Row] = []

    async def main() -> None:
        c = controller(fleet.store, pusher)
        await c.quiesce()
        request = c.deltas.request

        def racing(node_id: str) -> Any:
            asked = request(node_id)
            if node_id == "host-a" and asked is not None and not raced:
                raced.append(fleet.port("host-a"))
                claim = fleet.store.write(claim_txn, 1000, time.time(), affected_hosts)
                assert claim is not None
                c._after_claim(claim)
            return asked

        c.deltas.request = racing  # type: ignore[method-assign]
        fleet.port("host-b")  # host-a owes a neighbour entry: a delta is due
        await c.quiesce()
        await c.stop()

    run(main)
    assert raced, "the race was not staged"
    assert fleet.stored(raced[0]["id"])["status"] == "ACTIVE"
    assert raced[0]["id"] in held(pusher, "host-a")[0]
    assert goal(pusher, "host-a") == states(fleet, "host-a")


def test_every_port_of_a_bulk_of_alike_ports_reaches_the_neighbours(fleet: Fleet) -> None:
    """Placement reads one of several alike changes (same network, host and subnets); the
    neighbour deltas carried only that one port, the others were never sent."""
    fleet.port("host-a")
    fleet.port("host-b")
    pusher = RecordingPusher()

    async def main() -> None:
        c = controller(fleet.store, pusher)
        await c.quiesce()
        items = [apply_create(port_def.RESOURCE, {"network_id": fleet.network_id,
                                                  "binding:host_id": "host-b"},
                              fleet.ctx.project_id) for _ in range(3)]
        service = fleet.services.by_collection["ports"]
        bulk = service.create(fleet.ctx, service.prepare_create(fleet.ctx, items))
        await c.quiesce()
        await c.stop()
        neighbours = held(pusher, "host-a")[1]
        assert {f"L2/{p['id']}" for p in bulk} <= neighbours
        assert c.metrics.deltas >= 1

    run(main)
    assert goal(pusher, "host-a") == states(fleet, "host-a")


def test_single_creates_claimed_together_all_reach_the_neighbours(fleet: Fleet) -> None:
    """The issue's "one operation at a time" case: creates on one host committed before the
    controller's next claim are alike changes too; each port's entry must reach the
    neighbours, not only the one placement read."""
    fleet.port("host-a")
    fleet.port("host-b")
    pusher = RecordingPusher()

    async def main() -> None:
        c = controller(fleet.store, pusher)
        await c.quiesce()
        created = [fleet.port("host-b") for _ in range(3)]  # no claim in between
        await c.quiesce()
        await c.stop()
        assert {f"L2/{p['id']}" for p in created} <= held(pusher, "host-a")[1]
        assert all(fleet.stored(p["id"])["status"] == "ACTIVE" for p in created)

    run(main)
    assert goal(pusher, "host-a") == states(fleet, "host-a")


def test_a_host_that_never_sweeps_loses_moved_and_deleted_ports(fleet: Fleet) -> None:
    """RecordingPusher applies only what goal states name (upstream's agent): a port moved
    away, a deleted neighbour, and the subnet and VPC a host no longer uses leave it by
    explicit DELETEs, in full goal states as in deltas."""
    moved = fleet.port("host-a")
    gone = fleet.port("host-b")
    fleet.port("host-c")
    pusher = RecordingPusher()

    async def main() -> None:
        c = controller(fleet.store, pusher)
        await c.quiesce()
        assert moved["id"] in held(pusher, "host-a")[0]
        fleet.update_port(moved["id"], **{"binding:host_id": "host-b"})
        fleet.delete_port(gone["id"])
        await c.quiesce()
        await c.stop()

    run(main)
    state_a = goal(pusher, "host-a")
    assert not state_a.port_states and not state_a.neighbor_states
    assert not state_a.subnet_states and not state_a.vpc_states
    assert f"L2/{gone['id']}" not in goal(pusher, "host-c").neighbor_states
    for node_id in ("host-a", "host-b", "host-c"):
        assert goal(pusher, node_id) == states(fleet, node_id)
    last_full = next(p for p in reversed(pusher.pushes)
                     if p.node_id == "host-a" and p.base is None)
    message = goalstate_pb2.GoalStateV2.FromString(last_full.goal_state)
    assert message.port_states[moved["id"]].operation_type == common_pb2.DELETE
    listed = {ref.id for ref in message.host_resources["10.0.0.1"].resources}
    assert moved["id"] in listed  # an agent takes the listed resources: DELETEs are listed


def test_an_update_of_an_active_port_makes_it_down_in_the_same_transaction(
        fleet: Fleet) -> None:
    port = fleet.port("host-a")
    pusher = RecordingPusher()

    async def main() -> None:
        c = controller(fleet.store, pusher)
        await c.quiesce()
        assert fleet.stored(port["id"])["status"] == "ACTIVE"
        updated = fleet.update_port(port["id"], name="renamed")
        assert updated["status"] == "DOWN"  # before any controller saw the change
        await c.quiesce()
        await c.stop()

    run(main)
    assert fleet.stored(port["id"])["status"] == "ACTIVE"


def test_a_neighbour_entry_a_host_failed_holds_the_port_down_until_it_is_programmed(
        fleet: Fleet) -> None:
    """Found by the model-based test: a host that acknowledged the port's generation but
    failed to program its neighbour entry still counted, so the port went ACTIVE though
    traffic from that host could not reach it."""
    fleet.port("host-b")
    pusher = FailingPusher()

    async def main() -> None:
        c = controller(fleet.store, pusher)
        await c.quiesce()
        port = fleet.port("host-a")
        pusher.failing[f"L2/{port['id']}"] = "no room in the FDB"
        await c.quiesce()
        assert fleet.host_state("host-b")["acked_generation"] >= 2
        assert fleet.stored(port["id"])["status"] == "DOWN"
        assert "no room in the FDB" in (fleet.host_state("host-b")["last_error"] or "")
        pusher.failing.clear()
        await c.reconcile()  # hosts with failures get their whole goal state again
        await c.quiesce()
        assert fleet.stored(port["id"])["status"] == "ACTIVE"
        await c.stop()

    run(main)


def test_a_host_that_failed_a_port_gets_full_goal_states_until_it_programs_it(
        fleet: Fleet) -> None:
    """A delta does not make an agent retry what it failed: after a failure the host gets
    full goal states, and the failed port is never ACTIVE on a later delta's acknowledgement."""
    fleet.port("host-b")
    pusher = FailingPusher()

    async def main() -> None:
        c = controller(fleet.store, pusher)
        await c.quiesce()
        port = fleet.port("host-a")
        pusher.failing[port["id"]] = "veth refused"
        await c.quiesce()
        assert fleet.stored(port["id"])["status"] == "ERROR"
        mark = len(pusher.pushes)
        fleet.port("host-b")  # a neighbour change: host-a would get a delta
        await c.quiesce()
        to_a = [p for p in pusher.pushes[mark:] if p.node_id == "host-a"]
        assert to_a and all(p.base is None for p in to_a)
        assert fleet.stored(port["id"])["status"] == "ERROR"
        pusher.failing.clear()
        await c.reconcile()
        await c.quiesce()
        assert fleet.stored(port["id"])["status"] == "ACTIVE"
        await c.stop()

    run(main)


def test_an_active_port_its_host_fails_to_program_again_recovers(fleet: Fleet) -> None:
    """Found by the model-based test: an ACTIVE port whose host failed it in a later goal
    state (say after an agent restart) went ERROR and then stayed ERROR for good, though its
    host programmed it again: the recovery waited on the failing generation instead of the
    epoch its record was claimed at, which is what ACTIVE is written against."""
    port = fleet.port("host-a")
    fleet.port("host-b")
    pusher = FailingPusher()

    async def main() -> None:
        c = controller(fleet.store, pusher)
        await c.quiesce()
        assert fleet.stored(port["id"])["status"] == "ACTIVE"
        pusher.failing[port["id"]] = "veth vanished"
        await c.agent_restarted("10.0.0.1")
        await c.quiesce()
        assert fleet.stored(port["id"])["status"] == "ERROR"
        pusher.failing.clear()
        await c.reconcile()
        await c.quiesce()
        assert fleet.stored(port["id"])["status"] == "ACTIVE"
        await c.stop()

    run(main)


def test_a_wait_names_the_host_that_failed_a_neighbour_entry(fleet: Fleet) -> None:
    """The host acknowledged the generation, but the port is DOWN because of it: the wait's
    answer says FAILED with the agent's reason, not ACKED."""
    fleet.port("host-b")
    pusher = FailingPusher()

    async def main() -> None:
        c = controller(fleet.store, pusher)
        await c.quiesce()
        port = fleet.port("host-a")
        pusher.failing[f"L2/{port['id']}"] = "no room in the FDB"
        waiting = asyncio.create_task(c.wait({port["id"]: port["revision_number"]}, 0.5))
        await c.quiesce()
        answer = await waiting
        await c.stop()
        assert answer["complete"] is False, answer
        assert answer["ports"][port["id"]]["status"] == "DOWN"
        assert answer["hosts"]["host-a"] == {"state": "ACKED"}, answer
        assert answer["hosts"]["host-b"]["state"] == "FAILED"
        assert "no room in the FDB" in answer["hosts"]["host-b"]["error"]

    run(main)


def test_a_restarted_controller_does_not_trust_a_host_that_reported_failures(
        fleet: Fleet) -> None:
    """Found by the model-based test: which entries a host failed is the controller's memory;
    a new controller completed the port from the host's recorded acknowledgement though the
    host had failed its entry. It now waits for that host's answer to its own push."""
    fleet.port("host-b")
    pusher = FailingPusher()

    async def main() -> None:
        first = controller(fleet.store, pusher)
        await first.quiesce()
        port = fleet.port("host-a")
        pusher.failing[f"L2/{port['id']}"] = "no room in the FDB"
        await first.quiesce()
        await first.stop()
        assert fleet.stored(port["id"])["status"] == "DOWN"
        second = controller(fleet.store, pusher)
        await second.reconcile()  # what start() does first
        await second.quiesce()
        assert fleet.stored(port["id"])["status"] == "DOWN"
        pusher.failing.clear()
        await second.agent_restarted("10.0.0.2")  # host-b's next full goal state
        await second.quiesce()
        assert fleet.stored(port["id"])["status"] == "ACTIVE"
        await second.stop()

    run(main)

"""The checked-in generated protobuf modules are exactly what the .proto sources produce, and
their wire format matches upstream Alcor's field numbers."""

from __future__ import annotations

from alcor.rpc import codegen
from alcor.rpc._generated import goalstate_pb2, goalstateprovisioner_pb2, port_pb2


def test_generated_code_is_current() -> None:
    rendered = codegen.render()
    on_disk = {p.name: p.read_text() for p in codegen.GENERATED.iterdir() if p.is_file()}
    stale = sorted(n for n in rendered.keys() | on_disk.keys()
                   if rendered.get(n) != on_disk.get(n))
    assert stale == [], "run `python -m alcor.rpc.codegen` and commit the output"


def test_field_numbers_follow_upstream() -> None:
    port = port_pb2.PortConfiguration.DESCRIPTOR.fields_by_name
    assert port["mac_address"].number == 9
    assert port["fixed_ips"].number == 12
    assert port["security_group_ids"].number == 14
    v2 = goalstate_pb2.GoalStateV2.DESCRIPTOR.fields_by_name
    assert v2["host_resources"].number == 2
    assert v2["neighbor_states"].number == 7
    status = goalstateprovisioner_pb2.GoalStateOperationReply.GoalStateOperationStatus
    assert status.DESCRIPTOR.fields_by_name["dataplane_programming_time"].number == 5


def test_port_state_wire_bytes_are_stable() -> None:
    state = port_pb2.PortState(operation_type=1)
    state.configuration.id = "p1"
    state.configuration.mac_address = "fa:16:3e:00:00:01"
    # field 1 varint 1; field 2 (configuration) length-delimited: id (3) and mac (9)
    expected = bytes([0x08, 0x01, 0x12, 0x17, 0x1A, 0x02]) + b"p1" + bytes([0x4A, 0x11]) + \
        b"fa:16:3e:00:00:01"
    assert state.SerializeToString() == expected


def test_service_methods_match_upstream_names() -> None:
    service = goalstateprovisioner_pb2.DESCRIPTOR.services_by_name["GoalStateProvisioner"]
    assert service.full_name == "alcor.schema.GoalStateProvisioner"
    assert set(service.methods_by_name) == {
        "PushNetworkResourceStates", "PushGoalStatesStream", "RequestGoalStates",
        "PushGoalstates"}

"""openstacksdk, unchanged, against a real ``alcor server`` over TCP for segments, network
segment ranges and network IP availability: its resources parse our answers, its calls reach
our paths, and our errors become its exceptions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import openstack
import pytest
from openstack import exceptions
from openstack.connection import Connection

from tests.functional.server import AlcorServer


@pytest.fixture(scope="module")
def conn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Connection]:
    db = tmp_path_factory.mktemp("sdk-segments") / "alcor.db"
    with AlcorServer(f"sqlite:///{db}") as server:
        c = openstack.connect(auth_type="none", network_endpoint_override=server.base_url + "/",
                              load_yaml_config=False, load_envvars=False)
        yield c
        c.close()


@pytest.fixture
def net(conn: Connection) -> Any:
    return conn.network.create_network(name=f"net-{uuid.uuid4().hex[:8]}")


def test_segments(conn: Connection, net: Any) -> None:
    [segment] = list(conn.network.segments(network_id=net.id))
    assert (segment.network_type, segment.segmentation_id) == (
        "vxlan", net.provider_segmentation_id)
    updated = conn.network.update_segment(segment, name="seg", description="d")
    assert (updated.name, updated.description) == ("seg", "d")
    with pytest.raises(exceptions.BadRequestException):
        conn.network.create_segment(network_id=net.id, network_type="vxlan")
    conn.network.delete_segment(segment)
    assert list(conn.network.segments(network_id=net.id)) == []
    again = conn.network.create_segment(network_id=net.id, network_type="vxlan",
                                        segmentation_id=91234)
    assert conn.network.get_segment(again.id).segmentation_id == 91234
    assert conn.network.get_network(net.id).provider_segmentation_id == 91234
    conn.network.create_port(network_id=net.id)
    with pytest.raises(exceptions.ConflictException):
        conn.network.delete_segment(again)


def test_network_segment_ranges(conn: Connection) -> None:
    defaults = [r for r in conn.network.network_segment_ranges() if r.default]
    assert {r.network_type for r in defaults} == {"vxlan", "geneve"}
    created = conn.network.create_network_segment_range(
        name="r1", network_type="vxlan", minimum=500, maximum=502, shared=False,
        project_id="proj-sdk")
    assert (created.minimum, created.maximum, created.shared) == (500, 502, False)
    assert created.available == [500, 501, 502]
    net = conn.network.create_network(name="in-range", project_id="proj-sdk")
    assert 500 <= net.provider_segmentation_id <= 502
    shown = conn.network.get_network_segment_range(created.id)
    assert shown.used == {str(net.provider_segmentation_id): "proj-sdk"}
    assert conn.network.update_network_segment_range(created, maximum=510).maximum == 510
    with pytest.raises(exceptions.ConflictException):
        conn.network.delete_network_segment_range(created)
    conn.network.delete_network(net)
    conn.network.delete_network_segment_range(created)
    with pytest.raises(exceptions.NotFoundException):
        conn.network.get_network_segment_range(created.id)


def test_network_ip_availability(conn: Connection, net: Any) -> None:
    conn.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.9.0.0/24")
    conn.network.create_subnet(network_id=net.id, ip_version=6, cidr="fd00:9::/64")
    conn.network.create_port(network_id=net.id)
    found = conn.network.get_network_ip_availability(net.id)
    assert found.network_id == net.id
    assert found.used_ips == 2
    assert found.total_ips > 2**64 - 10
    assert sorted(s["ip_version"] for s in found.subnet_ip_availability) == [4, 6]
    listed = [a.network_id for a in conn.network.network_ip_availabilities(ip_version=6)]
    assert net.id in listed
    with pytest.raises(exceptions.NotFoundException):
        conn.network.get_network_ip_availability(str(uuid.uuid4()))

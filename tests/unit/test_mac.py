"""MAC allocation: format under the configured prefix, distinct batches, per-network
uniqueness of requested and generated MACs, exhaustion, and the prefix setting."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from alcor import errors
from alcor.api.attributes import apply_create
from alcor.api.definitions import RESOURCES
from alcor.cli.wiring import build_services
from alcor.config import IpamSettings, Settings, load
from alcor.context import RequestContext
from alcor.db.store import Store
from alcor.ipam import mac
from alcor.services.ports import PortService

MAC_RE = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
CTX = RequestContext.admin("proj-a")


@pytest.fixture
def memory() -> Iterator[tuple[Settings, Store]]:
    settings = load({}, db__url="sqlite://")
    store = Store.connect(settings.db)
    store.create_schema()
    yield settings, store
    store.dispose()


def make_network(settings: Settings, store: Store) -> str:
    body = apply_create(RESOURCES["networks"], {"name": "n"}, "proj-a")
    net = build_services(settings, store).by_collection["networks"].create(CTX, [body])[0]
    return str(net["id"])


def make_ports(service: PortService, net_id: str, macs: list[str]) -> None:
    bodies = [apply_create(RESOURCES["ports"], {"network_id": net_id, "mac_address": m},
                           "proj-a") for m in macs]
    service.create(CTX, bodies)


@given(st.sampled_from(["fa:16:3e", "02:00:00", "fa-16-3e", "02:ab:cd:ef", "0a"]))
def test_random_mac_keeps_the_prefix(oui: str) -> None:
    value = mac.random_mac(oui)
    assert MAC_RE.match(value)
    assert value.startswith(oui.replace("-", ":"))
    assert int(value[:2], 16) & 1 == 0  # unicast


@pytest.mark.parametrize("oui", ["", "zz:16:3e", "fa:16:3e:00:00:00", "01:00:5e", "fa:1:3e"])
def test_bad_prefixes_are_refused(oui: str) -> None:
    with pytest.raises(ValueError):
        mac.parse_oui(oui)


def test_port_service_refuses_a_bad_prefix_at_start(memory: tuple[Settings, Store]) -> None:
    _, store = memory
    with pytest.raises(ValueError):
        PortService(store, IpamSettings(mac_oui="01:00:5e"))


def test_ports_get_the_configured_prefix(memory: tuple[Settings, Store]) -> None:
    settings, store = memory
    net_id = make_network(settings, store)
    service = PortService(store, IpamSettings(mac_oui="02:aa:bb:cc"))
    bodies = [apply_create(RESOURCES["ports"], {"network_id": net_id}, "proj-a")] * 20
    ports = service.create(CTX, bodies)
    assert all(p["mac_address"].startswith("02:aa:bb:cc:") for p in ports)
    assert len({p["mac_address"] for p in ports}) == 20


@settings(max_examples=25, deadline=None)
@given(count=st.integers(1, 150), reserved=st.sets(st.integers(0, 255), max_size=100))
def test_generated_batches_are_distinct_and_avoid_reserved(count: int, reserved: set[int]
                                                            ) -> None:
    assume(count + len(reserved) <= 200)
    settings_ = load({}, db__url="sqlite://")
    store = Store.connect(settings_.db)
    store.create_schema()
    try:
        net_id = make_network(settings_, store)
        held = [f"fa:16:3e:00:00:{i:02x}" for i in sorted(reserved)]
        macs = store.read(lambda txn: mac.generate(txn, net_id, "fa:16:3e:00:00", count,
                                                   reserved=held))
        assert len(macs) == count == len(set(macs))
        assert not set(macs) & set(held)
    finally:
        store.dispose()


def test_generation_avoids_macs_on_the_network(memory: tuple[Settings, Store]) -> None:
    settings, store = memory
    net_id = make_network(settings, store)
    service = PortService(store, IpamSettings())
    held = [f"fa:16:3e:00:00:{i:02x}" for i in range(200)]
    make_ports(service, net_id, held)
    macs = store.read(lambda txn: mac.generate(txn, net_id, "fa:16:3e:00:00", 50))
    assert len(set(macs)) == 50
    assert not set(macs) & set(held)


def test_exhausted_prefix_is_conflict(memory: tuple[Settings, Store]) -> None:
    settings, store = memory
    net_id = make_network(settings, store)
    make_ports(PortService(store, IpamSettings()), net_id,
               [f"fa:16:3e:00:00:{i:02x}" for i in range(256)])
    with pytest.raises(errors.MacAddressGenerationFailure):
        store.read(lambda txn: mac.generate(txn, net_id, "fa:16:3e:00:00", 2))


def test_requested_macs_are_checked(memory: tuple[Settings, Store]) -> None:
    settings, store = memory
    net_id = make_network(settings, store)
    other_id = make_network(settings, store)
    service = PortService(store, IpamSettings())
    make_ports(service, net_id, ["fa:16:3e:00:00:01"])
    held = store.read(lambda txn: txn.select("ports", {"network_id": net_id}))[0]

    def check(network: str, macs: list[str], exclude: str | None = None) -> None:
        store.read(lambda txn: mac.check_requested(txn, network, macs, exclude))

    with pytest.raises(errors.MacAddressInUse, match="fa:16:3e:00:00:01 is in use"):
        check(net_id, ["fa:16:3e:00:00:01"])
    with pytest.raises(errors.MacAddressInUse, match="fa:16:3e:00:00:02"):
        check(net_id, ["fa:16:3e:00:00:02", "fa:16:3e:00:00:02"])
    check(net_id, ["fa:16:3e:00:00:01"], exclude=held["id"])
    check(other_id, ["fa:16:3e:00:00:01"])


def test_generated_collision_retries_the_transaction(memory: tuple[Settings, Store]) -> None:
    """Single creates leave collisions to the unique constraint: with half the MACs of a tiny
    prefix taken, creates still succeed with free ones (lost races re-run the transaction)."""
    settings, store = memory
    net_id = make_network(settings, store)
    taken = [f"02:00:00:00:00:{i:02x}" for i in range(0, 256, 2)]
    make_ports(PortService(store, IpamSettings()), net_id, taken)
    tiny = PortService(store, IpamSettings(mac_oui="02:00:00:00:00"))
    body = apply_create(RESOURCES["ports"], {"network_id": net_id}, "proj-a")
    got = {tiny.create(CTX, [body])[0]["mac_address"] for _ in range(20)}
    assert len(got) == 20
    assert not got & set(taken)

"""The overlay helper against the real kernel, inside a "host" netns this test makes (see
netns_hosts): segment devices with the wanted VXLAN parameters and ownership, remote entries
written once (a second write sends nothing, a restarted helper reads them back), removal, and
the sweep of stale owned objects that leaves foreign ones alone."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator

import pytest

from alcor.agent.linux.namespaces import entered
from alcor.agent.linux.overlay import Overlay, OverlayError
from tests.linux.netns_hosts import Hosts, hosts, ip

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def host() -> Iterator[tuple[Hosts, str]]:
    with hosts("h1") as topology:
        yield topology, f"{topology.prefix}h1"


def make_overlay(ns: str) -> Overlay:
    return Overlay("192.0.2.1", ns)


def details(ns: str, name: str) -> dict[str, object]:
    found: list[dict[str, object]] = json.loads(ip("-j", "-d", "-n", ns, "link", "show", name))
    return found[0]


def fdb(ns: str, dev: str) -> str:
    return subprocess.run(["bridge", "-n", ns, "fdb", "show", "dev", dev], capture_output=True,
                          text=True, check=True).stdout


def test_segment_devices_have_the_wanted_parameters(host: tuple[Hosts, str]) -> None:
    _, ns = host
    overlay = make_overlay(ns)
    segment = overlay.ensure_segment(100, 1450)
    vx = details(ns, "alcvx100")
    info = vx["linkinfo"]
    assert isinstance(info, dict)
    data = info["info_data"]
    assert data["id"] == 100 and data["local"] == "192.0.2.1" and data["port"] == 4789
    assert data["learning"] is False and data["proxy"] is True
    assert data["link"] == "ul0"
    assert info["info_slave_data"]["learning"] is False
    assert vx["master"] == "alcbr100" and vx["mtu"] == 1450 and vx["ifalias"] == "alcor:vni:100"
    br = details(ns, "alcbr100")
    assert br["ifalias"] == "alcor:vni:100" and br["mtu"] == 1450
    assert "UP" in br["flags"] and "UP" in vx["flags"]  # type: ignore[operator]
    assert (segment.bridge, segment.vxlan) == (br["ifindex"], vx["ifindex"])


def test_ensuring_again_changes_nothing_and_a_new_helper_adopts(host: tuple[Hosts, str]) -> None:
    topology, ns = host
    overlay = make_overlay(ns)
    first = overlay.ensure_segment(100, 1450)
    before = topology.dump(ns)
    assert overlay.ensure_segment(100, 1450) == first
    assert make_overlay(ns).ensure_segment(100, 1450) == first
    assert topology.dump(ns) == before


def test_mtu_is_capped_by_the_underlay(host: tuple[Hosts, str]) -> None:
    _, ns = host
    segment = make_overlay(ns).ensure_segment(7, 9000)
    assert segment.mtu == 1450 and details(ns, "alcvx7")["mtu"] == 1450


def test_a_vxlan_device_with_other_parameters_is_rebuilt(host: tuple[Hosts, str]) -> None:
    _, ns = host
    ip("-n", ns, "link", "add", "alcvx5", "type", "vxlan", "id", "6", "dstport", "4789",
       "local", "192.0.2.1")
    make_overlay(ns).ensure_segment(5, 1450)
    data = details(ns, "alcvx5")["linkinfo"]["info_data"]  # type: ignore[index]
    assert data["id"] == 5 and data["proxy"] is True


def test_remote_entries_are_written_once(host: tuple[Hosts, str]) -> None:
    topology, ns = host
    overlay = make_overlay(ns)
    overlay.ensure_segment(100, 1450)
    mac = "02:00:00:00:01:21"
    put_fdb = {(100, mac): "192.0.2.2"}
    put_neigh = {(100, "10.0.0.21"): mac}
    assert overlay.update(put_fdb, put_neigh) == 3
    entries = fdb(ns, "alcvx100")
    assert f"{mac} dst 192.0.2.2 self permanent" in entries
    assert f"{mac} master alcbr100 static" in entries
    assert f"10.0.0.21 lladdr {mac} PERMANENT" in ip("-n", ns, "neigh", "show", "dev", "alcvx100")
    before = topology.dump(ns)
    assert overlay.update(put_fdb, put_neigh) == 0
    restarted = make_overlay(ns)
    restarted.ensure_segment(100, 1450)
    assert restarted.update(put_fdb, put_neigh) == 0
    assert topology.dump(ns) == before
    assert restarted.update({(100, mac): "192.0.2.3"}, {}) == 2  # moved to another host
    assert f"{mac} dst 192.0.2.3 self permanent" in fdb(ns, "alcvx100")
    assert restarted.update({}, {}, [(100, mac)], [(100, "10.0.0.21")]) == 3
    assert mac not in fdb(ns, "alcvx100")
    assert "10.0.0.21" not in ip("-n", ns, "neigh", "show", "dev", "alcvx100")


def test_an_entry_on_a_missing_segment_is_refused(host: tuple[Hosts, str]) -> None:
    _, ns = host
    with pytest.raises(OverlayError, match="VNI 9 has no segment"):
        make_overlay(ns).update({(9, "02:00:00:00:00:09"): "192.0.2.2"}, {})


def test_remove_segment_deletes_both_devices(host: tuple[Hosts, str]) -> None:
    _, ns = host
    overlay = make_overlay(ns)
    overlay.ensure_segment(100, 1450)
    overlay.update({(100, "02:00:00:00:01:21"): "192.0.2.2"}, {})
    overlay.remove_segment(100)
    assert "alcbr100" not in ip("-n", ns, "link", "show")
    assert "alcvx100" not in ip("-n", ns, "link", "show")
    assert overlay.fdb == {}


def test_sweep_removes_stale_owned_objects_only(host: tuple[Hosts, str]) -> None:
    _, ns = host
    before_restart = make_overlay(ns)
    for vni in (100, 200):
        before_restart.ensure_segment(vni, 1450)
    before_restart.update(
        {(100, "02:00:00:00:01:21"): "192.0.2.2", (100, "02:00:00:00:01:22"): "192.0.2.2"},
        {(100, "10.0.0.21"): "02:00:00:00:01:21", (100, "10.0.0.22"): "02:00:00:00:01:22"})
    ip("-n", ns, "link", "add", "alcbr4242", "type", "bridge")  # not the agent's
    overlay = make_overlay(ns)  # the agent restarted and is asked for VNI 100 and one port
    overlay.ensure_segment(100, 1450)
    overlay.update({(100, "02:00:00:00:01:21"): "192.0.2.2"},
                   {(100, "10.0.0.21"): "02:00:00:00:01:21"})
    removed = overlay.sweep({100}, {(100, "02:00:00:00:01:21")}, {(100, "10.0.0.21")})
    links = ip("-n", ns, "link", "show")
    assert "alcbr200" not in links and "alcvx200" not in links
    assert "alcbr4242" in links and "alcbr100" in links
    entries = fdb(ns, "alcvx100")
    assert "02:00:00:00:01:21" in entries and "02:00:00:00:01:22" not in entries
    neighbours = ip("-n", ns, "neigh", "show", "dev", "alcvx100")
    assert "10.0.0.21" in neighbours and "10.0.0.22" not in neighbours
    assert removed == 2 + 3  # two devices; two FDB entries and a neighbour
    assert overlay.sweep({100}, {(100, "02:00:00:00:01:21")}, {(100, "10.0.0.21")}) == 0


def test_entered_moves_only_the_calling_thread_and_back(host: tuple[Hosts, str]) -> None:
    _, ns = host
    target = os.stat(f"/run/netns/{ns}").st_ino
    home = os.stat("/proc/thread-self/ns/net").st_ino
    seen: dict[str, int] = {}

    def worker() -> None:
        with entered(ns):
            seen["inside"] = os.stat("/proc/thread-self/ns/net").st_ino
            seen["main thread"] = os.stat("/proc/self/ns/net").st_ino
        seen["after"] = os.stat("/proc/thread-self/ns/net").st_ino

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == {"inside": target, "main thread": home, "after": home}

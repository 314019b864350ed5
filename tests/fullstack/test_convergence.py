"""A killed agent: the kernel keeps forwarding while it is gone, and once restarted it
converges on its goal state -- what it holds is what the API says is on its host, a port
deleted meanwhile loses its interface and its neighbours' entries, a port created meanwhile
is plugged, and what worked before still works.
"""

from __future__ import annotations

import signal

from tests.fullstack.cloud import Cloud, until


def test_a_killed_agent_keeps_connectivity_and_converges_after_restart(cloud: Cloud) -> None:
    net = cloud.network("restart", "10.70.0.0/24")
    a = cloud.vm(net, "host-1", "a")
    b = cloud.vm(net, "host-2", "b")
    gone = cloud.vm(net, "host-2", "gone")
    assert cloud.pings(a, b.ip) and cloud.pings(a, gone.ip)
    taps_before = cloud.taps("host-2")

    cloud.stack.stop_agent("host-2", signal.SIGKILL)
    assert cloud.pings(a, b.ip), "connectivity depends on the agent process"
    cloud.delete_port(gone)
    until(lambda: gone.mac not in cloud.vxlan_macs("host-1"),
          "host-1 to forget the port deleted on the stopped host", logs=cloud.stack.logs)
    assert cloud.taps("host-2") == taps_before, "something removed taps without the agent"

    cloud.stack.start_agent("host-2")  # returns once the controller answered its request
    expected = cloud.ports_on("host-2")
    until(lambda: cloud.stack.held("host-2").get("PORT") == expected,
          "the restarted agent to hold exactly the ports on its host", logs=cloud.stack.logs)
    assert f"L2/{a.id}" in cloud.stack.held("host-2").get("NEIGHBOR", set())
    assert cloud.stack.failures("host-2") == {}
    until(lambda: cloud.taps("host-2") == {"tap" + p[:11] for p in expected},
          "the restarted agent to remove the deleted port's tap", logs=cloud.stack.logs)
    assert a.mac in cloud.vxlan_macs("host-2")
    assert cloud.pings(a, b.ip) and cloud.pings(b, a.ip), "connectivity lost by the restart"
    assert cloud.silent(a, gone.ip), "the port deleted while the agent was down answers"

    late = cloud.vm(net, "host-2", "late")
    assert cloud.pings(a, late.ip), "a port created after the restart is unreachable"

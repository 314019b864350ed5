"""Fixtures of the fullstack tests (root; CI runs them as root with nftables, busybox and
iputils-ping installed): one lab per session -- three simulated hosts as network namespaces
under a unique ``alfs-<hex>`` prefix -- running ``alcor server`` (SQLite) on the management
address and one ``alcor agent`` per host with the default Linux data plane.

Leftovers of crashed runs are swept first; the lab is destroyed at the end of the session,
also after failures, and each test's ``cloud`` removes the ports, groups, networks and
workload namespaces it made.  An agent a failed test left stopped is started again before
the next test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from alcor.lab.stack import Stack
from alcor.lab.topology import Lab, sweep
from tests.fullstack.cloud import Cloud

PREFIX = "alfs-"
HOSTS = ("host-1", "host-2", "host-3")


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    sweep(PREFIX)
    topology = Lab(PREFIX, HOSTS)
    try:
        yield topology.create()
    finally:
        topology.destroy()


@pytest.fixture(scope="session")
def stack(lab: Lab) -> Iterator[Stack]:
    running = Stack(lab)
    try:
        yield running.start()
    finally:
        running.close()


@pytest.fixture
def cloud(lab: Lab, stack: Stack) -> Iterator[Cloud]:
    for name, agent in stack.agents.items():
        if not agent.running:
            stack.start_agent(name)
    made = Cloud(lab, stack)
    try:
        yield made
    finally:
        made.cleanup()

"""The data plane through the API.

In process (the ASGI app with its controller, pushing to a RecordingPusher): ``X-Alcor-Wait``
and ``?wait=`` hold a port create or update until its hosts acknowledged, with the outcome per
host in ``X-Alcor-Provisioning``; a timeout, a bad value, ERROR with the agent's reason, and
``/metrics``.

With real processes (``alcor server`` and three ``alcor agent`` over gRPC on loopback): each
agent holds exactly its ports and the right neighbours, deletes remove them, a killed and
restarted agent converges, a server killed while a host is unreachable loses no update, and the
wait header returns ACTIVE.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from alcor.cli.wiring import build_controller, build_server_app
from alcor.config import Settings, load
from alcor.db.store import Store
from alcor.dpm import status
from alcor.dpm.pusher import PushResult, RecordingPusher, ResourceStatus
from alcor.rpc._generated import common_pb2
from tests.functional.server import AlcorServer, alcor_executable, free_port

NODES = {"host-a": "10.1.0.1", "host-b": "10.1.0.2", "host-c": "10.1.0.3"}
WAIT = "10"


class FailingPusher(RecordingPusher):
    """A RecordingPusher whose agents fail the resources in ``failing`` with a reason."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: dict[str, str] = {}

    async def push(self, node: Mapping[str, Any], generation: int, goal_state: bytes,
                   base: int | None = None) -> PushResult:
        result = await super().push(node, generation, goal_state, base)
        statuses = [
            ResourceStatus(s.resource_id, s.resource_type, common_pb2.FAILURE, 0, 0,
                           self.failing[s.resource_id]) if s.resource_id in self.failing else s
            for s in result.statuses
        ]
        return PushResult(result.node_id, result.generation, statuses, result.error)


# --- in process -----------------------------------------------------------------------------


@pytest.fixture
def dp_settings(settings: Settings) -> Settings:
    return load({}, db__url=settings.db.url, dpm__grpc_listen="127.0.0.1:0",
                dpm__backoff_initial=0.05, dpm__backoff_max=0.2)


@pytest.fixture
def pusher() -> FailingPusher:
    return FailingPusher()


@pytest.fixture
def dp(dp_settings: Settings, store: Store, pusher: FailingPusher) -> Iterator[TestClient]:
    """A client of the API with its data-plane controller running in the same app."""
    runtime = build_controller(dp_settings, store, pusher)
    with TestClient(build_server_app(dp_settings, store, runtime),
                    base_url="http://testserver") as client:
        client.headers["X-Project-Id"] = "proj-a"
        nodes = [{"node_id": n, "node_name": n, "local_ip": ip, "mac_address":
                  "aa:bb:cc:00:01:0" + ip[-1], "veth": "eth0", "server_port": 50001,
                  "host_dvr_mac": "fe:16:11:00:01:0" + ip[-1]} for n, ip in NODES.items()]
        assert client.post("/nodes/bulk", json={"host_infos": nodes}).status_code == 201
        yield client


def network(client: TestClient) -> str:
    net = client.post("/v2.0/networks", json={"network": {"name": "dp"}}).json()["network"]
    resp = client.post("/v2.0/subnets", json={"subnet": {
        "network_id": net["id"], "cidr": "10.20.0.0/24", "ip_version": 4}})
    assert resp.status_code == 201, resp.text
    return str(net["id"])


def provisioning(resp: Any) -> dict[str, Any]:
    return dict(json.loads(resp.headers["X-Alcor-Provisioning"]))


def test_wait_header_answers_once_the_port_and_its_neighbours_hosts_acknowledged(
        dp: TestClient) -> None:
    net = network(dp)
    first = dp.post("/v2.0/ports", json={"port": {"network_id": net,
                                                  "binding:host_id": "host-b"}})
    assert first.status_code == 201
    resp = dp.post("/v2.0/ports", headers={"X-Alcor-Wait": WAIT},
                   json={"port": {"network_id": net, "binding:host_id": "host-a"}})
    assert resp.status_code == 201, resp.text
    port = resp.json()["port"]
    assert port["status"] == "ACTIVE"
    assert port["binding:vif_details"][status.LATENCY_KEY] >= 0
    outcome = provisioning(resp)
    assert outcome["complete"] is True
    assert outcome["hosts"] == {"host-a": {"state": "ACKED"}, "host-b": {"state": "ACKED"}}
    shown = dp.get(f"/v2.0/ports/{port['id']}").json()["port"]
    assert shown["status"] == "ACTIVE"
    assert shown["binding:vif_details"] == port["binding:vif_details"]


def test_without_the_header_the_answer_does_not_wait(dp: TestClient) -> None:
    net = network(dp)
    resp = dp.post("/v2.0/ports", json={"port": {"network_id": net,
                                                 "binding:host_id": "host-a"}})
    assert resp.json()["port"]["status"] == "DOWN"
    assert "X-Alcor-Provisioning" not in resp.headers


def test_wait_query_parameter_on_update_and_on_a_bulk_create(dp: TestClient) -> None:
    net = network(dp)
    resp = dp.post(f"/v2.0/ports?wait={WAIT}", json={"ports": [
        {"network_id": net, "binding:host_id": host} for host in ("host-a", "host-b", "host-c")
    ]})
    assert resp.status_code == 201, resp.text
    ports = resp.json()["ports"]
    assert [p["status"] for p in ports] == ["ACTIVE"] * 3
    assert set(provisioning(resp)["hosts"]) == set(NODES)
    resp = dp.put(f"/v2.0/ports/{ports[0]['id']}?wait={WAIT}",
                  json={"port": {"binding:host_id": "host-b"}})
    assert resp.status_code == 200, resp.text
    assert resp.json()["port"]["status"] == "ACTIVE"
    assert resp.json()["port"]["revision_number"] == ports[0]["revision_number"] + 1
    assert provisioning(resp)["complete"] is True


def test_wait_for_an_unreachable_host_times_out_with_the_port_down(
        dp: TestClient, pusher: FailingPusher) -> None:
    net = network(dp)
    pusher.unreachable.add("host-c")
    resp = dp.post("/v2.0/ports", headers={"X-Alcor-Wait": "0.5"},
                   json={"port": {"network_id": net, "binding:host_id": "host-c"}})
    assert resp.status_code == 201
    assert resp.json()["port"]["status"] == "DOWN"
    outcome = provisioning(resp)
    assert outcome["complete"] is False
    assert outcome["hosts"]["host-c"]["state"] in ("FAILED", "PENDING")
    port_id = resp.json()["port"]["id"]
    assert dp.get(f"/v2.0/ports/{port_id}").status_code == 200  # never rolled back
    pusher.unreachable.clear()


def test_a_bad_wait_value_is_refused_before_anything_is_written(dp: TestClient) -> None:
    net = network(dp)
    resp = dp.post("/v2.0/ports", headers={"X-Alcor-Wait": "soon"},
                   json={"port": {"network_id": net}})
    assert resp.status_code == 400
    assert resp.json()["NeutronError"]["type"] == "HTTPBadRequest"
    assert dp.get("/v2.0/ports").json()["ports"] == []


def test_a_port_its_host_failed_to_program_is_error_with_the_reason(
        dp: TestClient, pusher: FailingPusher) -> None:
    net = network(dp)
    resp = dp.post("/v2.0/ports", json={"port": {"network_id": net, "name": "doomed",
                                                 "binding:host_id": "host-a"}})
    port_id = resp.json()["port"]["id"]
    pusher.failing[port_id] = "no such device: tap-doomed"
    resp = dp.put(f"/v2.0/ports/{port_id}", headers={"X-Alcor-Wait": WAIT},
                  json={"port": {"name": "doomed-again"}})
    port = resp.json()["port"]
    assert port["status"] == "ERROR"
    assert port["binding:vif_details"][status.ERROR_KEY] == "no such device: tap-doomed"
    shown = dp.get(f"/v2.0/ports/{port_id}").json()["port"]
    assert shown["status"] == "ERROR"
    assert shown["binding:vif_details"][status.ERROR_KEY] == "no such device: tap-doomed"


def test_metrics_show_the_latency_histogram_and_push_counters(dp: TestClient) -> None:
    net = network(dp)
    dp.post("/v2.0/ports", headers={"X-Alcor-Wait": WAIT},
            json={"port": {"network_id": net, "binding:host_id": "host-a"}})
    resp = dp.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    lines = resp.text.splitlines()
    assert "# TYPE alcor_port_provisioning_seconds histogram" in lines
    assert "alcor_port_provisioning_seconds_count 1" in lines
    pushes = next(line for line in lines if line.startswith("alcor_goal_state_pushes_total "))
    assert int(pushes.split()[1]) >= 1


# --- real processes -------------------------------------------------------------------------

HEADERS = {"X-Project-Id": "proj-a"}
SETTLE = 30.0


def until(predicate: Callable[[], bool], what: str, timeout: float = SETTLE) -> None:
    """Return once ``predicate()`` holds (checked every 50 ms); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


class Agent:
    """One ``alcor agent`` process on its own loopback address, registering with the API and
    asking the controller for its state; it writes what it holds to ``state_file``."""

    def __init__(self, node_id: str, index: int, api_url: str, controller: str,
                 workdir: Path) -> None:
        self.node_id = node_id
        self.ip = f"127.0.0.{11 + index}"
        self.port = free_port()
        self.api_url = api_url
        self.controller = controller
        self.state_file = workdir / f"{node_id}.json"
        self.output: list[str] = []
        self.proc: subprocess.Popen[str] | None = None

    def start(self, *, announce: bool = True) -> Agent:
        """Start and return once the controller answered its request for its goal state;
        without ``announce`` it neither registers nor asks, and returns once it serves."""
        self.state_file.unlink(missing_ok=True)
        self.output = []
        tell = ["--api-url", self.api_url, "--controller", self.controller] if announce else []
        self.proc = subprocess.Popen(
            [alcor_executable(), "agent", "--listen", f"{self.ip}:{self.port}", "--node-id",
             self.node_id, "--local-ip", self.ip, "--dataplane", "recording", "--state-file",
             str(self.state_file), *tell],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, start_new_session=True)
        ready = threading.Event()
        marker = "answered the restart request" if announce else "serving GoalStateProvisioner"
        threading.Thread(target=self._drain, args=(ready, marker), daemon=True).start()
        if not ready.wait(SETTLE) or self.proc.poll() is not None:
            self.stop()
            raise AssertionError(f"agent {self.node_id} did not start:\n" + "\n".join(
                self.output))
        return self

    def _drain(self, ready: threading.Event, marker: str) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip("\n"))
            if marker in line:
                ready.set()
        ready.set()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(15)

    def held(self) -> dict[str, set[str]]:
        """What the agent holds, by resource kind (empty before its first write)."""
        if not self.state_file.exists():
            return {}
        body = json.loads(self.state_file.read_text())
        return {kind: set(ids) for kind, ids in body["realized"].items()}

    def ports(self) -> set[str]:
        return self.held().get("PORT", set())

    def neighbours(self) -> set[str]:
        return self.held().get("NEIGHBOR", set())


class Cluster:
    """``alcor server`` (API and controller) on a SQLite file and three agents."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.db_url = f"sqlite:///{workdir}/alcor.db"
        self.grpc = f"127.0.0.1:{free_port()}"
        self.server = self._server(free_port())
        self.agents = {name: Agent(name, i, self.server.base_url, self.grpc, workdir)
                       for i, name in enumerate(("host-a", "host-b", "host-c"))}
        self.api = httpx.Client(base_url=self.server.base_url, headers=HEADERS, timeout=60)

    def _server(self, port: int) -> AlcorServer:
        return AlcorServer(self.db_url, port=port, extra_args=["--grpc-listen", self.grpc])

    def new_server(self) -> AlcorServer:
        """Another server on the same database and addresses (the old one must be gone)."""
        return self._server(self.server.port)

    def network(self) -> str:
        net = self.api.post("/v2.0/networks", json={"network": {"name": "dp"}})
        net_id = str(net.json()["network"]["id"])
        resp = self.api.post("/v2.0/subnets", json={"subnet": {
            "network_id": net_id, "cidr": "10.30.0.0/24", "ip_version": 4}})
        assert resp.status_code == 201, resp.text
        return net_id

    def ports(self, net_id: str, *hosts: str, wait: str | None = WAIT) -> list[dict[str, Any]]:
        headers = {"X-Alcor-Wait": wait} if wait else {}
        resp = self.api.post("/v2.0/ports", headers=headers, json={"ports": [
            {"network_id": net_id, "binding:host_id": host} for host in hosts]})
        assert resp.status_code == 201, resp.text
        return list(resp.json()["ports"])

    def status(self, port_id: str) -> str:
        return str(self.api.get(f"/v2.0/ports/{port_id}").json()["port"]["status"])

    def close(self) -> None:
        self.api.close()
        for agent in self.agents.values():
            agent.stop()
        self.server.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        c.server.start()
        for agent in c.agents.values():
            agent.start()
        yield c
    finally:
        c.close()


def l2(*ports: dict[str, Any]) -> set[str]:
    return {f"L2/{p['id']}" for p in ports}


def ids(*ports: dict[str, Any]) -> set[str]:
    return {str(p["id"]) for p in ports}


def test_each_agent_holds_its_ports_and_its_neighbours_and_deletes_remove_them(
        cluster: Cluster) -> None:
    net = cluster.network()
    a1, a2, b, c = cluster.ports(net, "host-a", "host-a", "host-b", "host-c")
    assert [p["status"] for p in (a1, a2, b, c)] == ["ACTIVE"] * 4
    agents = cluster.agents
    assert agents["host-a"].ports() == ids(a1, a2)
    assert agents["host-a"].neighbours() == l2(b, c)
    assert agents["host-b"].ports() == ids(b)
    assert agents["host-b"].neighbours() == l2(a1, a2, c)
    assert agents["host-c"].ports() == ids(c)
    assert agents["host-c"].neighbours() == l2(a1, a2, b)
    for agent in agents.values():
        held = agent.held()
        assert len(held["VPC"]) == 1 and len(held["SUBNET"]) == 1
    assert cluster.api.delete(f"/v2.0/ports/{b['id']}").status_code == 204
    until(lambda: not any(agents["host-b"].held().values()), "host-b to hold nothing")
    until(lambda: agents["host-a"].neighbours() == l2(c), "host-a to drop the neighbour")
    until(lambda: agents["host-c"].neighbours() == l2(a1, a2), "host-c to drop the neighbour")
    assert agents["host-a"].ports() == ids(a1, a2)


def test_a_killed_agent_converges_when_it_comes_back(cluster: Cluster) -> None:
    net = cluster.network()
    a, b = cluster.ports(net, "host-a", "host-b")
    agent = cluster.agents["host-b"]
    agent.stop(signal.SIGKILL)
    resp = cluster.api.post("/v2.0/ports", headers={"X-Alcor-Wait": "1"}, json={"port": {
        "network_id": net, "binding:host_id": "host-b"}})
    b2 = resp.json()["port"]
    assert b2["status"] == "DOWN"
    outcome = provisioning(resp)
    assert outcome["complete"] is False
    assert outcome["hosts"]["host-b"]["state"] in ("FAILED", "PENDING")
    until(lambda: cluster.agents["host-a"].neighbours() == l2(b, b2),
          "host-a to learn the new neighbour while host-b is down")
    agent.start()  # empty again; it asks the controller for its whole goal state
    until(lambda: agent.ports() == ids(b, b2), "the restarted agent to hold its ports")
    assert agent.neighbours() == l2(a)
    resp = cluster.api.put(f"/v2.0/ports/{b2['id']}", headers={"X-Alcor-Wait": WAIT},
                           json={"port": {"name": "back"}})
    assert resp.json()["port"]["status"] == "ACTIVE"


def test_a_server_killed_while_an_update_is_owed_delivers_it_after_restart(
        cluster: Cluster) -> None:
    net = cluster.network()
    late = cluster.agents["host-c"]
    late.stop()
    a, c = cluster.ports(net, "host-a", "host-c", wait=None)
    until(lambda: cluster.agents["host-a"].ports() == ids(a), "host-a to be programmed")
    # host-c is unreachable: its goal state is owed, being retried, when the server dies.
    cluster.server.proc.kill()  # type: ignore[union-attr]
    cluster.server.proc.wait(15)  # type: ignore[union-attr]
    # The agent comes back without registering or asking for anything: only the owed
    # generation, which outlived the server in the database, brings it its state.
    late.start(announce=False)
    cluster.server = cluster.new_server().start()
    until(lambda: late.ports() == ids(c) and late.neighbours() == l2(a),
          "host-c to get what it was owed")
    until(lambda: cluster.status(c["id"]) == "ACTIVE", "the port on host-c to be ACTIVE")
    assert cluster.status(a["id"]) == "ACTIVE"


def test_a_standalone_controller_serves_an_api_replica_that_waits_by_polling(
        tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path}/alcor.db"
    grpc = f"127.0.0.1:{free_port()}"
    output: list[str] = []
    with AlcorServer(db_url, command="api") as api:
        controller = subprocess.Popen(
            [alcor_executable(), "controller", "--db-url", db_url, "--grpc-listen", grpc],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, start_new_session=True)
        assert controller.stdout is not None
        try:
            for line in controller.stdout:
                output.append(line)
                if "alcor controller consuming the outbox" in line:
                    break
            assert controller.poll() is None, "".join(output)
            threading.Thread(target=lambda: [*controller.stdout], daemon=True).start()
            agent = Agent("host-a", 0, api.base_url, grpc, tmp_path).start()
            try:
                with httpx.Client(base_url=api.base_url, headers=HEADERS, timeout=60) as c:
                    net = c.post("/v2.0/networks", json={"network": {"name": "split"}})
                    net_id = net.json()["network"]["id"]
                    c.post("/v2.0/subnets", json={"subnet": {
                        "network_id": net_id, "cidr": "10.40.0.0/24", "ip_version": 4}})
                    resp = c.post("/v2.0/ports", headers={"X-Alcor-Wait": WAIT}, json={
                        "port": {"network_id": net_id, "binding:host_id": "host-a"}})
                    port = resp.json()["port"]
                    assert port["status"] == "ACTIVE"
                    assert provisioning(resp)["hosts"] == {"host-a": {"state": "ACKED"}}
                    assert agent.ports() == {port["id"]}
            finally:
                agent.stop()
        finally:
            controller.terminate()
            controller.wait(15)


def test_two_servers_with_their_controllers_share_one_postgresql_outbox(
        pg_url: str, tmp_path: Path) -> None:
    env = {"ALCOR_DPM__RECONCILE_INTERVAL": "0.5"}
    grpc = f"127.0.0.1:{free_port()}"
    with AlcorServer(pg_url, env=env, extra_args=["--grpc-listen", grpc]) as first, \
            AlcorServer(pg_url, env=env) as second:
        agents = [Agent(name, i, first.base_url, grpc, tmp_path).start()
                  for i, name in enumerate(("host-a", "host-b", "host-c"))]
        try:
            with httpx.Client(base_url=first.base_url, headers=HEADERS, timeout=60) as c:
                net = c.post("/v2.0/networks", json={"network": {"name": "pg"}})
                net_id = net.json()["network"]["id"]
                c.post("/v2.0/subnets", json={"subnet": {
                    "network_id": net_id, "cidr": "10.50.0.0/24", "ip_version": 4}})

            def create(base_url: str) -> list[dict[str, Any]]:
                with httpx.Client(base_url=base_url, headers=HEADERS, timeout=60) as c:
                    resp = c.post("/v2.0/ports", headers={"X-Alcor-Wait": "30"}, json={
                        "ports": [{"network_id": net_id, "binding:host_id": a.node_id}
                                  for a in agents for _ in range(5)]})
                    assert resp.status_code == 201, resp.text
                    return list(resp.json()["ports"])

            with ThreadPoolExecutor(4) as pool:
                batches = list(pool.map(create, [first.base_url, second.base_url] * 2))
            ports = [p for batch in batches for p in batch]
            assert {p["status"] for p in ports} == {"ACTIVE"}
            for agent in agents:
                mine = {p["id"] for p in ports if p["binding:host_id"] == agent.node_id}
                assert agent.ports() == mine
                assert agent.neighbours() == {f"L2/{p['id']}" for p in ports
                                              if p["id"] not in mine}
        finally:
            for agent in agents:
                agent.stop()

"""Simulated hosts and workloads as network namespaces (root only), and the processes run in
them.

One ``Lab`` is, under a per-run unique id (``<prefix><hex>``, e.g. ``alfs-3f9a1c``):

- ``<id>-ul``: the underlay "switch", a netns holding bridge ``br-ul``, and the provider
  "switch", bridge ``br-ex`` in the same netns (the flat provider network ``public``);
- ``<id>-h<n>``: one netns per host, whose ``ul0`` (a veth to ``br-ul``) carries the host's
  underlay address ``<subnet>.<n>/24`` and whose ``ex0`` (a veth to ``br-ex``, no address)
  is its interface on the provider network (agents get ``--physical-network public=ex0``);
- ``<id>-external``: the outside world, a netns whose ``eth0`` on ``br-ex`` holds the
  external subnet's gateway address (``EXTERNAL_GATEWAY``, 203.0.113.1/24 in
  ``EXTERNAL_CIDR``); nothing routes from it anywhere else;
- ``<id>-<name>``: workload namespaces, created empty (``lo`` up) for an agent to plug;
- the management link: a veth named ``<id>`` from the root netns into ``br-ul`` with address
  ``<subnet>.254/24``, so processes in the root netns (a test, ``alcor server``) reach the
  hosts' underlay addresses and the hosts reach them.  It is the only thing a lab puts in
  the root netns; the /24 is a private one no root route overlaps, chosen per run.

Agents run in their host's network namespace but in the root mount namespace (``nsenter
--net``, not ``ip netns exec``, which gives the process a mount namespace of its own), so
the router namespaces they create under /run/netns are seen by everyone and outlive them.

``destroy()`` stops the processes the lab started, kills whatever still runs in its
namespaces, deletes the namespaces and the management link, and is safe to call twice.
``sweep(prefix)`` does the same for labs left by runs that crashed: each lab records its
owner (pid and start time) and its processes under ``/run/alcor-lab/<id>/``, and a lab
whose owner still runs is left alone, so concurrent runs do not destroy each other.  The
kernel frees a deleted namespace's interfaces asynchronously; every name carries the unique
id, so a new lab never collides with one being freed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

STATE_ROOT = Path("/run/alcor-lab")
IFNAMSIZ = 15
UNDERLAY_BRIDGE = "br-ul"
HOST_UPLINK = "ul0"
PROVIDER_BRIDGE = "br-ex"
HOST_PROVIDER_LINK = "ex0"
PHYSICAL_NETWORK = "public"
"""The provider network's name (``provider:physical_network``) every host maps to ``ex0``."""
EXTERNAL_CIDR = ipaddress.IPv4Network("203.0.113.0/24")
EXTERNAL_GATEWAY = "203.0.113.1"
"""The external namespace's address: the provider subnet's gateway, the outside world."""
MGMT_PEER = "mgmt0"
MGMT_HOST = 254
ADDRESS_POOL = ipaddress.IPv4Network("10.231.0.0/16")
"""The /24 of a lab's underlay is picked at random out of this private /16."""
STOP_TIMEOUT = 10.0
COMMAND_TIMEOUT = 60.0


class LabError(RuntimeError):
    """A lab command failed; the message says which and what it printed."""


def ip(*args: str, netns: str | None = None) -> str:
    """Run ``ip`` (optionally ``-n netns``) and return its output; LabError on failure."""
    command = ["ip", *(["-n", netns] if netns else []), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    if done.returncode != 0:
        raise LabError(f"{' '.join(command)}: {done.stderr.strip()}")
    return done.stdout


def netns_names() -> list[str]:
    """The named network namespaces (``ip netns list``)."""
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def root_links() -> list[str]:
    """The interface names of the root netns."""
    names = []
    for line in ip("-o", "link", "show").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            names.append(parts[1].strip().split("@")[0])
    return names


def run_in(netns: str, *command: str, timeout: float = COMMAND_TIMEOUT,
           input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``command`` inside ``netns`` and return how it went (never raises on failure)."""
    return subprocess.run(["ip", "netns", "exec", netns, *command], capture_output=True,
                          text=True, timeout=timeout, input=input_text)


def python_command(*args: str) -> list[str]:
    """The ``alcor`` command of the running interpreter (its venv): ``python -m alcor...``."""
    return [sys.executable, "-m", "alcor.cli.main", *args]


# --- process identity: pid plus start time, so a reused pid is never taken for ours --------


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _identity(pid: int) -> str:
    return f"{pid} {_start_time(pid)}"


def _alive(identity: str) -> int | None:
    """The pid ``identity`` ("pid starttime") names if that very process still runs."""
    try:
        pid_text, started = identity.split()
        pid = int(pid_text)
    except ValueError:
        return None
    return pid if _start_time(pid) == started else None


def _terminate(pids: Sequence[int], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM ``pids``, then SIGKILL those still there after ``timeout``."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, timeout)):
        left = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while left and time.monotonic() < deadline:
            left = [pid for pid in left if _running(pid)]
            if left:
                time.sleep(0.05)
        if not left:
            return


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# --- processes ---------------------------------------------------------------------------


class LabProcess:
    """A long-running process a lab started (in a netns or the root netns); its output is
    drained into ``output`` by a thread so it never blocks on a full pipe."""

    def __init__(self, name: str, argv: Sequence[str], pidfile: Path,
                 env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.pidfile = pidfile
        self.env = {**os.environ, **(env or {})}
        self.output: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._changed = threading.Condition()
        self._drainer: threading.Thread | None = None

    def start(self) -> LabProcess:
        self.output = []
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True, env=self.env, start_new_session=True)
        self.pidfile.write_text(_identity(self.proc.pid))
        self._drainer = threading.Thread(target=self._drain, name=f"lab-{self.name}",
                                         daemon=True)
        self._drainer.start()
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.output.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_for(self, marker: str, timeout: float, since: int = 0) -> bool:
        """Whether a line containing ``marker`` (from line ``since`` on) appears within
        ``timeout`` seconds; False at once if the process exits without printing it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if any(marker in line for line in self.output[since:]):
                    return True
                left = deadline - time.monotonic()
                if left <= 0 or not self.running:
                    return any(marker in line for line in self.output[since:])
                self._changed.wait(min(left, 0.2))

    def log(self, lines: int = 80) -> str:
        return "\n".join(self.output[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> None:
        """Send ``sig`` and wait for the exit (SIGKILL after ``timeout``); idempotent."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._drainer is not None:
            self._drainer.join(timeout)
        self.pidfile.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean anything up."""
        self.stop(signal.SIGKILL)


# --- the lab -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Host:
    """A simulated host: its node name, network namespace and underlay address."""

    name: str
    netns: str
    address: str


def new_lab_id(prefix: str, hex_digits: int = 6) -> str:
    """``prefix`` plus random hex digits; short enough to name the management interface."""
    lab_id = prefix + secrets.token_hex((hex_digits + 1) // 2)[:hex_digits]
    if len(lab_id) > IFNAMSIZ:
        raise ValueError(f"lab id {lab_id!r} is longer than an interface name may be")
    return lab_id


def _used_networks() -> list[ipaddress.IPv4Network]:
    """Networks the root netns routes or holds addresses in (read only)."""
    found = []
    for line in ip("-4", "route", "show", "table", "all").splitlines() + [
            f.split()[3] for f in ip("-4", "-o", "addr", "show").splitlines()]:
        token = line.split()[0] if line.split() else ""
        if token == "default" or not token[:1].isdigit():
            continue
        with contextlib.suppress(ValueError):
            found.append(ipaddress.ip_network(token, strict=False))
    return [n for n in found if isinstance(n, ipaddress.IPv4Network)]


def pick_subnet() -> ipaddress.IPv4Network:
    """A random /24 out of ADDRESS_POOL that no root route or address overlaps."""
    used = _used_networks()
    candidates = list(ADDRESS_POOL.subnets(new_prefix=24))
    random.shuffle(candidates)
    for candidate in candidates:
        if not any(candidate.overlaps(n) for n in used):
            return candidate
    raise LabError(f"every /24 of {ADDRESS_POOL} is in use in the root netns")


class Lab:
    """Hosts and workloads as namespaces under one unique id; a context manager that
    builds on entry and destroys on exit (also on failure)."""

    def __init__(self, prefix: str, hosts: Sequence[str], *, hex_digits: int = 6) -> None:
        self.id = new_lab_id(prefix, hex_digits)
        self.host_names = list(hosts)
        self.state_dir = STATE_ROOT / self.id
        self.underlay = f"{self.id}-ul"
        self.external = f"{self.id}-external"
        self.mgmt_link = self.id
        self.subnet: ipaddress.IPv4Network | None = None
        self.hosts: dict[str, Host] = {}
        self.workloads: dict[str, str] = {}
        """Workload netns -> the host it belongs to."""
        self.processes: list[LabProcess] = []

    # building

    @property
    def mgmt_ip(self) -> str:
        """The root netns's address on the underlay (where a server listens)."""
        if self.subnet is None:
            raise LabError("the lab is not created")
        return str(self.subnet.network_address + MGMT_HOST)

    def create(self) -> Lab:
        """Build the underlay, the management link and the hosts; on failure remove what was
        made and raise."""
        if os.geteuid() != 0:
            raise LabError("a lab needs root (network namespaces, veth, bridges)")
        self.state_dir.mkdir(parents=True, exist_ok=False)
        (self.state_dir / "owner").write_text(_identity(os.getpid()))
        try:
            self.subnet = pick_subnet()
            self._add_netns(self.underlay)
            ip("link", "add", UNDERLAY_BRIDGE, "type", "bridge", netns=self.underlay)
            ip("link", "set", UNDERLAY_BRIDGE, "up", netns=self.underlay)
            ip("link", "add", PROVIDER_BRIDGE, "type", "bridge", netns=self.underlay)
            ip("link", "set", PROVIDER_BRIDGE, "up", netns=self.underlay)
            self._add_management_link()
            self._add_external()
            for number, name in enumerate(self.host_names, start=1):
                self._add_host(number, name)
        except BaseException:
            self.destroy()
            raise
        return self

    def _add_netns(self, name: str) -> None:
        ip("netns", "add", name)
        ip("link", "set", "lo", "up", netns=name)

    def _add_management_link(self) -> None:
        ip("link", "add", self.mgmt_link, "type", "veth", "peer", "name", MGMT_PEER,
           "netns", self.underlay)
        ip("link", "set", MGMT_PEER, "master", UNDERLAY_BRIDGE, "up", netns=self.underlay)
        ip("addr", "add", f"{self.mgmt_ip}/24", "dev", self.mgmt_link)
        ip("link", "set", self.mgmt_link, "up")

    def _add_external(self) -> None:
        self._add_netns(self.external)
        ip("link", "add", "ex-out", "type", "veth", "peer", "name", "eth0", "netns",
           self.external, netns=self.underlay)
        ip("link", "set", "ex-out", "master", PROVIDER_BRIDGE, "up", netns=self.underlay)
        ip("addr", "add", f"{EXTERNAL_GATEWAY}/{EXTERNAL_CIDR.prefixlen}", "dev", "eth0",
           netns=self.external)
        ip("link", "set", "eth0", "up", netns=self.external)

    def _add_host(self, number: int, name: str) -> None:
        assert self.subnet is not None
        netns = f"{self.id}-h{number}"
        self._add_netns(netns)
        peer = f"ul-h{number}"
        ip("link", "add", peer, "type", "veth", "peer", "name", HOST_UPLINK, "netns", netns,
           netns=self.underlay)
        ip("link", "set", peer, "master", UNDERLAY_BRIDGE, "up", netns=self.underlay)
        address = str(self.subnet.network_address + number)
        ip("addr", "add", f"{address}/24", "dev", HOST_UPLINK, netns=netns)
        ip("link", "set", HOST_UPLINK, "up", netns=netns)
        provider = f"ex-h{number}"
        ip("link", "add", provider, "type", "veth", "peer", "name", HOST_PROVIDER_LINK,
           "netns", netns, netns=self.underlay)
        ip("link", "set", provider, "master", PROVIDER_BRIDGE, "up", netns=self.underlay)
        ip("link", "set", HOST_PROVIDER_LINK, "up", netns=netns)
        self.hosts[name] = Host(name=name, netns=netns, address=address)

    def add_workload(self, host: str, name: str) -> str:
        """An empty workload namespace ``<id>-<name>`` (``lo`` up) for a port on ``host``;
        returns its name, which goes into the port's ``binding:profile`` ``network_ns``."""
        if host not in self.hosts:
            raise LabError(f"no host {host!r} in lab {self.id}")
        netns = f"{self.id}-{name}"
        self._add_netns(netns)
        self.workloads[netns] = host
        return netns

    def remove_workload(self, netns: str) -> None:
        """Delete a workload namespace (what runs in it is killed first)."""
        _kill_in(netns)
        with contextlib.suppress(LabError):
            ip("netns", "del", netns)
        self.workloads.pop(netns, None)

    # commands and processes

    def host(self, name: str) -> Host:
        return self.hosts[name]

    def spawn(self, name: str, argv: Sequence[str], *, netns: str | None = None,
              env: Mapping[str, str] | None = None, own_mounts: bool = True) -> LabProcess:
        """Start ``argv`` (inside ``netns`` through ``ip netns exec``, which execs it in the
        same process, so signals reach it) and remember it for ``destroy``/``sweep``.
        ``own_mounts`` False: enter only the network namespace (``nsenter --net``), keeping
        the root mount namespace, where namespaces the process creates must appear."""
        if netns is None:
            command = list(argv)
        elif own_mounts:
            command = ["ip", "netns", "exec", netns, *argv]
        else:
            command = ["nsenter", f"--net=/run/netns/{netns}", *argv]
        process = LabProcess(name, command, self.state_dir / f"{name}.pid", env)
        self.processes.append(process)
        return process.start()

    # teardown

    def destroy(self) -> None:
        """Stop the processes, delete every namespace and the management link; idempotent."""
        for process in reversed(self.processes):
            process.stop()
        remove_lab(self.id)

    def __enter__(self) -> Lab:
        return self.create()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.destroy()


def _kill_in(netns: str) -> None:
    """Terminate every process running in ``netns``."""
    try:
        listed = ip("netns", "pids", netns)
    except LabError:
        return
    _terminate([int(pid) for pid in listed.split() if pid.isdigit()], timeout=3.0)


def router_namespaces(hosts: Sequence[str]) -> list[str]:
    """The router namespaces agents made for the host namespaces ``hosts``."""
    from alcor.agent.linux.router import host_tag, router_netns  # pyroute2: root tools only

    prefixes = []
    for host in hosts:
        with contextlib.suppress(OSError):
            prefixes.append(router_netns(host_tag(host), ""))
    return [n for n in netns_names() if prefixes and n.startswith(tuple(prefixes))]


def remove_lab(lab_id: str) -> None:
    """Remove everything of lab ``lab_id``: its recorded processes, whatever runs in its
    namespaces, the namespaces, the management link, its state directory."""
    state_dir = STATE_ROOT / lab_id
    if state_dir.is_dir():
        recorded = [_alive(f.read_text()) for f in state_dir.glob("*.pid")]
        _terminate([pid for pid in recorded if pid is not None])
    hosts = [n for n in netns_names() if re.fullmatch(rf"{lab_id}-h\d+", n)]
    mine = [*router_namespaces(hosts),
            *(n for n in netns_names() if n.startswith(f"{lab_id}-"))]
    # Routers and workloads first, the underlay last: nothing is left dangling meanwhile.
    mine.sort(key=lambda n: (n == f"{lab_id}-ul", re.fullmatch(rf"{lab_id}-h\d+", n) is not None))
    for netns in mine:
        _kill_in(netns)
    for netns in mine:
        with contextlib.suppress(LabError):
            ip("netns", "del", netns)
    if lab_id in root_links():
        with contextlib.suppress(LabError):
            ip("link", "del", lab_id)
    shutil.rmtree(state_dir, ignore_errors=True)


def sweep(prefix: str) -> list[str]:
    """Remove the labs named ``<prefix><hex>`` whose owner no longer runs (left by crashed
    runs); returns their ids.  Labs of live runs are left alone."""
    pattern = re.compile(rf"^({re.escape(prefix)}[0-9a-f]+)(?:-|$)")
    found: set[str] = set()
    states = [p.name for p in STATE_ROOT.iterdir()] if STATE_ROOT.is_dir() else []
    for name in [*netns_names(), *root_links(), *states]:
        match = pattern.match(name)
        if match:
            found.add(match.group(1))
    removed = []
    for lab_id in sorted(found):
        owner = STATE_ROOT / lab_id / "owner"
        with contextlib.suppress(OSError):
            if _alive(owner.read_text()) is not None:
                continue
        remove_lab(lab_id)
        removed.append(lab_id)
    return removed

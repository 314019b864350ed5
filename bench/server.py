"""What the benchmarks share: free loopback ports, core pinning, and an ``alcor`` process
started, awaited until it answers, and stopped."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
ALCOR = ROOT / ".venv" / "bin" / "alcor"
UNLIMITED = {"quotas__network": -1, "quotas__subnet": -1, "quotas__port": -1}
"""Benchmarks fill one project far past Neutron's default quotas (``load`` overrides)."""
UNLIMITED_ENV = {f"ALCOR_{k.upper()}": str(v) for k, v in UNLIMITED.items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(core: int) -> list[str]:
    """``taskset`` prefix keeping a process on one core (none on a one-core machine)."""
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 \
        else []


def start_alcor(args: list[str], base: str, *, command: list[str] | None = None,
                stderr: int | IO[str] = subprocess.PIPE) -> subprocess.Popen[bytes]:
    """``alcor <args>`` pinned to core 0, returned once ``base`` answers ``GET /``."""
    proc = subprocess.Popen([*pin(0), *(command or [str(ALCOR)]), *args],
                            stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
                            env={**os.environ, **UNLIMITED_ENV})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(base + "/", timeout=1).read()
            return proc
        except OSError:
            time.sleep(0.1)
    stop(proc)
    raise RuntimeError("alcor did not start")


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)

"""A real ``alcor`` server process for tests: started on a free loopback port with a given
database URL, ready once uvicorn says it is listening, stopped (and only it) afterwards.

Several may run at once on one database (API replicas on one PostgreSQL)::

    with AlcorServer(db_url) as a, AlcorServer(db_url, command="api") as b:
        httpx.post(a.url("/v2.0/networks"), ...)

The process's output is drained into ``output`` (a list of lines) by a thread, so a chatty
server never blocks on a full pipe and a failing test can show what the server said.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

# uvicorn prints "Application startup complete" before it binds; only this means serving.
READY_MARKERS = ("Uvicorn running on",)
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alcor_executable() -> str:
    """The ``alcor`` entry point next to the running interpreter (the project's venv)."""
    beside = Path(sys.executable).with_name("alcor")
    if beside.exists():
        return str(beside)
    found = shutil.which("alcor")
    if found is None:
        raise RuntimeError("the `alcor` command is not installed (pip install -e .)")
    return found


class ServerFailed(RuntimeError):
    """The server exited or did not get ready in time; the message carries its output."""


class AlcorServer:
    """One ``alcor server`` (or ``alcor api``) subprocess."""

    def __init__(
        self,
        db_url: str,
        *,
        command: str = "server",
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.db_url = db_url
        self.command = command
        self.port = port or free_port()
        self.env = {**os.environ, **(env or {})}
        self.extra_args = list(extra_args)
        self.output: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._ready = threading.Event()
        self._drainer: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def start(self) -> AlcorServer:
        # An all-in-one server's controller serves gRPC too: on a free port unless told.
        grpc = (["--grpc-listen", "127.0.0.1:0"]
                if self.command == "server" and "--grpc-listen" not in self.extra_args else [])
        args = [alcor_executable(), self.command, "--host", "127.0.0.1", "--port",
                str(self.port), "--db-url", self.db_url, "--log-level", "info", *grpc,
                *self.extra_args]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, env=self.env, start_new_session=True,
        )
        self._drainer = threading.Thread(target=self._drain, name=f"alcor-{self.port}",
                                         daemon=True)
        self._drainer.start()
        if not self._ready.wait(START_TIMEOUT) or self.proc.poll() is not None:
            self.stop()
            raise ServerFailed(f"alcor {self.command} did not start:\n{self.log()}")
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip("\n"))
            if any(marker in line for marker in READY_MARKERS):
                self._ready.set()
        self._ready.set()  # exited: wake the starter, which sees poll() is not None

    def log(self) -> str:
        return "\n".join(self.output[-200:])

    def stop(self) -> None:
        """Terminate this server's process (and wait for it); idempotent."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)
        if self._drainer is not None:
            self._drainer.join(STOP_TIMEOUT)

    def __enter__(self) -> AlcorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

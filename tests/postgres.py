"""A throwaway PostgreSQL cluster for tests: initdb into a temporary directory, start it on
127.0.0.1 with a free port and fsync off, hand out fresh databases, stop and remove it.

The server refuses to run as root, so under root every server binary runs as the ``postgres``
system user (created by Debian's ``postgresql`` package, which CI installs).  Missing binaries
are an error, not a reason to skip: the PostgreSQL tests are part of the suite.
"""

from __future__ import annotations

import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import psycopg

BIN_GLOB = "/usr/lib/postgresql/*/bin"
SERVER_USER = "postgres"
SUPERUSER = "postgres"
START_ATTEMPTS = 3
SERVER_OPTIONS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",  # tests only: a crash loses the throwaway cluster, nothing else
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "deadlock_timeout": "50ms",  # deadlock tests need not wait the default second
    "shared_buffers": "32MB",
}


PREFIX = "alcor-pg-"
OWNER_FILE = "owner.pid"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are missing or the cluster would not start."""


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.parent.name))


def find_bin_dir() -> Path:
    """The ``bin`` directory of the newest installed PostgreSQL (Debian layout)."""
    found = [p for p in Path("/").glob(BIN_GLOB.lstrip("/")) if (p / "initdb").exists()]
    if not found:
        raise PostgresUnavailable(
            f"PostgreSQL server binaries not found ({BIN_GLOB}/initdb): install Debian's "
            "`postgresql` package (.ci/run does) to run the PostgreSQL tests"
        )
    return max(found, key=_version_key)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_orphans(bin_dir: Path) -> None:
    """Stop and remove clusters whose test session died without cleaning up (SIGKILL)."""
    for root in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            owner = int((root / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not ours, or being created right now
        if not _alive(owner):
            PostgresCluster(bin_dir, root).stop()


class PostgresCluster:
    """One running cluster; ``create_database()`` gives the URL of a new empty database."""

    def __init__(self, bin_dir: Path, root: Path) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.log = root / "server.log"
        self.port = 0
        self._names = itertools.count(1)

    # --- lifecycle -----------------------------------------------------------------------

    @classmethod
    def start(cls) -> PostgresCluster:
        bin_dir = find_bin_dir()
        reap_orphans(bin_dir)
        root = Path(tempfile.mkdtemp(prefix=PREFIX))
        (root / OWNER_FILE).write_text(str(os.getpid()))
        cluster = cls(bin_dir, root)
        try:
            cluster._init()
            cluster._start()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def __enter__(self) -> PostgresCluster:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _init(self) -> None:
        self.sockets.mkdir()
        if os.geteuid() == 0:
            entry = pwd.getpwnam(SERVER_USER)
            for path in (self.root, self.sockets):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run([
            "initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
            "--locale=C", "--no-sync", "--no-instructions",
        ])

    def _start(self) -> None:
        for attempt in range(1, START_ATTEMPTS + 1):
            self.port = free_port()
            options = {**SERVER_OPTIONS, "port": str(self.port),
                       "unix_socket_directories": str(self.sockets)}
            opts = " ".join(f"-c {k}={v}" for k, v in options.items())
            try:
                self._run(["pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts,
                           "-w", "-t", "60", "start"])
                return
            except PostgresUnavailable:
                # Another process may have taken the port between probe and bind.
                if attempt == START_ATTEMPTS:
                    raise

    def stop(self) -> None:
        """Stop the server (if it runs) and remove every file of the cluster."""
        if (self.data / "postmaster.pid").exists():
            self._run(["pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                      check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    # --- databases -----------------------------------------------------------------------

    def url(self, database: str, driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "test", icu_locale: str | None = None) -> str:
        """A new empty database (byte-order "C" collation unless an ICU locale is named);
        returns its SQLAlchemy URL."""
        name = f"{prefix}_{next(self._names)}"
        sql = f'CREATE DATABASE "{name}" TEMPLATE template0'
        if icu_locale is not None:
            sql += f" LOCALE_PROVIDER icu ICU_LOCALE '{icu_locale}'"
        with psycopg.connect(self.url("postgres", "postgresql"), autocommit=True) as conn:
            conn.execute(sql.encode())
        return self.url(name)

    # --- running the binaries ------------------------------------------------------------

    def _run(self, argv: Sequence[str], check: bool = True) -> None:
        cmd = [str(self.bin_dir / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
        proc = subprocess.run(cmd, cwd=self.root, capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise PostgresUnavailable(
                f"{' '.join(argv[:1])} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
                f"{log[-4000:]}"
            )

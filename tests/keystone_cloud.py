"""A real Keystone for tests: OpenStack's identity service from PyPI, in its own virtualenv
(``make keystone`` makes ``.venv-keystone``; its pins would fight ours), on SQLite in a
temporary directory, served over HTTP on a free loopback port by ``tests/keystone_wsgi.py``.

``Keystone.start()`` writes the configuration and the Fernet keys, runs ``keystone-manage
db_sync`` and ``bootstrap`` (an ``admin`` user with the admin role on the ``admin`` project),
starts the server and waits for it; ``stop()`` stops that process and removes every file
(and ``start()`` first does so for servers left by test sessions that died).
``seed()`` then makes what the tests use: projects ``alpha`` and ``beta``, members ``alice``
(alpha) and ``bob`` (beta), the reader ``rita`` (alpha), ``olga`` (alpha) with only a role
Alcor does not know (``observer``), and Alcor's service user ``alcor`` (role ``service`` on
project ``service``), all with password ``PASSWORD``.

A missing virtualenv is an error, not a reason to skip: the authentication tests are part of
the suite (``make test`` and ``.ci/run`` install it).
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.testclient import TestClient

from alcor.api.app import build_app
from alcor.cli.wiring import build_services, open_store
from alcor.config import Settings
from alcor.identity import TokenValidator

REPO = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("ALCOR_TEST_KEYSTONE_VENV", REPO / ".venv-keystone"))
SERVER_SCRIPT = Path(__file__).resolve().parent / "keystone_wsgi.py"
PREFIX = "alcor-keystone-"
OWNER_FILE = "owner.pid"
SERVER_FILE = "server.pid"
ADMIN_PASSWORD = "admin-secret"
PASSWORD = "secret-pw"
START_TIMEOUT = 60.0

CONFIG = """\
[DEFAULT]
use_stderr = true
[database]
connection = sqlite:///{root}/keystone.db
[token]
provider = fernet
expiration = 3600
[fernet_tokens]
key_repository = {root}/fernet-keys
[fernet_receipts]
key_repository = {root}/fernet-receipts
[credential]
key_repository = {root}/credential-keys
[identity]
password_hash_rounds = 4
"""
"""Fernet tokens on SQLite; the cheapest bcrypt rounds (tests create and log in users)."""


class KeystoneUnavailable(RuntimeError):
    """The Keystone virtualenv is missing or the server would not start."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _key_repository(path: Path) -> None:
    """What ``keystone-manage fernet_setup`` makes: a staged key 0 and a primary key 1."""
    path.mkdir(mode=0o700)
    for name in ("0", "1"):
        key = path / name
        key.write_bytes(base64.urlsafe_b64encode(os.urandom(32)))
        key.chmod(0o600)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_orphans() -> None:
    """Stop and remove the Keystones whose test session died without cleaning up."""
    for root in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            owner = int((root / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not ours, or being created right now
        if _alive(owner):
            continue
        try:
            server = int((root / SERVER_FILE).read_text())
            cmdline = Path(f"/proc/{server}/cmdline").read_bytes()
        except (OSError, ValueError):
            cmdline = b""
        if SERVER_SCRIPT.name.encode() in cmdline:
            os.kill(server, 15)
        shutil.rmtree(root, ignore_errors=True)


class Keystone:
    """One running Keystone; ``url`` is its v3 endpoint."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "keystone.conf"
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None
        self.http = httpx.Client(timeout=30.0)
        self._admin_token = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v3"

    # --- lifecycle -----------------------------------------------------------------------

    @classmethod
    def start(cls) -> Keystone:
        python = VENV / "bin" / "python"
        if not python.exists():
            raise KeystoneUnavailable(
                f"no Keystone virtualenv at {VENV}: run `make keystone` (make test and .ci/run "
                "do) to run the authentication tests")
        reap_orphans()
        keystone = cls(Path(tempfile.mkdtemp(prefix=PREFIX)))
        (keystone.root / OWNER_FILE).write_text(str(os.getpid()))
        try:
            keystone._bootstrap()
            keystone._serve()
        except BaseException:
            keystone.stop()
            raise
        return keystone

    def _bootstrap(self) -> None:
        self.config.write_text(CONFIG.format(root=self.root))
        for repo in ("fernet-keys", "fernet-receipts", "credential-keys"):
            _key_repository(self.root / repo)
        self._manage("db_sync")
        self._manage("bootstrap", "--bootstrap-password", ADMIN_PASSWORD,
                     "--bootstrap-region-id", "RegionOne")

    def _manage(self, *args: str) -> None:
        proc = subprocess.run(
            [str(VENV / "bin" / "keystone-manage"), "--config-file", str(self.config), *args],
            cwd=self.root, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise KeystoneUnavailable(
                f"keystone-manage {args[0]} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")

    def _serve(self) -> None:
        self.port = free_port()
        log = (self.root / "server.log").open("w")
        env = {**os.environ, "OS_KEYSTONE_CONFIG_FILES": str(self.config)}
        self.proc = subprocess.Popen(
            [str(VENV / "bin" / "python"), str(SERVER_SCRIPT), str(self.port)],
            cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        (self.root / SERVER_FILE).write_text(str(self.proc.pid))
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if self.http.get(self.url).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)  # polling a starting process, bounded by the deadline
        output = (self.root / "server.log").read_text(errors="replace")
        raise KeystoneUnavailable(f"Keystone did not start on port {self.port}:\n"
                                  f"{output[-4000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.http.close()
        shutil.rmtree(self.root, ignore_errors=True)

    # --- the identity API ----------------------------------------------------------------

    def login(self, user: str, password: str, project: str) -> tuple[str, Any]:
        """A project-scoped token by password (Default domain): the token and its body."""
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"id": "default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}},
        }}
        resp = self.http.post(f"{self.url}/auth/tokens", json=body)
        if resp.status_code != 201:
            raise KeystoneUnavailable(f"login of {user} answered {resp.status_code}: {resp.text}")
        return resp.headers["X-Subject-Token"], resp.json()

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        """A call of the identity API as the bootstrap admin; the answer's JSON (or None)."""
        if not self._admin_token:
            self._admin_token, _ = self.login("admin", ADMIN_PASSWORD, "admin")
        headers = {"X-Auth-Token": self._admin_token, **kwargs.pop("headers", {})}
        resp = self.http.request(method, self.url + path, headers=headers, **kwargs)
        if resp.status_code >= 400:
            raise KeystoneUnavailable(f"{method} {path} answered {resp.status_code}: {resp.text}")
        return resp.json() if resp.content else None

    def revoke(self, token: str) -> None:
        """Revoke a token (``DELETE /v3/auth/tokens``): validating it answers 404 from now."""
        self.admin("DELETE", "/auth/tokens", headers={"X-Subject-Token": token})

    def create_project(self, name: str) -> str:
        body = {"project": {"name": name, "domain_id": "default"}}
        return str(self.admin("POST", "/projects", json=body)["project"]["id"])

    def create_user(self, name: str, project_id: str, role: str) -> str:
        """A user of the Default domain with ``role`` on the project, password PASSWORD."""
        body = {"user": {"name": name, "domain_id": "default", "password": PASSWORD,
                         "default_project_id": project_id}}
        user_id = str(self.admin("POST", "/users", json=body)["user"]["id"])
        role_id = self.admin("GET", "/roles", params={"name": role})["roles"][0]["id"]
        self.admin("PUT", f"/projects/{project_id}/users/{user_id}/roles/{role_id}")
        return user_id

    def register_endpoint(self, service_type: str, url: str) -> None:
        """Put ``url`` in the catalog as the public ``service_type`` endpoint (RegionOne)."""
        service = self.admin("POST", "/services",
                             json={"service": {"type": service_type, "name": service_type}})
        self.admin("POST", "/endpoints", json={"endpoint": {
            "service_id": service["service"]["id"], "interface": "public", "url": url,
            "region_id": "RegionOne"}})


@dataclass
class Cloud:
    """The seeded identities: project ids by name, and each user's project-scoped token."""

    keystone: Keystone
    projects: dict[str, str]
    users: dict[str, str] = field(default_factory=dict)
    """user name -> its project's name."""
    _tokens: dict[str, str] = field(default_factory=dict)

    def token(self, user: str) -> str:
        """A token of ``user`` for its project (one login per user and session)."""
        if user not in self._tokens:
            password = ADMIN_PASSWORD if user == "admin" else PASSWORD
            self._tokens[user], _ = self.keystone.login(user, password, self.users[user])
        return self._tokens[user]

    def headers(self, user: str) -> dict[str, str]:
        """``X-Auth-Token`` of ``user``'s token."""
        return {"X-Auth-Token": self.token(user)}

    def alcor_env(self) -> dict[str, str]:
        """The settings (``ALCOR_AUTH__*`` variables) that point Alcor at this Keystone with
        the ``alcor`` service user."""
        return {"ALCOR_AUTH__STRATEGY": "keystone", "ALCOR_AUTH__KEYSTONE_URL": self.keystone.url,
                "ALCOR_AUTH__USERNAME": "alcor", "ALCOR_AUTH__PASSWORD": PASSWORD,
                "ALCOR_AUTH__PROJECT_NAME": "service"}

    def fresh_token(self, user: str) -> str:
        """A new token of ``user``, never handed out before (for revoking)."""
        password = ADMIN_PASSWORD if user == "admin" else PASSWORD
        token, _ = self.keystone.login(user, password, self.users[user])
        return token


SEED = (("alice", "alpha", "member"), ("bob", "beta", "member"), ("rita", "alpha", "reader"),
        ("olga", "alpha", "observer"), ("alcor", "service", "service"))


def seed(keystone: Keystone) -> Cloud:
    """Projects alpha, beta and service, and the users of ``SEED`` (module docstring)."""
    projects = {"admin": keystone.admin("GET", "/projects", params={"name": "admin"})
                ["projects"][0]["id"]}
    for name in ("alpha", "beta", "service"):
        projects[name] = keystone.create_project(name)
    keystone.admin("POST", "/roles", json={"role": {"name": "observer"}})
    cloud = Cloud(keystone, projects, users={"admin": "admin"})
    for user, project, role in SEED:
        keystone.create_user(user, projects[project], role)
        cloud.users[user] = project
    return cloud


@contextmanager
def alcor_client(settings: Settings, validator: TokenValidator | None = None
                 ) -> Iterator[TestClient]:
    """Alcor's API in-process on ``settings`` (Keystone authentication when they say so),
    with ``validator`` as its token validator if given."""
    store = open_store(settings)
    app = build_app(settings, build_services(settings, store), validator)
    try:
        with TestClient(app, base_url="http://testserver") as client:
            yield client
    finally:
        store.dispose()

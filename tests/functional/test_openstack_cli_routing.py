"""The ``openstack`` command, unchanged, driving routers and floating IPs on a real ``alcor
server`` process over TCP: router create, add subnet, external gateway, floating IP create and
association, router remove subnet and delete; each outcome read back through the API.

The CLI runs as a subprocess with a clean environment and HOME (no user clouds.yaml); its
start-up costs about a second, so the module builds one topology step by step, each test
taking the previous one's state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.functional.server import AlcorServer

OPENSTACK = str(Path(sys.executable).parent / "openstack")

Cli = Callable[..., subprocess.CompletedProcess[str]]
Api = Callable[[str], Any]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("cli-routing") / "alcor.db"
    with AlcorServer(f"sqlite:///{db}") as server:
        yield server.base_url + "/"


@pytest.fixture(scope="module")
def cli(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    home = tmp_path_factory.mktemp("home")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "LANG": "C.UTF-8"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [OPENSTACK, "--os-auth-type", "none", "--os-endpoint", server_url, *args],
            capture_output=True, text=True, env=env, cwd=home, timeout=120, check=False,
        )

    return run


@pytest.fixture(scope="module")
def api(server_url: str) -> Api:
    """GET a Neutron path on the server; the decoded body (asserting 200)."""

    def get(path: str) -> Any:
        resp = httpx.get(server_url + path.lstrip("/"), timeout=30)
        assert resp.status_code == 200, resp.text
        return resp.json()

    return get


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(_ok(result))


@pytest.fixture(scope="module")
def topology(cli: Cli) -> dict[str, Any]:
    """An external network, a tenant network and a VM port, made with the CLI."""
    public = _json(cli("network", "create", "--external", "public", "-f", "json"))
    _ok(cli("subnet", "create", "--network", "public", "--subnet-range", "203.0.113.0/24",
            "--no-dhcp", "public-sub"))
    private = _json(cli("network", "create", "private", "-f", "json"))
    sub = _json(cli("subnet", "create", "--network", "private", "--subnet-range",
                    "10.0.0.0/24", "private-sub", "-f", "json"))
    vm = _json(cli("port", "create", "--network", "private", "vm-port", "-f", "json"))
    return {"public": public, "private": private, "subnet": sub, "vm": vm}


@pytest.fixture(scope="module")
def router(cli: Cli, topology: dict[str, Any]) -> dict[str, Any]:
    return dict(_json(cli("router", "create", "r1", "-f", "json")))


def test_router_create(api: Api, router: dict[str, Any]) -> None:
    shown = api(f"/v2.0/routers/{router['id']}")["router"]
    assert shown["name"] == "r1"
    assert shown["status"] == "ACTIVE"
    assert shown["external_gateway_info"] is None


def test_router_add_subnet(cli: Cli, api: Api, topology: dict[str, Any],
                           router: dict[str, Any]) -> None:
    _ok(cli("router", "add", "subnet", "r1", "private-sub"))
    [iface] = api(f"/v2.0/ports?device_id={router['id']}&device_owner="
                  "network:router_interface")["ports"]
    assert iface["fixed_ips"] == [{"subnet_id": topology["subnet"]["id"],
                                   "ip_address": "10.0.0.1"}]


def test_router_set_external_gateway(cli: Cli, api: Api, topology: dict[str, Any],
                                     router: dict[str, Any]) -> None:
    _ok(cli("router", "set", "--external-gateway", "public", "r1"))
    info = api(f"/v2.0/routers/{router['id']}")["router"]["external_gateway_info"]
    assert info["network_id"] == topology["public"]["id"]
    assert info["enable_snat"] is True
    [gw] = api(f"/v2.0/ports?device_id={router['id']}&device_owner="
               "network:router_gateway")["ports"]
    assert info["external_fixed_ips"] == gw["fixed_ips"]


def test_floating_ip_create_and_set_port(cli: Cli, api: Api, topology: dict[str, Any],
                                         router: dict[str, Any]) -> None:
    created = _json(cli("floating", "ip", "create", "public", "-f", "json"))
    address = created["floating_ip_address"]
    assert api(f"/v2.0/floatingips/{created['id']}")["floatingip"]["status"] == "DOWN"
    _ok(cli("floating", "ip", "set", "--port", "vm-port", address))
    fip = api(f"/v2.0/floatingips/{created['id']}")["floatingip"]
    assert fip["port_id"] == topology["vm"]["id"]
    assert fip["fixed_ip_address"] == topology["vm"]["fixed_ips"][0]["ip_address"]
    assert fip["router_id"] == router["id"]
    assert fip["status"] == "ACTIVE"


def test_router_remove_subnet_refused_then_done(cli: Cli, api: Api, router: dict[str, Any]
                                                ) -> None:
    refused = cli("router", "remove", "subnet", "r1", "private-sub")
    assert refused.returncode != 0
    assert "required by one or more floating IPs" in refused.stderr
    [fip] = api("/v2.0/floatingips")["floatingips"]
    _ok(cli("floating", "ip", "unset", "--port", fip["floating_ip_address"]))
    assert api(f"/v2.0/floatingips/{fip['id']}")["floatingip"]["port_id"] is None
    _ok(cli("router", "remove", "subnet", "r1", "private-sub"))
    assert api(f"/v2.0/ports?device_id={router['id']}&device_owner="
               "network:router_interface")["ports"] == []


def test_router_delete(cli: Cli, api: Api, router: dict[str, Any]) -> None:
    _ok(cli("router", "delete", "r1"))
    assert api("/v2.0/routers")["routers"] == []
    assert api(f"/v2.0/ports?device_id={router['id']}")["ports"] == []

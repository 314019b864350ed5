"""The ``openstack`` command, unchanged, against a real ``alcor server`` process over TCP:
network, subnet, port, security group and rule commands, read back with ``show``/``list``.

The CLI runs as a subprocess with a clean environment and HOME (no user clouds.yaml); its
start-up costs about a second, so the tests share one small topology and keep the number of
invocations modest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.functional.server import AlcorServer

OPENSTACK = str(Path(sys.executable).parent / "openstack")

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real ``alcor server`` process for the module, on a fresh SQLite file."""
    db = tmp_path_factory.mktemp("cli") / "alcor.db"
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


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def network(cli: Cli) -> dict[str, Any]:
    return dict(_json(cli("network", "create", "cli-net", "--description", "from the cli",
                          "--tag", "blue", "-f", "json")))


@pytest.fixture(scope="module")
def subnet(cli: Cli, network: dict[str, Any]) -> dict[str, Any]:
    return dict(_json(cli("subnet", "create", "--network", "cli-net", "--subnet-range",
                          "10.0.0.0/24", "--dns-nameserver", "8.8.8.8", "cli-sub",
                          "-f", "json")))


@pytest.fixture(scope="module")
def security_group(cli: Cli) -> dict[str, Any]:
    return dict(_json(cli("security", "group", "create", "cli-sg", "-f", "json")))


@pytest.fixture(scope="module")
def port(cli: Cli, subnet: dict[str, Any], security_group: dict[str, Any]) -> dict[str, Any]:
    return dict(_json(cli("port", "create", "--network", "cli-net", "--fixed-ip",
                          "subnet=cli-sub,ip-address=10.0.0.10", "--security-group", "cli-sg",
                          "cli-port", "-f", "json")))


def test_network_create_and_show(cli: Cli, network: dict[str, Any]) -> None:
    assert network["name"] == "cli-net"
    shown = _json(cli("network", "show", "cli-net", "-f", "json"))
    assert shown["id"] == network["id"]
    assert shown["description"] == "from the cli"
    assert shown["status"] == "ACTIVE"
    assert shown["admin_state_up"] is True
    assert shown["mtu"] == 1450
    assert shown["provider:network_type"] == "vxlan"
    assert isinstance(shown["provider:segmentation_id"], int)
    assert shown["router:external"] is False
    assert shown["shared"] is False
    assert shown["tags"] == ["blue"]


def test_subnet_create_and_show(cli: Cli, network: dict[str, Any],
                                subnet: dict[str, Any]) -> None:
    shown = _json(cli("subnet", "show", "cli-sub", "-f", "json"))
    assert shown["id"] == subnet["id"]
    assert shown["network_id"] == network["id"]
    assert (shown["cidr"], shown["ip_version"]) == ("10.0.0.0/24", 4)
    assert shown["gateway_ip"] == "10.0.0.1"
    assert shown["allocation_pools"] == [{"start": "10.0.0.2", "end": "10.0.0.254"}]
    assert shown["dns_nameservers"] == ["8.8.8.8"]
    assert shown["enable_dhcp"] is True


def test_security_group_and_rule_create(cli: Cli, security_group: dict[str, Any]) -> None:
    assert security_group["name"] == "cli-sg"
    rule = _json(cli("security", "group", "rule", "create", "--protocol", "tcp",
                     "--dst-port", "22", "cli-sg", "-f", "json"))
    assert rule["security_group_id"] == security_group["id"]
    rules = _json(cli("security", "group", "rule", "list", "cli-sg", "-f", "json"))
    by_id = {r["ID"]: r for r in rules}
    assert by_id[rule["id"]]["IP Protocol"] == "tcp"
    assert by_id[rule["id"]]["Port Range"] == "22:22"
    assert by_id[rule["id"]]["Direction"] == "ingress"
    assert by_id[rule["id"]]["Ethertype"] == "IPv4"
    assert sorted((r["Direction"], r["Ethertype"]) for r in rules) == [
        ("egress", "IPv4"), ("egress", "IPv6"), ("ingress", "IPv4")]


def test_port_create_with_fixed_ip_and_list(cli: Cli, network: dict[str, Any],
                                            subnet: dict[str, Any], port: dict[str, Any],
                                            security_group: dict[str, Any]) -> None:
    assert port["name"] == "cli-port"
    assert port["fixed_ips"] == [{"subnet_id": subnet["id"], "ip_address": "10.0.0.10"}]
    assert port["security_group_ids"] == [security_group["id"]]
    listed = _json(cli("port", "list", "--network", "cli-net", "--long", "-f", "json"))
    assert [p["ID"] for p in listed] == [port["id"]]
    assert listed[0]["Fixed IP Addresses"] == [{"subnet_id": subnet["id"],
                                               "ip_address": "10.0.0.10"}]
    assert listed[0]["MAC Address"] == port["mac_address"]
    assert listed[0]["Status"] == "DOWN"


def test_network_delete_with_port_fails_then_succeeds(cli: Cli, network: dict[str, Any],
                                                      port: dict[str, Any]) -> None:
    refused = cli("network", "delete", "cli-net")
    assert refused.returncode != 0
    assert (f"Unable to complete operation on network {network['id']}. There are one or more "
            "ports still in use on the network.") in refused.stderr
    assert cli("port", "delete", "cli-port").returncode == 0
    deleted = cli("network", "delete", "cli-net")
    assert deleted.returncode == 0, deleted.stderr
    remaining = _json(cli("network", "list", "-f", "json"))
    assert network["id"] not in {n["ID"] for n in remaining}

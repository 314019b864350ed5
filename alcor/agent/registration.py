"""Registering a host with the nodes API (upstream's node manager shape):
``POST /nodes`` with ``{"host_info": {...}}``; if the node already exists (409) the agent
updates it with ``PUT /nodes/{node_id}``, since its address or port may have changed.
``POST /nodes/bulk`` with ``{"host_infos": [...]}`` registers many (the simulator).

Blocking (stdlib HTTP, no extra dependency); callers run it in a thread.
"""

from __future__ import annotations

import ipaddress
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


class RegistrationFailed(RuntimeError):
    """The API refused the registration; ``permanent`` when retrying cannot help (4xx)."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class HostInfo:
    node_id: str
    node_name: str
    local_ip: str
    mac_address: str
    veth: str
    server_port: int
    host_dvr_mac: str

    def body(self) -> dict[str, Any]:
        return asdict(self)


def derived_mac(prefix: str, local_ip: str) -> str:
    """A MAC made of a three-octet ``prefix`` and the IP's last three octets (a stable default
    for hosts that do not say theirs)."""
    tail = ipaddress.ip_address(local_ip).packed[-3:]
    return prefix + "".join(f":{b:02x}" for b in tail)


def default_mac(local_ip: str) -> str:
    """Locally administered, unicast: 02:00:00 + the IP's last three octets."""
    return derived_mac("02:00:00", local_ip)


def default_dvr_mac(local_ip: str) -> str:
    """Upstream's DVR prefix fe:16:11 (its agent recognises it) + the IP's last three octets."""
    return derived_mac("fe:16:11", local_ip)


def register(api_url: str, host: HostInfo, *, timeout: float = 10.0,
             token: str | None = None) -> str:
    """Create the node, or update it if it exists; returns "created" or "updated".
    ``token``: a Keystone token of an admin, sent as X-Auth-Token (APIs behind Keystone).

    Raises RegistrationFailed (4xx other than 409 are permanent) or OSError (unreachable)."""
    base = api_url.rstrip("/")
    status, text = _send("POST", f"{base}/nodes", {"host_info": host.body()}, timeout, token)
    if status in (200, 201):
        return "created"
    if status != 409:
        raise _failure("POST /nodes", status, text)
    path = f"/nodes/{urllib.parse.quote(host.node_id, safe='')}"
    status, text = _send("PUT", base + path, {"host_info": host.body()}, timeout, token)
    if 200 <= status < 300:
        return "updated"
    raise _failure(f"PUT {path}", status, text)


def register_many(api_url: str, hosts: Sequence[HostInfo], *, timeout: float = 60.0) -> None:
    """Register hosts with one ``POST /nodes/bulk``; if some already exist (409), one by one."""
    body = {"host_infos": [h.body() for h in hosts]}
    status, text = _send("POST", f"{api_url.rstrip('/')}/nodes/bulk", body, timeout)
    if status in (200, 201):
        return
    if status != 409:
        raise _failure("POST /nodes/bulk", status, text)
    for host in hosts:
        register(api_url, host, timeout=timeout)


def _failure(what: str, status: int, text: str) -> RegistrationFailed:
    return RegistrationFailed(f"{what} answered {status}: {text[:500]}",
                              permanent=400 <= status < 500)


def _send(method: str, url: str, body: Any, timeout: float,
          token: str | None = None) -> tuple[int, str]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["X-Auth-Token"] = token
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")

"""The host registry on upstream Alcor's node-manager paths.

``POST /nodes`` ``{"host_info": {...}}`` registers one node, ``POST /nodes/bulk``
``{"host_infos": [...]}`` many at once (all or none), ``POST /nodes/upload`` the same from a
JSON file sent as the multipart form field ``file``; ``GET /nodes`` lists them (filters by
any field, values of one field OR'ed), ``GET/PUT/DELETE /nodes/{node_id}`` show, update and
deregister one.  Answers use the same keys: ``host_info`` for one node, ``host_infos`` for
several; a delete answers 204.

Each attribute is converted and validated here (NeutronError 400 on bad input); uniqueness and
what a delete does to bound ports belong to ``alcor.services.nodes``.  Upstream's NodeInfo
keys for its message-queue and NCM paths (``ncm_id``, ``unicast_topic``, ``multicast_topic``,
``group_topic``) are accepted so its tooling works, and ignored: Alcor has neither.

The registry is admin-only: under Keystone authentication anyone else gets 403.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import orjson
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from alcor.api import auth
from alcor.api import validators as v
from alcor.api.attributes import REQUIRED, Attribute, HTTPBadRequest, build, filter_value
from alcor.api.controller import Runner, json_response, read_json
from alcor.services.nodes import NodeService

DEFAULT_SERVER_PORT = 50001
"""The agent's gRPC port when a node names none (upstream's ACA default)."""
UPSTREAM_ONLY = ("ncm_id", "unicast_topic", "multicast_topic", "group_topic")
SINGLE, PLURAL = "host_info", "host_infos"


def _node_key(value: Any) -> str | None:
    """An id or name: a non-empty string that can stand in a URL path segment."""
    if not isinstance(value, str) or not value.strip():
        return f"'{value}' is not a valid node identifier"
    if len(value) > 255:
        return f"'{value}' exceeds maximum length of 255"
    if "/" in value:
        return f"'{value}' contains a slash, which a node identifier cannot hold"
    return None


def _to_ip(value: Any) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except (TypeError, ValueError):
        raise ValueError(f"'{value}' is not a valid IP address") from None


def _to_mac_or_empty(value: Any) -> str:
    return "" if value == "" else v.to_mac(value)


def _unicast_mac_or_empty(value: Any) -> str | None:
    return None if value == "" else v.mac_address(value)


ATTRIBUTES = build(
    Attribute("node_id", default=REQUIRED, validate=_node_key, is_filter=True),
    Attribute("node_name", allow_put=True, default=REQUIRED, validate=_node_key,
              is_filter=True),
    Attribute("local_ip", allow_put=True, default=REQUIRED, convert=_to_ip, is_filter=True,
              description="Tunnel endpoint of the host and the address its agent listens on"),
    Attribute("mac_address", allow_put=True, default="", convert=_to_mac_or_empty,
              validate=_unicast_mac_or_empty, is_filter=True),
    Attribute("veth", allow_put=True, default="", validate=v.string(64), is_filter=True),
    Attribute("server_port", kind="integer", allow_put=True, default=DEFAULT_SERVER_PORT,
              convert=v.to_int, validate=v.int_range(1, 65535), is_filter=True),
    Attribute("host_dvr_mac", allow_put=True, default="", convert=_to_mac_or_empty,
              validate=_unicast_mac_or_empty, is_filter=True),
)


def _known(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise HTTPBadRequest(msg=f"Body of {SINGLE} must be an object")
    unknown = [k for k in body if k not in ATTRIBUTES and k not in UPSTREAM_ONLY]
    if unknown:
        raise HTTPBadRequest(msg=f"Unrecognized attribute(s) '{', '.join(unknown)}'")
    return {k: val for k, val in body.items() if k in ATTRIBUTES}


def check_create(body: Any) -> dict[str, Any]:
    """A registration body converted, validated and completed with defaults."""
    given = _known(body)
    node: dict[str, Any] = {}
    for name, attr in ATTRIBUTES.items():
        if name in given:
            node[name] = attr.check(given[name])
        elif attr.default is REQUIRED:
            raise HTTPBadRequest(
                msg=f"Failed to parse request. Required attribute '{name}' not specified")
        else:
            node[name] = attr.check(attr.default_value())
    return node


def check_update(body: Any, node_id: str) -> dict[str, Any]:
    """An update body: updatable fields only; ``node_id``, if given, must be the path's."""
    given = _known(body)
    if "node_id" in given and given.pop("node_id") != node_id:
        raise HTTPBadRequest(msg="node_id in the body does not match the node in the path")
    changes: dict[str, Any] = {}
    for name, value in given.items():
        attr = ATTRIBUTES[name]
        if not attr.allow_put:
            raise HTTPBadRequest(msg=f"Cannot update read-only attribute {name}")
        changes[name] = attr.check(value)
    return changes


def _single(body: Any) -> Any:
    if not isinstance(body, dict) or set(body) != {SINGLE}:
        raise HTTPBadRequest(msg=f"Unable to find '{SINGLE}' in request body")
    return body[SINGLE]


def _many(body: Any) -> list[Any]:
    if not isinstance(body, dict) or set(body) != {PLURAL}:
        raise HTTPBadRequest(msg=f"Unable to find '{PLURAL}' in request body")
    items = body[PLURAL]
    if not isinstance(items, list) or not items:
        raise HTTPBadRequest(msg=f"Bulk body of {PLURAL} must be a non-empty list")
    return items


async def _uploaded(request: Request) -> Any:
    """The JSON document sent as the multipart form field ``file``."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPBadRequest(msg="Expected a multipart/form-data upload with a 'file' field")
    async with request.form() as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPBadRequest(msg="The upload has no file in its 'file' field")
        raw = await upload.read()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise HTTPBadRequest(msg="The uploaded file is not a JSON document") from None


def _filters(request: Request) -> dict[str, list[Any]]:
    filters: dict[str, list[Any]] = {}
    for key, raw in request.query_params.multi_items():
        attr = ATTRIBUTES.get(key)
        if attr is None:
            raise HTTPBadRequest(msg=f"[{key!r}] is invalid attribute for filtering")
        filters.setdefault(key, []).append(filter_value(attr, raw))
    return filters


def _admin_only(request: Request, action: str) -> None:
    """403 PolicyNotAuthorized unless the caller is an admin (noauth callers are)."""
    auth.require_admin(auth.request_context(request, default_project=""), action)


class NodeHandlers:
    """The HTTP handlers of the host registry (admin-only)."""

    def __init__(self, service: NodeService, runner: Runner) -> None:
        self.service = service
        self.run = runner

    async def _register(self, items: list[Any]) -> list[dict[str, Any]]:
        nodes = [check_create(item) for item in items]
        rows: list[dict[str, Any]] = await self.run.write(self.service.create_txn, nodes)
        return rows

    async def create(self, request: Request) -> Response:
        _admin_only(request, "create_node")
        rows = await self._register([_single(await read_json(request))])
        return json_response(201, {SINGLE: rows[0]})

    async def create_bulk(self, request: Request) -> Response:
        _admin_only(request, "create_node")
        rows = await self._register(_many(await read_json(request)))
        return json_response(201, {PLURAL: rows})

    async def upload(self, request: Request) -> Response:
        _admin_only(request, "create_node")
        rows = await self._register(_many(await _uploaded(request)))
        return json_response(201, {PLURAL: rows})

    async def list(self, request: Request) -> Response:
        _admin_only(request, "get_node")
        rows = await self._read(self.service.list_txn, _filters(request))
        return json_response(200, {PLURAL: rows})

    async def show(self, request: Request) -> Response:
        _admin_only(request, "get_node")
        row = await self._read(self.service.get_txn, request.path_params["node_id"])
        return json_response(200, {SINGLE: row})

    async def update(self, request: Request) -> Response:
        _admin_only(request, "update_node")
        node_id = request.path_params["node_id"]
        changes = check_update(_single(await read_json(request)), node_id)
        row = await self.run.write(self.service.update_txn, node_id, changes)
        return json_response(200, {SINGLE: row})

    async def delete(self, request: Request) -> Response:
        _admin_only(request, "delete_node")
        await self.run.write(self.service.delete_txn, request.path_params["node_id"])
        return json_response(204, None)

    async def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.run(self.service.store.read, fn, *args)


"""Network IP availability over HTTP (``network-ip-availability``, admin-only):

    GET /v2.0/network-ip-availabilities                 {"network_ip_availabilities": [...]}
    GET /v2.0/network-ip-availabilities/{network_id}    {"network_ip_availability": {...}}

The list filters by ``network_id``, ``network_name``, ``project_id`` (or ``tenant_id``) and
``ip_version``; ``fields`` picks attributes; other keys are refused (filter-validation), while
sorting and paging keys are ignored, as Neutron does for this resource.  Neutron also answers
on the underscore spelling of the path.  Bodies are encoded with the standard library: an IPv6
``total_ips`` exceeds the 64-bit integers orjson handles.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from alcor import errors
from alcor.api import validators as v
from alcor.api.attributes import HTTPBadRequest
from alcor.api.controller import Runner, context_for
from alcor.config import ApiSettings
from alcor.services.ip_availability import AvailabilityQuery, IpAvailabilityService

SINGULAR, PLURAL = "network_ip_availability", "network_ip_availabilities"
PATHS = ("network-ip-availabilities", "network_ip_availabilities")
FILTERS = ("network_id", "network_name", "project_id", "tenant_id", "ip_version")
IGNORED = ("sort_key", "sort_dir", "limit", "marker", "page_reverse")


def _response(body: Any) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")


def _fields(values: Sequence[str], item: dict[str, Any]) -> dict[str, Any]:
    wanted = [f for v in values for f in v.split(",") if f]
    return {k: item[k] for k in wanted if k in item} if wanted else item


def _ip_version(values: list[str]) -> int | None:
    if not values:
        return None
    try:
        return v.to_int(values[0])
    except ValueError as exc:
        raise errors.InvalidInput(attribute="ip_version", reason=str(exc)) from None


def parse_query(params: Sequence[tuple[str, str]]) -> AvailabilityQuery:
    """The filters of a list request; HTTPBadRequest for a key that is none of them."""
    grouped: dict[str, list[str]] = {}
    for key, value in params:
        if key in ("fields", *IGNORED):
            continue
        if key not in FILTERS:
            raise HTTPBadRequest(msg=f"[{key!r}] is invalid attribute for filtering")
        grouped.setdefault("project_id" if key == "tenant_id" else key, []).append(value)
    return AvailabilityQuery(
        network_ids=grouped.get("network_id", []),
        network_names=grouped.get("network_name", []),
        project_ids=grouped.get("project_id", []),
        ip_version=_ip_version(grouped.get("ip_version", [])),
    )


class IpAvailabilityHandlers:
    def __init__(self, service: IpAvailabilityService, runner: Runner,
                 settings: ApiSettings) -> None:
        self.service = service
        self.run = runner
        self.settings = settings

    def routes(self, prefix: str) -> list[Route]:
        return [route for path in PATHS for route in (
            Route(f"{prefix}/{path}", self.list, methods=["GET"]),
            Route(f"{prefix}/{path}/{{network_id}}", self.show, methods=["GET"]),
        )]

    async def list(self, request: Request) -> Response:
        ctx = context_for(request, self.settings)
        query = parse_query(request.query_params.multi_items())
        items = await self.run(self.service.list, ctx, query)
        fields = request.query_params.getlist("fields")
        return _response({PLURAL: [_fields(fields, item) for item in items]})

    async def show(self, request: Request) -> Response:
        ctx = context_for(request, self.settings)
        item = await self.run(self.service.get, ctx, request.path_params["network_id"])
        return _response({SINGULAR: _fields(request.query_params.getlist("fields"), item)})

"""Quotas over HTTP: Neutron's ``/v2.0/quotas`` and upstream Alcor's ``/project/{id}/quotas``.

    GET    .../quotas                  projects with limits of their own (admin)
    GET    .../quotas/{id}             the project's limits: {"quota": {"network": 100, ...}}
    PUT    .../quotas/{id}             set some (admin): {"quota": {"port": 50}}; all after
    DELETE .../quotas/{id}             back to the defaults (admin); 204
    GET    .../quotas/{id}/default     the defaults
    GET    .../quotas/{id}/details     {"quota": {"port": {"limit", "used", "reserved"}}}
    GET    .../quotas/project          the caller's project: {"project": {"project_id"}}
    GET    .../quotas/tenant           the same under its old name

Every path also answers with a ``.json`` suffix (``.../details.json``, as clients ask).  A PUT
body may carry Neutron's ``force`` (set a limit below the current usage) and ``check_limit``
(the default anyway).  Body checks are here; who may do what, and the limits, belong to
``alcor.services.quotas``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from alcor import errors
from alcor.api import validators as v
from alcor.api.attributes import HTTPBadRequest
from alcor.api.controller import Runner, context_for, json_response, read_json
from alcor.config import ApiSettings
from alcor.context import RequestContext
from alcor.services.quotas import RESOURCES, QuotaService, require_admin

KEY = "quota"
FLAGS = ("force", "check_limit")
SUFFIXES = (".json", "")
"""``.json`` first: ``/quotas/{id}.json`` must not be read as a project named ``x.json``."""


def _flag(value: Any) -> bool:
    try:
        return v.to_boolean(value)
    except ValueError as exc:
        raise errors.InvalidInput(error_message=str(exc)) from None


def _limit(value: Any) -> int:
    try:
        return v.to_int(value)
    except ValueError as exc:
        raise errors.InvalidInput(error_message=str(exc)) from None


def check_update(body: Any) -> tuple[dict[str, int], bool]:
    """The limits a PUT body sets, and whether it forces them below the current usage."""
    if not isinstance(body, dict) or not isinstance(body.get(KEY), dict):
        raise HTTPBadRequest(msg=f"Unable to find '{KEY}' in request body")
    values = dict(body[KEY])
    flags = {name: _flag(values.pop(name)) for name in FLAGS if name in values}
    if unknown := sorted(k for k in values if k not in RESOURCES):
        raise HTTPBadRequest(msg=f"Unrecognized attribute(s) '{', '.join(unknown)}'")
    return {name: _limit(value) for name, value in values.items()}, flags.get("force", False)


class QuotaHandlers:
    """The quota handlers on one path prefix (``/v2.0`` or ``/project/{project_id}``)."""

    def __init__(self, service: QuotaService, runner: Runner, settings: ApiSettings) -> None:
        self.service = service
        self.run = runner
        self.settings = settings

    def routes(self, prefix: str) -> list[Route]:
        base = f"{prefix}/quotas"
        handlers: list[tuple[str, Callable[[Request], Awaitable[Response]], str]] = [
            ("", self.list, "GET"),
            ("/project", self.project, "GET"),
            ("/tenant", self.tenant, "GET"),
            ("/{id}/default", self.defaults, "GET"),
            ("/{id}/details", self.details, "GET"),
            ("/{id}", self.show, "GET"),
            ("/{id}", self.update, "PUT"),
            ("/{id}", self.delete, "DELETE"),
        ]
        return [Route(base + path + suffix, handler, methods=[method])
                for suffix in SUFFIXES for path, handler, method in handlers]

    def _context(self, request: Request) -> RequestContext:
        return context_for(request, self.settings)

    async def list(self, request: Request) -> Response:
        found = await self.run(self.service.list, self._context(request))
        return json_response(200, {"quotas": [{**q, "tenant_id": q["project_id"]}
                                              for q in found]})

    async def show(self, request: Request) -> Response:
        limits = await self.run(self.service.get, self._context(request),
                                request.path_params["id"])
        return json_response(200, {KEY: limits})

    async def defaults(self, request: Request) -> Response:
        limits = await self.run(self.service.defaults, self._context(request),
                                request.path_params["id"])
        return json_response(200, {KEY: limits})

    async def details(self, request: Request) -> Response:
        found = await self.run(self.service.details, self._context(request),
                               request.path_params["id"])
        return json_response(200, {KEY: found})

    async def update(self, request: Request) -> Response:
        ctx = self._context(request)
        require_admin(ctx, "update_quota")  # before the body, as Neutron
        limits, force = check_update(await read_json(request))
        result = await self.run(self.service.update, ctx, request.path_params["id"], limits,
                                force)
        return json_response(200, {KEY: result})

    async def delete(self, request: Request) -> Response:
        await self.run(self.service.delete, self._context(request), request.path_params["id"])
        return json_response(204, None)

    async def project(self, request: Request) -> Response:
        return json_response(200, {"project": {"project_id": self._context(request).project_id}})

    async def tenant(self, request: Request) -> Response:
        return json_response(200, {"tenant": {"tenant_id": self._context(request).project_id}})

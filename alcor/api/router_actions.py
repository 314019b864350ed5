"""Neutron's router member actions, on ``/v2.0/routers/{id}/...`` and on the native
``/project/{project_id}/routers/{id}/...``: ``add_router_interface`` and
``remove_router_interface`` (body ``{"subnet_id"}`` or ``{"port_id"}``, answered with the
interface), ``add_extraroutes`` and ``remove_extraroutes`` (body
``{"router": {"routes": [...]}}``, answered with the router).

It reads and checks the request bodies; ``RouterService`` does the rest in one transaction.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from alcor import errors
from alcor.api import validators
from alcor.api.attributes import HTTPBadRequest
from alcor.api.controller import Runner, context_for, json_response, read_json
from alcor.api.definitions.router import RESOURCE
from alcor.config import ApiSettings
from alcor.services.routers import RouterService

PREFIXES = ("/v2.0/routers", "/project/{project_id}/routers")


def _bad_request(msg: str) -> errors.BadRequest:
    return errors.BadRequest(resource="router", msg=msg)


def interface_request(body: Any, *, removal: bool) -> tuple[str | None, str | None]:
    """(port_id, subnet_id) of an interface action's body, checked as Neutron's
    ``_validate_interface_info`` does."""
    info = body if isinstance(body, dict) else {}
    if "port_id" not in info and "subnet_id" not in info:
        raise _bad_request("Either subnet_id or port_id must be specified")
    for key in ("port_id", "subnet_id"):
        if key in info and (msg := validators.uuid_value(info[key])) is not None:
            raise _bad_request(msg)
    if not removal and "port_id" in info and "subnet_id" in info:
        raise _bad_request("Cannot specify both subnet-id and port-id")
    return info.get("port_id"), info.get("subnet_id")


def routes_request(body: Any) -> list[dict[str, str]]:
    """The routes of an extra-route action's body, checked as a router's ``routes``."""
    if not isinstance(body, dict) or not isinstance(body.get("router"), dict):
        raise HTTPBadRequest(msg="Unable to find 'router' in request body")
    inner = body["router"]
    if set(inner) != {"routes"}:
        raise HTTPBadRequest(msg="Only 'routes' may be given to add or remove extra routes")
    routes: list[dict[str, str]] = RESOURCE.attributes["routes"].check(inner["routes"])
    return routes


class RouterActions:
    """The four member actions, for one route table."""

    def __init__(self, service: RouterService, runner: Runner, settings: ApiSettings) -> None:
        self.service = service
        self.run = runner
        self.settings = settings

    async def add_interface(self, request: Request) -> Response:
        port_id, subnet_id = interface_request(await read_json(request), removal=False)
        info = await self.run.write(self.service.add_interface_txn,
                                    context_for(request, self.settings),
                                    request.path_params["id"], port_id, subnet_id)
        return json_response(200, info)

    async def remove_interface(self, request: Request) -> Response:
        port_id, subnet_id = interface_request(await read_json(request), removal=True)
        info = await self.run.write(self.service.remove_interface_txn,
                                    context_for(request, self.settings),
                                    request.path_params["id"], port_id, subnet_id)
        return json_response(200, info)

    async def add_routes(self, request: Request) -> Response:
        routes = routes_request(await read_json(request))
        ctx = context_for(request, self.settings)
        row = await self.run.write(self.service.add_routes_txn, ctx, request.path_params["id"],
                                   routes)
        return json_response(200, {"router": RESOURCE.render(row, admin=ctx.is_admin)})

    async def remove_routes(self, request: Request) -> Response:
        routes = routes_request(await read_json(request))
        ctx = context_for(request, self.settings)
        row = await self.run.write(self.service.remove_routes_txn, ctx, request.path_params["id"],
                                   routes)
        return json_response(200, {"router": RESOURCE.render(row, admin=ctx.is_admin)})

    def routes(self) -> list[Route]:
        handlers = {"add_router_interface": self.add_interface,
                    "remove_router_interface": self.remove_interface,
                    "add_extraroutes": self.add_routes,
                    "remove_extraroutes": self.remove_routes}
        return [Route(f"{prefix}/{{id}}/{action}", handler, methods=["PUT"])
                for prefix in PREFIXES for action, handler in handlers.items()]

"""The HTTP edge: the whole route table in one place, on Neutron's ``/v2.0`` paths and on
Alcor's native ``/project/{project_id}`` paths, over one implementation per resource.

``build_app`` wires controllers to services; every answer carries
``X-Openstack-Request-Id`` and every error is a NeutronError body (``faults.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alcor import errors
from alcor.api import auth, extensions, faults
from alcor.api.controller import Collection, Provisioning, Runner, json_response
from alcor.api.definitions import NATIVE_ALIASES, RESOURCES
from alcor.api.ip_availability import IpAvailabilityHandlers
from alcor.api.nodes import NodeHandlers
from alcor.api.openapi import openapi_document
from alcor.api.quotas import QuotaHandlers
from alcor.api.router_actions import RouterActions
from alcor.config import Settings
from alcor.context import new_request_id
from alcor.db.store import Store
from alcor.identity import TokenValidator
from alcor.services.ip_availability import IpAvailabilityService
from alcor.services.nodes import NodeService
from alcor.services.quotas import QuotaService
from alcor.services.resource import ResourceService
from alcor.services.routers import RouterService

Handler = Callable[[Request], Awaitable[Response]]

DISCOVERY_RESOURCES = ("networks", "subnets", "ports")
NATIVE_BULK = ("networks", "subnets", "ports", "security-groups", "security-group-rules")


@dataclass(frozen=True, slots=True)
class Services:
    """The use-case objects the API calls, by Neutron collection name."""

    by_collection: dict[str, ResourceService]
    store: Store
    inline: bool
    """Run service calls on the event loop (SQLite) instead of worker threads."""
    provisioning: Provisioning | None = None
    """The data plane: woken after writes, waited on by ``X-Alcor-Wait``, ``/metrics``."""


class RequestIdMiddleware:
    """Tags every request with an id, echoes it in ``X-Openstack-Request-Id``, and turns any
    exception that escaped a handler into a NeutronError body."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-openstack-request-id", request_id.encode())
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                await self._error(send_with_id, 413, "RequestEntityTooLarge",
                                  "Request entity too large.")
                return
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if started:
                raise
            status, body = faults.render(exc)
            await self._send(send_with_id, status, body)

    async def _error(self, send: Send, status: int, type_name: str, message: str) -> None:
        await self._send(send, status, faults.error_body(type_name, message))

    @staticmethod
    async def _send(send: Send, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


async def _alcor_error(request: Request, exc: Exception) -> Response:
    status, body = faults.render(exc)
    return Response(body, status_code=status, media_type="application/json")


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    """Any other exception: logged, and a NeutronError 500 (clients parse it, not plain text)."""
    return await _alcor_error(request, exc)


_HTTP_TYPES = {404: "HTTPNotFound", 405: "HTTPMethodNotAllowed"}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = "The resource could not be found."
    elif exc.status_code == 405:
        message = "The method is not allowed for the requested URL."
    else:
        message = str(exc.detail)
    body = faults.error_body(_HTTP_TYPES.get(exc.status_code, "HTTPError"), message)
    return Response(body, status_code=exc.status_code, media_type="application/json")


def _versions(request: Request) -> Response:
    href = f"{request.base_url}v2.0/"
    return json_response(200, {"versions": [
        {"id": "v2.0", "status": "CURRENT", "links": [{"rel": "self", "href": href}]}
    ]})


async def root(request: Request) -> Response:
    return _versions(request)


async def v2_index(request: Request) -> Response:
    base = f"{request.base_url}v2.0"
    return json_response(200, {"resources": [
        {"name": RESOURCES[c].name, "collection": c,
         "links": [{"rel": "self", "href": f"{base}/{c}"}]}
        for c in DISCOVERY_RESOURCES
    ]})


async def list_extensions(request: Request) -> Response:
    return json_response(200, {"extensions": extensions.extensions()})


async def show_extension(request: Request) -> Response:
    alias = request.path_params["alias"]
    ext = extensions.find(alias)
    if ext is None:
        raise errors.ExtensionNotFound(alias=alias)
    return json_response(200, {"extension": ext})


def _resource_routes(prefix: str, path: str, c: Collection, *, bulk_path: bool) -> list[Route]:
    base = f"{prefix}/{path}"
    routes = [
        Route(base, c.list, methods=["GET"]),
        Route(base, c.create, methods=["POST"]),
    ]
    if bulk_path:
        routes.append(Route(f"{base}/bulk", c.create_bulk, methods=["POST"]))
    routes += [
        Route(base + "/{id}", c.show, methods=["GET"]),
        Route(base + "/{id}", c.update, methods=["PUT"]),
        Route(base + "/{id}", c.delete, methods=["DELETE"]),
    ]
    if c.resource.tags:
        routes += [
            Route(base + "/{id}/tags", c.get_tags, methods=["GET"]),
            Route(base + "/{id}/tags", c.replace_tags, methods=["PUT"]),
            Route(base + "/{id}/tags", c.delete_tags, methods=["DELETE"]),
            Route(base + "/{id}/tags/{tag}", c.check_tag, methods=["GET"]),
            Route(base + "/{id}/tags/{tag}", c.add_tag, methods=["PUT"]),
            Route(base + "/{id}/tags/{tag}", c.remove_tag, methods=["DELETE"]),
        ]
    return routes


def _group_key(path: str) -> tuple[str, str] | None:
    """The (surface, collection) a path belongs to: ``/v2.0/ports/x`` -> ("v2.0", "ports")."""
    parts = path.split("/", 5)
    if len(parts) > 2 and parts[1] == "v2.0":
        return ("v2.0", parts[2])
    if len(parts) > 3 and parts[1] == "project":
        return ("project", parts[3])
    return None


class DispatchRouter(Router):
    """Sends a request straight to its collection's routes (a dict lookup), so matching
    costs a dozen regexes instead of every route of every resource."""

    def __init__(self, groups: dict[tuple[str, str], list[BaseRoute]],
                 others: list[BaseRoute]) -> None:
        super().__init__(routes=others)
        self.groups = {key: Router(routes=r, redirect_slashes=False)
                       for key, r in groups.items()}

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            sub = self.groups.get(_group_key(scope["path"]) or ("", ""))
            if sub is not None:
                scope.setdefault("router", self)
                await sub.app(scope, receive, send)
                return
        await super().app(scope, receive, send)


def build_routes(settings: Settings, services: Services) -> list[BaseRoute]:
    provisioning = services.provisioning
    runner = Runner(services.store, inline=services.inline,
                    on_commit=provisioning.changed if provisioning is not None else None)
    doc = openapi_document(RESOURCES)

    async def openapi(request: Request) -> Response:
        return json_response(200, doc)

    async def metrics(request: Request) -> Response:
        """Prometheus text: the data-plane controller's counters and latency histogram."""
        text = provisioning.metrics_text() if provisioning is not None else ""
        return Response(text, media_type="text/plain; version=0.0.4")

    routes: list[BaseRoute] = [
        Route("/", root, methods=["GET"]),
        Route("/v2.0", v2_index, methods=["GET"]),
        Route("/v2.0/", v2_index, methods=["GET"]),
        Route("/v2.0/extensions", list_extensions, methods=["GET"]),
        Route("/v2.0/extensions/{alias}", show_extension, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    for collection, resource in RESOURCES.items():
        service = services.by_collection[collection]
        neutron = Collection(resource, service, runner, settings.api,
                             provisioning=provisioning)
        native = Collection(resource, service, runner, settings.api, native=True,
                            provisioning=provisioning)
        # Neutron answers on either spelling of a collection: network_segment_ranges and
        # network-segment-ranges, security-groups and security_groups.
        for path in dict.fromkeys((collection, collection.replace("_", "-"),
                                   collection.replace("-", "_"))):
            routes += _resource_routes("/v2.0", path, neutron, bulk_path=False)
        routes += _resource_routes("/project/{project_id}", native.path, native,
                                   bulk_path=collection in NATIVE_BULK)
        for alias in NATIVE_ALIASES.get(collection, ()):
            aliased = Collection(alias, service, runner, settings.api, native=True)
            routes += _resource_routes("/project/{project_id}", aliased.path, aliased,
                                       bulk_path=False)
    router_service = services.by_collection["routers"]
    assert isinstance(router_service, RouterService)
    routes += RouterActions(router_service, runner, settings.api).routes()
    nodes = NodeHandlers(NodeService(services.store), runner)
    routes += [
        Route("/nodes", nodes.list, methods=["GET"]),
        Route("/nodes", nodes.create, methods=["POST"]),
        Route("/nodes/bulk", nodes.create_bulk, methods=["POST"]),
        Route("/nodes/upload", nodes.upload, methods=["POST"]),
        Route("/nodes/{node_id}", nodes.show, methods=["GET"]),
        Route("/nodes/{node_id}", nodes.update, methods=["PUT"]),
        Route("/nodes/{node_id}", nodes.delete, methods=["DELETE"]),
    ]
    quotas = QuotaHandlers(QuotaService(services.store, settings.quotas), runner, settings.api)
    routes += quotas.routes("/v2.0") + quotas.routes("/project/{project_id}")
    availability = IpAvailabilityHandlers(IpAvailabilityService(services.store), runner,
                                          settings.api)
    routes += availability.routes("/v2.0")
    return routes


def build_app(
    settings: Settings, services: Services, validator: TokenValidator | None = None
) -> ASGIApp:
    """The whole API behind the configured authentication (``validator``: Keystone tokens'
    validator, by default built from ``settings.auth``)."""
    groups: dict[tuple[str, str], list[BaseRoute]] = {}
    others: list[BaseRoute] = []
    for route in build_routes(settings, services):
        key = _group_key(route.path) if isinstance(route, Route) else None
        if key is not None and key != ("v2.0", "extensions"):
            groups.setdefault(key, []).append(route)
        else:
            others.append(route)
    app = Starlette(
        exception_handlers={errors.AlcorError: _alcor_error, HTTPException: _http_error,
                            Exception: _unexpected_error},
    )
    app.router = DispatchRouter(groups, others)
    return RequestIdMiddleware(auth.with_auth(app, settings.auth, validator),
                               settings.api.max_request_bytes)


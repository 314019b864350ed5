"""The generic collection controller: list, show, create (single and bulk), update, delete and
tags for any resource, on Neutron's ``/v2.0`` paths and Alcor's ``/project/{id}`` paths.

It reads the request, applies the resource definition, calls the resource's service (inline
or in a worker thread, as the store prefers) and renders the answer; it holds no state.

Port creates and updates may wait until the port is programmed: ``X-Alcor-Wait: <seconds>``
(or ``?wait=<seconds>``) holds the answer until the port's host and its neighbours' hosts
acknowledged it, or the timeout passed; the answer then shows the port's status at that
moment and ``X-Alcor-Provisioning`` the per-host outcome (JSON).
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar
from urllib.parse import urlencode

import anyio.to_thread
import orjson
from starlette.requests import Request
from starlette.responses import Response

from alcor import errors
from alcor.api import attributes as attrs
from alcor.api import auth, validators
from alcor.api.attributes import HTTPBadRequest, Resource
from alcor.api.query import parse_list
from alcor.config import ApiSettings, DpmSettings
from alcor.context import RequestContext
from alcor.db.group_commit import GroupCommitter
from alcor.db.store import Store
from alcor.query import Page
from alcor.services.resource import ResourceService

T = TypeVar("T")

_IF_MATCH = re.compile(r"^\s*revision_number=(\d+)\s*$")

WAIT_HEADER = "x-alcor-wait"
WAIT_PARAM = "wait"
PROVISIONING_HEADER = "X-Alcor-Provisioning"


class Provisioning(Protocol):
    """The data plane as the API sees it (``alcor.dpm.controller``: the controller of this
    process, or a poller of the database when the controller runs elsewhere)."""

    settings: DpmSettings

    def changed(self) -> None:
        """A write committed."""

    async def wait(self, ports: Mapping[str, int], timeout: float) -> dict[str, Any]:
        """Hold until the ports (id -> revision) are programmed or ``timeout`` passed."""

    def metrics_text(self) -> str:
        """Prometheus text of the data plane's metrics."""


class Runner:
    """Runs blocking service calls: inline for SQLite (microseconds each), in threads otherwise.

    Writes go through ``write``: on SQLite, concurrent requests' transactions are grouped into
    one commit (``GroupCommitter``); on PostgreSQL each runs in its own transaction in a
    worker thread, so round trips overlap.
    """

    def __init__(
        self, store: Store, inline: bool, on_commit: Callable[[], None] | None = None
    ) -> None:
        self.store = store
        self.inline = inline
        self.committer = GroupCommitter(store) if inline else None
        self.on_commit = on_commit
        """Called after each write commits (wakes the data-plane controller)."""

    async def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        if self.inline:
            return fn(*args)
        return await anyio.to_thread.run_sync(functools.partial(fn, *args))

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run the transaction function ``fn(txn, *args)`` and commit it."""
        if self.committer is not None:
            result = await self.committer.write(fn, *args)
        else:
            result = await anyio.to_thread.run_sync(
                functools.partial(self.store.write, fn, *args))
        if self.on_commit is not None:
            self.on_commit()
        return result


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    if status == 204:
        return Response(status_code=204)
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers=headers)


def wait_seconds(request: Request, limits: DpmSettings) -> float | None:
    """How long the request asks to wait for provisioning (``X-Alcor-Wait`` or ``?wait=``):
    None for no wait; an empty value or ``true`` is the configured default; capped."""
    raw = request.headers.get(WAIT_HEADER)
    if raw is None:
        raw = request.query_params.get(WAIT_PARAM)
    if raw is None:
        return None
    raw = raw.strip()
    if raw.lower() in ("", "true"):
        return limits.wait_timeout
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise HTTPBadRequest(msg=f"Invalid X-Alcor-Wait value {raw!r}: expected a number of "
                             "seconds")
    return min(seconds, limits.wait_timeout_max) if seconds > 0 else None


def context_for(request: Request, settings: ApiSettings) -> RequestContext:
    """Who asks, for which project (``alcor.api.auth``: noauth or the token's)."""
    return auth.request_context(request, settings.default_project_id)


def if_match(request: Request) -> int | None:
    header = request.headers.get("if-match")
    if header is None or header.strip() == "*":
        return None
    m = _IF_MATCH.match(header)
    if m is None:
        raise HTTPBadRequest(msg=f"Unrecognized If-Match header: {header!r}; "
                             "expected 'revision_number=N'")
    return int(m.group(1))


async def read_json(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        raise HTTPBadRequest(msg="Resource body required")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise HTTPBadRequest(msg="Malformed request body") from None


def _refuse_hidden(resource: Resource, params: list[tuple[str, str]]) -> None:
    """A non-admin may not filter or sort by what it cannot see (it would reveal it): the
    attribute is unknown to it, as Neutron's filter validation words it."""
    hidden = attrs.hidden(resource)
    for key, value in params:
        if key in hidden:
            raise HTTPBadRequest(msg=f"[{key!r}] is invalid attribute for filtering")
        if key == "sort_key" and value in hidden:
            raise HTTPBadRequest(msg=f"{value} is invalid attribute for sort_keys")


class Collection:
    """One resource's handlers on one API surface (Neutron or Alcor-native)."""

    def __init__(
        self,
        resource: Resource,
        service: ResourceService,
        runner: Runner,
        settings: ApiSettings,
        *,
        native: bool = False,
        provisioning: Provisioning | None = None,
    ) -> None:
        self.resource = resource
        self.service = service
        self.run = runner
        self.settings = settings
        self.native = native
        self.provisioning = provisioning if resource.name == "port" else None
        """Set for ports: what ``X-Alcor-Wait`` waits on."""
        singular, path = resource.native if native else (resource.name, resource.collection)
        self.singular = singular
        self.path = path
        """The collection's path segment (``security-groups``)."""
        self.plural = path.replace("-", "_")
        """The collection's key in bodies (``security_groups``), as Neutron spells it."""
        self.input_keys = {singular, resource.name}
        if native and resource.native_name == "network":
            self.input_keys.add("vpc")

    # --- rendering -----------------------------------------------------------------------

    def _render(self, row: dict[str, Any], ctx: RequestContext,
                fields: list[str] | None = None) -> dict[str, Any]:
        out = self.resource.render(row, admin=ctx.is_admin)
        if fields:
            return {k: out[k] for k in fields if k in out}
        return out

    def _links(self, request: Request, page: Page, items: list[dict[str, Any]]) -> list[Any]:
        params = [(k, v) for k, v in request.query_params.multi_items()
                  if k not in ("marker", "page_reverse")]
        links = []
        query = page_query = None
        reverse = request.query_params.get("page_reverse", "false").lower() == "true"
        limit_given = "limit" in request.query_params
        if items and limit_given and (page.has_more or reverse):
            query = urlencode([*params, ("marker", items[-1]["id"])])
            links.append({"rel": "next", "href": f"{request.url.replace(query=query)}"})
        if items and limit_given and (request.query_params.get("marker") or
                                      (reverse and page.has_more)):
            page_query = urlencode([*params, ("marker", items[0]["id"]), ("page_reverse", "True")])
            links.append({"rel": "previous", "href": f"{request.url.replace(query=page_query)}"})
        return links

    def _context(self, request: Request) -> RequestContext:
        return context_for(request, self.settings)

    def _wait_for(self, request: Request) -> float | None:
        if self.provisioning is None:
            return None
        return wait_seconds(request, self.provisioning.settings)

    async def _provisioned(
        self, rows: list[dict[str, Any]], timeout: float, ctx: RequestContext
    ) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """Wait for ``rows`` (just written) to be programmed; the rows with their status
        then, and the X-Alcor-Provisioning header (host names for admins only)."""
        assert self.provisioning is not None
        outcome = await self.provisioning.wait(
            {r["id"]: r["revision_number"] for r in rows}, timeout)
        now = outcome["ports"]
        rows = [{**r, **now.get(r["id"], {})} for r in rows]
        summary = {"complete": outcome["complete"], "elapsed_ms": outcome["elapsed_ms"],
                   "hosts": outcome["hosts"] if ctx.is_admin else {}}
        return rows, {PROVISIONING_HEADER: json.dumps(summary, separators=(",", ":"))}

    def _body_items(self, body: Any, *, allow_bulk: bool) -> tuple[list[Any], bool]:
        if not isinstance(body, dict) or len(body) != 1:
            raise HTTPBadRequest(msg=f"Unable to find '{self.singular}' in request body")
        key, value = next(iter(body.items()))
        if key in self.input_keys:
            return [value], False
        if key in (self.plural, self.resource.plural_key) and allow_bulk:
            if not isinstance(value, list) or not value:
                raise HTTPBadRequest(msg=f"Bulk body of {self.plural} must be a non-empty list")
            return value, True
        raise HTTPBadRequest(msg=f"Unable to find '{self.singular}' in request body")

    # --- handlers ------------------------------------------------------------------------

    async def list(self, request: Request) -> Response:
        ctx = self._context(request)
        scope = [ctx.project_id] if self.native else None
        params = request.query_params.multi_items()
        if not ctx.is_admin:
            _refuse_hidden(self.resource, params)
        req = parse_list(self.resource, params, project_ids=scope,
                         max_limit=self.settings.pagination_max_limit)
        page = await self.run(self.service.list, ctx, req.query)
        items = [self._render(r, ctx, req.fields) for r in page.items]
        body: dict[str, Any] = {self.plural: items}
        links = self._links(request, page, page.items)
        if links:
            body[f"{self.plural}_links"] = links
        return json_response(200, body)

    async def show(self, request: Request) -> Response:
        ctx = self._context(request)
        row = await self.run(self.service.get, ctx, request.path_params["id"])
        fields = [f for v in request.query_params.getlist("fields") for f in v.split(",") if f]
        return json_response(200, {self.singular: self._render(row, ctx, fields)})

    async def create(self, request: Request) -> Response:
        return await self._create(request, allow_bulk=True, force_bulk=False)

    async def create_bulk(self, request: Request) -> Response:
        return await self._create(request, allow_bulk=True, force_bulk=True)

    async def _create(self, request: Request, *, allow_bulk: bool, force_bulk: bool) -> Response:
        ctx = self._context(request)
        wait = self._wait_for(request)
        if not ctx.can_write:
            raise errors.PolicyNotAuthorized(action=f"rule:create_{self.resource.name}")
        items, bulk = self._body_items(await read_json(request), allow_bulk=allow_bulk)
        checked = [attrs.apply_create(self.resource, item, ctx.project_id,
                                      is_admin=ctx.is_admin) for item in items]
        items = self.service.prepare_create(ctx, checked)
        rows = await self.run.write(self.service.create_txn, ctx, items)
        headers = None
        if wait is not None:
            rows, headers = await self._provisioned(rows, wait, ctx)
        if bulk or force_bulk:
            return json_response(201, {self.plural: [self._render(r, ctx) for r in rows]},
                                 headers)
        return json_response(201, {self.singular: self._render(rows[0], ctx)}, headers)

    async def update(self, request: Request) -> Response:
        ctx = self._context(request)
        wait = self._wait_for(request)
        items, _ = self._body_items(await read_json(request), allow_bulk=False)
        changes = attrs.apply_update(self.resource, items[0], is_admin=ctx.is_admin)
        row = await self.run.write(self.service.update_txn, ctx, request.path_params["id"], changes,
                             if_match(request))
        headers = None
        if wait is not None:
            [row], headers = await self._provisioned([row], wait, ctx)
        return json_response(200, {self.singular: self._render(row, ctx)}, headers)

    async def delete(self, request: Request) -> Response:
        ctx = self._context(request)
        await self.run.write(self.service.delete_txn, ctx, request.path_params["id"],
                             if_match(request))
        return json_response(204, None)

    # --- tags ----------------------------------------------------------------------------

    async def get_tags(self, request: Request) -> Response:
        row = await self.run(self.service.get, self._context(request), request.path_params["id"])
        return json_response(200, {"tags": row["tags"]})

    async def replace_tags(self, request: Request) -> Response:
        body = await read_json(request)
        if not isinstance(body, dict) or set(body) != {"tags"}:
            raise HTTPBadRequest(msg="Invalid tags body: expected {\"tags\": [...]}")
        names = attrs.Attribute("tags", convert=lambda x: x,
                                validate=validators.tag_list).check(body["tags"])
        tags = await self.run(self.service.set_tags, self._context(request),
                              request.path_params["id"], names, if_match(request))
        return json_response(200, {"tags": tags})

    async def delete_tags(self, request: Request) -> Response:
        await self.run(self.service.set_tags, self._context(request), request.path_params["id"],
                       [], if_match(request))
        return json_response(204, None)

    async def check_tag(self, request: Request) -> Response:
        found = await self.run(self.service.has_tag, self._context(request),
                               request.path_params["id"], request.path_params["tag"])
        if not found:
            raise errors.TagNotFound(tag=request.path_params["tag"],
                                     resource_type=self.resource.name,
                                     resource_id=request.path_params["id"])
        return json_response(204, None)

    async def add_tag(self, request: Request) -> Response:
        tag = request.path_params["tag"]
        if (reason := validators.tag(tag)) is not None:
            raise errors.InvalidInput(attribute="tag", reason=reason)
        await self.run(self.service.add_tag, self._context(request), request.path_params["id"],
                       tag, if_match(request))
        return Response(status_code=201)

    async def remove_tag(self, request: Request) -> Response:
        await self.run(self.service.remove_tag, self._context(request), request.path_params["id"],
                       request.path_params["tag"], if_match(request))
        return json_response(204, None)

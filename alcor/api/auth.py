"""Who is asking: the authentication edge and the request context it yields.

``noauth`` (the embedded default): every request is an admin acting for the native path's
project, else ``X-Project-Id``, else the configured default project.

``keystone``: ``KeystoneAuth`` (ASGI middleware) reads ``X-Auth-Token``, has it validated
(``alcor.identity``) and leaves a ``RequestContext`` in the request's state: the token's
project, its roles, ``is_admin`` for the admin role, ``can_write`` for admin or member.  A
missing or invalid token answers 401 with the body and ``WWW-Authenticate`` header Neutron's
keystonemiddleware sends; an unreachable identity service 503; a token without a project or
without any of the admin, member and reader roles 403.  Version discovery (``/``),
``/openapi.json`` and ``/metrics`` stay open.

``request_context`` gives handlers the context; on Alcor's native ``/project/{project_id}/``
paths a non-admin may name only its own project (403 otherwise), and an admin acts for the
project it names.  ``require_admin`` guards admin-only paths (``/nodes``, other projects'
quotas).
"""

from __future__ import annotations

import dataclasses

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from alcor import errors
from alcor.api import faults
from alcor.config import AuthSettings
from alcor.context import RequestContext
from alcor.identity import Identity, IdentityUnavailable, InvalidToken, TokenValidator

PUBLIC_PATHS = frozenset({"/", "/openapi.json", "/metrics"})
"""Paths answered without a token (version discovery, the API description, metrics)."""

STATE_KEY = "auth_context"
"""Where the middleware leaves the request's context in the ASGI scope's state."""

UNAUTHORIZED = orjson.dumps({"error": {
    "code": 401, "title": "Unauthorized",
    "message": "The request you have made requires authentication.",
}})
UNAVAILABLE = orjson.dumps({"error": {
    "code": 503, "title": "Service Unavailable",
    "message": "The Keystone service is temporarily unavailable.",
}})


def context_of(identity: Identity, settings: AuthSettings, request_id: str) -> RequestContext:
    """The request context a validated token gives; PolicyNotAuthorized for a token that is
    not scoped to a project or holds none of the configured roles."""
    roles = set(identity.roles)
    known = (settings.admin_role, settings.member_role, settings.reader_role)
    if not identity.project_id or not roles.intersection(known):
        raise errors.PolicyNotAuthorized(
            action="(" + " or ".join(f"role:{r}" for r in known) + ")")
    is_admin = settings.admin_role in roles
    return RequestContext(
        project_id=identity.project_id, is_admin=is_admin, request_id=request_id,
        roles=identity.roles, can_write=is_admin or settings.member_role in roles,
        user_id=identity.user_id,
    )


class KeystoneAuth:
    """ASGI middleware: every request but the public ones carries a valid Keystone token."""

    def __init__(self, app: ASGIApp, settings: AuthSettings, validator: TokenValidator) -> None:
        self.app = app
        self.settings = settings
        self.validator = validator
        uri = settings.public_url or settings.keystone_url
        self.challenge = (b"www-authenticate", f'Keystone uri="{uri}"'.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        token = _header(scope, b"x-auth-token")
        try:
            if not token:
                raise InvalidToken()
            identity = await self.validator.identity(token)
            state[STATE_KEY] = context_of(identity, self.settings,
                                          state.get("request_id") or "")
        except InvalidToken:
            await _send(send, 401, UNAUTHORIZED, [self.challenge])
            return
        except IdentityUnavailable:
            await _send(send, 503, UNAVAILABLE)
            return
        except errors.PolicyNotAuthorized as exc:
            await _send(send, 403, faults.error_body(type(exc).__name__, str(exc)))
            return
        await self.app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1")).strip()
    return ""


async def _send(send: Send, status: int, body: bytes,
                headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def with_auth(app: ASGIApp, settings: AuthSettings,
              validator: TokenValidator | None = None) -> ASGIApp:
    """``app`` behind the configured strategy (noauth: unchanged)."""
    if settings.strategy == "noauth":
        return app
    return KeystoneAuth(app, settings, validator or TokenValidator.for_settings(settings))


def request_context(request: Request, default_project: str) -> RequestContext:
    """The context a handler acts in (see the module docstring)."""
    path_project: str | None = request.path_params.get("project_id")
    ctx: RequestContext | None = request.scope.get("state", {}).get(STATE_KEY)
    if ctx is None:
        project = path_project or request.headers.get("x-project-id") or default_project
        return RequestContext(project_id=project, is_admin=True,
                              request_id=request.state.request_id)
    if path_project and path_project != ctx.project_id:
        if not ctx.is_admin:
            raise errors.PolicyNotAuthorized(action=f"project_id:{path_project}")
        return dataclasses.replace(ctx, project_id=path_project)
    return ctx


def require_admin(ctx: RequestContext, action: str) -> None:
    """Refuse a non-admin: 403 PolicyNotAuthorized naming ``rule:<action>``."""
    if not ctx.is_admin:
        raise errors.PolicyNotAuthorized(action=f"rule:{action}")

"""The request context: who is asking, for which project, with which powers, under which
request id.

It is built once at the API edge (``alcor.api.auth``) and passed explicitly to every service
call; no global.  Services read ``is_admin`` (every project, admin-only attributes),
``can_write`` (members and admins change their project's resources; readers only read) and
``project_id``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field


def new_request_id() -> str:
    return f"req-{uuid.uuid4()}"


@dataclass(frozen=True, slots=True)
class RequestContext:
    project_id: str
    """The project a request acts for (noauth: X-Project-Id or the configured default;
    keystone: the token's project, or the native path's project for an admin)."""
    is_admin: bool = True
    """Admins see and change every project's resources (noauth requests are admin)."""
    request_id: str = field(default_factory=new_request_id)
    roles: tuple[str, ...] = ("admin",)
    """The token's role names as the identity service gave them."""
    can_write: bool = True
    """Whether the caller may create, change and delete its project's resources (false for a
    reader: its writes answer 403)."""
    user_id: str = ""
    """The token's user (empty under noauth)."""

    @classmethod
    def admin(cls, project_id: str = "admin") -> RequestContext:
        return cls(project_id=project_id, is_admin=True)

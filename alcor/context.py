"""The request context: who is asking, for which project, under which request id.

It is built once at the API edge and passed explicitly to every service call; no global.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field


def new_request_id() -> str:
    return f"req-{uuid.uuid4()}"


@dataclass(frozen=True, slots=True)
class RequestContext:
    project_id: str
    """The project a request acts for (noauth: X-Project-Id or the configured default)."""
    is_admin: bool = True
    """Admins see and change every project's resources (noauth requests are admin)."""
    request_id: str = field(default_factory=new_request_id)
    roles: tuple[str, ...] = ("admin",)

    @classmethod
    def admin(cls, project_id: str = "admin") -> RequestContext:
        return cls(project_id=project_id, is_admin=True)

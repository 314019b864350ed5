"""Declarative resource definitions and how a request body is checked against them.

An ``Attribute`` says whether a key may be posted or updated, its default, how wire input
converts and validates, whether it is visible, filterable and sortable.  ``Resource`` bundles
a resource's attributes with its names on both API surfaces.  ``apply_create`` and
``apply_update`` turn a body into a checked dict or raise ``InvalidInput``; they never touch
storage.

Admin-only attributes are declared here too (Neutron's policy on attributes):
``admin_only`` ones (``provider:*``, ``binding:host_id``) are hidden from non-admins'
answers and filters and refused in their bodies; ``admin_set`` ones (a network's ``shared``)
are shown to everyone but only admins may set them.  A refused attribute answers 403
PolicyNotAuthorized, as Neutron does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from alcor import errors
from alcor.api import validators as v


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
"""Default of an attribute a create request must name."""

NO_DEFAULT: Any = type("_NoDefault", (), {"__repr__": lambda self: "NO_DEFAULT"})()
"""Default of an attribute the service fills (ids, allocations, derived values)."""


class HTTPBadRequest(errors.BadRequest):
    """A malformed request (Neutron reports these under webob's class name)."""

    message = "{msg}"


@dataclass(frozen=True, slots=True)
class Attribute:
    name: str
    kind: str = "string"
    """OpenAPI type: string, boolean, integer, array or object."""
    allow_post: bool = True
    allow_put: bool = False
    default: Any = NO_DEFAULT
    """A value, a zero-argument factory, REQUIRED or NO_DEFAULT."""
    convert: v.Converter | None = None
    validate: v.Validator | None = None
    is_visible: bool = True
    is_filter: bool = False
    is_sort_key: bool = False
    constant: Any = NO_DEFAULT
    """A read-only value every resource reports (not stored)."""
    description: str = ""
    admin_only: bool = False
    """Only admins see it (answers, filters, sorting) or set it."""
    admin_set: bool = False
    """Everyone sees it; only admins set it (create: unless given its default)."""

    def default_value(self) -> Any:
        if callable(self.default):
            return self.default()
        return self.default

    def check(self, value: Any) -> Any:
        """Convert and validate one value; raise InvalidInput with Neutron's wording."""
        try:
            if self.convert is not None:
                value = self.convert(value)
        except ValueError as exc:
            raise errors.InvalidInput(attribute=self.name, reason=str(exc)) from None
        if self.validate is not None and (reason := self.validate(value)) is not None:
            raise errors.InvalidInput(attribute=self.name, reason=reason)
        return value


@dataclass(frozen=True, slots=True)
class Resource:
    name: str
    """Singular Neutron name (``port``)."""
    collection: str
    """Plural Neutron name and path (``ports``)."""
    attributes: Mapping[str, Attribute]
    table: str = ""
    native_name: str = ""
    """Singular key on Alcor's native paths (``vpc`` for networks)."""
    native_collection: str = ""
    """Plural key and path segment on Alcor's native paths (``vpcs``)."""
    description: str = ""
    tags: bool = True
    extra_filters: tuple[str, ...] = field(default=())
    """Query keys accepted besides attributes (``fixed_ips`` on ports)."""

    @property
    def plural_key(self) -> str:
        """The collection's key in bodies: its path with underscores (``security_groups``)."""
        return self.collection.replace("-", "_")

    @property
    def native(self) -> tuple[str, str]:
        return (self.native_name or self.name, self.native_collection or self.collection)

    def render(self, row: Mapping[str, Any], *, admin: bool = True) -> dict[str, Any]:
        """The resource as clients see it: visible attributes (for a non-admin, not the
        admin-only ones), constants, tenant_id."""
        copied, constants = _visible(self, admin)
        out = {name: row[name] for name in copied if name in row}
        for name, constant in constants:
            out[name] = constant() if callable(constant) else constant
        if "tenant_id" in copied:
            out["tenant_id"] = row.get("project_id")
        return out


def build(*attrs: Attribute) -> dict[str, Attribute]:
    return {a.name: a for a in attrs}


def _unknown(resource: Resource, body: Mapping[str, Any]) -> list[str]:
    return [k for k in body if k not in resource.attributes]


def apply_create(
    resource: Resource, body: Any, project_id: str, *, is_admin: bool = True
) -> dict[str, Any]:
    """Check a create body: reject unknown and non-postable keys, fill defaults, validate;
    for a non-admin, refuse another project and admin-only attributes."""
    if not isinstance(body, dict):
        raise HTTPBadRequest(msg=f"Body of {resource.name} must be an object")
    if unknown := _unknown(resource, body):
        raise HTTPBadRequest(msg=f"Unrecognized attribute(s) '{', '.join(unknown)}'")
    body = dict(body)
    _merge_project(body, project_id)
    if not is_admin and body["project_id"] != project_id:
        raise HTTPBadRequest(msg=FOREIGN_PROJECT)
    result: dict[str, Any] = {}
    for name, value in body.items():
        attr = resource.attributes[name]
        if not attr.allow_post:
            raise HTTPBadRequest(msg=f"Attribute '{name}' not allowed in POST")
        result[name] = attr.check(value)
    for name in _required(resource):
        if name not in body:
            raise HTTPBadRequest(
                msg=f"Failed to parse request. Required attribute '{name}' not specified"
            )
    defaults = _checked_defaults(resource)
    if not is_admin:
        _check_policy(resource, "create", [n for n in body
                                           if n not in defaults or result[n] != defaults[n]])
    for name, value in defaults.items():
        if name not in body:
            result[name] = value.copy() if isinstance(value, (list, dict)) else value
    result.pop("tenant_id", None)
    return result


FOREIGN_PROJECT = ("Specifying 'project_id' or 'tenant_id' other than the authenticated project "
                   "in request requires admin or advsvc privileges")
"""neutron-lib's refusal of a non-admin's body naming another project (400)."""


def _check_policy(resource: Resource, action: str, names: list[str]) -> None:
    """Refuse a non-admin's body setting admin-only attributes, in Neutron's words."""
    refused = [n for n in names
               if resource.attributes[n].admin_only or resource.attributes[n].admin_set]
    if refused:
        rule = f"{action}_{resource.name}"
        raise errors.PolicyNotAuthorized(action=f"(rule:{rule} and rule:{rule}:{refused[0]})")


def hidden(resource: Resource) -> frozenset[str]:
    """The attributes a non-admin neither sees nor filters or sorts by."""
    return frozenset(n for n, a in resource.attributes.items() if a.admin_only)


def _required(resource: Resource) -> list[str]:
    return [n for n, a in resource.attributes.items() if a.allow_post and a.default is REQUIRED]


_VISIBLE: dict[tuple[int, bool], tuple[tuple[str, ...], tuple[tuple[str, Any], ...]]] = {}


def _visible(
    resource: Resource, admin: bool = True
) -> tuple[tuple[str, ...], tuple[tuple[str, Any], ...]]:
    """Visible attributes copied from a row, and visible constants with their values."""
    found = _VISIBLE.get((id(resource), admin))
    if found is None:
        attrs = [(n, a) for n, a in resource.attributes.items()
                 if a.is_visible and (admin or not a.admin_only)]
        found = (tuple(n for n, a in attrs if a.constant is NO_DEFAULT),
                 tuple((n, a.constant) for n, a in attrs if a.constant is not NO_DEFAULT))
        _VISIBLE[(id(resource), admin)] = found
    return found


_DEFAULTS: dict[int, dict[str, Any]] = {}


def _checked_defaults(resource: Resource) -> dict[str, Any]:
    """Each postable attribute's default, converted and validated once per resource."""
    found = _DEFAULTS.get(id(resource))
    if found is None:
        found = {
            name: attr.check(attr.default_value())
            for name, attr in resource.attributes.items()
            if attr.allow_post and attr.default not in (REQUIRED, NO_DEFAULT)
        }
        _DEFAULTS[id(resource)] = found
    return found


def _merge_project(body: dict[str, Any], project_id: str) -> None:
    project, tenant = body.get("project_id"), body.get("tenant_id")
    if project is not None and tenant is not None and project != tenant:
        raise HTTPBadRequest(msg="'project_id' and 'tenant_id' do not match")
    body["project_id"] = project or tenant or project_id
    body.pop("tenant_id", None)


def apply_update(resource: Resource, body: Any, *, is_admin: bool = True) -> dict[str, Any]:
    """Check an update body: only updatable keys, each converted and validated; for a
    non-admin, no admin-only attribute."""
    if not isinstance(body, dict):
        raise HTTPBadRequest(msg=f"Body of {resource.name} must be an object")
    if unknown := _unknown(resource, body):
        raise HTTPBadRequest(msg=f"Unrecognized attribute(s) '{', '.join(unknown)}'")
    result: dict[str, Any] = {}
    for name, value in body.items():
        attr = resource.attributes[name]
        if not attr.allow_put:
            raise HTTPBadRequest(msg=f"Cannot update read-only attribute {name}")
        result[name] = attr.check(value)
    if not is_admin:
        _check_policy(resource, "update", list(result))
    return result


def filter_value(attr: Attribute, raw: str) -> Any:
    """Convert one query-string value for filtering by this attribute."""
    if raw == "" and attr.kind != "string":
        return None
    convert: Callable[[Any], Any] | None = attr.convert
    if attr.kind == "boolean":
        convert = v.to_boolean
    elif attr.kind == "integer":
        convert = v.to_int
    elif attr.kind in ("array", "object"):
        convert = None
    try:
        return convert(raw) if convert is not None else raw
    except ValueError as exc:
        raise errors.InvalidInput(attribute=attr.name, reason=str(exc)) from None

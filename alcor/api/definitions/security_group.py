"""The security group resource: a named set of rules bound to ports (security-group,
stateful-security-group and security-groups-shared-filtering extensions)."""

from __future__ import annotations

from typing import Any

from alcor import errors
from alcor.api import validators as v
from alcor.api.attributes import Attribute, Resource, build
from alcor.api.definitions.standard import standard

_NAME = v.string(255)


def _name_not_default(value: Any) -> str | None:
    """Neutron's ``type:name_not_default``: only the service names a group ``default``."""
    if (reason := _NAME(value)) is not None:
        return reason
    if value.lower() == "default":
        raise errors.SecurityGroupDefaultAlreadyExists()
    return None


RESOURCE = Resource(
    name="security_group",
    collection="security-groups",
    table="security_groups",
    description="A stateful packet filter: a set of rules applied to ports.",
    attributes=build(
        *[a for a in standard() if a.name != "name"],
        Attribute("name", allow_put=True, default="", validate=_name_not_default,
                  is_filter=True, is_sort_key=True),
        Attribute("stateful", kind="boolean", allow_put=True, default=True,
                  convert=v.to_boolean, is_filter=True, is_sort_key=True),
        Attribute("shared", kind="boolean", allow_post=False, is_filter=True),
        Attribute("security_group_rules", kind="array", allow_post=False),
    ),
)

"""The security group resource: a named set of rules bound to ports."""

from __future__ import annotations

from alcor.api import validators as v
from alcor.api.attributes import Attribute, Resource, build
from alcor.api.definitions.standard import standard

RESOURCE = Resource(
    name="security_group",
    collection="security-groups",
    table="security_groups",
    description="A stateful packet filter: a set of rules applied to ports.",
    attributes=build(
        *standard(),
        Attribute("stateful", kind="boolean", default=True, convert=v.to_boolean,
                  is_filter=True, is_sort_key=True),
        Attribute("shared", kind="boolean", allow_post=False, is_filter=True),
        Attribute("security_group_rules", kind="array", allow_post=False),
    ),
)

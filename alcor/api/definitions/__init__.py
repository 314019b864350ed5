"""Every resource the API serves, one definition module each; ``RESOURCES`` indexes them."""

from __future__ import annotations

from alcor.api.attributes import Resource
from alcor.api.definitions import network, port, security_group, security_group_rule, subnet

RESOURCES: dict[str, Resource] = {
    d.RESOURCE.collection: d.RESOURCE
    for d in (network, subnet, port, security_group, security_group_rule)
}

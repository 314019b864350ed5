"""Every resource the API serves, one definition module each; ``RESOURCES`` indexes them."""

from __future__ import annotations

from alcor.api.attributes import Resource
from alcor.api.definitions import (
    floatingip,
    network,
    network_segment_range,
    port,
    router,
    security_group,
    security_group_rule,
    segment,
    subnet,
)

RESOURCES: dict[str, Resource] = {
    d.RESOURCE.collection: d.RESOURCE
    for d in (network, subnet, port, security_group, security_group_rule, router, floatingip,
              segment, network_segment_range)
}

NATIVE_ALIASES: dict[str, tuple[Resource, ...]] = {"floatingips": (floatingip.ELASTIC_IP,)}
"""More native paths for a collection: upstream's ``/project/{id}/elasticips``."""

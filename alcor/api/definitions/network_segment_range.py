"""The network segment range resource (network-segment-range extension, admin-only): the
VNIs tenant networks are given, per project or shared; see ``alcor.services.segment_ranges``."""

from __future__ import annotations

from alcor.api import validators as v
from alcor.api.attributes import REQUIRED, Attribute, Resource, build
from alcor.api.definitions.standard import standard

RANGE_TYPES = ("vlan", "vxlan", "gre", "geneve")
"""Neutron's network segment range types; Alcor allocates only tunnel (vxlan, geneve) ids."""
SEGMENT_ID_LIMIT = (1, 2**32 - 1)
"""The widest segmentation ids any type has (GRE's), as Neutron validates them."""

RESOURCE = Resource(
    name="network_segment_range",
    collection="network_segment_ranges",
    table="network_segment_ranges",
    description=(
        "A range of segmentation ids for tenant networks: a project's networks take their "
        "VNI from its own ranges, then from shared ranges, then from the default range "
        "(the configured one, read-only). Only vxlan and geneve ranges are supported."
    ),
    attributes=build(
        *standard(),
        Attribute("default", kind="boolean", allow_post=False, is_filter=True),
        Attribute("shared", kind="boolean", default=True, convert=v.to_boolean, is_filter=True),
        Attribute("network_type", default=REQUIRED, validate=v.values(RANGE_TYPES),
                  is_filter=True),
        Attribute("physical_network", default=None, validate=v.string_or_none(64),
                  is_filter=True),
        Attribute("minimum", kind="integer", allow_put=True, default=REQUIRED,
                  convert=v.to_int, validate=v.int_range(*SEGMENT_ID_LIMIT)),
        Attribute("maximum", kind="integer", allow_put=True, default=REQUIRED,
                  convert=v.to_int, validate=v.int_range(*SEGMENT_ID_LIMIT)),
        Attribute("used", kind="object", allow_post=False,
                  description="Each VNI of the range a network holds -> the network's project."),
        Attribute("available", kind="array", allow_post=False,
                  description="The free VNIs of the range in ascending order (the lowest "
                              "1024 when more are free)."),
    ),
)

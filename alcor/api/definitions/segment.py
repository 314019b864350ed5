"""The segment resource (segment and standard-attr-segment extensions, admin-only): a
network's L2 segment.  Alcor networks have at most one; see ``alcor.services.segments``."""

from __future__ import annotations

from alcor.api import validators as v
from alcor.api.attributes import NO_DEFAULT, REQUIRED, Attribute, Resource, build
from alcor.api.definitions.network import NETWORK_TYPES

RESOURCE = Resource(
    name="segment",
    collection="segments",
    table="segments",
    description=(
        "A network's L2 segment: its type, physical network and segmentation id (the VXLAN "
        "VNI or VLAN tag). An Alcor network has exactly one segment, made with the network "
        "and mirrored by its provider attributes: the data plane carries a network on one "
        "VNI, so a second segment (multi-segment or routed provider networks) is refused. "
        "The segment of a network without ports may be deleted and a new one created."
    ),
    tags=False,
    attributes=build(
        Attribute("id", allow_post=False, validate=v.uuid_value, is_filter=True,
                  is_sort_key=True),
        Attribute("project_id", validate=v.string(255), is_visible=False),
        Attribute("tenant_id", validate=v.string(255), is_visible=False),
        Attribute("network_id", default=REQUIRED, validate=v.uuid_value, is_filter=True,
                  is_sort_key=True,
                  description="The network; refused when it has a segment already (Alcor "
                              "networks have one segment)."),
        Attribute("name", allow_put=True, default=None, validate=v.string_or_none(255),
                  is_filter=True, is_sort_key=True),
        Attribute("description", allow_put=True, default=None,
                  validate=v.string_or_none(255), is_filter=True),
        Attribute("network_type", default=REQUIRED, validate=v.values(NETWORK_TYPES),
                  is_filter=True, is_sort_key=True),
        Attribute("physical_network", default=None, validate=v.string_or_none(64),
                  is_filter=True, is_sort_key=True),
        Attribute("segmentation_id", kind="integer", default=None, convert=v.to_int_or_none,
                  validate=v.int_range(1, 16_777_215), is_filter=True, is_sort_key=True,
                  description="VNI (vxlan, geneve) or VLAN tag; a tunnel segment without one "
                              "gets a free VNI from the network project's segment ranges."),
        Attribute("revision_number", kind="integer", allow_post=False, is_filter=True,
                  is_sort_key=True, default=NO_DEFAULT),
        Attribute("created_at", allow_post=False, is_filter=True, is_sort_key=True),
        Attribute("updated_at", allow_post=False, is_filter=True, is_sort_key=True),
    ),
)

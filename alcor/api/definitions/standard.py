"""Standard attributes every resource carries: id, project, name, description, tags,
revision and timestamps (Neutron's standard-attr-* and project-id extensions)."""

from __future__ import annotations

from alcor.api import validators as v
from alcor.api.attributes import NO_DEFAULT, Attribute


def standard(*, name_max: int = 255) -> list[Attribute]:
    return [
        Attribute("id", allow_post=False, validate=v.uuid_value, is_filter=True,
                  is_sort_key=True, default=NO_DEFAULT),
        Attribute("project_id", allow_post=True, validate=v.string(255), is_filter=True,
                  is_sort_key=True, default=NO_DEFAULT),
        Attribute("tenant_id", allow_post=True, validate=v.string(255), is_filter=True,
                  default=NO_DEFAULT),
        Attribute("name", allow_put=True, default="", validate=v.string(name_max),
                  is_filter=True, is_sort_key=True),
        Attribute("description", allow_put=True, default="", validate=v.string(255),
                  is_filter=True, is_sort_key=True),
        Attribute("tags", kind="array", allow_post=True, default=list, convert=v.to_list,
                  validate=v.tag_list),
        Attribute("revision_number", kind="integer", allow_post=False, is_filter=True,
                  is_sort_key=True),
        Attribute("created_at", allow_post=False, is_filter=True, is_sort_key=True),
        Attribute("updated_at", allow_post=False, is_filter=True, is_sort_key=True),
    ]

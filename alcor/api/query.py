"""Neutron's list conventions read off a query string: fields, filters, sorting, pagination.

Unknown filter attributes are refused (filter-validation); values convert with the
attribute's own rules; ``tenant_id`` filters by ``project_id``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from alcor.api.attributes import HTTPBadRequest, Resource, filter_value
from alcor.query import ListQuery

RESERVED = {"fields", "sort_key", "sort_dir", "limit", "marker", "page_reverse"}
TAG_KEYS = {"tags": "tags_all", "tags-any": "tags_any", "not-tags": "not_tags_all",
            "not-tags-any": "not_tags_any"}
FIXED_IP_KEYS = ("ip_address", "subnet_id", "ip_address_substr")


@dataclass(frozen=True, slots=True)
class ListRequest:
    query: ListQuery
    fields: list[str]


def _split_tags(values: Sequence[str]) -> list[str]:
    return [t for v in values for t in v.split(",") if t]


def _fixed_ips(values: Sequence[str]) -> list[dict[str, str]]:
    """Neutron's meaning of repeated ``fixed_ips=key=value``: values of one key are
    alternatives, different keys must all hold (``--fixed-ip subnet=s,ip-address=a`` is one
    address).  The store ORs specs and ANDs the keys of a spec, so expand the product."""
    by_key: dict[str, list[str]] = {}
    for raw in values:
        key, sep, value = raw.partition("=")
        if not sep or key not in FIXED_IP_KEYS:
            raise HTTPBadRequest(msg=f"Invalid fixed_ips filter '{raw}'")
        by_key.setdefault(key, []).append(value)
    keys = list(by_key)
    return [dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(dict.fromkeys(by_key[k]) for k in keys))]


def _sorts(resource: Resource, keys: Sequence[str], dirs: Sequence[str]) -> list[tuple[str, bool]]:
    if dirs and len(dirs) != len(keys):
        raise HTTPBadRequest(msg="The number of sort_keys and sort_dirs must be same")
    sorts = []
    for i, key in enumerate(keys):
        direction = dirs[i] if dirs else "asc"
        if direction not in ("asc", "desc"):
            raise HTTPBadRequest(
                msg=f"{direction} is invalid value for sort_dirs, valid value is 'asc' and 'desc'"
            )
        attr = "project_id" if key == "tenant_id" else key
        spec = resource.attributes.get(attr)
        if spec is None or not spec.is_sort_key:
            raise HTTPBadRequest(msg=f"{key} is invalid attribute for sort_keys")
        sorts.append((attr, direction == "asc"))
    return sorts


def _limit(values: Sequence[str], max_limit: int) -> int | None:
    if not values:
        return max_limit or None
    try:
        limit = int(values[-1])
    except ValueError:
        raise HTTPBadRequest(msg=f"Limit must be an integer 0 or greater and not '{values[-1]}'")\
            from None
    if limit < 0:
        raise HTTPBadRequest(msg=f"Limit must be an integer 0 or greater and not '{limit}'")
    if limit == 0:
        return max_limit or None
    return min(limit, max_limit) if max_limit else limit


def parse_list(
    resource: Resource,
    params: Sequence[tuple[str, str]],
    *,
    project_ids: list[str] | None = None,
    max_limit: int = 0,
) -> ListRequest:
    """Read a list request's query string; raise HTTPBadRequest or InvalidInput on bad input."""
    grouped: dict[str, list[str]] = {}
    for key, value in params:
        grouped.setdefault(key, []).append(value)
    filters: dict[str, list[Any]] = {}
    tag_args: dict[str, Any] = {}
    fixed_ips: list[dict[str, str]] = []
    for key, values in grouped.items():
        if key in RESERVED:
            continue
        if key in TAG_KEYS and resource.tags:
            tag_args[TAG_KEYS[key]] = _split_tags(values)
        elif key == "fixed_ips" and "fixed_ips" in resource.extra_filters:
            fixed_ips = _fixed_ips(values)
        else:
            attr = "project_id" if key == "tenant_id" else key
            spec = resource.attributes.get(attr)
            if spec is None or not spec.is_filter:
                raise HTTPBadRequest(msg=f"[{key!r}] is invalid attribute for filtering")
            converted = [filter_value(spec, v) for v in values]
            filters[attr] = filters.get(attr, []) + converted
    page_reverse = grouped.get("page_reverse", ["false"])[-1].lower() == "true"
    query = ListQuery(
        filters=filters,
        fixed_ips=fixed_ips,
        sorts=_sorts(resource, grouped.get("sort_key", []), grouped.get("sort_dir", [])),
        limit=_limit(grouped.get("limit", []), max_limit),
        marker=grouped.get("marker", [None])[-1],
        page_reverse=page_reverse,
        project_ids=project_ids,
        **tag_args,
    )
    fields = [f for v in grouped.get("fields", []) for f in v.split(",") if f]
    return ListRequest(query=query, fields=fields)

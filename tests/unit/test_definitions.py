"""Conformance of every resource definition: standard attributes, defaults that pass their own
checks, and filters and sort keys that the store can execute (each is a column)."""

from __future__ import annotations

import pytest

from alcor.api.attributes import NO_DEFAULT, REQUIRED, Resource
from alcor.api.definitions import RESOURCES
from alcor.db import tables

STANDARD = {"id", "project_id", "tenant_id", "description", "revision_number", "created_at",
            "updated_at"}
# Filters the store answers through another table rather than a column.
RELATION_FILTERS = {("ports", "security_groups")}


@pytest.mark.parametrize("resource", RESOURCES.values(), ids=list(RESOURCES))
def test_has_standard_attributes(resource: Resource) -> None:
    assert set(resource.attributes) >= STANDARD


@pytest.mark.parametrize("resource", RESOURCES.values(), ids=list(RESOURCES))
def test_defaults_pass_their_own_checks(resource: Resource) -> None:
    for attr in resource.attributes.values():
        if attr.default not in (REQUIRED, NO_DEFAULT):
            attr.check(attr.default_value())


@pytest.mark.parametrize("resource", RESOURCES.values(), ids=list(RESOURCES))
def test_filters_and_sort_keys_are_columns(resource: Resource) -> None:
    table = tables.TABLES[resource.table]
    for name, attr in resource.attributes.items():
        if name == "tenant_id":
            continue
        if attr.is_filter and (resource.table, name) not in RELATION_FILTERS:
            assert name in table.c, f"{resource.collection}.{name} is a filter without a column"
        if attr.is_sort_key:
            assert name in table.c, f"{resource.collection}.{name} sorts without a column"


@pytest.mark.parametrize("resource", RESOURCES.values(), ids=list(RESOURCES))
def test_every_posted_attribute_is_stored_or_known(resource: Resource) -> None:
    table = tables.TABLES[resource.table]
    write_only = {"tenant_id", "prefixlen", "use_default_subnetpool",
                  "subnet_id"}  # a floating IP's subnet_id picks where its address comes from
    for name, attr in resource.attributes.items():
        if attr.allow_post and name not in write_only:
            assert name in table.c, f"{resource.collection}.{name} is accepted but not stored"


def test_collections_are_unique_and_named() -> None:
    names = [r.name for r in RESOURCES.values()]
    assert len(names) == len(set(names))
    for collection, resource in RESOURCES.items():
        assert resource.collection == collection
        assert resource.table in tables.TABLES

"""What a list request asks for: filters, tag filters, sort order and a page window.

Built by the API edge from Neutron's query conventions, executed by the store.  Values are
already converted to the attribute's type; a list of values means "any of".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Sharing:
    """Rows a project sees besides its own: those where one of ``columns`` is true (a shared
    network), or whose ``parent_key`` names a ``parent_table`` row that is the project's own
    or has one of ``parent_columns`` true (a subnet of a shared network)."""

    columns: tuple[str, ...] = ()
    parent_key: str = ""
    parent_table: str = ""
    parent_columns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ListQuery:
    filters: dict[str, list[Any]] = field(default_factory=dict)
    """attribute -> accepted values (any of)."""
    fixed_ips: list[dict[str, str]] = field(default_factory=list)
    """Port filters on allocations: ``ip_address``, ``subnet_id``, ``ip_address_substr``."""
    tags_all: list[str] = field(default_factory=list)
    tags_any: list[str] = field(default_factory=list)
    not_tags_all: list[str] = field(default_factory=list)
    not_tags_any: list[str] = field(default_factory=list)
    sorts: list[tuple[str, bool]] = field(default_factory=list)
    """(attribute, ascending) pairs; ``id`` is always the last tie-breaker."""
    limit: int | None = None
    marker: str | None = None
    page_reverse: bool = False
    project_ids: list[str] | None = None
    """Visibility: only these projects (None: every project, for admins)."""
    shared: Sharing | None = None
    """With ``project_ids``: other projects' rows visible all the same (shared ones)."""

    @property
    def has_tag_filters(self) -> bool:
        return bool(self.tags_all or self.tags_any or self.not_tags_all or self.not_tags_any)


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    has_more: bool = False

"""The lifecycle every resource shares: create in bulk, show, list, update, delete, tags.

``ResourceService`` owns the transactions: each public method is one transaction on the
store, checks the project's quota on create, stamps standard attributes (revision,
timestamps, tags), checks ``If-Match`` revisions and appends the outbox record.  A
resource's module subclasses it and fills the hooks (``create_one``, ``decorate``,
``before_update``, ``before_delete``).
"""

from __future__ import annotations

import builtins
import dataclasses
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from alcor import errors
from alcor.config import QuotaSettings
from alcor.context import RequestContext
from alcor.db.store import Store, Transaction
from alcor.dpm import outbox
from alcor.query import ListQuery, Page, Sharing
from alcor.services import quotas
from alcor.timestamps import utcnow

MAX_TAGS = 50

Row = dict[str, Any]


def new_id() -> str:
    return str(uuid.uuid4())


def stamp_new(item: Mapping[str, Any], revision: int = 0) -> Row:
    """A new row: id (unless given), revision, timestamps and tags filled in."""
    now = utcnow()
    row = dict(item)
    row.setdefault("id", new_id())
    row.setdefault("tags", [])
    row["revision_number"] = revision
    row["created_at"] = now
    row["updated_at"] = now
    return row


def check_revision(row: Mapping[str, Any], expected: int | None) -> None:
    if expected is not None and row["revision_number"] != expected:
        raise errors.RevisionNumberConstraintFailed(
            expected=expected, current=row["revision_number"]
        )


class ResourceService:
    """Generic CRUD over one table; subclasses add the resource's own semantics."""

    table: ClassVar[str]
    resource_type: ClassVar[str]
    not_found: ClassVar[type[errors.NotFound]] = errors.ResourceNotFound
    not_found_key: ClassVar[str] = "id"
    locks_rows: ClassVar[bool] = False
    """Writes lock the row they change (``SELECT ... FOR UPDATE``) until they commit: for
    resources whose writes create or move other rows (a router's ports)."""
    sharing: ClassVar[Sharing | None] = None
    """Other projects' rows a non-admin lists all the same (``visible`` says the same per
    row)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.quota_defaults = QuotaSettings()
        """Limits of projects without their own (``build_services`` gives the configured ones)."""

    # --- hooks ---------------------------------------------------------------------------

    def create_one(self, txn: Transaction, ctx: RequestContext, item: Row) -> Row:
        """Insert one resource from a checked create body; return the stored row."""
        row = stamp_new(item)
        txn.insert(self.table, row)
        return row

    def decorate(self, txn: Transaction, rows: list[Row]) -> list[Row]:
        """Add derived attributes (e.g. a network's subnets) to rows read from the table."""
        return rows

    def before_update(self, txn: Transaction, ctx: RequestContext, row: Row, changes: Row) -> Row:
        """Check and complete ``changes`` (a checked update body); return what to store."""
        return changes

    def before_delete(self, txn: Transaction, ctx: RequestContext, row: Row) -> None:
        """Refuse (raise an InUse error) or clean up dependants before the row goes."""

    def after_create(self, txn: Transaction, ctx: RequestContext, rows: list[Row]) -> None:
        outbox.append_many(txn, self.resource_type, rows, outbox.CREATE)

    # --- operations ----------------------------------------------------------------------

    def prepare_create(self, ctx: RequestContext, items: list[Row]) -> list[Row]:
        """Checks and rewrites of create bodies that need no storage (runs before the txn)."""
        return items

    def create(self, ctx: RequestContext, items: list[Row]) -> list[Row]:
        """Create every item or none (one transaction)."""
        return self.store.write(self.create_txn, ctx, self.prepare_create(ctx, items))

    def create_txn(self, txn: Transaction, ctx: RequestContext, items: list[Row]) -> list[Row]:
        """A client's create: within the projects' quotas (``quotas.enforce``), or nothing.
        Resources made on the side of another (a router's ports) go to ``create_rows``."""
        quotas.enforce(txn, self.quota_defaults, self.resource_type, items)
        return self.create_rows(txn, ctx, items)

    def create_rows(self, txn: Transaction, ctx: RequestContext, items: list[Row]) -> list[Row]:
        """Insert checked create bodies (no quota check); return the stored rows."""
        rows = [self.create_one(txn, ctx, item) for item in items]
        for row in rows:
            if row.get("tags"):
                self._write_tags(txn, row["id"], row["tags"])
        self.after_create(txn, ctx, rows)
        return self.decorate(txn, rows)

    def get(self, ctx: RequestContext, id_: str) -> Row:
        return self.store.read(self.get_txn, ctx, id_)

    def get_txn(self, txn: Transaction, ctx: RequestContext, id_: str) -> Row:
        return self.decorate(txn, [self.find_visible(txn, ctx, id_)])[0]

    def find_visible(self, txn: Transaction, ctx: RequestContext, id_: str) -> Row:
        """The stored row, or this resource's NotFound (also for another project's row)."""
        row = txn.get(self.table, id_)
        if row is None or not self.visible(ctx, row):
            raise self.not_found(**{self.not_found_key: id_})
        return row

    def visible(self, ctx: RequestContext, row: Mapping[str, Any]) -> bool:
        return ctx.is_admin or row.get("project_id") == ctx.project_id

    def find_writable(self, txn: Transaction, ctx: RequestContext, id_: str, rule: str) -> Row:
        """The row the caller may change: NotFound if it cannot see it, 403
        PolicyNotAuthorized naming the policy ``rule`` (``update_network``) if it sees it but
        may not change it.  A resource that ``locks_rows`` holds the row locked until the
        transaction ends."""
        row = self.find_visible(txn, ctx, id_)
        if not self.writable(txn, ctx, row):
            raise errors.PolicyNotAuthorized(action=f"rule:{rule}")
        if self.locks_rows:
            locked = txn.select(self.table, {"id": id_}, for_update=True)
            if not locked:
                raise self.not_found(**{self.not_found_key: id_})
            row = locked[0]
        return row

    def writable(self, txn: Transaction, ctx: RequestContext, row: Mapping[str, Any]) -> bool:
        """Admins change anything; members their project's rows; readers nothing."""
        return ctx.is_admin or (ctx.can_write and row.get("project_id") == ctx.project_id)

    def scoped(self, ctx: RequestContext, query: ListQuery) -> ListQuery:
        """A non-admin's list: its project's rows and the shared ones."""
        if ctx.is_admin or query.project_ids is not None:
            return query
        return dataclasses.replace(query, project_ids=[ctx.project_id], shared=self.sharing)

    def list(self, ctx: RequestContext, query: ListQuery) -> Page:
        return self.store.read(self._list_txn, ctx, self.scoped(ctx, query))

    def _list_txn(self, txn: Transaction, ctx: RequestContext, query: ListQuery) -> Page:
        page = txn.list(self.table, query)
        return Page(items=self.decorate(txn, page.items), has_more=page.has_more)

    def update(
        self, ctx: RequestContext, id_: str, changes: Row, expected_revision: int | None = None
    ) -> Row:
        return self.store.write(self.update_txn, ctx, id_, changes, expected_revision)

    def update_txn(
        self, txn: Transaction, ctx: RequestContext, id_: str, changes: Row,
        expected_revision: int | None,
    ) -> Row:
        row = self.find_writable(txn, ctx, id_, f"update_{self.resource_type}")
        check_revision(row, expected_revision)
        values = self.before_update(txn, ctx, row, dict(changes))
        if "tags" in values:
            self._write_tags(txn, id_, values["tags"], replace=True)
        return self.save(txn, row, values)

    def save(self, txn: Transaction, row: Row, values: Row) -> Row:
        """Store ``values`` on ``row``, bumping its revision; append the outbox record."""
        values = {k: v for k, v in values.items() if k in row}
        values["revision_number"] = row["revision_number"] + 1
        values["updated_at"] = utcnow()
        txn.update(self.table, {"id": row["id"]}, values)
        row = {**row, **values}
        outbox.append(txn, self.resource_type, row, outbox.UPDATE)
        return self.decorate(txn, [row])[0]

    def delete(self, ctx: RequestContext, id_: str, expected_revision: int | None = None) -> None:
        self.store.write(self.delete_txn, ctx, id_, expected_revision)

    def delete_txn(
        self, txn: Transaction, ctx: RequestContext, id_: str, expected_revision: int | None
    ) -> None:
        row = self.find_writable(txn, ctx, id_, f"delete_{self.resource_type}")
        check_revision(row, expected_revision)
        self.before_delete(txn, ctx, row)
        self.remove(txn, row)

    def remove(self, txn: Transaction, row: Row) -> None:
        """Delete a row that may go, with its tags, and record the deletion."""
        txn.delete("tags", {"resource_id": row["id"]})
        txn.delete(self.table, {"id": row["id"]})
        outbox.append(txn, self.resource_type, row, outbox.DELETE)

    # --- tags ----------------------------------------------------------------------------

    def _write_tags(
        self, txn: Transaction, id_: str, names: builtins.list[str], replace: bool = False
    ) -> None:
        unique = list(dict.fromkeys(names))
        if len(unique) > MAX_TAGS:
            raise errors.TagLimitExceeded(
                resource_type=self.resource_type, resource_id=id_, limit=MAX_TAGS
            )
        if replace:
            txn.delete("tags", {"resource_id": id_})
        txn.insert("tags", [{"resource_id": id_, "tag": t} for t in unique])

    def set_tags(
        self,
        ctx: RequestContext,
        id_: str,
        names: builtins.list[str],
        expected_revision: int | None = None,
    ) -> builtins.list[str]:
        """Replace every tag of a resource (``PUT .../tags``)."""
        return self.store.write(self._set_tags_txn, ctx, id_, names, expected_revision)

    def _set_tags_txn(
        self, txn: Transaction, ctx: RequestContext, id_: str, names: builtins.list[str],
        expected_revision: int | None,
    ) -> builtins.list[str]:
        row = self.find_writable(txn, ctx, id_, f"update_{self.resource_type}")
        check_revision(row, expected_revision)
        unique = list(dict.fromkeys(names))
        self._write_tags(txn, id_, unique, replace=True)
        self.save(txn, row, {"tags": unique})
        return unique

    def add_tag(
        self, ctx: RequestContext, id_: str, tag: str, expected_revision: int | None = None
    ) -> None:
        self.store.write(self._add_tag_txn, ctx, id_, tag, expected_revision)

    def _add_tag_txn(
        self, txn: Transaction, ctx: RequestContext, id_: str, tag: str,
        expected_revision: int | None,
    ) -> None:
        row = self.find_writable(txn, ctx, id_, f"update_{self.resource_type}")
        check_revision(row, expected_revision)
        if tag in row["tags"]:
            return
        names = [*row["tags"], tag]
        self._write_tags(txn, id_, names, replace=True)
        self.save(txn, row, {"tags": names})

    def has_tag(self, ctx: RequestContext, id_: str, tag: str) -> bool:
        return self.store.read(lambda txn: tag in self.find_visible(txn, ctx, id_)["tags"])

    def remove_tag(
        self, ctx: RequestContext, id_: str, tag: str, expected_revision: int | None = None
    ) -> None:
        self.store.write(self._remove_tag_txn, ctx, id_, tag, expected_revision)

    def _remove_tag_txn(
        self, txn: Transaction, ctx: RequestContext, id_: str, tag: str,
        expected_revision: int | None,
    ) -> None:
        row = self.find_writable(txn, ctx, id_, f"update_{self.resource_type}")
        check_revision(row, expected_revision)
        if tag not in row["tags"]:
            raise errors.TagNotFound(tag=tag, resource_type=self.resource_type, resource_id=id_)
        names = [t for t in row["tags"] if t != tag]
        self._write_tags(txn, id_, names, replace=True)
        self.save(txn, row, {"tags": names})

"""Group commit: concurrent writes share one transaction; each fails or succeeds alone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from alcor import errors
from alcor.db.group_commit import GroupCommitter
from alcor.db.store import DuplicateEntry, Store, Transaction


def _tag(txn: Transaction, resource_id: str, tag: str) -> str:
    txn.insert("tags", {"resource_id": resource_id, "tag": tag})
    return tag


def _tag_then_fail(txn: Transaction, resource_id: str) -> None:
    txn.insert("tags", {"resource_id": resource_id, "tag": "doomed"})
    raise errors.InvalidInput(error_message="refused")


def _tags(store: Store) -> set[tuple[str, str]]:
    rows = store.read(lambda txn: txn.select("tags"))
    return {(r["resource_id"], r["tag"]) for r in rows}


def test_concurrent_writes_share_one_transaction(store: Store) -> None:
    committer = GroupCommitter(store)

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(committer.write(_tag, "r1", f"t{i}") for i in range(10)),
            return_exceptions=True,
        )

    results = asyncio.run(main())
    assert results == [f"t{i}" for i in range(10)]
    assert committer.batches == 1
    assert _tags(store) == {("r1", f"t{i}") for i in range(10)}


def test_a_failing_write_is_rolled_back_alone(store: Store) -> None:
    committer = GroupCommitter(store)

    async def main() -> list[Any]:
        return await asyncio.gather(
            committer.write(_tag, "r1", "a"),
            committer.write(_tag_then_fail, "r1"),
            committer.write(_tag, "r1", "a"),  # duplicate of the first: refused alone
            committer.write(_tag, "r1", "b"),
            return_exceptions=True,
        )

    results = asyncio.run(main())
    assert results[0] == "a" and results[3] == "b"
    assert isinstance(results[1], errors.InvalidInput)
    assert isinstance(results[2], DuplicateEntry)
    assert committer.batches == 1
    assert _tags(store) == {("r1", "a"), ("r1", "b")}


def test_batches_are_bounded(store: Store) -> None:
    committer = GroupCommitter(store, max_batch=4)

    async def main() -> list[Any]:
        return await asyncio.gather(*(committer.write(_tag, "r", str(i)) for i in range(10)))

    assert sorted(asyncio.run(main())) == sorted(str(i) for i in range(10))
    assert committer.batches == 3


def test_write_each_retries_a_lost_race(store: Store) -> None:
    attempts: list[int] = []

    def racy(txn: Transaction) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise DuplicateEntry(table="tags", constraint="pk")
        return "won"

    assert store.write_each([(racy, ())]) == ["won"]
    assert len(attempts) == 2


@pytest.mark.parametrize("count", [1, 3])
def test_write_each_returns_results_in_order(store: Store, count: int) -> None:
    calls = [(_tag, ("r", f"x{i}")) for i in range(count)]
    assert store.write_each(calls) == [f"x{i}" for i in range(count)]

"""Fixtures of the functional layer: one real Keystone per session, seeded with projects,
users and roles (``tests/keystone_cloud.py``), started by the first test that asks for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.keystone_cloud import Cloud, Keystone, KeystoneUnavailable, seed


@pytest.fixture(scope="session")
def cloud() -> Iterator[Cloud]:
    try:
        keystone = Keystone.start()
    except KeystoneUnavailable as exc:
        raise pytest.fail.Exception(str(exc), pytrace=False) from None
    try:
        yield seed(keystone)
    finally:
        keystone.stop()

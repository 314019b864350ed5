"""Timestamps as Neutron writes them: UTC, second precision, ``YYYY-MM-DDTHH:MM:SSZ``."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

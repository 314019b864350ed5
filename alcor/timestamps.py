"""Timestamps as Neutron writes them: UTC, second precision, ``YYYY-MM-DDTHH:MM:SSZ``."""

from __future__ import annotations

import time

_last: tuple[int, str] = (0, "")


def utcnow() -> str:
    # Formatting costs more than the rest of a small write's bookkeeping; the text only
    # changes once a second, so it is formatted once a second.
    global _last
    now = int(time.time())
    if _last[0] != now:
        _last = (now, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)))
    return _last[1]

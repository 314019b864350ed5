"""Port MAC addresses: random under the configured OUI, unique per network.

Uniqueness is the ports table's ``(network_id, mac_address)`` constraint, so it holds across
processes: a requested MAC already on the network is refused up front (``MacAddressInUse``),
and a generated one that a concurrent writer took first makes the insert raise
``DuplicateEntry``, which re-runs the whole transaction with fresh random MACs.  A batch
never collides with itself, and a batch of several is checked against the network in one
query so that large bulks on crowded networks do not depend on retries.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterable

from alcor import errors
from alcor.db.store import Transaction

MAC_OCTETS = 6
_rng = random.Random()
"""Seeded from the OS per process; choices need to be unpredictable across writers, not secret."""

MAX_ATTEMPTS = 16
"""Rounds of fresh candidates before a network is declared out of MACs."""


@functools.lru_cache(maxsize=64)
def parse_oui(oui: str) -> tuple[int, int]:
    """The prefix as an integer and its length in octets (1 to 5)."""
    octets = oui.strip().lower().replace("-", ":").split(":")
    if not 1 <= len(octets) < MAC_OCTETS:
        raise ValueError(f"MAC prefix {oui!r} must have 1 to 5 octets")
    value = 0
    for octet in octets:
        if len(octet) != 2 or any(c not in "0123456789abcdef" for c in octet):
            raise ValueError(f"MAC prefix {oui!r} has an invalid octet {octet!r}")
        value = (value << 8) | int(octet, 16)
    if (value >> (8 * (len(octets) - 1))) & 1:
        raise ValueError(f"MAC prefix {oui!r} is a multicast prefix")
    return value, len(octets)


def format_mac(value: int) -> str:
    raw = f"{value:012x}"
    return ":".join(raw[i:i + 2] for i in range(0, 12, 2))


def random_mac(oui: str) -> str:
    """One random MAC address under ``oui`` (e.g. ``fa:16:3e`` gives ``fa:16:3e:xx:xx:xx``)."""
    prefix, length = parse_oui(oui)
    free_bits = 8 * (MAC_OCTETS - length)
    return format_mac((prefix << free_bits) | _rng.getrandbits(free_bits))


def macs_in_use(txn: Transaction, network_id: str, macs: Iterable[str]) -> set[str]:
    """Which of ``macs`` a port of the network already holds (one indexed query)."""
    wanted = sorted(set(macs))
    if not wanted:
        return set()
    return set(txn.scalars("ports", "mac_address",
                           {"network_id": network_id, "mac_address": wanted}))


def check_requested(
    txn: Transaction, network_id: str, macs: list[str], exclude_port: str | None = None
) -> None:
    """Refuse requested MACs that repeat within the request or are held on the network.

    Raises:
        MacAddressInUse: the first MAC that is not free.
    """
    seen: set[str] = set()
    for mac in macs:
        if mac in seen:
            raise errors.MacAddressInUse(net_id=network_id, mac=mac)
        seen.add(mac)
    if not seen:
        return
    where: dict[str, object] = {"network_id": network_id, "mac_address": sorted(seen)}
    holders = txn.select("ports", where, columns=("id", "mac_address"))
    taken = {r["mac_address"] for r in holders if r["id"] != exclude_port}
    for mac in macs:
        if mac in taken:
            raise errors.MacAddressInUse(net_id=network_id, mac=mac)


def generate(txn: Transaction, network_id: str, oui: str, count: int,
             reserved: Iterable[str] = ()) -> list[str]:
    """``count`` distinct random MACs, none of them in ``reserved``.

    A single MAC is left to the unique constraint (a collision costs one retry of the
    transaction, rarer than one extra query would be worth); several are also checked
    against the network, since a large batch on a large network would collide often.

    Raises:
        MacAddressGenerationFailure: no free MACs were found in ``MAX_ATTEMPTS`` rounds.
    """
    taken = set(reserved)
    chosen: list[str] = []
    drawn = found = 0
    for _ in range(MAX_ATTEMPTS):
        need = count - len(chosen)
        if need <= 0:
            return chosen
        share = (found + 1) / (drawn + 1)  # free share seen so far (sized for crowded prefixes)
        batch: list[str] = []
        for _ in range(need if count == 1 else min(int(need / share) + need // 4 + 8,
                                                    16 * need + 1024)):
            mac = random_mac(oui)
            if mac not in taken:
                taken.add(mac)
                batch.append(mac)
        drawn += len(batch)
        if count > 1:
            used = macs_in_use(txn, network_id, batch)
            batch = [m for m in batch if m not in used]
        found += len(batch)
        chosen.extend(batch[:need])
    if len(chosen) < count:
        chosen += _scan_small_space(txn, network_id, oui, count - len(chosen),
                                    set(chosen) | set(reserved))
    return chosen


SMALL_SPACE_BITS = 16
"""Prefixes leaving at most this many free bits are searched exhaustively when random
draws fall short (a crowded small space must not fail while addresses remain)."""


def _scan_small_space(txn: Transaction, network_id: str, oui: str, count: int,
                      exclude: set[str]) -> list[str]:
    prefix, length = parse_oui(oui)
    free_bits = 8 * (MAC_OCTETS - length)
    if free_bits > SMALL_SPACE_BITS:
        raise errors.MacAddressGenerationFailure(net_id=network_id)
    used = set(txn.scalars("ports", "mac_address", {"network_id": network_id})) | exclude
    base = prefix << free_bits
    free = [m for m in (format_mac(base | i) for i in range(1 << free_bits)) if m not in used]
    if len(free) < count:
        raise errors.MacAddressGenerationFailure(net_id=network_id)
    return _rng.sample(free, count)

"""Fixed IP allocation for ports (Neutron's IPAM): which subnets a port's ``fixed_ips`` name,
which addresses it gets, and how an update changes them.

Race-free by the ``ip_allocations`` primary key ``(subnet_id, ip_address)``: candidates are
chosen by reads, the caller inserts the port row and then the allocations, and a writer that
lost a race gets ``DuplicateEntry`` from the insert, which re-runs its whole transaction.

Choosing addresses never enumerates a large pool, and picks at random (not lowest-first), so
concurrent PostgreSQL writers rarely pick the same address:

* pools up to ``SMALL_POOL`` addresses: read the subnet's allocated set and pick among the
  gaps it leaves;
* larger pools (from a /25 up to a v4 /8 or a v6 /64): random probes over the pools, checked
  with one ``IN`` query per round, each round sized by the free share seen so far; a round
  that covers the whole pool is exact; once probes show the pool is dense (over 98 % taken)
  it falls back to reading the allocated set and walking the gaps between allocations.

Why probes start as low as 64 addresses: reading the allocated set costs O(allocated) per
request, which made single creates into a /20 fall to ~250/s as it filled (set reads up to
4,096 addresses), while adaptive probes stayed at ~2,300-2,500/s from empty to full on every
size measured (/26, /24, /22, /20, /9; service level, SQLite, one core).

A bulk request asks once per subnet for all the addresses its ports need there.  Addresses
requested by value may lie outside the pools (as in Neutron) but must lie inside the CIDR and
not be its network (or v4 broadcast) address.  IPv6 SLAAC and DHCPv6-stateless subnets give
every non-router port its EUI-64 address, derived from the MAC (Neutron's auto-address rule).
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
import random
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alcor import errors
from alcor.db.store import Transaction

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Row = dict[str, Any]

SMALL_POOL = 64
"""Pools up to this size are served from the allocated set; larger ones by random probes."""
PROBE_CAP = 2048
"""Most candidates checked by one probe query."""
DENSE_SAMPLE = 256
DENSE_SHARE = 0.02
"""Probing gives way to the gap scan once ``DENSE_SAMPLE`` candidates found less than this
share free (a pool over 98 % full)."""

ROUTER_INTERFACE_OWNERS = (
    "network:router_interface",
    "network:ha_router_replicated_interface",
    "network:router_interface_distributed",
)
ROUTER_INTERFACE_OWNERS_SNAT = (*ROUTER_INTERFACE_OWNERS, "network:router_centralized_snat")
ROUTER_PORT_OWNERS = (*ROUTER_INTERFACE_OWNERS_SNAT, "network:router_gateway")
AUTO_ADDRESS_MODES = ("slaac", "dhcpv6-stateless")

_rng = random.Random()


# --- subnets -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subnet:
    """The parts of a subnet row that allocation needs, parsed once."""

    id: str
    network_id: str
    cidr: IPNetwork
    pools: tuple[tuple[int, int], ...]
    gateway: int | None
    auto_address: bool

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Subnet:
        pools = tuple((p["start"], p["end"]) for p in row.get("allocation_pools") or ())
        return _parse_subnet(row["id"], row["network_id"], row["cidr"], pools,
                             row.get("gateway_ip"), row.get("ipv6_address_mode"),
                             row.get("ipv6_ra_mode"))

    @property
    def version(self) -> int:
        return self.cidr.version

    def text(self, value: int) -> str:
        """The canonical text of an address of this subnet's family."""
        if self.version == 4:
            return socket.inet_ntoa(value.to_bytes(4, "big"))
        return str(ipaddress.IPv6Address(value))

    def value(self, text: str) -> int:
        """The integer of a stored (canonical) address of this subnet's family."""
        if self.version == 4:
            return int.from_bytes(socket.inet_aton(text), "big")
        return int(ipaddress.IPv6Address(text))

    def accepts(self, ip: str, device_owner: str = "") -> bool:
        """Neutron's ``check_subnet_ip``: inside the CIDR and not its network address
        (v6 router ports excepted) nor, in v4, its broadcast address."""
        addr = ipaddress.ip_address(ip)
        if addr.version != self.version or addr not in self.cidr:
            return False
        if self.version == 6:
            return addr != self.cidr.network_address or device_owner in ROUTER_PORT_OWNERS
        return addr not in (self.cidr.network_address, self.cidr.broadcast_address)

    def eui64(self, mac: str) -> int:
        """The SLAAC address of ``mac`` in this subnet (modified EUI-64 interface id)."""
        value = int(mac.replace(":", "").replace("-", ""), 16)
        iid = ((value >> 24) << 40) | (0xFFFE << 24) | (value & 0xFFFFFF)
        return int(self.cidr.network_address) + (iid ^ (1 << 57))


@functools.lru_cache(maxsize=4096)
def _parse_subnet(
    id_: str, network_id: str, cidr_text: str, pools: tuple[tuple[str, str], ...],
    gateway: str | None, address_mode: str | None, ra_mode: str | None,
) -> Subnet:
    """Parse a subnet's addresses once per distinct definition (subnets rarely change)."""
    cidr = ipaddress.ip_network(cidr_text, strict=False)
    return Subnet(
        id=id_,
        network_id=network_id,
        cidr=cidr,
        pools=tuple(sorted((int(ipaddress.ip_address(a)), int(ipaddress.ip_address(b)))
                           for a, b in pools)),
        gateway=int(ipaddress.ip_address(gateway)) if gateway else None,
        auto_address=cidr.version == 6 and (address_mode in AUTO_ADDRESS_MODES
                                            or ra_mode in AUTO_ADDRESS_MODES),
    )


def load_subnets(txn: Transaction, network_ids: Iterable[str]) -> dict[str, list[Subnet]]:
    """The subnets of each network, oldest first (one query)."""
    ids = sorted(set(network_ids))
    found: dict[str, list[Subnet]] = {n: [] for n in ids}
    if not ids:
        return found
    for row in txn.select("subnets", {"network_id": ids}, order_by=("created_at", "id"),
                          columns=("id", "network_id", "cidr", "allocation_pools",
                                   "gateway_ip", "ipv6_address_mode", "ipv6_ra_mode")):
        found[row["network_id"]].append(Subnet.from_row(row))
    return found


# --- what a port asks for ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Want:
    """One address a port needs: from the first of ``subnets`` with room, or exactly ``ip``."""

    subnets: tuple[Subnet, ...]
    ip: int | None = None


def subnet_for_entry(
    txn: Transaction, entry: Mapping[str, str], subnets: Sequence[Subnet], network_id: str,
    device_owner: str,
) -> Subnet:
    """The subnet a ``fixed_ips`` entry names, checked as Neutron's
    ``_get_subnet_for_fixed_ip`` does (same errors, same wording)."""
    if not subnets:
        raise errors.InvalidInput(error_message="IP allocation requires subnets for network")
    ip = entry.get("ip_address")
    if "subnet_id" in entry:
        subnet = next((s for s in subnets if s.id == entry["subnet_id"]), None)
        if subnet is None:
            raise _foreign_subnet(txn, entry["subnet_id"], network_id)
        if ip is not None and not subnet.accepts(ip, device_owner):
            raise errors.InvalidIpForSubnet(ip_address=ip)
        return subnet
    if ip is None:
        raise errors.InvalidInput(error_message="IP allocation requires subnet_id or ip_address")
    for subnet in subnets:
        if subnet.accepts(ip, device_owner):
            return subnet
    raise errors.InvalidIpForNetwork(ip_address=ip)


def _foreign_subnet(txn: Transaction, subnet_id: str, network_id: str) -> errors.AlcorError:
    owner = txn.scalars("subnets", "network_id", {"id": subnet_id})
    if not owner:
        return errors.SubnetNotFound(subnet_id=subnet_id)
    return errors.InvalidInput(
        error_message=f"Failed to create port on network {owner[0]}, because fixed_ips "
        f"included invalid subnet {subnet_id}"
    )


def wants_for_entries(
    txn: Transaction, entries: Sequence[Mapping[str, str]], subnets: Sequence[Subnet],
    network_id: str, device_owner: str,
) -> list[Want]:
    """The addresses explicit ``fixed_ips`` entries ask for (Neutron's
    ``_test_fixed_ips_for_port``); auto-address subnets are added separately."""
    wants = []
    for entry in entries:
        subnet = subnet_for_entry(txn, entry, subnets, network_id, device_owner)
        ip = entry.get("ip_address")
        if ip is not None:
            if subnet.auto_address and device_owner not in ROUTER_INTERFACE_OWNERS:
                raise errors.AllocationOnAutoAddressSubnet(ip=ip, subnet_id=subnet.id)
            wants.append(Want((subnet,), int(ipaddress.ip_address(ip))))
        elif device_owner in ROUTER_INTERFACE_OWNERS_SNAT or not subnet.auto_address:
            wants.append(Want((subnet,)))
    return wants


def default_wants(subnets: Sequence[Subnet]) -> list[Want]:
    """No ``fixed_ips`` given: one address from the first IPv4 subnet with room and one
    from the first stateful IPv6 subnet with room."""
    v4 = tuple(s for s in subnets if s.version == 4)
    v6 = tuple(s for s in subnets if s.version == 6 and not s.auto_address)
    return [Want(group) for group in (v4, v6) if group]


def auto_address_wants(
    subnets: Sequence[Subnet], device_owner: str, mac: str, handled: Iterable[str] = ()
) -> list[Want]:
    """The EUI-64 address of every SLAAC / DHCPv6-stateless subnet (not for router ports)."""
    if device_owner in ROUTER_INTERFACE_OWNERS_SNAT:
        return []
    skip = set(handled)
    return [Want((s,), s.eui64(mac)) for s in subnets if s.auto_address and s.id not in skip]


def wants_for_port(
    txn: Transaction, subnets: Sequence[Subnet], fixed_ips: Sequence[Mapping[str, str]] | None,
    network_id: str, device_owner: str, mac: str,
) -> list[Want]:
    """Everything a new port asks for: its ``fixed_ips`` (or the defaults when it gave none)
    plus its auto-address subnets."""
    if fixed_ips is None:
        wants = default_wants(subnets)
    else:
        wants = wants_for_entries(txn, fixed_ips, subnets, network_id, device_owner)
    return wants + auto_address_wants(subnets, device_owner, mac)


# --- choosing addresses --------------------------------------------------------------------


@dataclass(slots=True)
class Ranges:
    """Inclusive integer ranges, indexable as one sequence of addresses."""

    spans: list[tuple[int, int]]
    starts: list[int] = field(default_factory=list)
    total: int = 0

    def __post_init__(self) -> None:
        for first, last in self.spans:
            self.starts.append(self.total)
            self.total += last - first + 1

    def at(self, index: int) -> int:
        i = bisect.bisect_right(self.starts, index) - 1
        return self.spans[i][0] + index - self.starts[i]

    def sample(self, n: int) -> list[int]:
        """Up to ``n`` distinct members, chosen uniformly at random."""
        n = min(n, self.total)
        if n * 4 >= self.total:
            indices: Iterable[int] = _rng.sample(range(self.total), n)
        else:
            picked: set[int] = set()
            while len(picked) < n:
                picked.add(_rng.randrange(self.total))
            indices = picked
        return [self.at(i) for i in indices]


def gaps(pools: Sequence[tuple[int, int]], taken: Sequence[int]) -> list[tuple[int, int]]:
    """The parts of ``pools`` that ``taken`` (sorted) leaves free; O(len(taken) + pools)."""
    free = []
    for first, last in pools:
        cursor = first
        lo = bisect.bisect_left(taken, first)
        hi = bisect.bisect_right(taken, last)
        for value in taken[lo:hi]:
            if value > cursor:
                free.append((cursor, value - 1))
            cursor = max(cursor, value + 1)
        if cursor <= last:
            free.append((cursor, last))
    return free


class SubnetChooser:
    """The free addresses of one subnet as one transaction sees them."""

    def __init__(self, txn: Transaction, subnet: Subnet, reserved: set[int]) -> None:
        self.txn = txn
        self.subnet = subnet
        self.reserved = reserved
        """Addresses this transaction already gave out or was asked for by value."""
        if subnet.gateway is not None:
            self.reserved.add(subnet.gateway)
        self.pools = Ranges(list(subnet.pools))
        self.allocated: set[int] | None = None
        """The subnet's allocations, once read (dense or small pools only)."""
        self.exhausted = False
        """Known to have no free address left for this transaction."""

    def take(self, n: int) -> list[int]:
        """Up to ``n`` free addresses, fewer only when the pools have no more."""
        if n <= 0 or self.pools.total == 0 or self.exhausted:
            return []
        got: list[int] = []
        if self.allocated is None and self.pools.total > SMALL_POOL:
            got = self._probe(n)
        if len(got) < n and not self.exhausted:
            got += self._scan(n - len(got))
        self.exhausted = self.exhausted or len(got) < n
        return got

    def _probe(self, n: int) -> list[int]:
        """Random candidates checked with one query per round, each round sized by the free
        share seen so far; stops once the pool proves dense, leaving the rest to the scan."""
        got: list[int] = []
        probed = found = 0
        while len(got) < n:
            share = (found + 1) / (probed + 2)
            if probed >= DENSE_SAMPLE and share < DENSE_SHARE:
                break
            size = min(int(2 * (n - len(got)) / share) + 2, PROBE_CAP)
            sample = self.pools.sample(size)
            candidates = [c for c in sample if c not in self.reserved]
            if not candidates:
                break
            texts = {self.subnet.text(c): c for c in candidates}
            used = set(self.txn.scalars("ip_allocations", "ip_address",
                                        {"subnet_id": self.subnet.id,
                                         "ip_address": list(texts)}))
            free = [c for t, c in texts.items() if t not in used]
            for value in free[: n - len(got)]:
                self.reserved.add(value)
                got.append(value)
            probed += len(candidates)
            found += len(free)
            if len(sample) == self.pools.total:
                self.exhausted = len(got) < n  # the whole pool was checked: exact
                break
        return got

    def _scan(self, n: int) -> list[int]:
        if self.allocated is None:
            rows = self.txn.scalars("ip_allocations", "ip_address", {"subnet_id": self.subnet.id})
            self.allocated = {self.subnet.value(r) for r in rows}
        taken = sorted(self.allocated | self.reserved)
        chosen = Ranges(gaps(self.subnet.pools, taken)).sample(n)
        self.reserved.update(chosen)
        return chosen


@dataclass(slots=True)
class Slot:
    """One automatic address still to find for one port."""

    port_id: str
    position: int
    want: Want
    next_subnet: int = 0


class AddressPlan:
    """Chooses the addresses of a batch of ports on one network inside one transaction."""

    def __init__(self, txn: Transaction, network_id: str) -> None:
        self.txn = txn
        self.network_id = network_id
        self.reserved: dict[str, set[int]] = {}
        self.choosers: dict[str, SubnetChooser] = {}

    def allocate(self, requests: Sequence[tuple[str, Sequence[Want]]]) -> dict[str, list[Row]]:
        """``{port_id: [{subnet_id, ip_address}, ...]}`` in the order each port asked.

        Raises:
            IpAddressAlreadyAllocated: an address asked for by value is taken.
            IpAddressGenerationFailure: no subnet a port may use has a free address left.
        """
        chosen: dict[str, list[tuple[Subnet, int] | None]] = {
            port_id: [None] * len(wants) for port_id, wants in requests
        }
        self._claim_specific(requests, chosen)
        self._fill_automatic(requests, chosen)
        return {
            port_id: [{"subnet_id": s.id, "ip_address": s.text(v)} for s, v in filter(None, ips)]
            for port_id, ips in chosen.items()
        }

    def _claim_specific(
        self, requests: Sequence[tuple[str, Sequence[Want]]],
        chosen: dict[str, list[tuple[Subnet, int] | None]],
    ) -> None:
        asked: dict[tuple[str, str], Subnet] = {}
        for port_id, wants in requests:
            for i, want in enumerate(wants):
                if want.ip is None:
                    continue
                subnet = want.subnets[0]
                key = (subnet.id, subnet.text(want.ip))
                if key in asked or want.ip in self.reserved.get(subnet.id, ()):
                    raise errors.IpAddressAlreadyAllocated(ip=key[1], subnet_id=subnet.id)
                asked[key] = subnet
                self.reserved.setdefault(subnet.id, set()).add(want.ip)
                chosen[port_id][i] = (subnet, want.ip)
        self._check_free(asked)

    def _check_free(self, asked: Mapping[tuple[str, str], Subnet]) -> None:
        if not asked:
            return
        where = {"subnet_id": sorted({k[0] for k in asked}),
                 "ip_address": sorted({k[1] for k in asked})}
        for row in self.txn.select("ip_allocations", where, columns=("subnet_id", "ip_address")):
            key = (row["subnet_id"], row["ip_address"])
            if key in asked:
                raise errors.IpAddressAlreadyAllocated(ip=key[1], subnet_id=key[0])

    def _fill_automatic(
        self, requests: Sequence[tuple[str, Sequence[Want]]],
        chosen: dict[str, list[tuple[Subnet, int] | None]],
    ) -> None:
        pending = [Slot(port_id, i, want) for port_id, wants in requests
                   for i, want in enumerate(wants) if want.ip is None]
        while pending:
            by_subnet: dict[str, list[Slot]] = {}
            for slot in pending:
                if slot.next_subnet >= len(slot.want.subnets):
                    raise errors.IpAddressGenerationFailure(net_id=self.network_id)
                by_subnet.setdefault(slot.want.subnets[slot.next_subnet].id, []).append(slot)
            pending = []
            for slots in by_subnet.values():
                subnet = slots[0].want.subnets[slots[0].next_subnet]
                values = self._chooser(subnet).take(len(slots))
                for slot, value in zip(slots, values, strict=False):
                    chosen[slot.port_id][slot.position] = (subnet, value)
                for slot in slots[len(values):]:
                    slot.next_subnet += 1
                    pending.append(slot)

    def _chooser(self, subnet: Subnet) -> SubnetChooser:
        if subnet.id not in self.choosers:
            reserved = self.reserved.setdefault(subnet.id, set())
            self.choosers[subnet.id] = SubnetChooser(self.txn, subnet, reserved)
        return self.choosers[subnet.id]


def allocation_rows(network_id: str, port_id: str, fixed_ips: Iterable[Mapping[str, str]]
                    ) -> list[Row]:
    """The ``ip_allocations`` rows that hold a port's addresses."""
    return [{"subnet_id": ip["subnet_id"], "ip_address": ip["ip_address"],
             "network_id": network_id, "port_id": port_id} for ip in fixed_ips]


# --- updates -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """How an update's ``fixed_ips`` changes a port's addresses."""

    keep: list[Row]
    remove: list[Row]
    add: list[Mapping[str, str]]
    """Requested entries that are not among the port's addresses yet."""


def diff_fixed_ips(
    original: Sequence[Row], requested: Sequence[Mapping[str, str]],
    subnets: Sequence[Subnet], device_owner: str,
) -> Change:
    """Neutron's ``_get_changed_ips_for_port``: keep the addresses still asked for (by value,
    or by subnet), add the rest, drop what is no longer named, except automatic (SLAAC)
    addresses, which stay unless the port is a router port."""
    by_ip = {ip["ip_address"]: ip for ip in original}
    keep: list[Row] = []
    add: list[Mapping[str, str]] = []
    for entry in requested:
        if "ip_address" in entry:
            found = by_ip.pop(_canonical(entry["ip_address"]), None)
            if found is not None:
                keep.append(found)
            else:
                add.append(entry)
    by_subnet: dict[str, list[Row]] = {}
    for ip in by_ip.values():
        by_subnet.setdefault(ip["subnet_id"], []).append(ip)
    for entry in requested:
        if "ip_address" in entry:
            continue
        left = by_subnet.get(entry.get("subnet_id", ""))
        if left:
            keep.append(left.pop(0))
        else:
            add.append(entry)
    auto = {s.id for s in subnets if s.auto_address}
    remove: list[Row] = []
    for ips in by_subnet.values():
        for ip in ips:
            if ip["subnet_id"] in auto and device_owner not in ROUTER_INTERFACE_OWNERS_SNAT:
                keep.append(ip)
            else:
                remove.append(ip)
    order = {ip["ip_address"]: i for i, ip in enumerate(original)}
    keep.sort(key=lambda ip: order[ip["ip_address"]])
    return Change(keep=keep, remove=remove, add=add)


def _canonical(ip: str) -> str:
    return str(ipaddress.ip_address(ip))


def release(txn: Transaction, port_id: str, ips: Iterable[Mapping[str, str]]) -> None:
    """Release addresses of a port (they are reusable at once)."""
    for subnet_id, group in _by_subnet(ips).items():
        txn.delete("ip_allocations",
                   {"port_id": port_id, "subnet_id": subnet_id, "ip_address": group})


def _by_subnet(ips: Iterable[Mapping[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for ip in ips:
        grouped.setdefault(ip["subnet_id"], []).append(ip["ip_address"])
    return grouped

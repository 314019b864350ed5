"""The host's security groups and anti-spoofing in nftables: the state the agent programmed
(port numbers, conntrack zones, which port and group chains exist), one atomic nft
transaction per call through libnftables in-process, and the sweep after a restart.

The rules themselves are rendered by ``firewall_rules`` (see its docstring for the layout).
Each call writes only what it touches: a port's chains and map entries, a group's chains and
sets, plus the chains of the ports whose group list changes meaning (a group arriving or
leaving).  The state starts from the kernel (the tables are read back on first use), so a
restarted agent keeps every port's mark number and every bridge's zone, and re-applying a
configuration leaves the ruleset byte-identical.  Enables br_netfilter for IPv4 and IPv6 in
its netns (the sysctls are per netns).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import nftables

from alcor.agent.linux import firewall_rules as fr
from alcor.agent.linux.namespaces import entered
from alcor.agent.linux.overlay import BRIDGE_PREFIX
from alcor.rpc._generated import port_pb2, securitygroup_pb2

log = logging.getLogger(__name__)

SYSCTLS = ("net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables")
_PORT_CHAIN_PREFIXES = {"bridge": ("spoof_", "mark_"), "inet": ("egress_", "ingress_")}


class NftError(RuntimeError):
    """nft refused a transaction; nothing of it was applied."""


@dataclass
class KernelView:
    """What the alcor tables hold, as far as this module needs to know."""

    marks: dict[str, int] = field(default_factory=dict)  # port id -> its mark number
    taps: dict[str, str] = field(default_factory=dict)  # port id -> tap in in_ports
    out_taps: dict[str, str] = field(default_factory=dict)  # port id -> tap in out_ports
    zones: dict[int, int] = field(default_factory=dict)  # VNI -> conntrack zone
    port_chains: dict[str, set[str]] = field(default_factory=dict)  # port id -> "family chain"
    groups: set[str] = field(default_factory=set)  # groups with rule chains
    sets: set[str] = field(default_factory=set)  # groups with remote-address sets
    present: bool = False  # the tables exist


def parse_view(listings: Iterable[list[dict[str, Any]]]) -> KernelView:
    """Read a KernelView from ``nft -j list table`` outputs of the two alcor tables."""
    view = KernelView()
    for items in listings:
        for item in items:
            if "table" in item:
                view.present = True
            elif "chain" in item:
                _parse_chain(view, item["chain"])
            elif "map" in item:
                _parse_map(view, item["map"])
            elif "set" in item and item["set"]["name"][:4] in ("rg4_", "rg6_"):
                view.sets.add(item["set"]["name"][4:])
    return view


def _parse_chain(view: KernelView, chain: dict[str, Any]) -> None:
    name, family = chain["name"], chain["family"]
    if family == "inet" and name.startswith("sg_"):
        for suffix in ("_ingress", "_egress"):
            if name.endswith(suffix):
                view.groups.add(name[3:-len(suffix)])
        return
    for prefix in _PORT_CHAIN_PREFIXES.get(family, ()):
        if name.startswith(prefix):
            view.port_chains.setdefault(name[len(prefix):], set()).add(f"{family} {name}")


def _target(value: Any, prefix: str) -> str | None:
    if isinstance(value, dict) and "jump" in value:
        target = str(value["jump"]["target"])
        if target.startswith(prefix):
            return target[len(prefix):]
    return None


def _parse_map(view: KernelView, m: dict[str, Any]) -> None:
    elements = m.get("elem", [])
    name = (m["family"], m["name"])
    for key, value in elements:
        if name == ("inet", "zones") and str(key).startswith(BRIDGE_PREFIX):
            view.zones[int(str(key)[len(BRIDGE_PREFIX):])] = int(value)
        elif name == ("inet", "egress_by_mark") and (pid := _target(value, "egress_")):
            view.marks[pid] = int(key)
        elif name == ("bridge", "in_ports") and (pid := _target(value, "spoof_")):
            view.taps[pid] = str(key)
        elif name == ("bridge", "out_ports") and (pid := _target(value, "mark_")):
            view.out_taps[pid] = str(key)


def _allocate(used: Iterable[int]) -> int:
    taken = set(used)
    for number in range(1, fr.MAX_NUMBER + 1):
        if number not in taken:
            return number
    raise fr.FirewallError("no free 16-bit number left (ports or zones)")


class Firewall:
    """Security groups and anti-spoofing for the ports of one host netns (None: the current
    one).  Thread-safe; every public call is one nft transaction, or raises and changes
    nothing."""

    def __init__(self, netns: str | None = None) -> None:
        self._netns = netns
        self._lock = threading.Lock()
        self._nft: nftables.Nftables | None = None
        self._view = KernelView()
        self._ports: dict[str, fr.PortFilter] = {}
        self._groups: dict[str, securitygroup_pb2.SecurityGroupConfiguration] = {}
        self._swept = False
        self._base_done = False  # the tables and hooked chains were (re)written since start

    # --- the interface --------------------------------------------------------------------

    def set_port(self, port: port_pb2.PortConfiguration, tap: str, vni: int) -> None:
        pf = fr.port_filter(port, tap, vni)
        pid = pf.port_id
        with self._lock:
            self._load()
            view = self._view
            zone = view.zones.get(vni) or _allocate(view.zones.values())
            lines = fr.zone_script(vni, zone)
            if pf.secured:
                number = view.marks.get(pid) or _allocate(view.marks.values())
                lines += self._tap_removal(pid, keep=tap)
                lines += fr.port_script(pf, number, view.groups)
            else:
                lines += self._port_removal(pid)
            self._apply(lines)
            view.zones[vni] = zone
            self._forget_port(pid)
            self._ports[pid] = pf
            if pf.secured:
                self._remember_port(pf, number)

    def remove_port(self, port_id: str) -> None:
        with self._lock:
            self._load()
            lines = self._port_removal(port_id)
            pf = self._ports.get(port_id)
            remaining = [p for p in self._ports.values() if p.port_id != port_id]
            stale_zones = self._stale_zones({pf.vni}, remaining) if pf and self._swept else set()
            lines += [line for vni in sorted(stale_zones) for line in fr.zone_removal(vni)]
            self._apply(lines)
            self._forget_port(port_id)
            self._ports.pop(port_id, None)
            for vni in stale_zones:
                del self._view.zones[vni]

    def set_group(self, group: securitygroup_pb2.SecurityGroupConfiguration,
                  members: Collection[str] = ()) -> None:
        """(Re)write a group's rules and its remote-address sets (``members``: the addresses
        of its members, which rules elsewhere naming it as remote group match)."""
        gid = fr.checked_id(group.id)
        with self._lock:
            self._load()
            lines = fr.group_script(group, members)
            if gid not in self._view.groups:
                lines += self._rerender_ports({gid}, self._view.groups | {gid})
            self._apply(lines)
            self._groups[gid] = group
            self._view.groups.add(gid)
            self._view.sets |= {gid, *fr.remote_groups(group)}

    def remove_group(self, group_id: str) -> None:
        gid = fr.checked_id(group_id)
        with self._lock:
            self._load()
            view = self._view
            others = {g: c for g, c in self._groups.items() if g != gid}
            # Chains or rules written before a restart and not re-applied yet may still use
            # the group: then empty its chains and sets instead of deleting them (sweep will).
            unknown_users = bool(set(view.port_chains) - set(self._ports)) or bool(
                view.groups - set(others) - {gid})
            lines: list[str] = []
            if gid in view.groups:
                lines += self._rerender_ports({gid}, view.groups - {gid})
                lines += (fr.group_flush(gid) if unknown_users else fr.group_removal(gid))
            keep_sets = unknown_users or gid in self._referenced(others)
            if gid in view.sets:
                lines += fr.sets_flush(gid) if keep_sets else fr.sets_removal(gid)
            self._apply(lines)
            self._groups.pop(gid, None)
            if not unknown_users:
                view.groups.discard(gid)
            if not keep_sets:
                view.sets.discard(gid)

    def sweep(self, keep_ports: set[str], keep_groups: set[str]) -> None:
        """Remove every owned chain, set and map entry of the ports and groups not kept."""
        with self._lock:
            self._load()
            self._view = view = self._read_view()
            stale_ports = (set(view.port_chains) | set(view.marks) | set(view.taps)
                           | set(view.out_taps) | set(self._ports)) - keep_ports
            lines = [line for pid in sorted(stale_ports) for line in self._port_removal(pid)]
            kept = [pf for pf in self._ports.values() if pf.port_id in keep_ports]
            stale_groups = view.groups - keep_groups
            lines += [line for pf in kept if pf.secured and stale_groups & set(pf.group_ids)
                      for line in fr.port_chains_script(pf, view.groups - stale_groups)]
            lines += [line for gid in sorted(stale_groups) for line in fr.group_removal(gid)]
            stale_sets = self._stale_sets(keep_groups, stale_groups)
            lines += [line for gid in sorted(stale_sets) for line in fr.sets_removal(gid)]
            known_all = keep_ports <= {pf.port_id for pf in kept}
            stale_zones = self._stale_zones(set(view.zones), kept) if known_all else set()
            lines += [line for vni in sorted(stale_zones) for line in fr.zone_removal(vni)]
            self._apply(lines)
            for pid in stale_ports:
                self._forget_port(pid)
                self._ports.pop(pid, None)
            for gid in stale_groups | (set(self._groups) - keep_groups):
                self._groups.pop(gid, None)
            view.groups -= stale_groups
            view.sets -= stale_sets
            for vni in stale_zones:
                del view.zones[vni]
            self._swept = True

    def ruleset(self) -> str:
        """The text of the alcor tables (what the tests compare)."""
        with self._lock:
            self._load()
            return "".join(self._run(f"list table {family} {fr.TABLE}")
                           for family in ("bridge", "inet") if self._view.present)

    # --- pieces of scripts ----------------------------------------------------------------

    def _stale_zones(self, vnis: set[int], ports: Iterable[fr.PortFilter]) -> set[int]:
        used = {pf.vni for pf in ports}
        return {vni for vni in vnis if vni in self._view.zones and vni not in used}

    def _tap_removal(self, pid: str, keep: str | None = None) -> list[str]:
        """Delete the port's entries in in_ports/out_ports (except under the tap ``keep``)."""
        maps = (("in_ports", self._view.taps), ("out_ports", self._view.out_taps))
        return [f'delete element bridge {fr.TABLE} {name} {{ "{taps[pid]}" }}'
                for name, taps in maps if pid in taps and taps[pid] != keep]

    def _port_removal(self, pid: str) -> list[str]:
        """Delete whatever the kernel holds for a port (map entries before chains)."""
        lines = self._tap_removal(pid)
        if pid in self._view.marks:
            lines += fr.mark_removal(self._view.marks[pid])
        for name in sorted(self._view.port_chains.get(pid, ())):
            family, chain = name.split()
            lines.append(f"delete chain {family} {fr.TABLE} {chain}")
        return lines

    def _rerender_ports(self, gids: set[str], known: set[str]) -> list[str]:
        """The chains of the secured ports using any of ``gids``, for ``known`` groups."""
        return [line for pf in self._ports.values()
                if pf.secured and gids & set(pf.group_ids)
                for line in fr.port_chains_script(pf, known)]

    @staticmethod
    def _referenced(groups: dict[str, securitygroup_pb2.SecurityGroupConfiguration]
                    ) -> set[str]:
        return {r for g in groups.values() for r in fr.remote_groups(g)}

    def _stale_sets(self, keep_groups: set[str], stale_groups: set[str]) -> set[str]:
        kept = {g: c for g, c in self._groups.items() if g in keep_groups}
        if set(kept) != (self._view.groups - stale_groups):
            return set()  # a kept group's rules are not known here, nor what sets they use
        return self._view.sets - keep_groups - self._referenced(kept)

    # --- state bookkeeping ----------------------------------------------------------------

    def _remember_port(self, pf: fr.PortFilter, number: int) -> None:
        pid, view = pf.port_id, self._view
        view.marks[pid] = number
        view.taps[pid] = view.out_taps[pid] = pf.tap
        view.port_chains[pid] = {
            f"bridge {fr.spoof_chain(pid)}", f"bridge {fr.mark_chain(pid)}",
            f"inet {fr.port_chain(pid, 'egress')}", f"inet {fr.port_chain(pid, 'ingress')}"}

    def _forget_port(self, pid: str) -> None:
        view = self._view
        view.marks.pop(pid, None)
        view.taps.pop(pid, None)
        view.out_taps.pop(pid, None)
        view.port_chains.pop(pid, None)

    # --- running nft ----------------------------------------------------------------------

    def _load(self) -> None:
        """On first use: open libnftables in the netns, enable br_netfilter, read the state."""
        if self._nft is not None:
            return
        with entered(self._netns):
            for name in SYSCTLS:
                try:
                    with open(f"/proc/sys/{name}", "w") as f:
                        f.write("1\n")
                except OSError as e:
                    raise NftError(f"cannot enable br_netfilter ({name}): {e}") from e
            nft = nftables.Nftables()  # its netlink socket stays in the netns it opened in
        nft.set_handle_output(False)
        self._nft = nft
        self._view = self._read_view()

    def _read_view(self) -> KernelView:
        listings = []
        for family in ("bridge", "inet"):
            text = self._run(f"list table {family} {fr.TABLE}", as_json=True, tolerant=True)
            if text:
                listings.append(json.loads(text)["nftables"])
        return parse_view(listings)

    def _apply(self, lines: list[str]) -> None:
        """Run the lines (after the base tables when they are missing) as one transaction."""
        if not lines:
            return
        script = [*([] if self._base_done else fr.base_script()), *lines]
        self._run("\n".join(script) + "\n")
        self._base_done = self._view.present = True

    def _run(self, script: str, as_json: bool = False, tolerant: bool = False) -> str:
        nft = self._nft
        assert nft is not None
        nft.set_json_output(as_json)
        rc, out, err = nft.cmd(script)
        if rc != 0:
            if tolerant:
                return ""
            log.debug("nft refused:\n%s", script)
            raise NftError(f"nft: {str(err).strip()}")
        return str(out)

"""``LinuxProgrammer``: the agent's default data plane, a ``Programmer`` that dispatches each
resource kind to the Linux helpers.

- VPC: its VNI's segment (``alcbr<vni>`` + ``alcvx<vni>``, MTU = the VPC's or 1450).
- SUBNET: remembered (VNI, prefix, gateway, DNS, host routes, DHCP on/off) for the ports,
  neighbours and leases that need it; its segment is created if the VPC has not been.
- PORT: the local interface (``workloads``), then the firewall's view of the port.
- NEIGHBOR: per fixed IP (the VNI is the fixed IP's ``tunnel_id``, else its subnet's, else the
  VPC's) the remote MAC as static FDB entries towards ``host_ip_address`` and IP -> MAC as a
  neighbour entry; allowed address pairs likewise.  A neighbour on this host (its
  ``host_ip_address`` is the local IP) programs nothing: its port is local.
- DHCP: a ``Lease`` for the port's tap, handed to the DHCP responder.
- SECURITYGROUP: handed to the firewall, with its members' addresses: a group's members
  are the local ports and the neighbours whose configurations name it (their fixed IPs and
  allowed address pairs), which are all the ports whose packets reach this host with their
  own addresses.  Membership changes are collected during a goal state and handed over once
  at its end (``flush``), for the groups the firewall needs: those held, and those their
  rules name as remote group (given as a rule-less configuration).
- ROUTER: a router namespace (``router.py``, ``nat.py``) with a ``qr-`` leg on the bridge of
  each attached subnet (whose segment the router holds, so a subnet this host knows only
  because of a router gets its bridge), extra routes, and, with an external gateway, the
  ``qg-`` leg on the provider network's bridge (``--physical-network``), the transit leg and
  the SNAT/floating-IP translation.  Off the SNAT host the router also holds the FDB entry
  sending the SNAT host's transit MAC through the tunnel to it.
- Neighbours feed the routers too: each remote fixed IP becomes a permanent neighbour entry
  on the ``qr-`` leg of every local router attached to its subnet (an L3 neighbour, which
  the host has only because of a router, and an L2 one alike).
- GATEWAY: not programmed by this driver (accepted, nothing done).

A segment lives while anything uses its VNI (the VPC, a subnet, a port, a neighbour), so one
created lazily for a neighbour goes when its last user does.  Entries two neighbours share
(the same MAC in one VNI) stay until neither holds them.

``sweep()`` (AgentState calls it once the first full goal state is applied) removes every
owned kernel object no apply since start asked for: taps, segments, FDB and neighbour
entries, router namespaces and legs of this host, and (through the firewall's own ``sweep``)
chains and set elements; foreign interfaces on the agent's bridges are detached, never
deleted.

The firewall and DHCP collaborators are optional (None: not programmed), and described here
by the Protocols they must satisfy.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from alcor.agent.linux.lease import Lease
from alcor.agent.linux.overlay import DEFAULT_MTU, FdbKey, NeighKey, Overlay
from alcor.agent.linux.provider import ProviderBridges, ProviderError
from alcor.agent.linux.router import RouterConfigError, Routers, Segment, router_spec
from alcor.agent.linux.workloads import DEFAULT_VETH, LocalPort, Workloads, tap_name
from alcor.agent.programmer import Configuration
from alcor.rpc._generated import (
    common_pb2,
    dhcp_pb2,
    neighbor_pb2,
    port_pb2,
    router_pb2,
    securitygroup_pb2,
    subnet_pb2,
    vpc_pb2,
)

log = logging.getLogger(__name__)

CLASSLESS_ROUTES = "classless-static-route"
"""The subnet's extra DHCP option holding IPv4 host routes ("dst,nexthop,dst,nexthop...")."""
LEASE_SECONDS = 86400


class PortFirewall(Protocol):
    """Security groups and anti-spoofing for local ports (alcor.agent.linux.firewall)."""

    def set_port(self, port: port_pb2.PortConfiguration, tap: str, vni: int) -> None: ...

    def remove_port(self, port_id: str) -> None: ...

    def set_group(self, group: securitygroup_pb2.SecurityGroupConfiguration,
                  members: Collection[str] = ()) -> None: ...

    def remove_group(self, group_id: str) -> None: ...

    def sweep(self, keep_ports: set[str], keep_groups: set[str]) -> None: ...


class DhcpServer(Protocol):
    """Answers DHCP on a local port's tap with its lease (alcor.agent.linux.dhcp_responder)."""

    def serve(self, interface: str, lease: Lease) -> object: ...

    def forget(self, interface: str) -> None: ...


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Vpc:
    vni: int
    mtu: int


@dataclass(frozen=True, slots=True)
class Subnet:
    vpc_id: str
    vni: int
    network: Network
    gateway: str | None
    dns: tuple[str, ...]
    routes: tuple[tuple[str, str], ...]
    dhcp: bool


@dataclass(slots=True)
class Remote:
    """The entries one neighbour holds."""

    fdb: dict[FdbKey, str] = field(default_factory=dict)
    neigh: dict[NeighKey, str] = field(default_factory=dict)

    def vnis(self) -> set[int]:
        return {key[0] for key in self.fdb} | {key[0] for key in self.neigh}


class UnknownResource(RuntimeError):
    """A resource names another this host has not been given (yet)."""


class LinuxProgrammer:
    """Programs one host network namespace (``netns`` None: the agent's own)."""

    def __init__(self, local_ip: str, firewall: PortFirewall | None = None,
                 dhcp: DhcpServer | None = None, netns: str | None = None,
                 physical_networks: Mapping[str, str] | None = None) -> None:
        self.local_ip = local_ip
        self.firewall = firewall
        self.dhcp = dhcp
        self.overlay = Overlay(local_ip, netns)
        self.workloads = Workloads(self.overlay, netns, on_attached=self._attached)
        self.providers = ProviderBridges(self.overlay.routes, netns, physical_networks or {})
        self.routers = Routers(self.overlay.routes, self.overlay.raw, netns)
        self.router_vnis: dict[str, set[int]] = {}
        """Router id -> the VNIs its legs use (the routers realized here)."""
        self.router_fdb: dict[str, dict[FdbKey, str]] = {}
        """Router id -> the FDB entries it holds (the SNAT host's transit MAC)."""
        self.routed: dict[str, dict[str, str]] = {}
        """Subnet id -> remote address -> MAC: what routers attached there need."""
        self._routed_of: dict[str, dict[tuple[str, str], str]] = {}
        self.vpcs: dict[str, Vpc] = {}
        self.subnets: dict[str, Subnet] = {}
        self.ports: dict[str, LocalPort] = {}
        self.remotes: dict[str, Remote] = {}
        self.leases: dict[str, tuple[str, Lease]] = {}
        """DHCP state id -> (tap, lease)."""
        self.groups: set[str] = set()
        self.group_configs: dict[str, securitygroup_pb2.SecurityGroupConfiguration] = {}
        self.members: dict[str, dict[str, tuple[str, ...]]] = {}
        """Group id -> member (port or neighbour id) -> its addresses."""
        self._member_of: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._dirty_groups: set[str] = set()
        self._firewall_groups: set[str] = set()
        self.users: dict[int, set[tuple[int, str]]] = {}
        """VNI -> the (kind, id) of the resources that need its segment."""
        self._fdb_holders: dict[FdbKey, set[str]] = {}
        self._neigh_holders: dict[NeighKey, set[str]] = {}
        self._lock = threading.Lock()
        self._appliers: dict[int, Callable[[str, Any], None]] = {
            common_pb2.VPC: self._apply_vpc, common_pb2.SUBNET: self._apply_subnet,
            common_pb2.PORT: self._apply_port, common_pb2.NEIGHBOR: self._apply_neighbor,
            common_pb2.DHCP: self._apply_dhcp, common_pb2.SECURITYGROUP: self._apply_group,
            common_pb2.ROUTER: self._apply_router,
        }
        self._deleters: dict[int, Callable[[str], None]] = {
            common_pb2.VPC: self._delete_vpc, common_pb2.SUBNET: self._delete_subnet,
            common_pb2.PORT: self._delete_port, common_pb2.NEIGHBOR: self._delete_neighbor,
            common_pb2.DHCP: self._delete_dhcp, common_pb2.SECURITYGROUP: self._delete_group,
            common_pb2.ROUTER: self._delete_router,
        }

    def close(self) -> None:
        self.routers.close()
        self.workloads.close()
        self.overlay.close()
        stop = getattr(self.dhcp, "stop", None)
        if stop is not None:
            stop()

    # the Programmer protocol

    def apply(self, kind: int, resource_id: str, config: Configuration,
              previous: Configuration | None) -> None:
        applier = self._appliers.get(kind)
        if applier is not None:
            applier(resource_id, config)

    def delete(self, kind: int, resource_id: str, previous: Configuration) -> None:
        deleter = self._deleters.get(kind)
        if deleter is not None:
            deleter(resource_id)

    # segments

    def _use(self, vni: int, user: tuple[int, str]) -> None:
        self.overlay.ensure_segment(vni, self._mtu(vni))
        self.users.setdefault(vni, set()).add(user)

    def _release(self, vni: int, user: tuple[int, str]) -> None:
        users = self.users.get(vni)
        if users is None:
            return
        users.discard(user)
        if not users:
            del self.users[vni]
            self.overlay.remove_segment(vni)

    def _mtu(self, vni: int) -> int:
        for vpc in self.vpcs.values():
            if vpc.vni == vni and vpc.mtu > 0:
                return vpc.mtu
        return DEFAULT_MTU

    def _vni_of_vpc(self, vpc_id: str) -> int:
        vpc = self.vpcs.get(vpc_id)
        return vpc.vni if vpc is not None else 0

    # VPC

    def _apply_vpc(self, vpc_id: str, config: vpc_pb2.VpcConfiguration) -> None:
        old = self.vpcs.get(vpc_id)
        self.vpcs[vpc_id] = Vpc(config.tunnel_id, config.mtu)
        if config.tunnel_id:
            self._use(config.tunnel_id, (common_pb2.VPC, vpc_id))
        if old is not None and old.vni and old.vni != config.tunnel_id:
            self._release(old.vni, (common_pb2.VPC, vpc_id))

    def _delete_vpc(self, vpc_id: str) -> None:
        old = self.vpcs.pop(vpc_id, None)
        if old is not None and old.vni:
            self._release(old.vni, (common_pb2.VPC, vpc_id))

    # SUBNET

    def _apply_subnet(self, subnet_id: str, config: subnet_pb2.SubnetConfiguration) -> None:
        old = self.subnets.get(subnet_id)
        vni = int(config.tunnel_id) or self._vni_of_vpc(config.vpc_id)
        self.subnets[subnet_id] = Subnet(
            vpc_id=config.vpc_id, vni=vni,
            network=ipaddress.ip_network(config.cidr, strict=False),
            gateway=config.gateway.ip_address or None,
            dns=tuple(entry.entry for entry in config.dns_entry_list if entry.entry),
            routes=_host_routes(config), dhcp=config.dhcp_enable)
        if vni:
            self._use(vni, (common_pb2.SUBNET, subnet_id))
        if old is not None and old.vni and old.vni != vni:
            self._release(old.vni, (common_pb2.SUBNET, subnet_id))

    def _delete_subnet(self, subnet_id: str) -> None:
        old = self.subnets.pop(subnet_id, None)
        if old is not None and old.vni:
            self._release(old.vni, (common_pb2.SUBNET, subnet_id))

    # PORT

    def _apply_port(self, port_id: str, config: port_pb2.PortConfiguration) -> None:
        local = self._local_port(port_id, config)
        old = self.ports.get(port_id)
        self._use(local.vni, (common_pb2.PORT, port_id))
        tap = self.workloads.plug(local)
        self.ports[port_id] = local
        if old is not None and old.vni != local.vni:
            self._release(old.vni, (common_pb2.PORT, port_id))
        if self.firewall is not None:
            self.firewall.set_port(config, tap, local.vni)
        self._membership(port_id, [g.id for g in config.security_group_ids],
                         [f.ip_address for f in config.fixed_ips],
                         [p.ip_address for p in config.allow_address_pairs])

    def _local_port(self, port_id: str, config: port_pb2.PortConfiguration) -> LocalPort:
        subnets = []
        for fixed in config.fixed_ips:
            subnet = self.subnets.get(fixed.subnet_id)
            if subnet is None:
                raise UnknownResource(
                    f"port {port_id}: subnet {fixed.subnet_id} is not known on this host")
            subnets.append((fixed.ip_address, subnet))
        vni = next((s.vni for _, s in subnets if s.vni), 0) or self._vni_of_vpc(config.vpc_id)
        if not vni:
            raise UnknownResource(f"port {port_id}: no VNI (its network {config.vpc_id} and "
                                  "subnets are not known on this host)")
        gateways: dict[int, str] = {}
        routes: tuple[tuple[str, str], ...] = ()
        for _, subnet in subnets:
            if subnet.gateway and subnet.network.version not in gateways:
                gateways[subnet.network.version] = subnet.gateway
                routes = routes or subnet.routes
        return LocalPort(
            port_id=port_id, mac=config.mac_address.lower(), vni=vni, mtu=self._mtu(vni),
            up=config.admin_state_up, network_ns=config.network_ns,
            veth_name=config.veth_name or DEFAULT_VETH,
            addresses=tuple((ip, s.network.prefixlen) for ip, s in subnets),
            gateways=tuple(gateways[v] for v in sorted(gateways)), routes=routes)

    def _delete_port(self, port_id: str) -> None:
        self._membership(port_id, (), (), ())
        if self.firewall is not None:
            self.firewall.remove_port(port_id)
        self.workloads.unplug(port_id)
        old = self.ports.pop(port_id, None)
        if old is not None:
            self._release(old.vni, (common_pb2.PORT, port_id))

    # NEIGHBOR

    def _apply_neighbor(self, neighbor_id: str,
                        config: neighbor_pb2.NeighborConfiguration) -> None:
        new = self._remote(neighbor_id, config)
        old = self.remotes.get(neighbor_id, Remote())
        for vni in new.vnis() - old.vnis():
            self._use(vni, (common_pb2.NEIGHBOR, neighbor_id))
        drop_fdb = self._unhold(self._fdb_holders, old.fdb.keys() - new.fdb.keys(), neighbor_id)
        drop_neigh = self._unhold(self._neigh_holders, old.neigh.keys() - new.neigh.keys(),
                                  neighbor_id)
        for key in new.fdb:
            self._fdb_holders.setdefault(key, set()).add(neighbor_id)
        for key in new.neigh:
            self._neigh_holders.setdefault(key, set()).add(neighbor_id)
        self.remotes[neighbor_id] = new
        self.overlay.update(new.fdb, new.neigh, drop_fdb, drop_neigh)
        self._route_neighbor(neighbor_id, self._routed_entries(config))
        self._membership(neighbor_id, config.security_group_ids,
                         [f.ip_address for f in config.fixed_ips],
                         [p.ip_address for p in config.allow_address_pairs])
        for vni in old.vnis() - new.vnis():
            self._release(vni, (common_pb2.NEIGHBOR, neighbor_id))

    def _remote(self, neighbor_id: str, config: neighbor_pb2.NeighborConfiguration) -> Remote:
        remote = Remote()
        vtep = config.host_ip_address
        if not vtep or vtep == self.local_ip:
            return remote
        mac = config.mac_address.lower()
        first = 0
        for fixed in config.fixed_ips:
            vni = self._vni_of_fixed(fixed, config.vpc_id)
            if not vni:
                raise UnknownResource(f"neighbour {neighbor_id}: no VNI for {fixed.ip_address}")
            first = first or vni
            remote.fdb[(vni, mac)] = vtep
            remote.neigh[(vni, str(ipaddress.ip_address(fixed.ip_address)))] = mac
        first = first or self._vni_of_vpc(config.vpc_id)
        for pair in config.allow_address_pairs:
            if not first:
                break
            pair_mac = (pair.mac_address or mac).lower()
            remote.fdb[(first, pair_mac)] = vtep
            network = ipaddress.ip_network(pair.ip_address, strict=False)
            if network.num_addresses == 1:
                remote.neigh[(first, str(network.network_address))] = pair_mac
        return remote

    def _vni_of_fixed(self, fixed: neighbor_pb2.NeighborConfiguration.FixedIp,
                      vpc_id: str) -> int:
        if fixed.tunnel_id:
            return int(fixed.tunnel_id)
        subnet = self.subnets.get(fixed.subnet_id)
        return subnet.vni if subnet is not None and subnet.vni else self._vni_of_vpc(vpc_id)

    @staticmethod
    def _unhold(holders: dict[Any, set[str]], keys: Any, neighbor_id: str) -> list[Any]:
        """Release ``keys`` held by ``neighbor_id``; returns those nobody holds any more."""
        free = []
        for key in keys:
            held = holders.get(key)
            if held is None:
                continue
            held.discard(neighbor_id)
            if not held:
                del holders[key]
                free.append(key)
        return free

    def _delete_neighbor(self, neighbor_id: str) -> None:
        self._membership(neighbor_id, (), (), ())
        self._route_neighbor(neighbor_id, {})
        old = self.remotes.pop(neighbor_id, None)
        if old is None:
            return
        drop_fdb = self._unhold(self._fdb_holders, old.fdb.keys(), neighbor_id)
        drop_neigh = self._unhold(self._neigh_holders, old.neigh.keys(), neighbor_id)
        self.overlay.update({}, {}, drop_fdb, drop_neigh)
        for vni in old.vnis():
            self._release(vni, (common_pb2.NEIGHBOR, neighbor_id))

    def _routed_entries(self, config: neighbor_pb2.NeighborConfiguration
                        ) -> dict[tuple[str, str], str]:
        """(subnet id, address) -> MAC of a remote neighbour's fixed IPs (none if local)."""
        if not config.host_ip_address or config.host_ip_address == self.local_ip:
            return {}
        mac = config.mac_address.lower()
        return {(f.subnet_id, str(ipaddress.ip_address(f.ip_address))): mac
                for f in config.fixed_ips if f.subnet_id and f.ip_address}

    def _route_neighbor(self, neighbor_id: str, new: dict[tuple[str, str], str]) -> None:
        """Record a neighbour's addresses per subnet and hand the changes to the routers."""
        old = self._routed_of.pop(neighbor_id, {})
        if new:
            self._routed_of[neighbor_id] = new
        if old == new:
            return
        puts: dict[str, dict[str, str]] = {}
        drops: dict[str, list[str]] = {}
        for subnet_id, ip in old.keys() - new.keys():
            entries = self.routed.get(subnet_id, {})
            entries.pop(ip, None)
            if not entries:
                self.routed.pop(subnet_id, None)
            drops.setdefault(subnet_id, []).append(ip)
        for (subnet_id, ip), mac in new.items():
            if old.get((subnet_id, ip)) != mac:
                self.routed.setdefault(subnet_id, {})[ip] = mac
                puts.setdefault(subnet_id, {})[ip] = mac
        for subnet_id in puts.keys() | drops.keys():
            self.routers.neighbours(subnet_id, puts.get(subnet_id, {}),
                                    drops.get(subnet_id, ()))

    # ROUTER

    def _apply_router(self, router_id: str, config: router_pb2.RouterConfiguration) -> None:
        gateway = config.external_gateway if config.HasField("external_gateway") else None
        subnet_ids = [t.subnet_id for t in config.subnet_routing_tables]
        if gateway is not None and gateway.transit_subnet_id:
            subnet_ids.append(gateway.transit_subnet_id)
        user = (common_pb2.ROUTER, router_id)
        vnis: dict[str, int] = {}
        for subnet_id in subnet_ids:
            subnet = self.subnets.get(subnet_id)
            if subnet is None or not subnet.vni:
                raise UnknownResource(
                    f"router {router_id}: subnet {subnet_id} is not known on this host")
            vnis[subnet_id] = subnet.vni
        old_vnis = self.router_vnis.get(router_id, set())
        for vni in sorted(set(vnis.values())):
            self._use(vni, user)
        self.router_vnis[router_id] = old_vnis | set(vnis.values())
        segments = {sid: Segment(self.subnets[sid].network, self.overlay.segments[vni].bridge,
                                 self.overlay.segments[vni].mtu) for sid, vni in vnis.items()}
        try:
            spec = router_spec(config, segments, self.providers.bridge)
        except (ProviderError, RouterConfigError):
            # East-west still works here; the way out is reported failed (and retried).
            spec = router_spec(config, segments, self.providers.bridge, gateway=False)
            self.routers.apply(spec, self.routed)
            raise
        self.routers.apply(spec, self.routed)
        fdb: dict[FdbKey, str] = {}
        if gateway is not None and not gateway.is_snat_host and gateway.transit_subnet_id \
                and gateway.snat_host_ip and gateway.snat_host_ip != self.local_ip:
            fdb[(vnis[gateway.transit_subnet_id], gateway.snat_transit_mac.lower())] = \
                gateway.snat_host_ip
        self._hold_router_fdb(router_id, fdb)
        self.router_vnis[router_id] = set(vnis.values())
        for vni in old_vnis - set(vnis.values()):
            self._release(vni, user)

    def _hold_router_fdb(self, router_id: str, fdb: dict[FdbKey, str]) -> None:
        holder = f"router/{router_id}"
        old = self.router_fdb.pop(router_id, {})
        drop = self._unhold(self._fdb_holders, old.keys() - fdb.keys(), holder)
        for key in fdb:
            self._fdb_holders.setdefault(key, set()).add(holder)
        if fdb:
            self.router_fdb[router_id] = fdb
        self.overlay.update(fdb, {}, drop)

    def _delete_router(self, router_id: str) -> None:
        self.routers.delete(router_id)
        self._hold_router_fdb(router_id, {})
        for vni in self.router_vnis.pop(router_id, set()):
            self._release(vni, (common_pb2.ROUTER, router_id))

    # DHCP

    def _apply_dhcp(self, dhcp_id: str, config: dhcp_pb2.DHCPConfiguration) -> None:
        port_id = dhcp_id.split("/", 1)[0]
        subnet = self.subnets.get(config.subnet_id)
        if subnet is None:
            raise UnknownResource(f"DHCP {dhcp_id}: subnet {config.subnet_id} is not known")
        tap = tap_name(port_id)
        if not (subnet.dhcp and config.ipv4_address and subnet.network.version == 4):
            self._delete_dhcp(dhcp_id)
            return
        port = self.ports.get(port_id)
        lease = Lease(
            mac=config.mac_address.lower(), ip=config.ipv4_address,
            prefixlen=subnet.network.prefixlen, gateway=subnet.gateway, dns=subnet.dns,
            mtu=port.mtu if port is not None else self._mtu(subnet.vni), routes=subnet.routes,
            hostname=config.port_host_name, server_ip=server_address(subnet),
            lease_seconds=LEASE_SECONDS)
        with self._lock:
            self.leases[dhcp_id] = (tap, lease)
        if self.dhcp is not None:
            self.dhcp.serve(tap, lease)

    def _delete_dhcp(self, dhcp_id: str) -> None:
        with self._lock:
            held = self.leases.pop(dhcp_id, None)
            other = next((lease for tap, lease in self.leases.values()
                          if held is not None and tap == held[0]), None)
        if held is None or self.dhcp is None:
            return
        if other is not None:
            self.dhcp.serve(held[0], other)
        else:
            self.dhcp.forget(held[0])

    def _attached(self, port: LocalPort) -> None:
        """A Nova tap (re)appeared: its DHCP binding is served on the new interface."""
        with self._lock:
            leases = [lease for tap, lease in self.leases.values() if tap == port.tap]
        if self.dhcp is not None and leases:
            self.dhcp.serve(port.tap, leases[0])

    # SECURITYGROUP

    def _apply_group(self, group_id: str,
                     config: securitygroup_pb2.SecurityGroupConfiguration) -> None:
        self.groups.add(group_id)
        old = self.group_configs.get(group_id)
        self.group_configs[group_id] = config
        self._dirty_groups |= {group_id, *_remote_groups(config)}
        if old is not None:
            self._dirty_groups |= _remote_groups(old)

    def _delete_group(self, group_id: str) -> None:
        self.groups.discard(group_id)
        old = self.group_configs.pop(group_id, None)
        self._dirty_groups.add(group_id)
        if old is not None:
            self._dirty_groups |= _remote_groups(old)

    def _membership(self, member: str, groups: Iterable[str], ips: Iterable[str],
                    pairs: Iterable[str]) -> None:
        """Record the groups a port or neighbour is in and its addresses."""
        now = (tuple(sorted(groups)), tuple(sorted({*ips, *pairs})))
        before = self._member_of.get(member, ((), ()))
        if now == before:
            return
        for group_id in before[0]:
            self.members.get(group_id, {}).pop(member, None)
        for group_id in now[0]:
            self.members.setdefault(group_id, {})[member] = now[1]
        self._dirty_groups |= {*before[0], *now[0]}
        if now[0]:
            self._member_of[member] = now
        else:
            self._member_of.pop(member, None)

    def flush(self) -> None:
        """Hand the firewall the groups whose rules or members changed in this goal state."""
        dirty, self._dirty_groups = self._dirty_groups, set()
        if self.firewall is None or not dirty:
            return
        referenced = {g for c in self.group_configs.values() for g in _remote_groups(c)}
        for group_id in sorted(dirty):
            config = self.group_configs.get(group_id)
            if config is None and group_id not in referenced:
                if group_id in self._firewall_groups:
                    self.firewall.remove_group(group_id)
                    self._firewall_groups.discard(group_id)
                continue
            given = config or securitygroup_pb2.SecurityGroupConfiguration(id=group_id)
            members = {ip for ips in self.members.get(group_id, {}).values() for ip in ips}
            self.firewall.set_group(given, sorted(members))
            self._firewall_groups.add(group_id)

    # convergence

    def sweep(self) -> None:
        """Remove owned kernel objects that no apply since start asked for."""
        removed = self.workloads.sweep(set(self.ports))
        removed += self.routers.sweep(set(self.router_vnis))
        removed += self.overlay.sweep(set(self.users), set(self._fdb_holders),
                                      set(self._neigh_holders))
        if self.firewall is not None:
            self.firewall.sweep(set(self.ports), set(self._firewall_groups))
        log.info("sweep removed %d stale devices and entries", removed)


def _host_routes(config: subnet_pb2.SubnetConfiguration) -> tuple[tuple[str, str], ...]:
    """The subnet's IPv4 host routes from its "classless-static-route" option."""
    for option in config.extra_dhcp_options:
        if option.name == CLASSLESS_ROUTES and option.value:
            parts = [p.strip() for p in option.value.split(",")]
            return tuple(zip(parts[0::2], parts[1::2], strict=False))
    return ()


def _remote_groups(config: securitygroup_pb2.SecurityGroupConfiguration) -> set[str]:
    return {r.remote_group_id for r in config.security_group_rules if r.remote_group_id}


def server_address(subnet: Subnet) -> str:
    """The DHCP server identifier: the subnet's gateway; without one, the subnet's last
    usable address (Neutron's allocation pools stop before it only by convention, so a port
    could hold it: a subnet with DHCP and no gateway should keep it out of its pools)."""
    if subnet.gateway:
        return subnet.gateway
    network = subnet.network
    return str(network.broadcast_address - 1) if network.num_addresses > 2 \
        else str(network.network_address)

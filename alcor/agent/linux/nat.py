"""A router's way out on this host (north-south): its external leg on a provider bridge, its
transit leg towards the SNAT host, the default route, and the address translation of
floating IPs and of SNAT, inside the router's namespace (``router_namespace.py``).

- External leg ``qg-<router[:11]>`` on the provider network's bridge with this host's
  external MAC (the gateway port's MAC on the SNAT host, a per-host derived one elsewhere,
  so hosts never answer for each other on the provider network).  Its addresses: on the SNAT
  host the router's external address (e.g. 203.0.113.5/24); on every host the floating IPs
  of the ports bound here, as /32s, so this host alone answers ARP for them.  An address the
  leg gains is announced by gratuitous ARP (a floating IP that moved here, a new SNAT host).
- Transit leg ``qt-<router[:11]>`` on the bridge of the transit subnet (the first attached
  subnet) with this host's transit MAC, no address.  Off the SNAT host the main table's
  default route is ``via 169.254.169.1 dev qt- onlink``, whose permanent neighbour entry is
  the SNAT host's transit MAC (``router.py``'s caller adds the FDB entry sending that MAC
  through the tunnel to the SNAT host): traffic without a floating IP crosses one tunnel to
  the SNAT host's router, arriving on its transit leg.  On the SNAT host the default route is
  ``via <external gateway> dev qg- onlink``.
- Floating IPs: nftables ``table ip alcor`` in the router namespace DNATs ``FIP -> fixed``
  (prerouting) and SNATs ``fixed -> FIP`` leaving qg (postrouting); policy rules send what
  the fixed address sends out through the external network from here: priority 100 looks the
  main table up without its default route (``suppress_prefixlength 0``, so east-west traffic
  keeps its routes), priority 200 ``from <fixed> lookup 100``, and table 100 routes the
  external subnet on-link through qg and the default via the external gateway.
- SNAT (the SNAT host, when ``enable_snat``): traffic from the attached subnets leaving qg is
  translated to the router's external address (after any floating IP's own rule).

``nat_script`` is pure (rendering only); ``apply`` converges one router's namespace.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from alcor.agent.linux.router_namespace import (
    MAIN_TABLE,
    Leg,
    Route,
    RouterNamespace,
    Rule,
    leg_alias,
)

TRANSIT_NEXT_HOP = "169.254.169.1"
"""The link-local next hop of the default route towards the SNAT host (never on the wire:
its neighbour entry is permanent)."""
FIP_TABLE = 100
MAIN_RULE_PRIORITY = 100
FIP_RULE_PRIORITY = 200
RULE_PRIORITIES = (MAIN_RULE_PRIORITY, FIP_RULE_PRIORITY)
NAT_TABLE = "alcor"


@dataclass(frozen=True, slots=True)
class FloatingIp:
    address: str
    fixed: str


@dataclass(frozen=True, slots=True)
class Gateway:
    """What one router's external gateway asks of this host."""

    external: Leg
    """The qg leg (its addresses: the external address on the SNAT host, floating IPs)."""
    transit: Leg | None
    """The qt leg (None: the router has no internal subnet to carry transit traffic)."""
    network: ipaddress.IPv4Network
    """The external subnet."""
    gateway_ip: str
    """The external subnet's gateway ("" : none, so only the external subnet is reached)."""
    is_snat_host: bool
    snat_address: str | None
    """The address SNAT translates to (None: no SNAT here)."""
    snat_transit_mac: str
    floating_ips: tuple[FloatingIp, ...] = ()
    internal: tuple[str, ...] = ()
    """The attached subnets' CIDRs (the sources SNAT translates)."""


def nat_script(gateway: Gateway | None) -> str:
    """The nft transaction that leaves exactly this router's NAT table (none without floating
    IPs or SNAT)."""
    lines = [f"add table ip {NAT_TABLE}", f"delete table ip {NAT_TABLE}"]
    if gateway is None or not (gateway.floating_ips or gateway.snat_address):
        return "\n".join(lines) + "\n"
    qg = gateway.external.router_end
    fips = sorted(gateway.floating_ips, key=lambda f: ipaddress.ip_address(f.address))
    pre = [f"ip daddr {f.address} dnat to {f.fixed}" for f in fips]
    post = [f'oifname "{qg}" ip saddr {f.fixed} snat to {f.address}' for f in fips]
    if gateway.snat_address and gateway.internal:
        post.append(f'oifname "{qg}" ip saddr {{ {", ".join(gateway.internal)} }} '
                    f"snat to {gateway.snat_address}")
    lines += [
        f"table ip {NAT_TABLE} {{",
        "  chain prerouting {",
        "    type nat hook prerouting priority dstnat; policy accept;",
        *(f"    {rule}" for rule in pre),
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        *(f"    {rule}" for rule in post),
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def apply(ns: RouterNamespace, router_id: str, gateway: Gateway | None
          ) -> tuple[Route | None, set[str]]:
    """Converge the router's way out; returns the main table's default route (None: no way
    out) and the ifaliases of the legs it holds (the caller removes the others)."""
    if gateway is None:
        ns.set_rules(RULE_PRIORITIES, ())
        ns.set_routes(FIP_TABLE, {})
        ns.set_nat(nat_script(None))
        return None, set()
    aliases = {leg_alias(router_id, "qg", router_id)}
    qg = ns.plug(gateway.external, leg_alias(router_id, "qg", router_id), announce=True)
    qt = None
    if gateway.transit is not None:
        aliases.add(leg_alias(router_id, "qt", router_id))
        qt = ns.plug(gateway.transit, leg_alias(router_id, "qt", router_id))
    default: Route | None = None
    if gateway.is_snat_host and gateway.gateway_ip:
        default = Route(gateway.gateway_ip, qg, onlink=True)
    if qt is not None and gateway.transit is not None:
        hop = {} if gateway.is_snat_host else {TRANSIT_NEXT_HOP: gateway.snat_transit_mac}
        ns.set_neighbours(qt, gateway.transit.router_end, hop)
        if not gateway.is_snat_host:
            default = Route(TRANSIT_NEXT_HOP, qt, onlink=True)
    rules: list[Rule] = []
    routes: dict[str, Route] = {}
    if gateway.floating_ips:
        rules.append(Rule(MAIN_RULE_PRIORITY, MAIN_TABLE, suppress=0))
        rules += [Rule(FIP_RULE_PRIORITY, FIP_TABLE, src=f"{f.fixed}/32")
                  for f in gateway.floating_ips]
        routes = {str(gateway.network): Route(None, qg)}
        if gateway.gateway_ip:
            routes["0.0.0.0/0"] = Route(gateway.gateway_ip, qg, onlink=True)
    ns.set_rules(RULE_PRIORITIES, rules)
    ns.set_routes(FIP_TABLE, routes)
    ns.set_nat(nat_script(gateway))
    return default, aliases

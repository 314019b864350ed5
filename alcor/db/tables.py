"""The relational schema: one table per resource plus allocation, binding, tag and outbox tables.

Columns are named for SQL; a column whose API attribute differs (``provider:segmentation_id``)
carries the attribute name as its ``key``.  Uniqueness that allocation depends on (IP per
subnet, MAC per network, VNI, one default security group per project, identical rules) is a
database constraint, so it holds across processes and backends.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = sa.String(36)
TS = sa.String(20)  # "YYYY-MM-DDTHH:MM:SSZ": sorts as text on every backend


def _standard() -> list[sa.Column[object]]:
    """Columns every resource carries (neutron's standard attributes)."""
    return [
        sa.Column("id", ID, primary_key=True),
        sa.Column("project_id", sa.String(255), nullable=False, index=True),
        sa.Column("name", sa.String(255), nullable=False, default=""),
        sa.Column("description", sa.String(255), nullable=False, default=""),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("revision_number", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    ]


networks = sa.Table(
    "networks",
    metadata,
    *_standard(),
    sa.Column("admin_state_up", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("shared", sa.Boolean, nullable=False),
    sa.Column("mtu", sa.Integer, nullable=False),
    sa.Column("router_external", sa.Boolean, nullable=False, key="router:external"),
    sa.Column("port_security_enabled", sa.Boolean, nullable=False),
    sa.Column("network_type", sa.String(32), nullable=False, key="provider:network_type"),
    sa.Column("physical_network", sa.String(64), key="provider:physical_network"),
    sa.Column("segmentation_id", sa.Integer, key="provider:segmentation_id"),
    sa.Column("dns_domain", sa.String(255), nullable=False),
    sa.Column("vlan_transparent", sa.Boolean, nullable=False),
    sa.Column("is_default", sa.Boolean, nullable=False),
    sa.Column("qos_policy_id", ID),
    sa.Column("availability_zone_hints", sa.JSON, nullable=False),
    sa.UniqueConstraint(
        "provider:network_type", "provider:segmentation_id", name="uq_networks_segment"
    ),
)

subnets = sa.Table(
    "subnets",
    metadata,
    *_standard(),
    sa.Column(
        "network_id", ID, sa.ForeignKey("networks.id", ondelete="CASCADE"),
        nullable=False, index=True,
    ),
    sa.Column("ip_version", sa.Integer, nullable=False),
    sa.Column("cidr", sa.String(64), nullable=False),
    sa.Column("gateway_ip", sa.String(64)),
    sa.Column("enable_dhcp", sa.Boolean, nullable=False),
    sa.Column("ipv6_ra_mode", sa.String(32)),
    sa.Column("ipv6_address_mode", sa.String(32)),
    sa.Column("allocation_pools", sa.JSON, nullable=False),
    sa.Column("host_routes", sa.JSON, nullable=False),
    sa.Column("dns_nameservers", sa.JSON, nullable=False),
    sa.Column("service_types", sa.JSON, nullable=False),
    sa.Column("segment_id", ID),
    sa.Column("subnetpool_id", ID),
    sa.Column("dns_publish_fixed_ip", sa.Boolean, nullable=False),
)

ports = sa.Table(
    "ports",
    metadata,
    *_standard(),
    sa.Column(
        "network_id", ID, sa.ForeignKey("networks.id", ondelete="CASCADE"),
        nullable=False, index=True,
    ),
    sa.Column("admin_state_up", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("mac_address", sa.String(32), nullable=False),
    sa.Column("device_id", sa.String(255), nullable=False, index=True),
    sa.Column("device_owner", sa.String(255), nullable=False),
    sa.Column("port_security_enabled", sa.Boolean, nullable=False),
    sa.Column("binding_host_id", sa.String(255), nullable=False, key="binding:host_id", index=True),
    sa.Column("binding_vif_type", sa.String(64), nullable=False, key="binding:vif_type"),
    sa.Column("binding_vnic_type", sa.String(64), nullable=False, key="binding:vnic_type"),
    sa.Column("binding_profile", sa.JSON, nullable=False, key="binding:profile"),
    sa.Column("binding_vif_details", sa.JSON, nullable=False, key="binding:vif_details"),
    sa.Column("fixed_ips", sa.JSON, nullable=False),
    sa.Column("security_groups", sa.JSON, nullable=False),
    sa.Column("allowed_address_pairs", sa.JSON, nullable=False),
    sa.Column("extra_dhcp_opts", sa.JSON, nullable=False),
    sa.Column("dns_name", sa.String(255), nullable=False),
    sa.Column("qos_policy_id", ID),
    sa.Column("ip_allocation", sa.String(16), nullable=False),
    sa.UniqueConstraint("network_id", "mac_address"),
)

ip_allocations = sa.Table(
    "ip_allocations",
    metadata,
    sa.Column(
        "subnet_id", ID, sa.ForeignKey("subnets.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("ip_address", sa.String(64), primary_key=True),
    sa.Column("network_id", ID, nullable=False, index=True),
    sa.Column(
        "port_id", ID, sa.ForeignKey("ports.id", ondelete="CASCADE"), nullable=False, index=True
    ),
)

security_groups = sa.Table(
    "security_groups",
    metadata,
    *_standard(),
    sa.Column("stateful", sa.Boolean, nullable=False),
    sa.Column("shared", sa.Boolean, nullable=False),
)

default_security_groups = sa.Table(
    "default_security_groups",
    metadata,
    sa.Column("project_id", sa.String(255), primary_key=True),
    sa.Column(
        "security_group_id", ID, sa.ForeignKey("security_groups.id", ondelete="CASCADE"),
        nullable=False,
    ),
)

security_group_rules = sa.Table(
    "security_group_rules",
    metadata,
    *_standard(),
    sa.Column(
        "security_group_id", ID, sa.ForeignKey("security_groups.id", ondelete="CASCADE"),
        nullable=False, index=True,
    ),
    sa.Column("direction", sa.String(16), nullable=False),
    sa.Column("ethertype", sa.String(8), nullable=False),
    sa.Column("protocol", sa.String(40)),
    sa.Column("port_range_min", sa.Integer),
    sa.Column("port_range_max", sa.Integer),
    sa.Column("remote_ip_prefix", sa.String(64)),
    sa.Column(
        "remote_group_id", ID, sa.ForeignKey("security_groups.id", ondelete="CASCADE"),
        index=True,
    ),
    sa.Column("remote_address_group_id", ID),
    sa.Column("normalized_cidr", sa.String(64)),
    # The rule's identity (everything but id, name, description): unique per group,
    # so a duplicate rule is refused by the database itself.
    sa.Column("fingerprint", sa.String(400), nullable=False),
    sa.UniqueConstraint("security_group_id", "fingerprint"),
)

port_security_groups = sa.Table(
    "port_security_groups",
    metadata,
    sa.Column("port_id", ID, sa.ForeignKey("ports.id", ondelete="CASCADE"), primary_key=True),
    sa.Column(
        "security_group_id", ID, sa.ForeignKey("security_groups.id"), primary_key=True,
        index=True,
    ),
)

tags = sa.Table(
    "tags",
    metadata,
    sa.Column("resource_id", ID, primary_key=True),
    sa.Column("tag", sa.String(255), primary_key=True, index=True),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("resource_type", sa.String(40), nullable=False),
    sa.Column("resource_id", ID, nullable=False),
    sa.Column("operation", sa.String(16), nullable=False),
    sa.Column("revision_number", sa.Integer, nullable=False),
    sa.Column("project_id", sa.String(255), nullable=False),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

nodes = sa.Table(
    "nodes",
    metadata,
    # Upstream's host registry (NodeInfo): node_id is the id, node_name what binding:host_id
    # names, local_ip the tunnel endpoint and agent address, server_port the agent's gRPC port.
    sa.Column("id", sa.String(255), primary_key=True, key="node_id"),
    sa.Column("name", sa.String(255), nullable=False, unique=True, key="node_name"),
    sa.Column("local_ip", sa.String(64), nullable=False),
    sa.Column("mac_address", sa.String(32), nullable=False),
    sa.Column("veth", sa.String(64), nullable=False),
    sa.Column("server_port", sa.Integer, nullable=False),
    sa.Column("host_dvr_mac", sa.String(32), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

host_states = sa.Table(
    "host_states",
    metadata,
    # What the data-plane manager pushed to a host and what the host acknowledged.
    sa.Column("node_id", sa.String(255), primary_key=True),
    sa.Column("generation", sa.BigInteger, nullable=False),
    sa.Column("acked_generation", sa.BigInteger, nullable=False),
    sa.Column("pushed_at", sa.Float),
    sa.Column("acked_at", sa.Float),
    sa.Column("last_error", sa.String(1024)),
)

port_provisioning = sa.Table(
    "port_provisioning",
    metadata,
    # A port's way to its hosts: the change committed at ``committed_at`` (epoch seconds) is
    # acknowledged by every host that needs it at ``acked_at``.
    sa.Column("port_id", ID, sa.ForeignKey("ports.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("revision_number", sa.Integer, nullable=False),
    sa.Column("committed_at", sa.Float, nullable=False),
    sa.Column("acked_at", sa.Float),
    sa.Column("detail", sa.JSON, nullable=False),
)

routers = sa.Table(
    "routers",
    metadata,
    *_standard(),
    sa.Column("admin_state_up", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    # {"network_id", "enable_snat", "external_fixed_ips": [{"subnet_id", "ip_address"}]} or null
    sa.Column("external_gateway_info", sa.JSON),
    sa.Column(
        "gw_port_id", ID, sa.ForeignKey("ports.id", ondelete="SET NULL"), index=True
    ),
    # extra routes: [{"destination": cidr, "nexthop": ip}]
    sa.Column("routes", sa.JSON, nullable=False),
    sa.Column("distributed", sa.Boolean, nullable=False),
    sa.Column("ha", sa.Boolean, nullable=False),
    sa.Column("flavor_id", ID),
    sa.Column("availability_zone_hints", sa.JSON, nullable=False),
)

router_ports = sa.Table(
    "router_ports",
    metadata,
    # A router's interfaces and gateway: each port belongs to at most one router, and a
    # router has at most one interface per subnet (``subnet_id`` is null for the gateway).
    sa.Column(
        "port_id", ID, sa.ForeignKey("ports.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column(
        "router_id", ID, sa.ForeignKey("routers.id", ondelete="CASCADE"), nullable=False,
        index=True,
    ),
    sa.Column("subnet_id", ID, index=True),
    sa.Column("port_type", sa.String(64), nullable=False),
    sa.UniqueConstraint("router_id", "subnet_id"),
)

floatingips = sa.Table(
    "floatingips",
    metadata,
    *_standard(),
    sa.Column("floating_network_id", ID, sa.ForeignKey("networks.id"), nullable=False,
              index=True),
    sa.Column("floating_ip_address", sa.String(64), nullable=False),
    sa.Column("floating_port_id", ID, sa.ForeignKey("ports.id"), nullable=False),
    sa.Column("port_id", ID, sa.ForeignKey("ports.id"), index=True),
    sa.Column("fixed_ip_address", sa.String(64)),
    sa.Column("router_id", ID, sa.ForeignKey("routers.id"), index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("dns_name", sa.String(255), nullable=False),
    sa.Column("dns_domain", sa.String(255), nullable=False),
    sa.Column("qos_policy_id", ID),
    # one floating IP per fixed address on a floating network (Neutron's constraint)
    sa.UniqueConstraint("floating_network_id", "port_id", "fixed_ip_address"),
)

quotas = sa.Table(
    "quotas",
    metadata,
    # A project's limit on one resource; absent rows fall back to the configured default.
    sa.Column("project_id", sa.String(255), primary_key=True),
    sa.Column("resource", sa.String(64), primary_key=True),
    sa.Column("limit", sa.Integer, nullable=False),
)

quota_locks = sa.Table(
    "quota_locks",
    metadata,
    # One row per (project, resource) that every quota-checked create updates before it
    # counts: a concurrent creator of the same resource waits for (READ COMMITTED) or
    # conflicts with and retries after (REPEATABLE READ) the first, so two creates never
    # both take the last free slot.  The rows carry no usage; counts come from the tables.
    sa.Column("project_id", sa.String(255), primary_key=True),
    sa.Column("resource", sa.String(64), primary_key=True),
    sa.Column("checked_at", TS, nullable=False),
)

segments = sa.Table(
    "segments",
    metadata,
    # A network's L2 segment (Neutron's segment extension).  Alcor networks have at most one:
    # its attributes mirror the network's provider:* columns, whose unique constraint keeps
    # segmentation ids unique; a network without a row here has no segment.
    sa.Column("id", ID, primary_key=True),
    sa.Column("project_id", sa.String(255), nullable=False),
    sa.Column(
        "network_id", ID, sa.ForeignKey("networks.id", ondelete="CASCADE"), nullable=False,
        unique=True,
    ),
    sa.Column("name", sa.String(255)),
    sa.Column("description", sa.String(255)),
    sa.Column("network_type", sa.String(32), nullable=False),
    sa.Column("physical_network", sa.String(64)),
    sa.Column("segmentation_id", sa.Integer),
    sa.Column("revision_number", sa.Integer, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

network_segment_ranges = sa.Table(
    "network_segment_ranges",
    metadata,
    # Segmentation ids tenant networks are given (network-segment-range extension): a
    # project's own ranges first, then shared ones, then the configured default range (its
    # row has is_default set and mirrors the configuration).
    sa.Column("id", ID, primary_key=True),
    sa.Column("project_id", sa.String(255), index=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("description", sa.String(255), nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("revision_number", sa.Integer, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Column("is_default", sa.Boolean, nullable=False, key="default"),
    sa.Column("shared", sa.Boolean, nullable=False),
    sa.Column("network_type", sa.String(32), nullable=False, index=True),
    sa.Column("physical_network", sa.String(64)),
    sa.Column("minimum", sa.Integer, nullable=False),
    sa.Column("maximum", sa.Integer, nullable=False),
)

TABLES: dict[str, sa.Table] = {
    t.name: t
    for t in (
        networks, subnets, ports, ip_allocations, security_groups, default_security_groups,
        security_group_rules, port_security_groups, tags, outbox, nodes, host_states,
        port_provisioning, routers, router_ports, floatingips, quotas, quota_locks,
        segments, network_segment_ranges,
    )
}

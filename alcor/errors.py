"""Alcor's exception tree: the families a client can see and the cross-cutting classes.

Every error a client can receive is an ``AlcorError``; its class name is the wire ``type``
of the NeutronError body, so classes use Neutron's exact names.  Only ``api/faults.py``
knows which HTTP status belongs to which family.

    AlcorError
    +-- BadRequest                 400  (InvalidInput, ...)
    +-- NotAuthorized              403
    +-- NotFound                   404  (NetworkNotFound, PortNotFound, ...)
    +-- Conflict                   409  (MacAddressInUse, IpAddressAlreadyAllocated, ...)
    |   +-- InUse                  409  (NetworkInUse, SubnetInUse, ...)
    +-- PreconditionFailed         412  (RevisionNumberConstraintFailed)
    +-- Unavailable                503
"""

from __future__ import annotations

from typing import ClassVar


class AlcorError(Exception):
    """Root of every error Alcor raises on purpose."""

    message: ClassVar[str] = "An unknown error occurred."

    def __init__(self, **kw: object) -> None:
        self.kw = kw
        try:
            text = self.message.format(**kw)
        except (KeyError, IndexError):
            text = self.message
        super().__init__(text)


class BadRequest(AlcorError):
    message = "Bad {resource} request: {msg}."


class InvalidInput(BadRequest):
    """Bad input: ``InvalidInput(error_message=...)`` for an operation, or
    ``InvalidInput(attribute=..., reason=...)`` for one attribute (Neutron's two wordings)."""

    message = "Invalid input for operation: {error_message}."

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)
        if "attribute" in kw:
            reason = str(kw.get("reason", "")).rstrip(".")
            self.args = (f"Invalid input for {kw['attribute']}. Reason: {reason}.",)


class NotAuthorized(AlcorError):
    message = "Not authorized."


class PolicyNotAuthorized(NotAuthorized):
    """A policy rule forbids the call (oslo.policy's class name, as Neutron reports it)."""

    message = "{action} is disallowed by policy"


class HTTPForbidden(NotAuthorized):
    """Neutron's own refusals outside the policy engine (webob's class name), e.g. a port on
    another project's external network."""

    message = "{msg}"


class NotFound(AlcorError):
    message = "An unknown exception occurred."


class Conflict(AlcorError):
    message = "A conflict occurred."


class InUse(Conflict):
    message = "The resource is in use."


class PreconditionFailed(AlcorError):
    message = "A precondition failed."


class Unavailable(AlcorError):
    message = "The service is unavailable: {reason}."


class ServiceUnavailable(Unavailable):
    message = "The service is unavailable: {reason}."


# --- not found -------------------------------------------------------------------------


class NetworkNotFound(NotFound):
    message = "Network {net_id} could not be found."


class SubnetNotFound(NotFound):
    message = "Subnet {subnet_id} could not be found."


class PortNotFound(NotFound):
    message = "Port {port_id} could not be found."


class SecurityGroupNotFound(NotFound):
    message = "Security group {id} does not exist"


class SecurityGroupRuleNotFound(NotFound):
    message = "Security group rule {id} does not exist"


class TagNotFound(NotFound):
    message = "Tag {tag} could not be found for {resource_type} {resource_id}."


class ResourceNotFound(NotFound):
    message = "The resource could not be found."


class ExtensionNotFound(NotFound):
    message = "Extension with alias {alias} does not exist."


class TenantQuotaNotFound(NotFound):
    message = "Quota for tenant {tenant_id} could not be found."


class QuotaResourceUnknown(NotFound):
    message = "Unknown quota resources {unknown}."


# --- conflicts and in-use --------------------------------------------------------------


class NetworkInUse(InUse):
    message = (
        "Unable to complete operation on network {net_id}. "
        "There are one or more ports still in use on the network."
    )


class SubnetInUse(InUse):
    message = (
        "Unable to complete operation on subnet {subnet_id}: "
        "One or more ports have an IP allocation from this subnet."
    )


class SecurityGroupInUse(InUse):
    message = "Security Group {id} in use."


class MacAddressInUse(InUse):
    message = (
        "Unable to complete operation for network {net_id}. "
        "The mac address {mac} is in use."
    )


class IpAddressAlreadyAllocated(Conflict):
    message = "IP address {ip} already allocated in subnet {subnet_id}"


class IpAddressGenerationFailure(Conflict):
    message = "No more IP addresses available on network {net_id}."


class SecurityGroupRuleExists(InUse):
    message = "Security group rule already exists. Rule id is {rule_id}."


class SecurityGroupCannotRemoveDefault(InUse):
    message = "Insufficient rights for removing default security group."


class NoNetworkAvailable(Conflict):
    message = "Unable to create the network. No tenant network is available for allocation."


class MacAddressGenerationFailure(Conflict):
    message = "Unable to generate unique mac on network {net_id}."


class TagLimitExceeded(Conflict):
    message = "Too many tags on {resource_type} {resource_id}: the limit is {limit}."


class OverQuota(Conflict):
    """``overs``: the sorted list of resource names over their limit."""

    message = "Quota exceeded for resources: {overs}."


# --- preconditions ---------------------------------------------------------------------


class RevisionNumberConstraintFailed(PreconditionFailed):
    message = "Constrained to {expected}, but current revision is {current}"


class TunnelIdInUse(InUse):
    message = "Unable to create the network. The tunnel ID {tunnel_id} is in use."


# --- subnets (neutron_lib.exceptions wording) -----------------------------------------


class InvalidAllocationPool(BadRequest):
    message = "The allocation pool {pool} is not valid."


class OutOfBoundsAllocationPool(BadRequest):
    message = "The allocation pool {pool} spans beyond the subnet cidr {subnet_cidr}."


class OverlappingAllocationPools(Conflict):
    message = "Found overlapping allocation pools: {pool_1} {pool_2} for subnet {subnet_cidr}."


class GatewayConflictWithAllocationPools(InUse):
    message = "Gateway ip {ip_address} conflicts with allocation pool {pool}."


class GatewayIpInUse(InUse):
    message = (
        "Current gateway ip {ip_address} already in use by port {port_id}. Unable to update."
    )


class IpAddressInUse(InUse):
    message = (
        "Unable to complete operation for network {net_id}. "
        "The IP address {ip_address} is in use."
    )


class HostRoutesExhausted(BadRequest):
    message = (
        "Unable to complete operation for {subnet_id}. "
        "The number of host routes exceeds the limit {quota}."
    )


class DNSNameServersExhausted(BadRequest):
    message = (
        "Unable to complete operation for {subnet_id}. "
        "The number of DNS nameservers exceeds the limit {quota}."
    )


class InvalidSubnetServiceType(InvalidInput):
    message = "Subnet service type {service_type} does not correspond to a valid device owner."


# --- security groups (neutron/extensions/securitygroup.py wording) ---------------------


class InvalidCIDR(BadRequest):
    message = "Invalid CIDR {input} given as IP prefix."


class SecurityGroupInvalidPortRange(InvalidInput):
    message = "For TCP/UDP protocols, port_range_min must be <= port_range_max"


class SecurityGroupInvalidProtocolForPort(InvalidInput):
    message = (
        "Ports cannot be specified for protocol {protocol}. "
        "Ports are only supported for {valid_port_protocols}."
    )


class SecurityGroupInvalidPortValue(InvalidInput):
    message = "Invalid value for port {port}"


class SecurityGroupInvalidIcmpValue(InvalidInput):
    message = "Invalid value for ICMP {field} ({attr}) {value}. It must be 0 to 255."


class SecurityGroupEthertypeConflictWithProtocol(InvalidInput):
    message = "Invalid ethertype {ethertype} for protocol {protocol}."


class SecurityGroupMissingIcmpType(InvalidInput):
    message = (
        "ICMP code (port-range-max) {value} is provided but ICMP type (port-range-min) "
        "is missing."
    )


class SecurityGroupRuleInvalidProtocol(InvalidInput):
    message = (
        "Security group rule protocol {protocol} not supported. Only protocol values "
        "{values} and integer representations [0 to 255] are supported."
    )


class SecurityGroupRuleInvalidEtherType(InvalidInput):
    message = (
        "Security group rule for ethertype '{ethertype}' not supported. "
        "Allowed values are {values}."
    )


class SecurityGroupRulesNotSingleProject(InvalidInput):
    message = "Multiple project_ids in bulk security group rule create not allowed"


class SecurityGroupMultipleRemoteEntites(InvalidInput):
    message = (
        "Only one of remote_ip_prefix or remote_group_id or remote_address_group_id "
        "may be provided."
    )


class SecurityGroupProtocolRequiredWithPorts(InvalidInput):
    message = "Must also specify protocol if port range is given."


class SecurityGroupNotSingleGroupRules(InvalidInput):
    message = "Only allowed to update rules for one security profile at a time"


class SecurityGroupRuleParameterConflict(InvalidInput):
    message = "Conflicting value ethertype {ethertype} for CIDR {cidr}"


class AddressGroupNotFound(NotFound):
    message = "Address group {address_group_id} could not be found."


class SecurityGroupCannotUpdateDefault(InUse):
    message = "Updating default security group not allowed."


class SecurityGroupDefaultAlreadyExists(InUse):
    message = "Default security group already exists."


class DuplicateSecurityGroupRuleInPost(InUse):
    message = "Duplicate Security Group Rule in POST."


# --- ports and IPAM (neutron_lib.exceptions and neutron/ipam/exceptions.py wording) ----


class InvalidIpForSubnet(BadRequest):
    message = "IP address {ip_address} is not a valid IP for the specified subnet."


class InvalidIpForNetwork(BadRequest):
    message = (
        "IP address {ip_address} is not a valid IP for any of the subnets on the "
        "specified network."
    )


class AllocationOnAutoAddressSubnet(InvalidInput):
    message = (
        "IPv6 address {ip} cannot be directly assigned to a port on subnet {subnet_id} "
        "as the subnet is configured for automatic addresses"
    )


class PortBound(InUse):
    message = (
        "Unable to complete operation on port {port_id}, port is already bound, port "
        "type: {vif_type}, old_mac {old_mac}, new_mac {new_mac}."
    )


class PortSecurityAndIPRequiredForSecurityGroups(InvalidInput):
    message = (
        "Port security must be enabled and port must have an IP address in order to use "
        "security groups."
    )


class PortSecurityPortHasSecurityGroup(InUse):
    message = (
        "Port has security group associated. Cannot disable port security or IP address "
        "until security group is removed."
    )


class AddressPairAndPortSecurityRequired(Conflict):
    message = "Port Security must be enabled in order to have allowed address pairs on a port."


class DuplicateAddressPairInRequest(InvalidInput):
    message = (
        "Request contains duplicate address pair: mac_address {mac_address} "
        "ip_address {ip_address}."
    )


# --- routers and floating IPs (neutron_lib.exceptions, .l3, .extraroute, .external_net,
# .flavors wording) -----------------------------------------------------------------------


class RouterNotFound(NotFound):
    message = "Router {router_id} could not be found"


class RouterInUse(InUse):
    message = "Router {router_id} {reason}"

    def __init__(self, **kw: object) -> None:
        kw.setdefault("reason", "still has ports")
        super().__init__(**kw)


class RouterInterfaceNotFound(NotFound):
    message = "Router {router_id} does not have an interface with id {port_id}"


class RouterInterfaceNotFoundForSubnet(NotFound):
    message = "Router {router_id} has no interface on subnet {subnet_id}"


class RouterInterfaceInUseByFloatingIP(InUse):
    message = (
        "Router interface for subnet {subnet_id} on router {router_id} cannot be deleted, "
        "as it is required by one or more floating IPs."
    )


class RouterInterfaceInUseByRoute(InUse):
    message = (
        "Router interface for subnet {subnet_id} on router {router_id} cannot be deleted, "
        "as it is required by one or more routes."
    )


class RouterExternalGatewayInUseByFloatingIp(InUse):
    message = (
        "Gateway cannot be updated for router {router_id}, since a gateway to external "
        "network {net_id} is required by one or more floating IPs."
    )


class InvalidRoutes(InvalidInput):
    message = "Invalid format for routes: {routes}, {reason}"


class RoutesExhausted(BadRequest):
    message = (
        "Unable to complete operation for {router_id}. "
        "The number of routes exceeds the maximum {quota}."
    )


class FloatingIPNotFound(NotFound):
    message = "Floating IP {floatingip_id} could not be found"


class ExternalGatewayForFloatingIPNotFound(NotFound):
    message = (
        "External network {external_network_id} is not reachable from subnet {subnet_id}.  "
        "Therefore, cannot associate Port {port_id} with a Floating IP."
    )


class FloatingIPPortAlreadyAssociated(InUse):
    message = (
        "Cannot associate floating IP {floating_ip_address} ({fip_id}) with port {port_id} "
        "using fixed IP {fixed_ip}, as that fixed IP already has a floating IP on external "
        "network {net_id}."
    )


class ExternalIpAddressExhausted(BadRequest):
    message = "Unable to find any IP address on external network {net_id}."


class ExternalNetworkInUse(InUse):
    message = (
        "External network {net_id} cannot be updated to be made non-external, since it has "
        "existing gateway ports."
    )


class PortInUse(InUse):
    message = (
        "Unable to complete operation on port {port_id} for network {net_id}. "
        "Port already has an attached device {device_id}."
    )


class ServicePortInUse(InUse):
    message = "Port {port_id} cannot be deleted directly via the port API: {reason}."


class SubnetMismatchForPort(BadRequest):
    message = "Subnet on port {port_id} does not match the requested subnet {subnet_id}."


class FlavorNotFound(NotFound):
    message = "Flavor {flavor_id} could not be found."


# --- hosts (upstream Alcor's node manager) ---------------------------------------------


class NodeNotFound(NotFound):
    message = "Node {node_id} could not be found."


class NodeAlreadyExists(Conflict):
    message = "A node with {field} {value} already exists."


# --- segments and segment ranges (neutron/services/segments/exceptions.py and
# neutron_lib/exceptions/network_segment_range.py wording) -------------------------------


class SegmentNotFound(NotFound):
    message = "Segment {segment_id} could not be found."


class SegmentInUse(InUse):
    message = "Segment '{segment_id}' cannot be deleted: {reason}."


class NetworkSegmentRangeNotFound(NotFound):
    message = "Network Segment Range {range_id} could not be found."


class NetworkSegmentRangeNetTypeNotSupported(BadRequest):
    message = "Network type {type} does not support network segment ranges."


class NetworkSegmentRangeReferencedByProject(InUse):
    message = "Network Segment Range {range_id} is referenced by one or more tenant networks."


class NetworkSegmentRangeDefaultReadOnly(BadRequest):
    message = (
        "Network Segment Range {range_id} is a default segment range which could not be "
        "updated or deleted."
    )


class NetworkSegmentRangeOverlaps(Conflict):
    message = "Network segment range overlaps with range(s) with id {range_id}"


class NetworkTunnelRangeError(BadRequest):
    message = "Invalid network tunnel range: '{tunnel_range}' - {error}."

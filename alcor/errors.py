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


# --- preconditions ---------------------------------------------------------------------


class RevisionNumberConstraintFailed(PreconditionFailed):
    message = "Constrained to {expected}, but current revision is {current}"


class TunnelIdInUse(InUse):
    message = "Unable to create the network. The tunnel ID {tunnel_id} is in use."

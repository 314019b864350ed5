"""Security groups and their rules, including each project's default group."""

from __future__ import annotations

from typing import ClassVar

from alcor import errors
from alcor.services.resource import ResourceService


class SecurityGroupService(ResourceService):
    table: ClassVar[str] = "security_groups"
    resource_type: ClassVar[str] = "security_group"
    not_found = errors.SecurityGroupNotFound


class SecurityGroupRuleService(ResourceService):
    table: ClassVar[str] = "security_group_rules"
    resource_type: ClassVar[str] = "security_group_rule"
    not_found = errors.SecurityGroupRuleNotFound

"""Pure converters and validators for attribute values.

A converter turns wire input into the stored type or raises ``ValueError`` with the reason;
a validator returns the reason a converted value is wrong, or None.  Neither touches storage.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any

Validator = Callable[[Any], "str | None"]
Converter = Callable[[Any], Any]

_MAC = re.compile(r"^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$")
_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def to_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "0", "no"):
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"'{value}' cannot be converted to boolean")


def to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"'{value}' is not an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"'{value}' is not an integer") from None


def to_int_or_none(value: Any) -> int | None:
    return None if value is None else to_int(value)


def to_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, tuple):
        return list(value)
    raise ValueError(f"'{value}' is not a list")


def to_mac(value: Any) -> str:
    if not isinstance(value, str) or not _MAC.match(value):
        raise ValueError(f"'{value}' is not a valid MAC address")
    return value.lower().replace("-", ":")


def to_string_or_none(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"'{value}' is not a valid string")
    return value


def string(max_len: int | None = 255) -> Validator:
    def check(value: Any) -> str | None:
        if not isinstance(value, str):
            return f"'{value}' is not a valid string"
        if max_len is not None and len(value) > max_len:
            return f"'{value}' exceeds maximum length of {max_len}"
        return None

    return check


def string_or_none(max_len: int | None = 255) -> Validator:
    inner = string(max_len)
    return lambda value: None if value is None else inner(value)


def uuid_value(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"'{value}' is not a valid UUID"
    try:
        uuid.UUID(value)
    except ValueError:
        return f"'{value}' is not a valid UUID"
    return None


def uuid_or_none(value: Any) -> str | None:
    return None if value is None else uuid_value(value)


def uuid_list(value: Any) -> str | None:
    if not isinstance(value, list):
        return f"'{value}' is not a list"
    for item in value:
        if (msg := uuid_value(item)) is not None:
            return msg
    if len(set(value)) != len(value):
        return f"Duplicate items in the list: '{', '.join(value)}'"
    return None


def values(allowed: Iterable[Any]) -> Validator:
    choices = list(allowed)

    def check(value: Any) -> str | None:
        if value not in choices:
            return f"'{value}' is not in {choices}"
        return None

    return check


def int_range(low: int | None, high: int | None) -> Validator:
    def check(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            return f"'{value}' is not an integer"
        if low is not None and value < low:
            return f"'{value}' is too small - must be at least '{low}'"
        if high is not None and value > high:
            return f"'{value}' is too large - must be no more than '{high}'"
        return None

    return check


def ip_address(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"'{value}' is not a valid IP address"
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"'{value}' is not a valid IP address"
    return None


def ip_address_or_none(value: Any) -> str | None:
    return None if value is None else ip_address(value)


def cidr(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"'{value}' is not a valid IP subnet"
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return f"'{value}' is not a valid IP subnet"
    if "/" not in value or str(net) != value.lower():
        return f"'{value}' isn't a recommended CIDR, '{net}' is recommended"
    return None


def ip_or_cidr(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"'{value}' is neither a valid IP address, nor is it a valid IP subnet"
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return f"'{value}' is neither a valid IP address, nor is it a valid IP subnet"
    return None


def mac_address(value: Any) -> str | None:
    if not isinstance(value, str) or not _MAC.match(value):
        return f"'{value}' is not a valid MAC address"
    if int(value.replace(":", "").replace("-", ""), 16) == 0 or value.lower().startswith("ff:ff"):
        return f"'{value}' is not a valid unicast MAC address"
    if int(value[:2], 16) & 1:
        return f"'{value}' is not a valid unicast MAC address"
    return None


def dict_value(value: Any) -> str | None:
    return None if isinstance(value, dict) else f"'{value}' is not a dictionary"


def string_list(max_len: int = 255) -> Validator:
    inner = string(max_len)

    def check(value: Any) -> str | None:
        if not isinstance(value, list):
            return f"'{value}' is not a list"
        for item in value:
            if (msg := inner(item)) is not None:
                return msg
        return None

    return check


def tag_list(value: Any) -> str | None:
    if not isinstance(value, list):
        return f"'{value}' is not a list"
    for item in value:
        if (msg := tag(item)) is not None:
            return msg
    return None


def tag(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return f"'{value}' is not a valid tag"
    if len(value) > 255:
        return f"'{value}' exceeds maximum length of 255"
    if "," in value or "/" in value:
        return f"'{value}' contains a comma or a slash, which tags cannot hold"
    return None


def dns_name(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"'{value}' is not a valid string"
    if value == "":
        return None
    name = value[:-1] if value.endswith(".") else value
    if len(name) > 255:
        return f"'{value}' exceeds the 255 character FQDN limit"
    for label in name.split("."):
        if not _DNS_LABEL.match(label):
            return f"'{value}' not a valid PQDN or FQDN. Reason: invalid label '{label}'"
    return None


def list_of_dicts(
    required: Iterable[str], optional: Iterable[str] = (), item: Validator | None = None
) -> Validator:
    """A list whose items are dicts with exactly the named keys (optional ones may be absent)."""
    req, opt = set(required), set(optional)

    def check(value: Any) -> str | None:
        if not isinstance(value, list):
            return f"'{value}' is not a list"
        for entry in value:
            if not isinstance(entry, dict):
                return f"'{entry}' is not a dictionary"
            missing = req - entry.keys()
            if missing:
                return f"Validation of dictionary's keys failed. Expected keys: {sorted(req)}"
            extra = entry.keys() - req - opt
            if extra:
                return f"Unexpected keys supplied: {', '.join(sorted(extra))}"
            if item is not None and (msg := item(entry)) is not None:
                return msg
        return None

    return check

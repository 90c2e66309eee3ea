"""Request fields parsed into checked values (pure, no I/O): the other half of the rules.

provisioning.rules holds the service's limits and the rules of its state (tenants, IDs,
numbers); this module turns what a request (REST API, CSV import, seed file) sends into typed,
checked values, raising `InvalidInput` (error_id `invalid-input`, the field named in
`details`) for anything else:

- generic fields: `text_field`, `optional_text`, `parse_enum`, `number_field`, `int_field`,
  `parse_date`, and the digest credentials `check_username`, `check_password`;
- whole entries of the resources that have no state invariant of their own: a web phonebook
  entry (`check_phonebook_entry` -> `PhonebookRow`) and a carrier gateway (`check_gateway`).

Every limit it applies is defined once, in provisioning.rules.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import re
from collections.abc import Sequence
from datetime import date
from typing import TypeVar

from .errors import InvalidInput
from .model import Gateway
from .rules import (
    GATEWAY_NAME_MAX,
    HOST_MAX,
    PASSWORD_LENGTH,
    PHONEBOOK_DIGITS,
    PHONEBOOK_NAME_MAX,
    PHONEBOOK_NUMBER_MAX,
    PHONEBOOK_TEXT_MAX,
    PORT_RANGE,
    TRANSPORTS,
    USERNAME_MAX,
)

__all__ = [
    "PhonebookRow",
    "check_gateway",
    "check_password",
    "check_phonebook_entry",
    "check_username",
    "int_field",
    "number_field",
    "optional_text",
    "parse_date",
    "parse_enum",
    "text_field",
]

# --------------------------------------------------------------------------- phonebook

_PHONEBOOK_NUMBER = re.compile(rf"\+?[0-9][0-9\-() ]{{0,{PHONEBOOK_NUMBER_MAX - 1}}}")


@dataclasses.dataclass(frozen=True, slots=True)
class PhonebookRow:
    name: str
    number: str
    company: str | None = None
    note: str | None = None


def check_phonebook_entry(
    name: str, number: str, company: str | None = None, note: str | None = None
) -> PhonebookRow:
    """Trimmed entry, or InvalidInput naming the problem."""
    name, number = (name or "").strip(), (number or "").strip()
    if not name or len(name) > PHONEBOOK_NAME_MAX:
        raise InvalidInput(
            "invalid-input",
            f"name must have 1 to {PHONEBOOK_NAME_MAX} characters",
            {"field": "name"},
        )
    low, high = PHONEBOOK_DIGITS
    if (
        not _PHONEBOOK_NUMBER.fullmatch(number)
        or not low <= sum(c.isdigit() for c in number) <= high
    ):
        raise InvalidInput(
            "invalid-input", f"not a telephone number: {number!r}", {"field": "number"}
        )
    extra = [(company or "").strip() or None, (note or "").strip() or None]
    if any(x is not None and len(x) > PHONEBOOK_TEXT_MAX for x in extra):
        raise InvalidInput(
            "invalid-input",
            f"company and note have at most {PHONEBOOK_TEXT_MAX} characters",
            {"field": "company/note"},
        )
    return PhonebookRow(name, number, extra[0], extra[1])


# --------------------------------------------------------------------------- request fields

_USERNAME = re.compile(rf"[A-Za-z0-9._~+\-]{{1,{USERNAME_MAX}}}")


def text_field(value: object, field_name: str, low: int, high: int) -> str:
    text = str(value if value is not None else "").strip()
    if not low <= len(text) <= high:
        raise InvalidInput(
            "invalid-input",
            f"{field_name} must have {low} to {high} characters",
            {"field": field_name, "limit": high},
        )
    return text


def optional_text(value: object, field_name: str, high: int) -> str | None:
    """None for None or blank text, else `text_field(value, field_name, 1, high)`."""
    if value is None or str(value).strip() == "":
        return None
    return text_field(value, field_name, 1, high)


def check_username(value: object) -> str:
    text = str(value or "")
    if not _USERNAME.fullmatch(text):
        raise InvalidInput(
            "invalid-input",
            f"SIP username: 1 to {USERNAME_MAX} of A-Z a-z 0-9 . _ ~ + -",
            {"field": "username"},
        )
    return text


def check_password(value: object) -> str:
    text = str(value or "")
    low, high = PASSWORD_LENGTH
    if not low <= len(text) <= high:
        raise InvalidInput(
            "invalid-input",
            f"password must have {low} to {high} characters",
            {"field": "password", "limit": low},
        )
    return text


E = TypeVar("E", bound=enum.Enum)


def parse_enum(cls: type[E], value: object, field_name: str) -> E:
    try:
        return cls(value)
    except ValueError as exc:
        raise InvalidInput(
            "invalid-input",
            f"{field_name}: {value!r} is not one of {[m.value for m in cls]}",
            {"field": field_name},
        ) from exc


def number_field(value: object, field_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput("invalid-input", f"{field_name} must be a number", {"field": field_name})
    return float(value)


def int_field(value: object, field_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(
            "invalid-input", f"{field_name} must be an integer", {"field": field_name}
        )
    return value


def parse_date(value: object) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise InvalidInput("invalid-input", f"not a date: {value!r}", {"field": "day"}) from exc


def check_gateway(
    gw_id: str, name: object, host: object, port: object, transport: object, sources: Sequence[str]
) -> Gateway:
    host_text = text_field(host, "host", 1, HOST_MAX)
    if str(transport) not in TRANSPORTS:
        raise InvalidInput("invalid-input", "transport is udp, tcp or tls", {"field": "transport"})
    low, high = PORT_RANGE
    if isinstance(port, bool) or not isinstance(port, int) or not low <= port <= high:
        raise InvalidInput("invalid-input", f"port is {low}..{high}", {"field": "port"})
    allowed = tuple(str(s) for s in sources) or (host_text,)
    for s in allowed:
        try:
            ipaddress.ip_address(s)
        except ValueError as exc:
            raise InvalidInput(
                "invalid-input",
                f"allowed source {s!r} is not an IP address",
                {"field": "allowed_sources"},
            ) from exc
    return Gateway(
        id=gw_id,
        name=text_field(name, "name", 1, GATEWAY_NAME_MAX),
        host=host_text,
        port=port,
        transport=str(transport),
        allowed_sources=allowed,
    )

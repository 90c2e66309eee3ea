"""The service rules as pure functions (no I/O): docs/service-rules.md made executable.

Two kinds of rules:
- *State invariants* (`check_tenant`): true of every committed tenant, whatever the request.
  The service applies a change in memory and calls `check_tenant` on the result before it
  writes anything; the first broken rule is raised as a `RuleViolation`/`InvalidInput` with
  the rule and the limit in `details`.
- *Transition rules* (identity check before configuring after-hours/forwarding, the
  forwarding <-> after-hours exclusion): functions of (old, request) the service calls
  explicitly (`require_identity`, `enable_after_hours`, `enable_forwarding`).

Decisions where the sources leave room (documented for the README):
- Deleting an ID that is the only member of a number's ring group is refused
  (`ring-group-empty`): silently leaving a number that rings nobody is worse.
- Identity verification is checked when after-hours/forwarding is *configured* (option
  subscribed, schedule/target set, switched ON); an operator un-verifying a tenant later does
  not switch anything off and does not block unrelated writes.
- Subscribing the after-hours/forwarding options counts as configuring them.
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import io
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import InvalidInput, RuleViolation
from .model import (
    ANNOUNCEMENT_TEMPLATES,
    SLOTS_PER_DAY,
    VOICEMAIL_RING_TIMES,
    DayKind,
    Device,
    DeviceKind,
    Forwarding,
    Gateway,
    Number,
    NumberKind,
    SlotAction,
    Tenant,
    is_toll_free,
    normalize_number,
)

MAX_ADDITIONAL_NUMBERS = 2
MAX_APP_RING_DELAY = 30.0
MAX_RING_TIME_RANGE = (5.0, 300.0)
PROMPT_PREFIX = "prompt:"


# --------------------------------------------------------------------------- field checks


def check_timezone(tz: str) -> str:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(
            "invalid-timezone", f"unknown time zone {tz!r}", {"timezone": tz}
        ) from exc
    return tz


def parse_number(text: str, what: str = "number") -> str:
    """Any accepted form -> E.164, or InvalidInput `invalid-number`."""
    try:
        return normalize_number(str(text))
    except ValueError as exc:
        raise InvalidInput(
            "invalid-number",
            f"{what}: not a Japanese telephone number: {text!r}",
            {"field": what, "value": str(text)},
        ) from exc


def check_number_kind(e164: str, kind: NumberKind) -> None:
    """Toll-free (0120/0800) numbers are exactly the toll-free kind."""
    if (kind is NumberKind.TOLL_FREE) != is_toll_free(e164):
        raise InvalidInput(
            "invalid-number",
            "toll-free numbers are 0120/0800 numbers of kind toll-free, and only those",
            {"rule": "kind toll-free ⇔ 0120/0800 prefix", "number": e164, "kind": kind.value},
        )


def check_ring_time(seconds: int) -> None:
    if seconds not in VOICEMAIL_RING_TIMES:
        raise InvalidInput(
            "invalid-ring-time",
            f"voicemail ring time must be one of {VOICEMAIL_RING_TIMES} seconds",
            {
                "rule": "voicemail ring time ∈ {5,10,15,20,25,30}",
                "allowed": list(VOICEMAIL_RING_TIMES),
                "requested": seconds,
            },
        )


def check_app_ring_delay(seconds: float) -> None:
    if not 0 <= seconds <= MAX_APP_RING_DELAY:
        raise InvalidInput(
            "invalid-ring-delay",
            f"app ring delay must be between 0 and {MAX_APP_RING_DELAY:g} seconds",
            {
                "rule": "0 ≤ app ring delay ≤ 30 s",
                "limit": MAX_APP_RING_DELAY,
                "requested": seconds,
            },
        )


def check_max_ring_time(seconds: float) -> None:
    low, high = MAX_RING_TIME_RANGE
    if not low <= seconds <= high:
        raise InvalidInput(
            "invalid-input",
            f"max ring time must be between {low:g} and {high:g} seconds",
            {"rule": "5 ≤ max ring time ≤ 300 s", "requested": seconds},
        )


def parse_slots(
    slots: Mapping[Any, Any],
) -> dict[DayKind, tuple[SlotAction, ...]]:
    """Day kind -> exactly 48 actions (SlotAction, their values, or R/A/F letters)."""
    letters = {"R": SlotAction.RING, "A": SlotAction.ANNOUNCE, "F": SlotAction.FORWARD}
    out: dict[DayKind, tuple[SlotAction, ...]] = {}
    for key, actions in slots.items():
        try:
            day = DayKind(key)
            parsed = tuple(letters[a] if a in letters else SlotAction(a) for a in actions)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(
                "invalid-schedule", f"bad schedule for {key!r}: {exc}", {"day_kind": str(key)}
            ) from exc
        if len(parsed) != SLOTS_PER_DAY:
            raise InvalidInput(
                "invalid-schedule",
                f"{day.value}: needs exactly {SLOTS_PER_DAY} half-hour slots",
                {
                    "rule": "48 half-hour slots per day kind",
                    "limit": SLOTS_PER_DAY,
                    "requested": len(parsed),
                    "day_kind": day.value,
                },
            )
        out[day] = parsed
    return out


# --------------------------------------------------------------------------- invariants


def check_tenant(
    tenant: Tenant,
    devices: Sequence[Device],
    numbers: Sequence[Number],
    prompt_ids: Iterable[str] = (),
) -> None:
    """Every state invariant of one tenant; raises the first one broken."""
    check_timezone(tenant.timezone)
    _check_ids(devices)
    _check_number_counts(devices, numbers)
    own_ids = {d.id for d in devices}
    prompts = frozenset(prompt_ids)
    for n in numbers:
        check_number(n, own_ids, prompts)
    presentable = {n.e164 for n in numbers if n.kind is not NumberKind.TOLL_FREE}
    toll_free = {n.e164 for n in numbers if n.kind is NumberKind.TOLL_FREE}
    for d in devices:
        check_device(d, presentable, toll_free)


def _check_ids(devices: Sequence[Device]) -> None:
    if not devices:
        raise RuleViolation(
            "last-id",
            "a tenant keeps at least one ID (its basic ID)",
            {"rule": "IDs ≥ 1", "limit": 1, "requested": 0},
        )


def _check_number_counts(devices: Sequence[Device], numbers: Sequence[Number]) -> None:
    kinds = [n.kind for n in numbers]
    contracts = kinds.count(NumberKind.CONTRACT)
    if contracts != 1:
        raise RuleViolation(
            "contract-number-exists" if contracts > 1 else "contract-number-required",
            "a tenant has exactly one contract number",
            {"rule": "contract numbers = 1", "limit": 1, "requested": contracts},
        )
    additional = kinds.count(NumberKind.ADDITIONAL)
    if additional > MAX_ADDITIONAL_NUMBERS:
        raise RuleViolation(
            "too-many-additional-numbers",
            f"at most {MAX_ADDITIONAL_NUMBERS} additional numbers",
            {
                "rule": "additional numbers ≤ 2",
                "limit": MAX_ADDITIONAL_NUMBERS,
                "requested": additional,
            },
        )
    additional_ids = len(devices) - 1
    if additional > additional_ids:
        raise RuleViolation(
            "additional-numbers-exceed-additional-ids",
            "never more additional numbers than additional IDs",
            {
                "rule": "additional numbers ≤ additional IDs (IDs - 1)",
                "limit": additional_ids,
                "requested": additional,
            },
        )
    if NumberKind.TOLL_FREE in kinds and len(devices) < 2:
        raise RuleViolation(
            "toll-free-needs-several-ids",
            "toll-free numbers need more than one ID",
            {"rule": "toll-free numbers need IDs ≥ 2", "limit": 2, "ids": len(devices)},
        )


def check_device(d: Device, presentable: set[str], toll_free: set[str]) -> None:
    if d.presented_number in toll_free:
        raise RuleViolation(
            "toll-free-not-presentable",
            "a toll-free number is incoming only",
            {
                "rule": "presented number is not toll-free",
                "device_id": d.id,
                "number": d.presented_number,
            },
        )
    if d.presented_number not in presentable:
        raise RuleViolation(
            "presented-number-not-own",
            "an ID presents one of its tenant's numbers",
            {
                "rule": "presented number ∈ tenant's numbers",
                "device_id": d.id,
                "number": d.presented_number,
            },
        )
    if d.free_calls_10min and d.kind is not DeviceKind.APP:
        raise RuleViolation(
            "free-calls-apps-only",
            "10-minute free calls are for apps only",
            {"rule": "10-minute free calls: apps only", "device_id": d.id, "kind": d.kind.value},
        )


def check_number(n: Number, own_ids: set[str], prompt_ids: frozenset[str]) -> None:
    check_number_kind(n.e164, n.kind)
    _check_ring_group(n, own_ids)
    check_ring_time(n.voicemail_ring_time)
    check_app_ring_delay(n.app_ring_delay)
    check_max_ring_time(n.max_ring_time)
    _check_schedule(n, prompt_ids)
    _check_switches(n)


def _check_ring_group(n: Number, own_ids: set[str]) -> None:
    if not n.ring_group:
        raise RuleViolation(
            "ring-group-empty",
            f"the ring group of {n.e164} would be empty",
            {"rule": "ring group is a non-empty subset of the tenant's IDs", "number": n.e164},
        )
    foreign = sorted(set(n.ring_group) - own_ids)
    if foreign or len(set(n.ring_group)) != len(n.ring_group):
        raise RuleViolation(
            "ring-group-not-own-ids",
            "a ring group lists IDs of its own tenant, once each",
            {
                "rule": "ring group is a subset of the tenant's IDs",
                "number": n.e164,
                "unknown": foreign,
            },
        )


def _check_schedule(n: Number, prompt_ids: frozenset[str]) -> None:
    ah = n.after_hours
    if set(ah.slots) != set(DayKind) or any(len(s) != SLOTS_PER_DAY for s in ah.slots.values()):
        raise InvalidInput(
            "invalid-schedule",
            "4 day kinds x 48 slots",
            {"rule": "4 day kinds x 48 half-hour slots"},
        )
    forward_slots = sum(s.count(SlotAction.FORWARD) for s in ah.slots.values())
    if forward_slots and not n.options.forwarding:
        raise RuleViolation(
            "forward-slot-needs-forwarding-option",
            "forward slots need the call-forwarding option on the number",
            {
                "rule": "slot action forward ⇒ forwarding option",
                "number": n.e164,
                "forward_slots": forward_slots,
            },
        )
    a = ah.announcement
    ok = a in ANNOUNCEMENT_TEMPLATES or (
        a.startswith(PROMPT_PREFIX) and a.removeprefix(PROMPT_PREFIX) in prompt_ids
    )
    if not ok:
        raise InvalidInput(
            "invalid-announcement",
            "the announcement is one of the 3 templates or one of the tenant's prompts",
            {
                "rule": "announcement ∈ templates or tenant prompts",
                "announcement": a,
                "templates": list(ANNOUNCEMENT_TEMPLATES),
            },
        )


def _check_switches(n: Number) -> None:
    if n.after_hours.enabled and not n.options.after_hours:
        raise RuleViolation(
            "option-required",
            "after-hours needs the after-hours option",
            {"rule": "after-hours ON ⇒ after-hours option", "option": "after_hours"},
        )
    if n.forwarding.enabled and not n.options.forwarding:
        raise RuleViolation(
            "option-required",
            "forwarding needs the call-forwarding option",
            {"rule": "forwarding ON ⇒ forwarding option", "option": "forwarding"},
        )
    if n.forwarding.enabled and not n.forwarding.target:
        raise RuleViolation(
            "forwarding-needs-target",
            "turning forwarding ON needs a target number",
            {"rule": "forwarding ON ⇒ target set"},
        )


# --------------------------------------------------------------------------- transitions


def require_identity(tenant: Tenant, what: str) -> None:
    if not tenant.identity_verified:
        raise RuleViolation(
            "identity-not-verified",
            f"{what} cannot be configured before the tenant's identity check",
            {"rule": "after-hours and forwarding need a verified identity", "what": what},
        )


def set_after_hours_enabled(n: Number, enabled: bool) -> Number:
    """One-touch ON/OFF. ON turns forwarding OFF (and it stays OFF)."""
    n = dataclasses.replace(n, after_hours=dataclasses.replace(n.after_hours, enabled=enabled))
    if enabled and n.forwarding.enabled:
        n = dataclasses.replace(n, forwarding=dataclasses.replace(n.forwarding, enabled=False))
    return n


def set_forwarding_enabled(n: Number, enabled: bool) -> Number:
    """Forwarding ON turns after-hours OFF (and it stays OFF when forwarding goes off)."""
    n = dataclasses.replace(n, forwarding=dataclasses.replace(n.forwarding, enabled=enabled))
    if enabled and n.after_hours.enabled:
        n = dataclasses.replace(n, after_hours=dataclasses.replace(n.after_hours, enabled=False))
    return n


def drop_options(n: Number) -> Number:
    """An unsubscribed option's function is OFF."""
    ah, fwd = n.after_hours, n.forwarding
    if not n.options.after_hours and ah.enabled:
        ah = dataclasses.replace(ah, enabled=False)
    if not n.options.forwarding and fwd.enabled:
        fwd = Forwarding(enabled=False, target=fwd.target)
    return dataclasses.replace(n, after_hours=ah, forwarding=fwd)


__all__ = [
    "MAX_ADDITIONAL_NUMBERS",
    "MAX_PHONEBOOK_ENTRIES",
    "PhonebookRow",
    "check_app_ring_delay",
    "check_device",
    "check_number",
    "check_number_kind",
    "check_phonebook_entry",
    "check_ring_time",
    "check_tenant",
    "check_timezone",
    "drop_options",
    "parse_number",
    "parse_phonebook_csv",
    "parse_slots",
    "require_identity",
    "set_after_hours_enabled",
    "set_forwarding_enabled",
]


# --------------------------------------------------------------------------- phonebook

MAX_PHONEBOOK_ENTRIES = 1000
_PHONEBOOK_NUMBER = re.compile(r"\+?[0-9][0-9\-() ]{0,30}")
_HEADER_NAMES = {"name", "名前", "氏名"}


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
    if not name or len(name) > 100:
        raise InvalidInput("invalid-input", "name must have 1 to 100 characters", {"field": "name"})
    digits = sum(c.isdigit() for c in number)
    if not _PHONEBOOK_NUMBER.fullmatch(number) or not 2 <= digits <= 20:
        raise InvalidInput(
            "invalid-input", f"not a telephone number: {number!r}", {"field": "number"}
        )
    extra = [(company or "").strip() or None, (note or "").strip() or None]
    if any(x is not None and len(x) > 200 for x in extra):
        raise InvalidInput(
            "invalid-input",
            "company and note have at most 200 characters",
            {"field": "company/note"},
        )
    return PhonebookRow(name, number, extra[0], extra[1])


def decode_csv(data: bytes | str) -> str:
    """UTF-8 (with or without BOM), else CP932 (what Japanese Excel writes)."""
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            return data.decode("cp932")
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                "phonebook-import-invalid",
                "the CSV is neither UTF-8 nor Shift_JIS (CP932)",
                {"errors": [{"row": 0, "reason": "undecodable file"}]},
            ) from exc


def parse_phonebook_csv(data: bytes | str) -> tuple[list[PhonebookRow], list[dict[str, object]]]:
    """Rows `name,number[,company[,note]]` -> (entries, errors). Errors are
    `{"row": line number (1-based), "reason": …}`; blank lines are skipped; a first row whose
    first cell is a header name ("name", "名前", "氏名") is skipped."""
    entries: list[PhonebookRow] = []
    errors: list[dict[str, object]] = []
    reader = csv.reader(io.StringIO(decode_csv(data)))
    first = True
    try:
        for cells in reader:
            line = reader.line_num
            if first and cells and cells[0].strip().lower() in _HEADER_NAMES:
                first = False
                continue
            first = False
            if not any(c.strip() for c in cells):
                continue
            if len(cells) < 2 or len(cells) > 4:
                errors.append(
                    {"row": line, "reason": "expected 2 to 4 columns: name, number, company, note"}
                )
                continue
            try:
                entries.append(check_phonebook_entry(*cells))
            except InvalidInput as exc:
                errors.append({"row": line, "reason": exc.message})
    except csv.Error as exc:
        errors.append({"row": reader.line_num, "reason": f"malformed CSV: {exc}"})
    return entries, errors


# --------------------------------------------------------------------------- request fields

_USERNAME = re.compile(r"[A-Za-z0-9._~+\-]{1,64}")


def text_field(value: object, field_name: str, low: int, high: int) -> str:
    text = str(value if value is not None else "").strip()
    if not low <= len(text) <= high:
        raise InvalidInput(
            "invalid-input",
            f"{field_name} must have {low} to {high} characters",
            {"field": field_name, "limit": high},
        )
    return text


def optional_text(value: object, field_name: str) -> str | None:
    return (
        None if value is None or str(value).strip() == "" else text_field(value, field_name, 1, 200)
    )


def check_username(value: object) -> str:
    text = str(value or "")
    if not _USERNAME.fullmatch(text):
        raise InvalidInput(
            "invalid-input", "SIP username: 1 to 64 of A-Z a-z 0-9 . _ ~ + -", {"field": "username"}
        )
    return text


def check_password(value: object) -> str:
    text = str(value or "")
    if not 8 <= len(text) <= 128:
        raise InvalidInput(
            "invalid-input",
            "password must have 8 to 128 characters",
            {"field": "password", "limit": 8},
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
    host_text = text_field(host, "host", 1, 253)
    if str(transport) not in ("udp", "tcp", "tls"):
        raise InvalidInput("invalid-input", "transport is udp, tcp or tls", {"field": "transport"})
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidInput("invalid-input", "port is 1..65535", {"field": "port"})
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
        name=text_field(name, "name", 1, 200),
        host=host_text,
        port=port,
        transport=str(transport),
        allowed_sources=allowed,
    )

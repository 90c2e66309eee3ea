"""The service rules as pure functions (no I/O): docs/service-rules.md made executable.

Two kinds of rules:
- *State invariants* (`check_tenant`): true of every committed tenant, whatever the request.
  The service applies a change in memory and calls `check_tenant` on the result before it
  writes anything; the first broken rule is raised as a `RuleViolation`/`InvalidInput` with
  the rule and the limit in `details`.
- *Transition rules* (identity check before configuring after-hours/forwarding, the
  forwarding <-> after-hours exclusion): functions of (old, request) the service calls
  explicitly (`require_identity`, `set_after_hours_enabled`, `set_forwarding_enabled`).
- *Limits*: every number the rules, the services, the API schemas and the seed loader agree
  on is defined once below ("limits"); the two the routing model itself needs
  (`SLOTS_PER_DAY`, `VOICEMAIL_RING_TIMES`) are in `provisioning.model`.

The parsing of request fields (text, enums, numbers, dates, credentials) and the checks of
whole phonebook and gateway entries are in `provisioning.fields`, under these limits.

Decisions where the sources leave room (documented for the README):
- Deleting an ID that is the only member of a number's ring group is refused
  (`ring-group-empty`): silently leaving a number that rings nobody is worse.
- Identity verification is checked when after-hours/forwarding is *configured* (option
  subscribed, schedule/target set, switched ON); an operator un-verifying a tenant later does
  not switch anything off and does not block unrelated writes.
- Subscribing the after-hours/forwarding options counts as configuring them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import InvalidInput, RuleViolation, TooLarge
from .model import (
    ANNOUNCEMENT_TEMPLATES,
    SLOTS_PER_DAY,
    VOICEMAIL_RING_TIMES,
    DayKind,
    Device,
    DeviceKind,
    Forwarding,
    Number,
    NumberKind,
    SlotAction,
    Tenant,
    is_toll_free,
    normalize_number,
)

# --------------------------------------------------------------------------- limits
# Every limit of the service, defined once. The checks below, the services, the REST API's
# schemas (`provisioning.api.resources`) and the seed loader all read these names.

# Per tenant and per number (docs/service-rules.md).
MAX_ADDITIONAL_NUMBERS = 2
MAX_APP_RING_DELAY = 30.0  # seconds apps wait while desk phones/ATAs ring
MAX_RING_TIME_RANGE = (5.0, 300.0)  # seconds before giving up
MAX_PROMPTS = 10  # uploaded announcements per tenant
# An uploaded prompt file as received (a minute of 48 kHz 16-bit mono WAV is 5.8 MB; the seeds'
# only upload limit is 10 MB, for FAX); when uploads are converted, the stored 8 kHz 16-bit mono
# WAV is at most MAX_PROMPT_SECONDS long (under 1 MB).
MAX_PROMPT_BYTES = 10 * 1024 * 1024
MAX_PROMPT_SECONDS = 60.0
MAX_PHONEBOOK_ENTRIES = 1000  # web phonebook entries per tenant
VOICEMAIL_MAX_SECONDS = 30.0  # one message (the recording stops there, with a tone)
VOICEMAIL_MIN_SECONDS = 1.0  # shorter messages are not kept
VOICEMAIL_MAILBOX_LIMIT = 15  # messages kept per mailbox; the 16th caller hears "full"
VOICEMAIL_RETENTION_DAYS = 7  # each message is deleted this long after it was received
VOICEMAIL_DELETE_MAX = 100  # message ids in one delete-many request
RECORDING_RETENTION_DAYS = 30  # a call recording is deleted this long after the call started
RECORDING_IDS_MAX = 1000  # recording ids in one bulk download or bulk delete request
RECORDING_ARCHIVE_MAX = 2000  # recordings in one ZIP download (by ids or by filters)
# Field lengths (characters).
TENANT_NAME_MAX = 200
USERNAME_MAX = 64  # SIP digest username
PASSWORD_LENGTH = (8, 128)
DISPLAY_NAME_MAX = 100
LABEL_MAX = 50  # a number's label, shown before the caller's name
REALM_MAX = 100
PROMPT_NAME_MAX = 100
CONTENT_TYPE_MAX = 100
PHONEBOOK_NAME_MAX = 100
PHONEBOOK_TEXT_MAX = 200  # company, note (JSON and CSV alike)
PHONEBOOK_NUMBER_MAX = 31  # characters of a phonebook number, with PHONEBOOK_DIGITS digits
PHONEBOOK_DIGITS = (2, 20)
GATEWAY_NAME_MAX = 100
HOST_MAX = 253  # a DNS name (RFC 1035 §2.3.4) or an IP address
# Carrier gateways.
TRANSPORTS = ("udp", "tcp", "tls")
PORT_RANGE = (1, 65535)
# Lists: page sizes of every keyset-paginated list.
PAGE_MAX = 500
PAGE_DEFAULT = 50
# Request shapes, checked by the API's schemas (the checks above judge the content).
ID_MAX = 64  # tenant, device, gateway … ids chosen by the operator
NUMBER_TEXT_MAX = 32  # a telephone number as typed ("03-1234-5678")
TIMEZONE_MAX = 64
TOKEN_LABEL_MAX = 100
ANNOUNCEMENT_MAX = 80
RING_GROUP_MAX = 200  # device ids in one ring group
RING_NUMBERS_MAX = 16  # numbers a new ID joins
HOLIDAYS_MAX = 366
ALLOWED_SOURCES_MAX = 64  # IP addresses of one carrier gateway

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
                "rule": f"voicemail ring time ∈ {{{','.join(map(str, VOICEMAIL_RING_TIMES))}}}",
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
                "rule": f"0 ≤ app ring delay ≤ {MAX_APP_RING_DELAY:g} s",
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
            {"rule": f"{low:g} ≤ max ring time ≤ {high:g} s", "requested": seconds},
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
                "rule": f"additional numbers ≤ {MAX_ADDITIONAL_NUMBERS}",
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


# --------------------------------------------------------------------------- sizes


def check_prompt_audio(audio: bytes) -> None:
    if not audio:
        raise InvalidInput("invalid-input", "the prompt audio is empty", {"field": "audio"})
    if len(audio) > MAX_PROMPT_BYTES:
        raise TooLarge(
            "prompt-too-large",
            "the prompt audio is too large",
            {
                "rule": f"prompt ≤ {MAX_PROMPT_BYTES // 2**20} MiB",
                "limit": MAX_PROMPT_BYTES,
                "requested": len(audio),
            },
        )


def check_prompt_count(count: int) -> None:
    """`count`: the tenant's prompts with the new one."""
    if count > MAX_PROMPTS:
        raise RuleViolation(
            "too-many-prompts",
            f"at most {MAX_PROMPTS} prompts",
            {
                "rule": f"prompts ≤ {MAX_PROMPTS} per tenant",
                "limit": MAX_PROMPTS,
                "requested": count,
            },
        )


def check_phonebook_size(count: int) -> None:
    """`count`: the tenant's phonebook entries after the change."""
    if count > MAX_PHONEBOOK_ENTRIES:
        raise RuleViolation(
            "phonebook-full",
            f"at most {MAX_PHONEBOOK_ENTRIES} entries",
            {
                "rule": f"web phonebook ≤ {MAX_PHONEBOOK_ENTRIES:,} entries per tenant",
                "limit": MAX_PHONEBOOK_ENTRIES,
                "requested": count,
            },
        )

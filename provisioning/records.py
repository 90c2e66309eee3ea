"""Read-side records: what the provisioning store returns besides the routing model.

`provisioning.model` is the routing snapshot (what the switch needs). The REST API also shows
things the switch never looks at: an ID's timestamps and release counter without its hashes,
uploaded prompts, the web phonebook, API tokens, voicemail messages (the media service's:
each at most 30 s, at most 15 per mailbox, kept 7 days; limits in provisioning.rules), call
detail records (CDRs: `CallRecord`, built by `billing.cdr`, written by `switch.cdr_writer`).
Those are these frozen records, built from rows by `provisioning.store.queries` and rendered by
`provisioning.api.resources`.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from .model import DeviceKind

__all__ = [
    "AuditEntry",
    "CallDirection",
    "CallOutcome",
    "CallQuery",
    "CallRating",
    "CallRecord",
    "DeviceInfo",
    "DeviceRole",
    "MessageInfo",
    "MonthSpan",
    "NewMessage",
    "NewRecording",
    "PhonebookEntry",
    "PromptInfo",
    "RecordingInfo",
    "RecordingQuery",
    "Scope",
    "TokenInfo",
]

Scope = Literal["operator", "tenant"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One successful write through the REST API: who (`token_id`, `scope`), what (`method`,
    the `route` template, its path parameters `params`), on which tenant, when (`at`, UTC)
    and the answer's `status`. Never a request body, never a secret."""

    id: str
    at: datetime
    token_id: str | None
    scope: Scope
    tenant_id: str | None
    method: str
    route: str
    params: dict[str, str]
    status: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceInfo:
    """An ID as the API shows it: never a password nor a hash.
    `release_seq` counts the "release the logged-in device" requests;
    `release_requested_at` is the last one (UTC)."""

    id: str
    tenant_id: str
    username: str
    kind: DeviceKind
    presented_number: str
    display_name: str | None
    free_calls_10min: bool
    web_phonebook: bool
    release_seq: int
    release_requested_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptInfo:
    """An uploaded announcement. Reference it as `announcement="prompt:<id>"`."""

    id: str
    tenant_id: str
    name: str
    content_type: str
    size: int
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class PhonebookEntry:
    id: str
    tenant_id: str
    name: str
    number: str
    company: str | None
    note: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenInfo:
    id: str
    scope: Scope
    tenant_id: str | None
    label: str | None
    created_at: datetime


# --------------------------------------------------------------------------- voicemail
@dataclass(frozen=True, slots=True, kw_only=True)
class NewMessage:
    """A message to store: 8 kHz 16-bit mono PCM and what the caller's INVITE said."""

    tenant_id: str
    mailbox: str  # the number (E.164) whose voicemail recorded it
    caller: str | None  # the caller's number as received
    dialled: str  # the number dialled (E.164)
    received_at: dt.datetime  # timezone-aware
    pcm: bytes

    def __post_init__(self) -> None:
        if self.received_at.tzinfo is None:
            raise ValueError("received_at must be timezone-aware")
        if len(self.pcm) % 2:
            raise ValueError("PCM must be whole 16-bit samples")

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 16000


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageInfo:
    """A stored message without its audio."""

    id: str
    tenant_id: str
    mailbox: str
    caller: str | None
    dialled: str
    received_at: dt.datetime
    duration: float
    heard: bool


# --------------------------------------------------------------------------- call records
class CallDirection(enum.StrEnum):
    """A CDR's direction, as the tenant sees the call."""

    INBOUND = "inbound"  # from the carrier to one of the tenant's numbers
    OUTBOUND = "outbound"  # from one of the tenant's IDs to the carrier (or refused)
    INTERNAL = "internal"  # between the tenant's own IDs
    FORWARDED = "forwarded"  # an inbound call sent on to the number's forward target


class CallOutcome(enum.StrEnum):
    """How a call ended: a closed set (`billing.cdr` derives it from the proxy's events)."""

    ANSWERED = "answered"  # a device (or the forward target, or the carrier side) answered
    BUSY = "busy"  # 486/600/603: every device was busy or declined
    NO_ANSWER = "no-answer"  # 408/480: nobody answered within the ring time
    CANCELLED = "cancelled"  # the caller hung up before the answer (CANCEL, 487)
    REFUSED = "refused"  # routing refused it (`rule` says which rule)
    ANNOUNCEMENT = "announcement"  # the after-hours announcement took the call
    BUSY_MESSAGE = "busy-message"  # every channel busy: the fixed busy message played
    VOICEMAIL = "voicemail"  # the number's voicemail took the call
    FAILED = "failed"  # anything else: 5xx, unroutable, a timeout of the next hop


class DeviceRole(enum.StrEnum):
    """What an ID had to do with a call (a CDR lists every ID concerned, for its history)."""

    CALLER = "caller"  # placed it
    ANSWERED = "answered"  # rang and answered it
    RANG = "rang"  # rang, did not answer (a missed call on that device)
    SHOWN = "shown"  # did not ring but shows it (a forwarded call, in its ring group)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRating:
    """What `billing` made of a call: enough to rebuild its `billing.RatedCall` exactly, so a
    statement sums the prices the call was rated with, never re-prices it.

    `rated_as` is billing's direction (`toll-free-inbound` besides the CDR directions);
    money is in tenths of a yen; `rate_price`/`rate_unit_seconds` are the rate applied (None
    for free classes; a unit of None with a price is a per-call rate, e.g. 104)."""

    tariff_version: str
    rated_as: str
    call_class: str
    caller_kind: str | None
    units: int
    charge: int
    free_seconds: int
    plan_savings: int
    rate_price: int | None = None
    rate_unit_seconds: int | None = None

    def __post_init__(self) -> None:
        if min(self.units, self.charge, self.free_seconds, self.plan_savings) < 0:
            raise ValueError("a rating has no negative amounts")
        if self.rate_price is None and self.charge:
            raise ValueError("a charge needs a rate")


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecord:
    """One call detail record (CDR): written once, when the call ends, whatever its outcome.

    Identity: `cdr_id` (a UUID made when the call started, so a replayed write is idempotent)
    and the SIP `call_id`; `node` is the switch process that handled it.
    Who: `tenant_id` (None when the call named no tenant: an unknown number, an unknown ID);
    `dialled` is the Request-URI user as received; `number` the tenant number involved (the
    called number inbound/forwarded, the presented number outbound, the number dialled for
    an internal call through a number); `caller` the caller as received (for a forwarded
    call: the original caller, which the forward target never sees); `callee` what was
    called (the destination outbound, the forward target, the dialled ID or number
    internally, the number inbound). `caller_device` is the calling ID (outbound, internal).
    `rang` lists the IDs that rang, `answered_device` the one that answered; `shown_to` the
    IDs whose history shows the call although they did not ring (a forwarded call's ring
    group). When: aware instants; `billable_seconds` is the answered duration in whole
    seconds, a started second counting (0 when never answered).
    How it ended: `outcome`, the final SIP status of the INVITE (`sip_status`, 200 for an
    answered call), `end_reason` (bye, cancel, expired …), the routing `rule`.
    `has_plan`: the calling ID had the 10-minute plan when the call started; `caller_category`
    is the carrier's calling-party category (RFC 4694 cpc) for toll-free rating.
    `billing_month` ("YYYY-MM", the month of the closing 25th in the tenant's time zone) and
    `rating` are filled by billing before the record is stored (`rating_error` names the
    billing error when it could not be rated; the record is stored all the same).
    """

    cdr_id: str
    call_id: str
    node: str
    tenant_id: str | None
    direction: CallDirection
    outcome: CallOutcome
    dialled: str
    started_at: datetime
    ended_at: datetime
    number: str | None = None
    caller: str | None = None
    callee: str | None = None
    caller_device: str | None = None
    caller_device_kind: DeviceKind | None = None
    rang: tuple[str, ...] = ()
    answered_device: str | None = None
    answered_device_kind: DeviceKind | None = None
    shown_to: tuple[str, ...] = ()
    presented_number: str | None = None
    forwarded_to: str | None = None
    answered_at: datetime | None = None
    billable_seconds: int = 0
    sip_status: int | None = None
    end_reason: str | None = None
    rule: str | None = None
    recorded: bool = False
    has_plan: bool = False
    caller_category: str | None = None
    billing_month: str | None = None
    rating: CallRating | None = None
    rating_error: str | None = None

    def __post_init__(self) -> None:
        if not (self.cdr_id and self.call_id and self.node):
            raise ValueError("cdr_id, call_id and node are required")
        instants = [self.started_at, self.ended_at, self.answered_at]
        if any(t is not None and t.utcoffset() is None for t in instants):
            raise ValueError("CDR instants must be timezone-aware")
        answered = self.answered_at or self.started_at
        if not (self.started_at <= answered <= self.ended_at):
            raise ValueError("started_at <= answered_at <= ended_at")
        if type(self.billable_seconds) is not int or self.billable_seconds < 0:
            raise ValueError("billable_seconds is an int >= 0")
        if self.billable_seconds and self.answered_at is None:
            raise ValueError("billable seconds without an answer")

    @property
    def tariff_version(self) -> str | None:
        return None if self.rating is None else self.rating.tariff_version

    @property
    def charge(self) -> int | None:
        """Tenths of a yen (None until rated)."""
        return None if self.rating is None else self.rating.charge

    @property
    def call_class(self) -> str | None:
        return None if self.rating is None else self.rating.call_class

    @property
    def charged_device(self) -> str | None:
        """The ID a statement puts the call on: the caller's, else the one that answered."""
        return self.caller_device or self.answered_device

    def device_roles(self) -> dict[str, DeviceRole]:
        """Every ID concerned and its role (answered beats rang; the caller beats both)."""
        roles = {d: DeviceRole.SHOWN for d in self.shown_to}
        roles.update({d: DeviceRole.RANG for d in self.rang})
        if self.answered_device is not None:
            roles[self.answered_device] = DeviceRole.ANSWERED
        if self.caller_device is not None:
            roles[self.caller_device] = DeviceRole.CALLER
        return roles


@dataclass(frozen=True, slots=True, kw_only=True)
class CallQuery:
    """Filters of the call history (all optional, combined with AND). `since`/`until`: a
    half-open range of start instants; `number`: the tenant number involved (E.164);
    `party`: the other party's number as received (caller or callee, exact); `device`: an
    ID concerned in any role."""

    tenant_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    number: str | None = None
    party: str | None = None
    device: str | None = None
    direction: CallDirection | None = None
    outcome: CallOutcome | None = None

    def __post_init__(self) -> None:
        for t in (self.since, self.until):
            if t is not None and t.utcoffset() is None:
                raise ValueError("since/until must be timezone-aware")


@dataclass(frozen=True, slots=True, kw_only=True)
class MonthSpan:
    """A billing month in `timezone` ("YYYY-MM" of its closing 25th): [start, end) in UTC;
    `is_open` until it has closed. Named by billing (`billing.statement_doc`), used by the
    statement API."""

    label: str
    timezone: str
    start: datetime
    end: datetime
    is_open: bool


# --------------------------------------------------------------------------- call recordings
RecordingDirection = Literal["inbound", "outbound"]


@dataclass(frozen=True, slots=True, kw_only=True)
class NewRecording:
    """A finished recording to register: its metadata and where its WAV is (`path`, relative
    to the recordings directory). `number` is the tenant's recorded number (E.164),
    `other_party` the caller of an inbound call / the callee of an outbound one (E.164 when
    it is a Japanese number, else as received; None when withheld), `device_id` the ID that
    answered (inbound) or called (outbound)."""

    tenant_id: str
    number: str
    direction: RecordingDirection
    other_party: str | None
    device_id: str | None
    call_id: str
    started_at: dt.datetime
    answered_at: dt.datetime | None
    ended_at: dt.datetime
    duration: float
    size_bytes: int
    path: str
    relay: str

    def __post_init__(self) -> None:
        for name in ("started_at", "ended_at", "answered_at"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware")
        if self.direction not in ("inbound", "outbound"):
            raise ValueError(f"direction must be inbound or outbound, not {self.direction!r}")
        if self.duration < 0 or self.size_bytes < 0:
            raise ValueError("duration and size cannot be negative")
        if not self.path or self.path.startswith("/") or ".." in self.path.split("/"):
            raise ValueError(f"a recording path is relative and stays inside: {self.path!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingInfo:
    """A registered recording (what the API lists)."""

    id: str
    tenant_id: str
    number: str
    direction: RecordingDirection
    other_party: str | None
    device_id: str | None
    call_id: str
    started_at: dt.datetime
    answered_at: dt.datetime | None
    ended_at: dt.datetime
    duration: float
    size_bytes: int
    path: str
    relay: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingQuery:
    """Filters of a recordings list, archive or bulk delete (all ANDed; None: any).
    `since`/`until`: the call's start in [since, until)."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    number: str | None = None
    direction: RecordingDirection | None = None
    party: str | None = None

    @property
    def empty(self) -> bool:
        return all(getattr(self, f) is None for f in self.__slots__)

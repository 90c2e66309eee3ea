"""Building call detail records: a sans-IO tracker the proxy drives with events.

Pure: no asyncio, no clock (every event takes `now`, an aware datetime), no I/O. The proxy
owns one `CallRecords`; each call's events update its entry and `ended`/`expired` return the
finished `provisioning.records.CallRecord`, which the proxy hands to the CDR writer
(`switch.cdr_writer.CdrWriter.submit`). Rating happens later, in the writer.

Events and where the proxy calls them (switch/proxy/: proxy.py, execute.py, context.py)
-----------------------------------------------------------------------------------------
1. `started(call_id, describe(decision, inputs.call, inputs.device, inputs.snapshot,
   caller_category=…), now=inputs.now)` — for an initial INVITE only (`ctx.initial_invite`),
   in `Proxy._out_of_dialog` right after `decide` returned, before `executor.execute`: every
   decision, Reject included (its outcome becomes `refused` with the decision's rule).
   Called again for the same Call-ID (the lost channel race turns a Ring/Forward into a
   Busy in the executor), it replaces the description and keeps the CDR id and start.
   `caller_category`: the `cpc` parameter of the carrier's caller identity, when present.
2. `rang(call_id, plan.device_id, kind)` — when a branch starts towards a device's binding
   (`RequestContext.start_branch` / `Outgoing.send_branch` for a `BranchPlan` whose
   `device_id` is set: Ring stages, Internal). Repeats are harmless.
3. `handed_to_media(call_id, media_outcome(decision))` — when a branch to the media service
   starts: `Executor._to_media` (Announce, Busy, Voicemail, VoicemailMenu) and the Ring's
   no-answer diversion to voicemail when the fork starts that branch (`media_outcome` of a
   Ring is VOICEMAIL).
4. `answered(call_id, now=…, device_id=…, kind=…)` — the first 2xx to the initial INVITE
   (`RequestContext.forward`, where `calls.answered` is called): the branch's
   `payload.device_id` when it went to a device, None when the far end answered (the carrier
   for outbound and forwarded calls, the media service).
5. `touched(call_id, now=…)` — every other in-dialog request of the call (`Proxy._in_dialog`,
   where `calls.touch` is called): the last sign of life, the end of a call that expires.
6. `ended(call_id, now=…, status=…, reason=…)` → CallRecord — (a) the final non-2xx sent for
   the initial INVITE (`RequestContext._count_failure(status)`, where `calls.failed` is
   called: reason "cancel" when `fork.cancelled`); (b) a BYE passing through
   (`Proxy._in_dialog`, where `calls.ended` is called): status 200, reason "bye". Unknown
   or already ended Call-IDs give None (a BYE retransmission, an in-dialog request of a call
   this node did not set up).
7. `expired(now, call_ids=…)` → [CallRecord] — with the Call-IDs whose channel lease expired
   (`ActiveCalls.sweep`, which must then return them), and periodically with none: the
   tracker also ends calls nobody ended itself (unanswered for longer than `setup_ttl`,
   answered and silent for longer than `idle_ttl`). An expired call ends at its last sign
   of life, never later: billable time that cannot be shown is not charged.
8. `drain()` → [CallRecord] — the node stops (switch/node.py does it after the switch
   stopped, before the writer drains): every open call, ended at its last sign of life,
   reason "shutdown".
Every record returned goes to `CdrWriter.submit` (never blocks).

Outcome (`outcome_of`): refused (a Reject decision) > the media service's outcome
(announcement, busy message, voicemail: the call reached it, whatever the caller did next)
> answered > cancelled (487 or reason cancel) > busy (486, 600, 603) > no answer (408, 480)
> failed (anything else).

Bounded memory: at most `limit` calls are open; a new call beyond that evicts the oldest,
whose record goes to `on_evicted` (counted by the caller) with reason "evicted".
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import assert_never

from provisioning.model import Device, DeviceKind, Snapshot, normalize_number
from provisioning.records import CallDirection, CallOutcome, CallRecord
from routing.call import Call
from routing.call import Direction as CallSide
from routing.decisions import (
    Announce,
    Busy,
    Decision,
    Forward,
    Internal,
    Outbound,
    Reject,
    Ring,
    Voicemail,
    VoicemailMenu,
)

__all__ = [
    "MEDIA_OUTCOMES",
    "CallRecords",
    "CallStart",
    "billable_seconds",
    "cdr_ids",
    "describe",
    "media_outcome",
    "outcome_of",
]

MEDIA_OUTCOMES = frozenset(
    {CallOutcome.ANNOUNCEMENT, CallOutcome.BUSY_MESSAGE, CallOutcome.VOICEMAIL}
)
DEFAULT_LIMIT = 200_000  # open calls (the proxy's own dialog bound)
SETUP_TTL = timedelta(minutes=5)  # > Timer C (3 min +): an unanswered call is over by then
IDLE_TTL = timedelta(hours=2, minutes=5)  # > the channel lease TTL without session timers


@dataclass(frozen=True, slots=True, kw_only=True)
class CallStart:
    """What the proxy knows when routing has decided (the fields of `CallRecord` that do not
    change during the call). `refused`: routing rejected it. Build it with `describe`."""

    direction: CallDirection
    tenant_id: str | None
    dialled: str
    number: str | None = None
    caller: str | None = None
    callee: str | None = None
    caller_device: str | None = None
    caller_device_kind: DeviceKind | None = None
    presented_number: str | None = None
    forwarded_to: str | None = None
    rule: str | None = None
    recorded: bool = False
    has_plan: bool = False
    caller_category: str | None = None
    shown_to: tuple[str, ...] = ()
    refused: bool = False


# --------------------------------------------------------------------------- describe
def describe(
    decision: Decision,
    call: Call,
    device: Device | None,
    snapshot: Snapshot,
    *,
    caller_category: str | None = None,
) -> CallStart:
    """The CDR fields of a new call from routing's decision, the `Call` it decided on, the
    authenticated calling ID (None for the carrier) and the snapshot it used.
    `caller_category`: the tel URI `cpc` of the carrier's caller identity, if any."""
    base = _base(call, device, snapshot, decision, caller_category)
    match decision:
        case Ring():
            return replace(base, number=decision.number, callee=decision.number,
                           recorded=decision.record)  # fmt: skip
        case Forward():
            return _forward(base, decision, snapshot)
        case Announce() | Busy() | Voicemail():
            return replace(base, number=decision.number, callee=decision.number)
        case Outbound():
            return _outbound(base, decision, snapshot)
        case Internal():
            return _internal(base, decision.via_number)
        case VoicemailMenu():  # an ID listening to its mailboxes: internal, free
            return _internal(base, None)
        case Reject():
            return replace(base, refused=True, tenant_id=base.tenant_id or decision.tenant_id)
        case _:
            assert_never(decision)


def _base(
    call: Call,
    device: Device | None,
    snapshot: Snapshot,
    decision: Decision,
    caller_category: str | None,
) -> CallStart:
    if device is not None:
        return CallStart(
            direction=CallDirection.OUTBOUND,
            tenant_id=device.tenant_id,
            dialled=call.dialled,
            number=device.presented_number,
            caller=device.username,
            callee=call.dialled or None,
            caller_device=device.id,
            caller_device_kind=device.kind,
            presented_number=device.presented_number,
            has_plan=device.free_calls_10min,
            rule=decision.rule,
        )
    number = _tenant_number(call.dialled, snapshot)
    return CallStart(
        direction=CallDirection.INBOUND,
        tenant_id=number[1] if number else None,
        dialled=call.dialled,
        number=number[0] if number else None,
        caller=call.caller_number,
        callee=call.dialled or None,
        rule=decision.rule,
        caller_category=caller_category if call.direction is CallSide.INBOUND else None,
    )


def _internal(base: CallStart, number: str | None) -> CallStart:
    return replace(
        base,
        direction=CallDirection.INTERNAL,
        number=number,
        presented_number=None,
        has_plan=False,
    )


def _tenant_number(dialled: str, snapshot: Snapshot) -> tuple[str, str] | None:
    """(E.164, tenant) of the dialled number when it is one of ours."""
    try:
        e164 = normalize_number(dialled)
    except ValueError:
        return None
    found = snapshot.numbers.get(e164)
    return None if found is None else (found.e164, found.tenant_id)


def _forward(base: CallStart, decision: Forward, snapshot: Snapshot) -> CallStart:
    number = snapshot.numbers.get(decision.number)
    return replace(
        base,
        direction=CallDirection.FORWARDED,
        tenant_id=decision.tenant_id,
        number=decision.number,
        caller=decision.original_caller or base.caller,
        callee=decision.target,
        forwarded_to=decision.target,
        presented_number=decision.presented_identity,
        shown_to=number.ring_group if number is not None else (),
    )


def _outbound(base: CallStart, decision: Outbound, snapshot: Snapshot) -> CallStart:
    device = snapshot.devices.get(decision.device_id)
    return replace(
        base,
        tenant_id=decision.tenant_id,
        number=decision.presented_number,
        callee=decision.destination,
        presented_number=decision.presented_number,
        recorded=decision.record,
        has_plan=device.free_calls_10min if device is not None else base.has_plan,
    )


def media_outcome(decision: Decision) -> CallOutcome:
    """The outcome of handing `decision`'s call to the media service: the announcement,
    voicemail (a Voicemail decision, a Busy or Announce with voicemail … the announcement
    plays first, so that is what the call met), the fixed busy message; a Ring's no-answer
    diversion is voicemail; the voicemail menu too. A decision that hands nothing to the media
    service is a ValueError."""
    match decision:
        case Announce():
            return CallOutcome.ANNOUNCEMENT
        case Busy():
            return CallOutcome.VOICEMAIL if decision.then_voicemail else CallOutcome.BUSY_MESSAGE
        case Voicemail() | VoicemailMenu() | Ring():
            return CallOutcome.VOICEMAIL
        case Reject() | Forward() | Outbound() | Internal():
            raise ValueError(f"{type(decision).__name__} hands nothing to the media service")
        case _:
            assert_never(decision)


# --------------------------------------------------------------------------- outcome
def outcome_of(
    *,
    refused: bool,
    media: CallOutcome | None,
    answered: bool,
    status: int | None,
    reason: str | None,
) -> CallOutcome:
    """The closed outcome (order in the module docstring)."""
    if refused:
        return CallOutcome.REFUSED
    if media is not None:
        return media
    if answered:
        return CallOutcome.ANSWERED
    if status == 487 or reason == "cancel":
        return CallOutcome.CANCELLED
    if status in (486, 600, 603):
        return CallOutcome.BUSY
    if status in (408, 480):
        return CallOutcome.NO_ANSWER
    return CallOutcome.FAILED


def billable_seconds(answered_at: datetime | None, ended_at: datetime) -> int:
    """Whole seconds from the answer to the end, a started second counting (0.2 s -> 1)."""
    if answered_at is None or ended_at <= answered_at:
        return 0
    micros = (ended_at - answered_at) // timedelta(microseconds=1)
    return -(-micros // 1_000_000)


# --------------------------------------------------------------------------- tracker
def cdr_ids() -> Callable[[], str]:
    """CDR ids: version-4 UUIDs whose first 74 random bits are drawn once per tracker and
    whose last 48 bits count on from a random start - unique across nodes and restarts as
    random UUIDs are, at a tenth of `uuid4`'s cost on the call path."""
    head = str(uuid.uuid4())[:24]  # xxxxxxxx-xxxx-4xxx-yxxx-
    counter = itertools.count(uuid.uuid4().int & 0xFFFF_FFFF_FFFF)
    return lambda: f"{head}{next(counter) & 0xFFFF_FFFF_FFFF:012x}"


class _Open:
    """One call in progress (mutable; only the tracker touches it)."""

    __slots__ = ("answered", "cdr_id", "kind", "last_seen", "media", "rang", "start", "started")

    def __init__(self, cdr_id: str, start: CallStart, now: datetime) -> None:
        self.cdr_id = cdr_id
        self.start = start
        self.started = now
        self.last_seen = now
        self.rang: dict[str, None] = {}
        self.answered: tuple[datetime, str | None, DeviceKind | None] | None = None
        self.media: CallOutcome | None = None
        self.kind: dict[str, DeviceKind] = {}


class CallRecords:
    """Open calls by Call-ID (see the module docstring for the events and their order)."""

    def __init__(
        self,
        *,
        node: str,
        limit: int = DEFAULT_LIMIT,
        setup_ttl: timedelta = SETUP_TTL,
        idle_ttl: timedelta = IDLE_TTL,
        new_id: Callable[[], str] | None = None,
        on_evicted: Callable[[CallRecord], None] | None = None,
    ) -> None:
        if limit < 1 or not node:
            raise ValueError("a node name and a limit >= 1 are required")
        self.node = node
        self.limit = limit
        self.setup_ttl = setup_ttl
        self.idle_ttl = idle_ttl
        self._new_id = new_id or cdr_ids()
        self._on_evicted = on_evicted
        self._open: dict[str, _Open] = {}  # insertion order = age
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._open)

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._open

    def started(self, call_id: str, start: CallStart, *, now: datetime) -> str:
        """A new call (or a new description of a call already open); returns its CDR id."""
        entry = self._open.get(call_id)
        if entry is not None:
            entry.start = start
            return entry.cdr_id
        if len(self._open) >= self.limit:
            self._evict(now)
        entry = self._open[call_id] = _Open(self._new_id(), start, now)
        return entry.cdr_id

    def rang(self, call_id: str, device_id: str, kind: DeviceKind) -> None:
        entry = self._open.get(call_id)
        if entry is not None:
            entry.rang[device_id] = None
            entry.kind[device_id] = kind

    def handed_to_media(self, call_id: str, outcome: CallOutcome) -> None:
        if outcome not in MEDIA_OUTCOMES:
            raise ValueError(f"not a media outcome: {outcome}")
        entry = self._open.get(call_id)
        if entry is not None:
            entry.media = outcome

    def answered(
        self,
        call_id: str,
        *,
        now: datetime,
        device_id: str | None = None,
        kind: DeviceKind | None = None,
    ) -> None:
        """The first 2xx; a later one (another fork's) changes nothing."""
        entry = self._open.get(call_id)
        if entry is not None and entry.answered is None:
            entry.answered = (max(now, entry.started), device_id, kind)
            entry.last_seen = max(now, entry.last_seen)

    def touched(self, call_id: str, *, now: datetime) -> None:
        entry = self._open.get(call_id)
        if entry is not None:
            entry.last_seen = max(now, entry.last_seen)

    def ended(
        self, call_id: str, *, now: datetime, status: int | None, reason: str | None = None
    ) -> CallRecord | None:
        entry = self._open.pop(call_id, None)
        if entry is None:
            return None
        return self._record(call_id, entry, now, status, reason)

    def expired(self, now: datetime, *, call_ids: Iterable[str] = ()) -> list[CallRecord]:
        """Calls whose lease expired (`call_ids`) and calls past the tracker's own TTLs,
        ended at their last sign of life with reason "expired"."""
        done = [c for c in dict.fromkeys(call_ids) if c in self._open]
        done += [c for c, e in self._open.items() if c not in done and self._stale(e, now)]
        return [self._end_at_last_sign(c, "expired") for c in done]

    def drain(self, reason: str = "shutdown") -> list[CallRecord]:
        """Every open call, ended at its last sign of life with `reason`: the node stops and
        nothing will tell this tracker how they end (better an early end than no CDR)."""
        done = list(self._open)
        return [self._end_at_last_sign(c, reason) for c in done]

    def _stale(self, entry: _Open, now: datetime) -> bool:
        ttl = self.setup_ttl if entry.answered is None else self.idle_ttl
        return now - entry.last_seen > ttl

    def _end_at_last_sign(self, call_id: str, reason: str) -> CallRecord:
        entry = self._open.pop(call_id)
        status = 200 if entry.answered is not None else None
        return self._record(call_id, entry, entry.last_seen, status, reason)

    def _evict(self, now: datetime) -> None:
        call_id = next(iter(self._open))
        entry = self._open.pop(call_id)
        self.evicted += 1
        record = self._record(call_id, entry, entry.last_seen, None, "evicted")
        if self._on_evicted is not None:
            self._on_evicted(record)

    def _record(
        self, call_id: str, e: _Open, now: datetime, status: int | None, reason: str | None
    ) -> CallRecord:
        s = e.start
        ended_at = max(now, e.started)
        answered_at, device, kind = e.answered or (None, None, None)
        answer = None if answered_at is None else min(answered_at, ended_at)
        outcome = outcome_of(
            refused=s.refused, media=e.media, answered=answer is not None, status=status,
            reason=reason,
        )  # fmt: skip
        return CallRecord(
            cdr_id=e.cdr_id, call_id=call_id, node=self.node, tenant_id=s.tenant_id,
            direction=s.direction, outcome=outcome, dialled=s.dialled, started_at=e.started,
            ended_at=ended_at, number=s.number, caller=s.caller, callee=s.callee,
            caller_device=s.caller_device, caller_device_kind=s.caller_device_kind,
            rang=tuple(e.rang), answered_device=device,
            answered_device_kind=kind or _kind_of(device, e.kind), shown_to=s.shown_to,
            presented_number=s.presented_number, forwarded_to=s.forwarded_to,
            answered_at=answer, billable_seconds=billable_seconds(answer, ended_at),
            sip_status=status, end_reason=reason, rule=s.rule, recorded=s.recorded,
            has_plan=s.has_plan, caller_category=s.caller_category,
        )  # fmt: skip


def _kind_of(device: str | None, kinds: Mapping[str, DeviceKind]) -> DeviceKind | None:
    return None if device is None else kinds.get(device)

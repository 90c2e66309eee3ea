"""The proxy's side of the call records: `CdrEvents` turns what the proxy sees into the events
of the sans-IO tracker (`billing.cdr.CallRecords`, whose module docstring lists the events)
and hands every finished record to the sink the composition root gave (switch/node.py:
`CdrWriter.submit`, which never blocks).

Where each event comes from (one line each in the proxy; none of them awaits):
- `started`: `Proxy._out_of_dialog` after `decide`, for an initial INVITE (every decision,
  Reject included), and again in the executor after a lost channel race (the new decision
  replaces the description; the CDR id and start stay);
- `rang`: `RequestContext.start_branch` for a branch to a device binding (`BranchPlan.
  device_id`; the kind from the snapshot); `handed_to_media` there too for the Ring's
  no-answer diversion (the fork's voicemail branch), and in `DecisionExecutor._to_media`;
- `answered`: `RequestContext.forward`, the first 2xx of the initial INVITE (the branch's
  device, None when the far end answered: carrier, media service);
- `touched`: `Proxy._in_dialog`, every in-dialog request but BYE;
- `ended`: `RequestContext._count_failure` (the final non-2xx; reason "cancel" when the fork
  was cancelled) and `Proxy.dialog_ended` (a BYE passed: reason "bye"; or the switch itself
  ended the dialog: "keepalive", "operator");
- `expired`: the Call-IDs whose channel lease expired (`ActiveCalls.sweep`, run by the
  executor), and a timer of its own, armed while the tracker holds calls, every
  `sweep_interval` seconds: the tracker ends calls nobody ended (its setup/idle TTLs).

Cost: a few dictionary operations and one datetime per event; `describe` (a frozen
dataclass or two) once per call. The proxy keeps `cdrs = None` when no sink is given, and
every call site tests that first, so a switch without CDRs pays one attribute test.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from billing.cdr import CallRecords, describe, media_outcome
from provisioning.records import CallOutcome, CallRecord
from switch.sip.uri import SipURI, TelURI

if TYPE_CHECKING:
    from provisioning.model import Snapshot
    from routing.decisions import Decision
    from switch.sip.message import Request

    from .execute import CallInputs, Scheduler

__all__ = ["CDR_SWEEP_INTERVAL", "CdrEvents", "CdrSink", "caller_category"]

log = logging.getLogger(__name__)

CDR_SWEEP_INTERVAL = 60.0  # seconds between the tracker's own expiry sweeps
CdrSink = Callable[[CallRecord], None]


class CdrEvents:
    """The tracker, its sink and the proxy's clocks (see the module docstring)."""

    __slots__ = ("_armed", "_interval", "_scheduler", "_sink", "_snapshot", "_wall", "records")

    def __init__(
        self,
        records: CallRecords,
        sink: CdrSink,
        *,
        snapshot: Callable[[], Snapshot],
        wall_clock: Callable[[], float],
        scheduler: Scheduler,
        sweep_interval: float = CDR_SWEEP_INTERVAL,
    ) -> None:
        self.records = records
        self._sink = sink
        self._snapshot = snapshot
        self._wall = wall_clock
        self._scheduler = scheduler
        self._interval = sweep_interval
        self._armed = False

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._wall(), UTC)

    # ---------------------------------------------------------------- events
    def started(
        self, call_id: str, decision: Decision, inputs: CallInputs, request: Request
    ) -> None:
        category = caller_category(request) if inputs.device is None else None
        start = describe(
            decision, inputs.call, inputs.device, inputs.snapshot, caller_category=category
        )
        self.records.started(call_id, start, now=inputs.now)
        self._arm()

    def rang(self, call_id: str, device_id: str) -> None:
        device = self._snapshot().devices.get(device_id)
        if device is not None:
            self.records.rang(call_id, device_id, device.kind)

    def to_media(self, call_id: str, decision: Decision | None = None) -> None:
        """A branch to the media service: `decision`'s hand-off, or (None) the Ring's
        no-answer diversion to voicemail."""
        outcome = CallOutcome.VOICEMAIL if decision is None else media_outcome(decision)
        self.records.handed_to_media(call_id, outcome)

    def answered(self, call_id: str, device_id: str | None) -> None:
        kind = None
        if device_id is not None:
            device = self._snapshot().devices.get(device_id)
            kind = device.kind if device is not None else None
        self.records.answered(call_id, now=self._now(), device_id=device_id, kind=kind)

    def touched(self, call_id: str) -> None:
        self.records.touched(call_id, now=self._now())

    def ended(self, call_id: str, status: int, reason: str | None) -> None:
        record = self.records.ended(call_id, now=self._now(), status=status, reason=reason)
        if record is not None:
            self._sink(record)

    def expired(self, call_ids: list[str]) -> None:
        """Calls whose channel lease expired, plus whatever the tracker's TTLs end."""
        for record in self.records.expired(self._now(), call_ids=call_ids):
            self._sink(record)

    # ---------------------------------------------------------------- the tracker's sweep
    def _arm(self) -> None:
        if not self._armed:
            self._armed = True
            self._scheduler.call_later(self._interval, self._sweep)

    def _sweep(self) -> None:
        self._armed = False
        self.expired([])
        if len(self.records):
            self._arm()


def caller_category(request: Request) -> str | None:
    """The calling-party category (RFC 4694 `cpc`) of the carrier's caller identity
    (P-Asserted-Identity, else From): a tel URI parameter, or a parameter of a SIP URI."""
    headers = request.headers
    na = headers.name_addr("P-Asserted-Identity") or headers.name_addr("From")
    if na is None:
        return None
    uri = na.uri
    if isinstance(uri, TelURI | SipURI):
        return uri.params.get("cpc")
    return None

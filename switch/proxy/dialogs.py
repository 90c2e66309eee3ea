"""Dialog liveness: in-dialog OPTIONS keep-alives towards both ends of every answered call the
switch record-routed, and BYE both ways when one end is gone (as Kamailio's dialog module does
with `ka_timer`) or when an operator ends the call.

Why: the proxy is otherwise transaction-stateful, and a call whose BYE never reaches it (a
phone that lost power, a media process killed, a carrier leg that vanished) would hold its
channel lease for `channel_ttl` (2 h). With keep-alives such a call ends within
`keepalive_interval + keepalive_timeout` (60 + 10 s by default): the surviving end gets a BYE
and the lease is released (`on_end`, the proxy's `dialog_ended`).

The record (`Dialog`) is built from the initial INVITE as received and its first 2xx as it
passes, and kept small: per end its Contact (the remote target), the flow to send to (a
registered device's or the media service's, else resolved from the Route/Contact), the Route
values beyond us, the From/To values of requests sent to it, and the CSeq it expects. It is
bounded (`limit`, the oldest dropped) and lives in this process only (a restarted process
knows none: the leases' records in the state backend cover the release, leases.py).

Requests the switch sends on a UA's behalf (RFC 3261 §12.2.1.1): Request-URI the end's
Contact, Route the route set beyond us (the Record-Route values the 2xx echoed: after ours
towards the caller, before ours - reversed - towards the callee), From/To as that end's peer
would write them, the dialog's Call-ID, our own Via.

CSeq: a keep-alive carries the highest CSeq the end has seen from its peer (seen as requests
pass), not one more: a request whose CSeq equals the remote sequence number is in order
(§12.2.2 rejects only lower ones), so keep-alives never make a UA's own next request look out
of order to the other end. The final BYE uses that number + 1.

Outcome of a keep-alive: 408, 481 or no final answer within `keepalive_timeout` (the transport
failing included) is a failure and ends the call; any other final answer (200, 405, 501 …)
proves the dialog is alive there. A 1xx is ignored.

Scheduling: one timer tick (`tick`, at most every second) walks an insertion-ordered table
whose order is the due order (every dialog has the same interval), so a tick costs the due
dialogs only.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from switch.eager import run_eager
from switch.sip.message import Headers, ParseError, Request, SipURI
from switch.sip.target import new_branch

from .routeset import next_hop_uri, route_uri
from .targets import ResolveError

if TYPE_CHECKING:
    from switch.metrics import Metrics
    from switch.sip.message import Response
    from switch.sip.target import Target
    from switch.tu import Cancellable, Sender

__all__ = [
    "DEFAULT_KEEPALIVE_INTERVAL",
    "DEFAULT_KEEPALIVE_TIMEOUT",
    "Dialog",
    "DialogWatch",
    "Probe",
]

log = logging.getLogger(__name__)

DEFAULT_KEEPALIVE_INTERVAL = 60.0
DEFAULT_KEEPALIVE_TIMEOUT = 10.0
FAILED = frozenset({408, 481})
_REASONS = {
    "keepalive": 'SIP;cause=408;text="dialog keep-alive failed"',
    "operator": 'Q.850;cause=16;text="ended by the operator"',
}


class TargetResolver(Protocol):
    async def target(self, uri: SipURI) -> Target: ...


@dataclass(slots=True)
class End:
    """One end of a dialog, as requests *to* it are written."""

    uri: str  # its Contact: the Request-URI
    flow: Target | None  # where to send (a device's or the media service's flow), else None
    route: tuple[str, ...]  # Route values beyond us
    from_: str  # From of requests to it (its peer's identity, with the peer's tag)
    to: str  # To of requests to it (its own identity, with its tag)
    cseq: int  # the highest CSeq it has seen from its peer


@dataclass(slots=True)
class Dialog:
    call_id: str
    caller_tag: str
    caller: End
    callee: End
    pending: dict[str, Cancellable] = field(default_factory=dict)  # side -> timeout timer
    ending: bool = False

    def end(self, side: str) -> End:
        return self.caller if side == "caller" else self.callee


@dataclass(frozen=True, slots=True)
class Probe:
    """The user data of a request the watch sent (its responses come back with it)."""

    call_id: str
    side: str  # "caller" / "callee": the end it went to
    method: str


class DialogWatch:
    """See the module docstring. `on_end(call_id, reason)` is told of every call it ends."""

    def __init__(
        self,
        sender: Sender,
        resolver: TargetResolver,
        metrics: Metrics,
        is_ours: Callable[[SipURI], bool],
        *,
        interval: float = DEFAULT_KEEPALIVE_INTERVAL,
        timeout: float = DEFAULT_KEEPALIVE_TIMEOUT,
        limit: int = 200_000,
    ) -> None:
        self._sender = sender
        self._resolver = resolver
        self._is_ours = is_ours
        self.interval = interval
        self.timeout = timeout
        self._limit = limit
        self._dialogs: dict[str, Dialog] = {}
        self._due: OrderedDict[str, float] = OrderedDict()  # call_id -> next keep-alive
        self._tick: Cancellable | None = None
        self._ended = metrics.dialogs_ended_total
        self._kept = metrics.keepalives_total
        self.on_end: Callable[[str, str], None] | None = None

    def __len__(self) -> int:
        return len(self._dialogs)

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._dialogs

    # ---------------------------------------------------------------- building
    def answered(
        self, invite: Request, response: Response, caller_flow: Target | None,
        callee_flow: Target | None,
    ) -> None:  # fmt: skip
        """The first 2xx of an initial INVITE we forwarded: track the dialog when we are in
        its route set (our Record-Route echoed in the 2xx)."""
        if response.call_id in self._dialogs or self.interval <= 0:
            return
        try:
            dialog = self._build(invite, response, caller_flow, callee_flow)
        except (ParseError, ValueError) as exc:
            log.info("call %s: not kept alive (%s)", response.call_id, exc)
            return
        if dialog is None:
            return
        if len(self._dialogs) >= self._limit:
            self.forget(next(iter(self._due)))
        self._dialogs[dialog.call_id] = dialog
        self._due[dialog.call_id] = self._sender.now() + self.interval
        self._arm()

    def _build(
        self, invite: Request, response: Response, caller_flow: Target | None,
        callee_flow: Target | None,
    ) -> Dialog | None:  # fmt: skip
        rr = response.headers.get_all("Record-Route")
        ours = [i for i, v in enumerate(rr) if self._is_route_ours(v)]
        caller_contact = invite.headers.name_addr("Contact")
        callee_contact = response.headers.name_addr("Contact")
        caller_tag = invite.from_tag
        if not ours or caller_contact is None or callee_contact is None or caller_tag is None:
            return None
        if response.to_tag is None:
            return None
        from_value, to_value = invite.headers.get("From"), response.headers.get("To")
        assert from_value is not None and to_value is not None  # parsed: from_tag, to_tag
        cseq = invite.cseq.seq
        caller = End(
            uri=str(caller_contact.uri), flow=caller_flow, route=tuple(rr[ours[-1] + 1 :]),
            from_=to_value, to=from_value, cseq=0,
        )  # fmt: skip
        callee = End(
            uri=str(callee_contact.uri), flow=callee_flow, route=tuple(reversed(rr[: ours[0]])),
            from_=from_value, to=to_value, cseq=cseq,
        )  # fmt: skip
        return Dialog(invite.call_id, caller_tag, caller, callee)

    def _is_route_ours(self, value: str) -> bool:
        try:
            uri = route_uri(value)
        except ParseError:
            return False
        return isinstance(uri, SipURI) and self._is_ours(uri)

    # ---------------------------------------------------------------- traffic passing
    def seen(self, request: Request) -> None:
        """An in-dialog request passing through us: its CSeq is now the highest its
        receiver has seen from the sender; a BYE ends our interest."""
        dialog = self._dialogs.get(request.call_id)
        if dialog is None:
            return
        if request.method == "BYE":
            self.forget(request.call_id)
            return
        to = dialog.callee if request.from_tag == dialog.caller_tag else dialog.caller
        to.cseq = max(to.cseq, request.cseq.seq)

    def forget(self, call_id: str) -> None:
        dialog = self._dialogs.pop(call_id, None)
        self._due.pop(call_id, None)
        if dialog is not None:
            for timer in dialog.pending.values():
                timer.cancel()
            dialog.pending.clear()

    # ---------------------------------------------------------------- keep-alives
    def _arm(self) -> None:
        if self._tick is None and self._due:
            self._tick = self._sender.call_later(min(1.0, self.interval / 4), self._run)

    def _run(self) -> None:
        self._tick = None
        now = self._sender.now()
        due = self._due
        while due:
            call_id, when = next(iter(due.items()))
            if when > now:
                break
            due.move_to_end(call_id)
            due[call_id] = now + self.interval
            dialog = self._dialogs[call_id]
            for side in ("caller", "callee"):
                if side not in dialog.pending:
                    self._probe(dialog, side)
        self._arm()

    def _probe(self, dialog: Dialog, side: str) -> None:
        dialog.pending[side] = self._sender.call_later(
            self.timeout, lambda: self._failed(dialog.call_id, side, "no answer")
        )
        end = dialog.end(side)
        self._send(dialog.call_id, side, end, "OPTIONS", max(end.cseq, 1), ())

    def on_response(self, probe: Probe, response: Response) -> None:
        if probe.method != "OPTIONS" or response.status < 200:
            return
        if response.status in FAILED:
            self._failed(probe.call_id, probe.side, str(response.status))
            return
        dialog = self._dialogs.get(probe.call_id)
        timer = None if dialog is None else dialog.pending.pop(probe.side, None)
        if timer is not None:
            timer.cancel()
            self._kept.labels("ok").inc()

    def on_timeout(self, probe: Probe) -> None:
        """Timer F or a transport failure (the flow's connection is gone)."""
        if probe.method == "OPTIONS":
            self._failed(probe.call_id, probe.side, "timeout")

    def _failed(self, call_id: str, side: str, why: str) -> None:
        dialog = self._dialogs.get(call_id)
        if dialog is None or side not in dialog.pending:
            return
        dialog.pending.pop(side).cancel()
        self._kept.labels("failed").inc()
        log.info("call %s: keep-alive to the %s failed (%s): ending the call", call_id, side, why)
        self.end(call_id, "keepalive")

    # ---------------------------------------------------------------- ending
    def end(self, call_id: str, reason: str) -> bool:
        """BYE to both ends (with a Reason), forget the dialog, tell `on_end`. False when
        the dialog is not tracked here."""
        dialog = self._dialogs.get(call_id)
        if dialog is None or dialog.ending:
            return False
        dialog.ending = True
        extra = (("Reason", _REASONS.get(reason, _REASONS["operator"])),)
        for side in ("caller", "callee"):
            end = dialog.end(side)
            end.cseq += 1
            self._send(call_id, side, end, "BYE", end.cseq, extra)
        self.forget(call_id)
        self._ended.labels(reason).inc()
        if self.on_end is not None:
            self.on_end(call_id, reason)
        return True

    def _send(
        self, call_id: str, side: str, end: End, method: str, cseq: int,
        extra: tuple[tuple[str, str], ...],
    ) -> None:  # fmt: skip
        fields = [("Max-Forwards", "70"), *(("Route", r) for r in end.route)]
        fields += [
            ("From", end.from_), ("To", end.to), ("Call-ID", call_id),
            ("CSeq", f"{cseq} {method}"), *extra, ("Content-Length", "0"),
        ]  # fmt: skip
        request = Request(method=method, uri=end.uri, headers=Headers(fields))
        run_eager(self._deliver(request, end.flow, Probe(call_id, side, method)))

    async def _deliver(self, request: Request, flow: Target | None, probe: Probe) -> None:
        try:
            target = flow or await self._resolver.target(next_hop_uri(request))
        except (ParseError, ResolveError) as exc:
            log.info("call %s: %s to the %s not sent (%s)", probe.call_id, request.method,
                     probe.side, exc)  # fmt: skip
            self.on_timeout(probe)
            return
        host, port = self._sender.local_via(target.transport)
        request.headers.prepend_own_via(target.transport, host, port, new_branch())
        self._sender.send_request(request, target, probe)

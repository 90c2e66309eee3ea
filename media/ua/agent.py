"""The media user agent: the transaction user of a media process (or of the media endpoint the
switch runs in-process). It answers the proxy's hand-offs (switch/handoff.py) and runs one
service script per call (media/services.py).

Requests (RFC 3261 §8.2, §12.2.2, §13.3, §15):
- INVITE outside a dialog: from an allowed source only (403), a hand-off URI that parses and
  carries the proxy's signature (404 unknown service, 400 bad parameters, 403 bad signature),
  a session interval we accept (422 + Min-SE), an offer we can answer (488 + Warning; no offer:
  we offer in the 200 and take the answer from the ACK), a free RTP port (503 + Retry-After).
  Then 100 Trying (the transaction layer's), and the service decides: answer, early media …
- CANCEL: 200, and 487 for the INVITE when it was not answered yet (§9.2).
- In a dialog: BYE 200 and the call ends; re-INVITE/UPDATE answered with our SDP for the new
  offer (hold: RFC 3264 §8.4) and they refresh the session timer; INFO with
  application/dtmf-relay or application/dtmf is a digit (200), other INFO 415; OPTIONS 200;
  a request for a dialog we do not know 481 (§12.2.2); a CSeq out of order 500.
- OPTIONS outside a dialog: 200 (the proxy's health check of its media URIs).
- Anything else: 405 with Allow.
Every session ends at the latest after `max_session` seconds (a hard cap: a caller that never
hangs up cannot hold a port and a task forever), or when its session timer expires.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from switch.handoff import HandOff, HandOffError
from switch.sip.message import ParseError, Request, Response, SipURI, make_response
from switch.sip.target import Target, new_branch
from switch.sip.transaction import ClientTransaction, ServerTransaction
from switch.tu import Sender

from ..dtmf import parse_info_body
from ..errors import DtmfError, SdpError
from ..negotiate import LocalSdp, accept_answer, answer_offer, make_offer
from ..sdp import SessionDescription, parse_sdp
from .call import CallState, MediaCall
from .dialog import ALLOW, MIN_SE, DialogId, SessionTimer, UasDialog, session_request
from .rtp_session import MediaClock, PortRange, RtpSession

__all__ = ["MediaAgent", "MediaSettings", "Service"]

log = logging.getLogger(__name__)

Service = Callable[[MediaCall], Coroutine[Any, Any, None]]
_DTMF_TYPES = ("application/dtmf-relay", "application/dtmf")


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaSettings:
    """`rtp_host`: the address RTP binds to and SDP announces; `allowed_sources`: the hosts
    that may send hand-offs (None: any, the signature still applies)."""

    rtp_host: str = "127.0.0.1"
    ports: PortRange = field(default_factory=PortRange)
    secret: bytes = b""
    allowed_sources: frozenset[str] | None = None
    max_session: float = 600.0

    def __post_init__(self) -> None:
        if self.max_session <= 0:
            raise ValueError("max_session must be positive")


class MediaAgent:
    """TransactionUser of the media endpoint (see the module docstring)."""

    def __init__(
        self,
        *,
        sender: Sender,
        settings: MediaSettings,
        service_for: Callable[[HandOff], Service],
        metrics: Any = None,
    ) -> None:
        self.sender = sender
        self.settings = settings
        self.service_for = service_for
        self.metrics = metrics
        self.loop = asyncio.get_running_loop()
        self.clock = MediaClock(self.loop)
        self.calls: dict[DialogId, MediaCall] = {}
        self._by_call_id: dict[str, MediaCall] = {}
        self._offers: dict[str, SessionDescription] = {}  # our offer, until the ACK answers

    # ================================================================ TransactionUser
    async def on_request(
        self,
        txn: ServerTransaction,
        request: Request,
        source: Target,
        cancelled: ServerTransaction | None,
    ) -> None:
        method = request.method
        if method == "CANCEL":
            self._on_cancel(txn, cancelled)
        elif request.to_tag is not None:
            self._in_dialog(txn, request)
        elif method == "INVITE":
            await self._on_invite(txn, request, source)
        elif method == "OPTIONS":
            self._reply(txn, 200, [("Allow", ALLOW), ("Accept", "application/sdp")])
        else:
            self._reply(txn, 405, [("Allow", ALLOW)])

    async def on_ack(self, request: Request, source: Target) -> None:
        call = self._by_call_id.get(request.call_id)
        if call is None or call.dialog.id.local_tag != request.to_tag:
            return
        offer = self._offers.pop(call.call_id, None)
        if offer is not None:  # we offered in the 200; the ACK must answer (§13.2.1)
            try:
                call.rtp.set_plan(accept_answer(offer, parse_sdp(request.body)))
            except (SdpError, ValueError):
                log.info("call %s: ACK without a usable answer, hanging up", call.call_id)
                call.acked()
                call.hangup("bad-answer")
                return
        call.acked()

    def on_response(self, txn: ClientTransaction, response: Response, source: Target) -> None:
        pass  # responses to our BYEs: the call is already over on our side

    def on_timeout(self, txn: ClientTransaction) -> None:
        pass

    def on_stray_response(
        self, response: Response, source: Target, txn: ClientTransaction | None
    ) -> None:
        pass

    # ================================================================ new calls
    async def _on_invite(self, txn: ServerTransaction, request: Request, source: Target) -> None:
        allowed = self.settings.allowed_sources
        if allowed is not None and source.host not in allowed:
            self._count("refused", "403")
            self._reply(txn, 403, [("Warning", '399 media "not from the proxy"')])
            return
        handoff = self._handoff(txn, request)
        if handoff is None:
            return
        timer = session_request(request)
        if isinstance(timer, int):
            self._count("refused", "422")
            self._reply(txn, 422, [("Min-SE", str(MIN_SE))])
            return
        rtp = await self._open_rtp(txn)
        if rtp is None:
            return
        local = LocalSdp(address=self.settings.rtp_host)
        sdp = self._negotiate(txn, request, rtp, local)
        if sdp is None:
            rtp.close()
            return
        self._start(txn, request, handoff, rtp, (sdp, local), timer)

    def _handoff(self, txn: ServerTransaction, request: Request) -> HandOff | None:
        try:
            uri = request.parsed_uri
            if not isinstance(uri, SipURI):
                raise HandOffError("not a sip: URI", 416)
            return HandOff.from_uri(uri.user, list(uri.params.items()), self.settings.secret)
        except HandOffError as exc:
            log.info("refused hand-off %s: %s", request.uri, exc)
            self._count("refused", str(exc.status))
            self._reply(txn, exc.status, [("Warning", f'399 media "{exc}"')])
        except ParseError as exc:
            self._count("refused", str(exc.status_hint))
            self._reply(txn, exc.status_hint)
        return None

    async def _open_rtp(self, txn: ServerTransaction) -> RtpSession | None:
        try:
            return await RtpSession.open(
                self.loop, self.clock, self.settings.rtp_host, self.settings.ports
            )
        except OSError as exc:
            log.warning("no RTP port: %s", exc)
            self._count("refused", "503")
            self._reply(txn, 503, [("Retry-After", "5")])
            return None

    def _negotiate(
        self, txn: ServerTransaction, request: Request, rtp: RtpSession, local: LocalSdp
    ) -> bytes | None:
        try:
            if request.body:
                answer, plan = answer_offer(parse_sdp(request.body), local=local, port=rtp.port)
                rtp.set_plan(plan)
                return answer.serialize()
            offer = make_offer(local=local, port=rtp.port)
            self._offers[request.call_id] = offer
            return offer.serialize()
        except (SdpError, ValueError) as exc:
            status = getattr(exc, "status_hint", 488) or 488
            self._count("refused", str(status))
            self._reply(txn, status, [("Warning", f'304 media "{exc}"')])
            return None

    def _start(
        self,
        txn: ServerTransaction,
        request: Request,
        handoff: HandOff,
        rtp: RtpSession,
        sdp: tuple[bytes, LocalSdp],
        timer: SessionTimer | None,
    ) -> MediaCall:
        dialog = UasDialog(request, self._contact(txn))
        if timer is not None:
            dialog.start_session_timer(timer, self.loop.time())
        call = MediaCall(
            loop=self.loop, dialog=dialog, txn=txn, handoff=handoff, rtp=rtp, answer_sdp=sdp[0],
            local_sdp=sdp[1],
            respond=self.sender.send_response, send_bye=self._send_bye,
        )  # fmt: skip
        txn.user_data = call
        self.calls[dialog.id] = call
        self._by_call_id[dialog.id.call_id] = call
        self._count("started", handoff.service.value)
        call.task = self.loop.create_task(self._run(call))
        return call

    async def _run(self, call: MediaCall) -> None:
        """The service script, bounded by the hard cap and the session timer."""
        watchdog = self.loop.create_task(self._watch(call))
        try:
            await self.service_for(call.handoff)(call)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("media service %s failed", call.handoff.service.value)
        finally:
            watchdog.cancel()
            call.hangup("done")
            self._forget(call)

    async def _watch(self, call: MediaCall) -> None:
        cap = call.started + self.settings.max_session
        while not call.hung_up:
            expiry = call.dialog.session_expiry
            until = min(cap, expiry) if expiry is not None else cap
            if self.loop.time() >= until:
                log.info("call %s: %s", call.call_id, "session expired" if until != cap else "cap")
                call.hangup("expired" if until != cap else "max-session")
                if call.task is not None:
                    await call.finish()
                return
            await asyncio.wait({call.ended}, timeout=until - self.loop.time())

    def _forget(self, call: MediaCall) -> None:
        if self.calls.pop(call.dialog.id, None) is not None and self.metrics is not None:
            self.metrics.count("ended", call.handoff.service.value)
            self.metrics.rtp(call.rtp.stats)
        if self._by_call_id.get(call.call_id) is call:
            del self._by_call_id[call.call_id]
        self._offers.pop(call.call_id, None)

    # ================================================================ in-dialog
    def _in_dialog(self, txn: ServerTransaction, request: Request) -> None:
        call = self._by_call_id.get(request.call_id)
        if call is None or call.dialog.id.local_tag != request.to_tag or call.hung_up:
            self._reply(txn, 481)
            return
        refused = call.dialog.accepts(request)
        if refused is not None:
            self._reply(txn, refused)
            return
        match request.method:
            case "BYE":
                self.sender.send_response(txn, call.dialog.answer(request, 200))
                call.end("bye")
                self.loop.create_task(call.finish())
            case "INVITE" | "UPDATE":
                self._reoffer(txn, request, call)
            case "INFO":
                self._info(txn, request, call)
            case "OPTIONS":
                self.sender.send_response(txn, call.dialog.answer(request, 200))
            case _:
                self._reply(txn, 405, [("Allow", ALLOW)])

    def _reoffer(self, txn: ServerTransaction, request: Request, call: MediaCall) -> None:
        """A re-INVITE or UPDATE: a new offer (hold/resume, §8.4 of RFC 3264) and/or a session
        refresh (RFC 4028). Without a body the answer repeats our current description."""
        asked = session_request(request)
        if isinstance(asked, int):
            self._reply(txn, 422, [("Min-SE", str(MIN_SE))])
            return
        body = call.answer_sdp
        if request.body:
            try:
                local = LocalSdp(address=self.settings.rtp_host)
                answer, plan = answer_offer(
                    parse_sdp(request.body), local=local, port=call.rtp.port
                )
            except (SdpError, ValueError) as exc:
                self._reply(txn, 488, [("Warning", f'304 media "{exc}"')])
                return
            call.rtp.set_plan(plan)
            body = answer.serialize()
        call.dialog.refreshed(request, self.loop.time())
        self.sender.send_response(txn, call.dialog.answer(request, 200, sdp=body))

    def _info(self, txn: ServerTransaction, request: Request, call: MediaCall) -> None:
        ctype = (request.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if ctype not in _DTMF_TYPES:
            self._reply(txn, 415, [("Accept", ", ".join(_DTMF_TYPES))])
            return
        try:
            digit = parse_info_body(ctype, request.body)
        except DtmfError:
            self._reply(txn, 400)
            return
        self.sender.send_response(txn, call.dialog.answer(request, 200))
        call.rtp.digit(digit.digit)

    def _on_cancel(self, txn: ServerTransaction, invite: ServerTransaction | None) -> None:
        if invite is None:
            self._reply(txn, 481)
            return
        self._reply(txn, 200)
        call = invite.user_data
        if isinstance(call, MediaCall) and call.state is CallState.EARLY and not call.hung_up:
            self.sender.send_response(invite, call.dialog.respond(487))
            call.end("cancelled")
            self.loop.create_task(call.finish())
        elif invite.last_response is None or invite.last_response.status < 200:
            self.sender.send_response(invite, make_response(invite.request, 487, to_tag="x"))

    # ================================================================ sending
    def _send_bye(self, call: MediaCall) -> None:
        dialog = call.dialog
        bye = dialog.request("BYE")
        hop = dialog.next_hop()
        transport = (hop.params.get("transport") or "udp").lower()
        host, port = self.sender.local_via(transport)
        bye.headers.prepend_own_via(transport, host, port, new_branch())
        target = Target(transport, hop.host.strip("[]"), hop.port or 5060)
        try:
            self.sender.send_request(bye, target)
        except Exception:
            log.exception("call %s: BYE could not be sent", call.call_id)

    def _contact(self, txn: ServerTransaction) -> str:
        transport = txn.source.transport
        host, port = self.sender.local_via(transport)
        suffix = "" if transport == "udp" else f";transport={transport}"
        bracketed = f"[{host}]" if ":" in host else host
        return f"<sip:media@{bracketed}:{port}{suffix}>"

    def _reply(
        self, txn: ServerTransaction, status: int, headers: list[tuple[str, str]] | None = None
    ) -> None:
        tag = secrets.token_hex(4) if status > 100 else None
        self.sender.send_response(
            txn, make_response(txn.request, status, to_tag=tag, headers=headers)
        )

    def _count(self, what: str, label: str) -> None:
        if self.metrics is not None:
            self.metrics.count(what, label)

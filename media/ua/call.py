"""One call answered by the media user agent: its dialog, its RTP, and the `Channel` a service
script (media/services.py) drives.

Life of a call
--------------
1. The agent has checked the INVITE (hand-off, source, session timer) and negotiated SDP;
   the call starts EARLY with its RTP socket open.
2. The service answers it: `answer()` sends 200 with our SDP and retransmits it (§13.3.1.4:
   the UAS core does, T1 doubling up to T2) until the ACK; no ACK within 64*T1 ends the call
   with a BYE (§13.3.1.4). `early()` instead sends 183 with SDP (RFC 3261 §13.3.1.1, early
   media: the busy message is heard without the call being answered, so it is not billed) and
   `reject(status)` then ends it with a final error.
3. The service plays, records, reads digits; a BYE from the caller, a CANCEL before the
   answer, the hard cap on the session length, or an expired session timer ends it: the
   service's pending operation returns (`hung_up`), its task is cancelled once it had a
   chance to finish (a voicemail keeps what was recorded up to the BYE).
4. `hangup()` sends our BYE along the route set; the call is over when that transaction ends.

Everything that waits is an asyncio future resolved by the agent (messages) or the RTP
session (audio, digits); the SIP messages themselves are built by media/ua/dialog.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable

from switch.handoff import HandOff
from switch.sip.message import Request, Response
from switch.sip.transaction import ServerTransaction

from ..negotiate import LocalSdp
from .dialog import UasDialog
from .rtp_session import RtpSession

__all__ = ["CallState", "MediaCall", "RecordResult"]

log = logging.getLogger(__name__)

T1 = 0.5
T2 = 4.0


class CallState(enum.Enum):
    EARLY = "early"  # INVITE received, no final response yet
    ANSWERED = "answered"  # 200 sent, waiting for the ACK
    CONFIRMED = "confirmed"  # ACK received
    ENDED = "ended"


class RecordResult:
    """What `record()` produced: PCM and why it stopped ("digit", "max", "hangup")."""

    __slots__ = ("pcm", "reason")

    def __init__(self, pcm: bytes, reason: str) -> None:
        self.pcm = pcm
        self.reason = reason

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 16000


class MediaCall:
    """The Channel of one call (see the module docstring). Built by the agent."""

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        dialog: UasDialog,
        txn: ServerTransaction,
        handoff: HandOff,
        rtp: RtpSession,
        answer_sdp: bytes,
        local_sdp: LocalSdp,
        respond: Callable[[ServerTransaction, Response], None],
        send_bye: Callable[[MediaCall], None],
    ) -> None:
        self.loop = loop
        self.dialog = dialog
        self.txn = txn
        self.handoff = handoff
        self.rtp = rtp
        self.answer_sdp = answer_sdp
        self.local_sdp = local_sdp  # our o= line across re-offers (RFC 3264 §8)
        self._respond = respond
        self._send_bye = send_bye
        self.state = CallState.EARLY
        self.ended = loop.create_future()  # resolves with the reason the call ended
        self.task: asyncio.Task[None] | None = None
        self._retransmit: asyncio.TimerHandle | None = None
        self._ok: Response | None = None
        self.started = loop.time()

    @property
    def hung_up(self) -> bool:
        return self.ended.done()

    @property
    def call_id(self) -> str:
        return self.dialog.id.call_id

    # ------------------------------------------------------------------ answering
    def answer(self) -> bool:
        """200 OK with our SDP (False if the call is already over)."""
        if self.state is not CallState.EARLY or self.hung_up:
            return False
        self._ok = self.dialog.respond(200, sdp=self.answer_sdp)
        self.state = CallState.ANSWERED
        self._respond(self.txn, self._ok)
        self._arm_retransmit(T1, self.loop.time() + 64 * T1)
        return True

    def early(self) -> bool:
        """183 Session Progress with our SDP: early media, the call stays unanswered."""
        if self.state is not CallState.EARLY or self.hung_up:
            return False
        self._respond(self.txn, self.dialog.respond(183, sdp=self.answer_sdp))
        return True

    def reject(self, status: int) -> None:
        """End an unanswered call with a final error (after early media)."""
        if self.state is CallState.EARLY and not self.hung_up:
            self._respond(self.txn, self.dialog.respond(status))
        self.end("rejected")

    def acked(self) -> None:
        if self.state is CallState.ANSWERED:
            self.state = CallState.CONFIRMED
            self._cancel_retransmit()

    def _arm_retransmit(self, interval: float, give_up: float) -> None:
        def fire() -> None:
            if self.state is not CallState.ANSWERED or self._ok is None:
                return
            if self.loop.time() >= give_up:
                log.info("call %s: no ACK for our 200, hanging up", self.call_id)
                self.hangup("no-ack")
                return
            self._respond(self.txn, self._ok)
            self._arm_retransmit(min(2 * interval, T2), give_up)

        self._retransmit = self.loop.call_later(interval, fire)

    def _cancel_retransmit(self) -> None:
        if self._retransmit is not None:
            self._retransmit.cancel()
            self._retransmit = None

    # ------------------------------------------------------------------ media
    async def play(self, pcm: bytes, *, interrupt_on_digit: bool = False) -> bool:
        """Play and wait; False when the call ended (or a digit interrupted) before the end."""
        if self.hung_up:
            return False
        done = self.rtp.play(pcm)
        waits: set[asyncio.Future[object]] = {done, self.ended}  # type: ignore[arg-type]
        digit: asyncio.Future[bool] | None = None
        if interrupt_on_digit:
            digit = asyncio.ensure_future(self._peek_digit())
            waits.add(digit)  # type: ignore[arg-type]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if digit is not None and not digit.done():
            digit.cancel()
        if not done.done():
            self.rtp.stop_playing()
            return False
        return done.result() and not self.hung_up

    async def _peek_digit(self) -> bool:
        """Wait until a digit is queued, without taking it (the menu reads it next)."""
        if self.rtp.digits.empty():
            self.rtp.digit_arrived.clear()
            await self.rtp.digit_arrived.wait()
        return True

    async def digit(self, timeout: float) -> str | None:
        """The next DTMF digit (RFC 4733 or SIP INFO), None on timeout or hangup."""
        if self.hung_up:
            return None
        get = asyncio.ensure_future(self.rtp.digits.get())
        await asyncio.wait({get, self.ended}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if get.done():
            return get.result()
        get.cancel()
        return None

    def flush_digits(self) -> None:
        while not self.rtp.digits.empty():
            self.rtp.digits.get_nowait()

    async def record(self, max_seconds: float, stop_digits: str = "#") -> RecordResult:
        """Record what the caller says until a stop digit, `max_seconds`, or the hangup."""
        self.flush_digits()
        self.rtp.start_recording()
        deadline = self.loop.time() + max_seconds
        reason = "max"
        while not self.hung_up:
            left = deadline - self.loop.time()
            if left <= 0:
                break
            digit = await self.digit(left)
            if digit is None:
                reason = "hangup" if self.hung_up else "max"
                break
            if digit in stop_digits:
                reason = "digit"
                break
        if self.hung_up:
            reason = "hangup"
        return RecordResult(self.rtp.stop_recording(), reason)

    # ------------------------------------------------------------------ ending
    def hangup(self, reason: str = "service") -> None:
        """Our side ends the call: BYE when it was answered, 480 when it was not."""
        if self.hung_up:
            return
        if self.state is CallState.EARLY:
            self._respond(self.txn, self.dialog.respond(480))
        else:
            self._send_bye(self)
        self.end(reason)

    def end(self, reason: str) -> None:
        """The call is over (any side): stop media, wake whoever waits, retire timers."""
        self._cancel_retransmit()
        self.state = CallState.ENDED
        if not self.ended.done():
            self.ended.set_result(reason)
        self.rtp.close()

    async def finish(self, grace: float = 1.0) -> None:
        """Let the service task notice the end (it may store a recording), then cancel it."""
        task = self.task
        if task is None or task.done():
            return
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), grace)
        if not task.done():
            task.cancel()

    def is_request_of(self, request: Request) -> bool:
        return request.call_id == self.call_id

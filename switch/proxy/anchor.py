"""Media anchoring for recorded calls: the proxy puts an RTP relay in the media path of the
calls that touch a number with the recording option, speaking rtpengine's ng protocol
(media/relay/README.md "What the proxy sends") through a `RelayClient` the composition root
gives it (the embedded relay or rtpengine). Every other call keeps its media end to end.

What is anchored (the decision executor asks, execute.py): an inbound Ring or an Outbound
call with `record` set whose INVITE carries an SDP offer. Not a forwarded call (never
recorded: the type says so), not a media hand-off (announcements, busy message, voicemail:
their own recordings are not call recordings), not the voicemail branch a no-answer diversion
adds. Late offers (an INVITE without SDP: the offer comes in the 2xx and the answer in the
ACK, which the proxy forwards statelessly) are not anchored: such a call connects unrecorded,
counted in `relay_fallbacks_total{step="late-offer"}`.

Per branch (RFC 3261 §16.6: each fork branch is its own INVITE with its own Via branch):
- `offer` when the branch starts: the branch's INVITE copy is held until the relay answers
  with the SDP pointing at it (`via-branch` = the Via branch parameter we put on that
  branch, so each device gets its own relay ports and a cancelled branch's delete spares the
  answered one);
- `answer` on a 1xx/2xx with SDP from that branch, before it is forwarded to the caller (the
  caller gets the relay's address); the responses of a call are forwarded in order: one
  waiting for the relay holds back those after it;
- `delete` of the branch when it ends without a 2xx (CANCEL/487, busy, timeout), and of the
  whole call (`delete delay: 0`) when the call ends: BYE, final failure, the channel lease
  expiring (leases.py `on_end`). The relays delete a call idle for a minute themselves, so a
  lost delete does not leak.
In-dialog offers (re-INVITE/UPDATE with SDP: hold, codec changes, session refreshes) of an
anchored call go through the relay the same way (from-tag = the sender's tag), so that a hold
does not move the media around the relay. A 2xx retransmission that reaches us statelessly
gets the rewritten SDP again (`rewrite_stray`).

When the relay cannot be used (unreachable, timeout, refusal) the call goes on without it:
the original SDP is sent, the call connects unrecorded, the failure is logged and counted
(`relay_fallbacks_total{step}`, `relay_errors_total{kind}`). Never a dead call for a
recording. (A relay that dies in the middle of a call does take that call's audio with it:
both ends send to its ports.)

Recording: `record call` goes with the 2xx's answer for the embedded relay (the recording
starts when the call is answered) and with the offer for rtpengine (its pcap recording must
see every SDP, media/relay/pcap.py; the converter then cuts the WAV at the `answered` time
in the metadata, switch/recordings.py). The ng `metadata` (`key:value|…`, values
percent-encoded) carries what the recording's row needs: tenant, number, direction, the other
party, the device, the call's start and answer times (ms since the epoch).

The recording notice ("この通話は品質向上のため録音しております", `RecordingPlan.notice`,
inbound calls only) is played right after the answer: `block media` on the callee, `play
media` of the notice to the caller, `unblock media` after its duration - so the caller hears
the notice before any word of the callee (who hears the caller meanwhile; what the callee
says is still recorded). Early media before the answer would need a UA of ours answering
the caller; the proxy is not one (media/relay/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from prometheus_client import Counter, Gauge, Histogram

from switch.eager import run_eager

if TYPE_CHECKING:
    from switch.metrics import Metrics
    from switch.sip.message import Request, Response
    from switch.tu import Cancellable

__all__ = [
    "CallMedia",
    "MediaAnchors",
    "MediaExchange",
    "RecordingPlan",
    "RelayClient",
    "RelayError",
    "RelayMetrics",
    "format_metadata",
    "parse_metadata",
]

log = logging.getLogger(__name__)

SDP = "application/sdp"
Direction = Literal["inbound", "outbound"]


class RelayError(Exception):
    """A relay request failed. `kind`: timeout, unreachable, refused, malformed."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class RelayClient(Protocol):
    """The ng requests the proxy sends (media.relay.client.NgClient, adapted by the
    composition root so that its errors are `RelayError`s)."""

    async def offer(
        self, *, call_id: str, from_tag: str, sdp: bytes, via_branch: str | None,
        to_tag: str | None, label: str, record: bool, metadata: str | None,
    ) -> bytes: ...  # fmt: skip

    async def answer(
        self, *, call_id: str, from_tag: str, to_tag: str, sdp: bytes, via_branch: str | None,
        label: str, record: bool, metadata: str | None,
    ) -> bytes: ...  # fmt: skip

    async def delete(
        self, *, call_id: str, from_tag: str | None = None, via_branch: str | None = None
    ) -> Mapping[str, Any]: ...

    async def query(self, *, call_id: str) -> Mapping[str, Any]: ...

    async def block_media(self, *, call_id: str, from_tag: str) -> None: ...

    async def unblock_media(self, *, call_id: str, from_tag: str) -> None: ...

    async def play_media(self, *, call_id: str, from_tag: str, file: str) -> int | None: ...


class Scheduler(Protocol):
    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable: ...


# ==================================================================== metadata
def format_metadata(fields: Mapping[str, str | int | None]) -> str:
    """rtpengine's `key:value|key:value`, values percent-encoded (a caller's number as
    received may hold any character); None values are left out."""
    parts = (f"{k}:{urllib.parse.quote(str(v), safe='+@._-')}" for k, v in fields.items() if v)
    return "|".join(parts)


def parse_metadata(text: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in (text or "").split("|"):
        key, sep, value = part.partition(":")
        if sep and key.strip():
            out[key.strip()] = urllib.parse.unquote(value.strip())
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingPlan:
    """What routing decided about a recorded call (execute.py builds it): the tenant, its
    recorded number (E.164), the direction, the other party (the caller of an inbound call,
    the callee of an outbound one), the calling ID of an outbound call, and whether the
    caller hears the recording notice."""

    tenant_id: str
    number: str
    direction: Direction
    other_party: str | None = None
    device_id: str | None = None
    notice: bool = False

    def __post_init__(self) -> None:
        if not self.tenant_id or not self.number.startswith("+"):
            raise ValueError("a recording needs its tenant and its number (E.164)")
        if self.notice and self.direction != "inbound":
            raise ValueError("the recording notice is for the caller of an inbound call")


# ==================================================================== metrics
class RelayMetrics:
    """The relay's metrics, in the switch's registry (once per Metrics object)."""

    _BY_REGISTRY: weakref.WeakKeyDictionary[Metrics, RelayMetrics] = weakref.WeakKeyDictionary()

    def __init__(self, metrics: Metrics) -> None:
        r = metrics.registry
        self.sessions = Gauge(
            "relay_sessions_active", "Calls anchored at the relay right now", ["relay"], registry=r
        )
        self.packets = Counter(
            "relay_packets_total", "RTP packets relayed (counted when a call is deleted)",
            ["relay"], registry=r,
        )  # fmt: skip
        self.bytes = Counter(
            "relay_bytes_total", "RTP octets relayed (counted when a call is deleted)",
            ["relay"], registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "relay_errors_total",
            "Relay errors by kind (timeout, unreachable, refused, malformed: ng requests; "
            "rtp: packets the relay counted as errors)",
            ["relay", "kind"], registry=r,
        )  # fmt: skip
        self.fallbacks = Counter(
            "relay_fallbacks_total",
            "Recorded calls (or branches) that went on without the relay, by step "
            "(offer, answer, notice, late-offer)",
            ["relay", "step"], registry=r,
        )  # fmt: skip
        self.requests = Counter(
            "relay_ng_requests_total", "ng requests by command and outcome",
            ["relay", "command", "outcome"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "relay_ng_request_seconds", "ng request latency (answered requests)",
            ["relay", "command"], registry=r,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
        )  # fmt: skip

    @classmethod
    def of(cls, metrics: Metrics) -> RelayMetrics:
        found = cls._BY_REGISTRY.get(metrics)
        if found is None:
            found = cls._BY_REGISTRY[metrics] = cls(metrics)
        return found

    def observe(self, relay: str, command: str, outcome: str, seconds: float) -> None:
        """The ng client's observer: one call per request."""
        self.requests.labels(relay, command, outcome).inc()
        if outcome == "ok":
            self.latency.labels(relay, command).observe(seconds)
        elif outcome != "refused":
            self.errors.labels(relay, outcome).inc()


# ==================================================================== the proxy's anchors
class MediaAnchors:
    """The anchored calls of one proxy, by Call-ID (see the module docstring).

    `client`: the relay; `relay`: its name in metrics (`embedded`, `rtpengine`);
    `record_on_offer`: send `record call` with the offer (rtpengine) rather than with the
    2xx's answer; `notice_file`: the notice as the relay reads it (a path on its machine)."""

    def __init__(
        self,
        client: RelayClient,
        *,
        metrics: Metrics,
        relay: str = "embedded",
        record_on_offer: bool = False,
        notice_file: str | None = None,
        scheduler: Scheduler | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.relay = relay
        self.record_on_offer = record_on_offer
        self.notice_file = notice_file
        self.scheduler = scheduler
        self.wall_clock = wall_clock
        self.metrics = RelayMetrics.of(metrics)
        self.calls: dict[str, CallMedia] = {}
        self._active = self.metrics.sessions.labels(relay)

    # ---------------------------------------------------------------- the proxy's questions
    def start(self, request: Request, plan: RecordingPlan) -> MediaExchange | None:
        """A new recorded call: the exchange its branches go through, or None (no SDP
        offer: a late offer is not anchored, module docstring)."""
        if not _has_sdp(request) or request.from_tag is None:
            self.metrics.fallbacks.labels(self.relay, "late-offer").inc()
            log.warning("call %s: no SDP offer in the INVITE, not recorded", request.call_id)
            return None
        call = self.calls.get(request.call_id)
        if call is None:
            call = CallMedia(self, request.call_id, request.from_tag, plan, self.wall_clock())
            self.calls[request.call_id] = call
            self._active.inc()
        return MediaExchange(call, initial=True, request=request)

    def in_dialog(self, request: Request) -> MediaExchange | None:
        """A re-INVITE/UPDATE with SDP of an anchored call goes through the relay too."""
        call = self.calls.get(request.call_id)
        if call is None or call.ended or not _has_sdp(request):
            return None
        if request.method not in ("INVITE", "UPDATE") or request.to_tag is None:
            return None
        return MediaExchange(call, initial=False, request=request)

    def ended(self, call_id: str) -> None:
        """The call is over (BYE, final failure, lease expiry): delete it at the relay."""
        call = self.calls.pop(call_id, None)
        if call is not None:
            self._active.dec()
            call.end()

    def rewrite_stray(self, response: Response) -> None:
        """A 2xx retransmission forwarded statelessly carries the SDP the caller got first."""
        call = self.calls.get(response.call_id)
        tag = response.to_tag
        if call is not None and tag is not None and tag in call.answered_bodies:
            response.body = call.answered_bodies[tag]

    # ---------------------------------------------------------------- glue
    def spawn(self, work: Awaitable[None]) -> None:
        run_eager(_guarded(work))

    def failed(self, step: str, call_id: str, exc: RelayError) -> None:
        self.metrics.fallbacks.labels(self.relay, step).inc()
        log.warning("call %s: relay %s failed (%s: %s); going on without it",
                    call_id, step, exc.kind, exc)  # fmt: skip

    def count_totals(self, reply: Mapping[str, Any]) -> None:
        """A call's `query` reply at its end: its RTP totals (both relays answer `totals:
        {RTP: {packets, bytes, errors}}`)."""
        totals = reply.get("totals")
        rtp = totals.get("RTP") if isinstance(totals, Mapping) else None
        if not isinstance(rtp, Mapping):
            return
        for key, counter in (("packets", self.metrics.packets), ("bytes", self.metrics.bytes)):
            value = rtp.get(key)
            if isinstance(value, int) and value > 0:
                counter.labels(self.relay).inc(value)
        errors = rtp.get("errors")
        if isinstance(errors, int) and errors > 0:
            self.metrics.errors.labels(self.relay, "rtp").inc(errors)


async def _guarded(work: Awaitable[None]) -> None:
    try:
        await work
    except RelayError:
        pass  # counted where it was raised
    except Exception:
        log.exception("relay anchoring failed")


def _has_sdp(message: Request | Response) -> bool:
    if not message.body:
        return False
    content_type = (message.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    return content_type == SDP


# ==================================================================== one call
class CallMedia:
    """One anchored call: its tags, what the relay knows of it, and the queue that keeps its
    forwarded responses in order."""

    def __init__(
        self, anchors: MediaAnchors, call_id: str, from_tag: str, plan: RecordingPlan,
        started: float,
    ) -> None:  # fmt: skip
        self.anchors = anchors
        self.call_id = call_id
        self.from_tag = from_tag  # the caller's
        self.plan = plan
        self.started = started
        self.answered: float | None = None
        self.answered_tag: str | None = None
        self.answered_bodies: dict[str, bytes] = {}  # to-tag -> rewritten 2xx SDP
        self.branches: set[str] = set()  # via-branches the relay knows
        self.ended = False
        self.offered = False  # the relay has heard of the call (else nothing to delete)
        self._offers: set[asyncio.Future[None]] = set()
        self._tail: asyncio.Future[None] | None = None

    def metadata(self, *, to_tag: str | None = None, device: str | None = None) -> str:
        plan = self.plan
        return format_metadata({
            "call-id": self.call_id, "from-tag": self.from_tag, "to-tag": to_tag,
            "tenant": plan.tenant_id, "number": plan.number, "dir": plan.direction,
            "other": plan.other_party, "device": device or plan.device_id,
            "started": int(self.started * 1000),
            "answered": None if self.answered is None else int(self.answered * 1000),
        })  # fmt: skip

    # ---------------------------------------------------------------- ordering
    def queue(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work` after everything queued before it (responses keep their order)."""
        prev = self._tail
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tail = done
        self.anchors.spawn(self._after(prev, work, done))

    async def _after(
        self,
        prev: asyncio.Future[None] | None,
        work: Callable[[], Awaitable[None]],
        done: asyncio.Future[None],
    ) -> None:
        try:
            if prev is not None and not prev.done():
                await prev
            await work()
        finally:
            done.set_result(None)
            if self._tail is done:
                self._tail = None

    @property
    def idle(self) -> bool:
        return self._tail is None

    def track_offer(self, fut: asyncio.Future[None]) -> None:
        self._offers.add(fut)
        fut.add_done_callback(self._offers.discard)

    # ---------------------------------------------------------------- the end
    def delete_branch(self, via: str) -> None:
        if self.ended or via not in self.branches:
            return
        self.branches.discard(via)
        self.queue(lambda: self._delete(via))

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        if self.offered:
            self.queue(self._delete_call)

    async def _delete(self, via: str) -> None:
        try:
            await self.anchors.client.delete(
                call_id=self.call_id, from_tag=self.from_tag, via_branch=via
            )
        except RelayError as exc:
            log.info("call %s: branch delete failed (%s)", self.call_id, exc.kind)

    async def _delete_call(self) -> None:
        """The call's totals (a `query`: rtpengine's `delete` reply has none), then the
        delete."""
        if self._offers:
            await asyncio.gather(*self._offers, return_exceptions=True)
        client = self.anchors.client
        with contextlib.suppress(RelayError):  # the relay lost the call: nothing to count
            self.anchors.count_totals(await client.query(call_id=self.call_id))
        try:
            await client.delete(call_id=self.call_id)
        except RelayError as exc:
            log.warning("call %s: delete failed (%s); the relay expires it", self.call_id, exc.kind)


# ==================================================================== one request
@dataclass(slots=True)
class _Leg:
    via: str | None  # the via-branch the relay knows it by (None: an in-dialog request)
    anchored: bool = False
    device_id: str | None = None


class MediaExchange:
    """One request's SDP through the relay: the branches of an initial INVITE, or the one
    branch of a re-INVITE/UPDATE (RequestContext.media, context.py)."""

    def __init__(self, call: CallMedia, *, initial: bool, request: Request) -> None:
        self.call = call
        self.initial = initial
        from_tag = request.from_tag or ""
        self.from_tag = from_tag  # who offers: the caller, or either party in the dialog
        self.to_tag = request.to_tag
        self.from_caller = from_tag == call.from_tag
        self._legs: dict[int, _Leg] = {}

    def anchored(self, index: int) -> bool:
        leg = self._legs.get(index)
        return leg is not None and leg.anchored

    # ---------------------------------------------------------------- offer
    def offer(
        self, index: int, request: Request, via: str, device_id: str | None,
        send: Callable[[], None],
    ) -> None:  # fmt: skip
        """The branch `index` is about to send `request` (its own copy) with Via branch
        `via`: rewrite its SDP through the relay, then `send()` - at once when the relay
        cannot be used."""
        call = self.call
        leg = self._legs[index] = _Leg(via=via if self.initial else None, device_id=device_id)
        if call.ended:
            send()
            return
        call.offered = True
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        call.track_offer(done)
        call.anchors.spawn(self._offer(leg, request, send, done))

    async def _offer(
        self, leg: _Leg, request: Request, send: Callable[[], None], done: asyncio.Future[None]
    ) -> None:
        call, anchors = self.call, self.call.anchors
        try:
            body = await anchors.client.offer(
                call_id=call.call_id, from_tag=self.from_tag, sdp=request.body,
                via_branch=leg.via, to_tag=self.to_tag,
                label="caller" if self.from_caller else "callee",
                record=self.initial and anchors.record_on_offer,
                metadata=call.metadata() if self.initial else None,
            )  # fmt: skip
        except RelayError as exc:
            anchors.failed("offer", call.call_id, exc)
        except Exception:  # never a branch left unsent: it goes without the relay
            log.exception("call %s: relay offer failed", call.call_id)
            anchors.failed("offer", call.call_id, RelayError("internal", "unexpected error"))
        else:
            request.body = body
            leg.anchored = True
            if leg.via is not None:
                call.branches.add(leg.via)
        finally:
            done.set_result(None)
        send()

    # ---------------------------------------------------------------- answer
    def answer(self, index: int, response: Response, send: Callable[[Response], None]) -> None:
        """A provisional or 2xx of an anchored branch on its way to the caller: with SDP,
        through the relay first; in order with the call's other responses either way."""
        call = self.call
        leg = self._legs[index]
        first_2xx = self.initial and 200 <= response.status < 300 and call.answered_tag is None
        if first_2xx:
            call.answered = call.anchors.wall_clock()
            call.answered_tag = response.to_tag
        if not _has_sdp(response) or response.to_tag is None:
            if call.idle:
                send(response)
            else:
                call.queue(lambda: _sent(send, response))
            return
        call.queue(lambda: self._answer(leg, response, send, first_2xx))

    async def _answer(
        self, leg: _Leg, response: Response, send: Callable[[Response], None], first_2xx: bool
    ) -> None:
        call, anchors = self.call, self.call.anchors
        to_tag = response.to_tag or ""
        if self.initial and 200 <= response.status < 300 and to_tag != call.answered_tag:
            send(response)  # a second 2xx of the fork: the caller keeps the first dialog
            return
        try:
            body = await anchors.client.answer(
                call_id=call.call_id, from_tag=self.from_tag,
                to_tag=to_tag if self.initial else (self.to_tag or to_tag), sdp=response.body,
                via_branch=leg.via, label="callee" if self.from_caller else "caller",
                record=first_2xx and not anchors.record_on_offer,
                metadata=call.metadata(to_tag=to_tag, device=leg.device_id)
                if self.initial else None,
            )  # fmt: skip
        except Exception as exc:  # never a response held back: it goes as the callee sent it
            if not isinstance(exc, RelayError):
                log.exception("call %s: relay answer failed", call.call_id)
                exc = RelayError("internal", "unexpected error")
            anchors.failed("answer", call.call_id, exc)
            send(response)
            return
        response.body = body
        if 200 <= response.status < 300 and self.initial:
            call.answered_bodies[to_tag] = body
        if first_2xx and call.plan.notice and anchors.notice_file:
            await self._notice(to_tag)  # before the 2xx: nothing of the callee comes first
        send(response)

    # ---------------------------------------------------------------- the notice
    async def _notice(self, callee_tag: str) -> None:
        """Block the callee, play the notice to the caller, unblock after its duration; all
        before the caller has the 2xx, so that the first audio its phone takes is the notice
        (whatever of the callee's reached the caller's port earlier came before the answer,
        which phones discard; one callee packet first and then the notice's new RTP source
        was enough for baresip 1.0 to drop the whole notice)."""
        call, anchors = self.call, self.call.anchors
        client = anchors.client
        assert anchors.notice_file is not None
        try:
            await client.block_media(call_id=call.call_id, from_tag=callee_tag)
            ms = await client.play_media(
                call_id=call.call_id, from_tag=call.from_tag, file=anchors.notice_file
            )
        except RelayError as exc:
            anchors.failed("notice", call.call_id, exc)
            ms = 0
        delay = (ms or 0) / 1000

        def unblock() -> None:
            if not call.ended:
                call.queue(lambda: self._unblock(callee_tag))

        if delay > 0 and anchors.scheduler is not None:
            anchors.scheduler.call_later(delay, unblock)
        else:
            await self._unblock(callee_tag)

    async def _unblock(self, callee_tag: str) -> None:
        try:
            await self.call.anchors.client.unblock_media(
                call_id=self.call.call_id, from_tag=callee_tag
            )
        except RelayError as exc:
            self.call.anchors.failed("notice", self.call.call_id, exc)

    # ---------------------------------------------------------------- branch end
    def failed(self, index: int) -> None:
        """The branch ended without a 2xx (or was never sent): its relay side goes."""
        leg = self._legs.get(index)
        if leg is not None and leg.via is not None:
            self.call.delete_branch(leg.via)


async def _sent(send: Callable[[Response], None], response: Response) -> None:
    send(response)

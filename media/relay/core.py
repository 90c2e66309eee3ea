"""The embedded relay's control logic: ng requests in, replies out, calls and their expiry.
Sans-IO: sockets come from a `PortPool` the glue provides, time is an argument (`now`
monotonic for timers and media, `wall` UNIX time for what is reported).

Commands (the subset of rtpengine's ng protocol a forking, recording proxy uses):
`ping`, `offer`, `answer`, `delete`, `query`, `list`, `start recording`, `stop recording`,
`block media`, `unblock media`, `play media`, `stop media` (the last two through a
`PlayerHost` the glue provides). Replies
are worded like rtpengine's where it has words ("Unknown call-id", "Call-ID not found or tags
didn't match" as a warning, or an error with the `fatal` flag).

SDP rewriting is what rtpengine does by default for plain RTP/AVP: the audio stream's
connection address and port (and an a=rtcp line) point at the relay's port pair facing the
party that receives the SDP; everything else is left as the party wrote it
(`media.sdp.rewrite_audio_address`), except ICE attributes, which are removed (rtpengine's
`ICE: remove`): media must not find a way around the relay. Not supported: SRTP (SDES or
DTLS; the relay would forward what it cannot record), non-audio streams (left untouched,
not relayed).

Expiry (no leak if the proxy never says `delete`): a call with no signalling and no packet
for `idle_timeout` seconds (`hold_timeout` while a leg's SDP is on hold/one-way, when silence
is normal) or older than `max_age` is deleted by `tick()`; so is a call or branch whose
`delete delay` has run out. Deleting a call finishes its recording: kept through the sink
(WAV + JSON) if the call was answered, discarded otherwise (`keep_unanswered`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, assert_never

from ..errors import MediaError, SdpError
from ..sdp import rewrite_audio_address
from .bencode import EncodableValue
from .calls import Branch, Call, Recording
from .errors import NgRequestError
from .legs import Leg, PartySdp, Side, parse_party_sdp
from .ng import (
    Answer,
    BlockMedia,
    Delete,
    ListCalls,
    Offer,
    Ping,
    PlayMedia,
    Query,
    Request,
    StartRecording,
    StopMedia,
    StopRecording,
    SubscribeAnswer,
    SubscribeRequest,
    UnblockMedia,
    Unsubscribe,
)
from .query import call_stats
from .recorder import StereoRecorder
from .sink import RecordingMeta, RecordingSink

__all__ = ["CoreStats", "PlayerHost", "PortPool", "RelayConfig", "RelayCore"]

log = logging.getLogger(__name__)
Reply = dict[str, EncodableValue]


class PortPool(Protocol):
    """Binds a leg's RTP/RTCP sockets (the glue); OSError when the range is exhausted."""

    def allocate(self, call: Call, leg: Leg) -> None: ...


class PlayerHost(Protocol):
    """Plays audio to a leg (the glue paces it); returns the duration in ms."""

    def play_to(
        self, call: Call, leg: Leg, file: str | None, blob: bytes | None, repeat: int
    ) -> int: ...

    def stop_playing(self, leg: Leg) -> bool: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayConfig:
    idle_timeout: float = 60.0
    hold_timeout: float = 3600.0
    max_age: float = 4 * 3600.0
    delete_delay: int = 0  # seconds, when a delete names none
    keep_unanswered: bool = False
    record_latency: float = 0.2
    sync_every: float = 5.0

    def __post_init__(self) -> None:
        if min(self.idle_timeout, self.hold_timeout, self.max_age) <= 0:
            raise ValueError("relay timeouts must be positive")


@dataclass(slots=True)
class CoreStats:
    offers: int = 0
    answers: int = 0
    deletes: int = 0
    expired_idle: int = 0
    expired_age: int = 0
    recordings_kept: int = 0
    recordings_discarded: int = 0
    refused: dict[str, int] = field(default_factory=dict)


class RelayCore:
    """Calls by Call-ID and the ng command handlers (see the module docstring)."""

    def __init__(
        self,
        *,
        pool: PortPool,
        sink: RecordingSink | None = None,
        player: PlayerHost | None = None,
        config: RelayConfig | None = None,
        on_delete: Callable[[Call], None] | None = None,
    ) -> None:
        self.pool = pool
        self.sink = sink
        self.player = player
        self.config = config or RelayConfig()
        self.on_delete = on_delete
        self.calls: dict[str, Call] = {}
        self.stats = CoreStats()

    # ------------------------------------------------------------------ dispatch
    def handle(self, request: Request, now: float, wall: float) -> Reply:
        """Act on one request; NgRequestError (-> `error` reply) when it cannot be done."""
        try:
            return self._dispatch(request, now, wall)
        except NgRequestError as exc:
            self.stats.refused[request.command] = self.stats.refused.get(request.command, 0) + 1
            raise exc

    def _dispatch(self, request: Request, now: float, wall: float) -> Reply:
        match request:
            case Ping():
                return {"result": "pong"}
            case Offer():
                return self._offer(request, now, wall)
            case Answer():
                return self._answer(request, now, wall)
            case Delete():
                return self._delete(request, now, wall)
            case Query():
                return self._query(request, now, wall)
            case ListCalls():
                return {"result": "ok", "calls": list(self.calls)[: request.limit]}
            case StartRecording():
                return self._start_recording(request, now, wall)
            case StopRecording():
                self._finish_recording(self._call(request.call_id), now, wall)
                return {"result": "ok"}
            case PlayMedia():
                return self._play(request)
            case StopMedia():
                return self._stop_media(request)
            case BlockMedia() | UnblockMedia():
                return self._block(request)
            case SubscribeRequest() | SubscribeAnswer() | Unsubscribe():
                raise NgRequestError("Unsupported command")
            case _ as unreachable:
                assert_never(unreachable)

    def _call(self, call_id: str) -> Call:
        call = self.calls.get(call_id)
        if call is None:
            raise NgRequestError("Unknown call-id")
        return call

    # ------------------------------------------------------------------ offer / answer
    def _offer(self, req: Offer, now: float, wall: float) -> Reply:
        self.stats.offers += 1
        party = _party(req.sdp)
        call = self.calls.get(req.call_id)
        fresh = call is None
        if call is None:
            call = self._new_call(req, now, wall)
        try:
            owner, target = self._offer_legs(call, req, wall)
        except NgRequestError:
            if fresh:
                call.close()
            raise
        self.calls[req.call_id] = call
        owner.sdp = party
        return self._signalled(call, req, owner, target, now, wall)

    def _answer(self, req: Answer, now: float, wall: float) -> Reply:
        self.stats.answers += 1
        party = _party(req.sdp)
        call = self._call(req.call_id)
        owner, target = self._answer_legs(call, req)
        owner.sdp = party
        branch = call.branch_of(owner)
        if branch is not None:
            call.select(branch)
            self._note_answer(call, branch)
        return self._signalled(call, req, owner, target, now, wall)

    def _signalled(
        self, call: Call, req: Offer | Answer, owner: Leg, target: Leg, now: float, wall: float
    ) -> Reply:
        if req.label and owner.label is None:
            owner.label = req.label
        call.last_signal, call.last_signal_wall = now, wall
        call.rewire()
        if req.metadata is not None:
            call.metadata = req.metadata
        if req.record_call and call.recording is None:
            self._begin_recording(call, now, wall)
        assert target.ports is not None
        body = rewrite_audio_address(
            req.sdp, address=target.ports.address, port=target.ports.rtp_port
        )
        return {"result": "ok", "sdp": _without_ice(body)}

    def _new_call(self, req: Offer, now: float, wall: float) -> Call:
        a = Leg(side=Side.A, tag=req.from_tag, created=wall, index=1)
        call = Call(req.call_id, a, now=now, wall=wall)
        self._allocate(call, a)
        return call

    def _allocate(self, call: Call, leg: Leg) -> None:
        try:
            self.pool.allocate(call, leg)
        except OSError as exc:
            raise NgRequestError("Ran out of ports") from exc

    def _offer_legs(self, call: Call, req: Offer, wall: float) -> tuple[Leg, Leg]:
        """(owner of the SDP, leg whose party receives it) for an offer."""
        if req.from_tag == call.a.tag:
            return call.a, self._branch_for_offer(call, req, wall).leg
        leg = call.leg_by_tag(req.from_tag)
        if leg is None:
            raise NgRequestError("Invalid dialogue association")
        return leg, call.a  # a re-offer from a B party (re-INVITE from the callee)

    def _branch_for_offer(self, call: Call, req: Offer, wall: float) -> Branch:
        tagged = call.leg_by_tag(req.to_tag)
        if tagged is not None and (branch := call.branch_of(tagged)) is not None:
            return branch  # re-offer from A inside an established dialog
        key = req.via_branch or ""
        if key in call.branches:
            return call.branches[key]
        if not req.via_branch and call.selected is not None:
            return call.selected
        leg = call.new_leg(wall)
        self._allocate(call, leg)
        return call.add_branch(key, leg)

    def _answer_legs(self, call: Call, req: Answer) -> tuple[Leg, Leg]:
        """(owner = the answering leg, the leg that gets the rewritten SDP)."""
        if req.from_tag == call.a.tag:
            return self._answering_branch(call, req).leg, call.a
        leg = call.leg_by_tag(req.from_tag)
        if leg is None or req.to_tag != call.a.tag:
            raise NgRequestError("Invalid dialogue association")
        return call.a, leg  # A answers a re-offer from a B party

    def _answering_branch(self, call: Call, req: Answer) -> Branch:
        branch = call.branches.get(req.via_branch or "") if req.via_branch else None
        if branch is None and (leg := call.leg_by_tag(req.to_tag)) is not None:
            branch = call.branch_of(leg)
        if branch is None and len(call.branches) == 1:
            branch = next(iter(call.branches.values()))
        if branch is None or (branch.leg.tag not in (None, req.to_tag)):
            raise NgRequestError("Invalid dialogue association")
        branch.leg.tag = req.to_tag
        return branch

    def _note_answer(self, call: Call, branch: Branch) -> None:
        rec = call.recording
        if rec is not None and call.selected is branch:
            rec.meta = rec.meta.finished(to_tag=branch.leg.tag, via_branch=branch.key or None)

    # ------------------------------------------------------------------ delete / query
    def _delete(self, req: Delete, now: float, wall: float) -> Reply:
        self.stats.deletes += 1
        call = self.calls.get(req.call_id)
        if call is None:
            return _not_found(req.fatal)
        branch = self._branch_to_delete(call, req)
        if req.via_branch and branch is None:
            return _not_found(req.fatal)
        reply: Reply = {"result": "ok", **call_stats(call, now, wall)}
        delay = self.config.delete_delay if req.delete_delay is None else req.delete_delay
        if branch is not None and len(call.branches) > 1:
            self._delete_branch(call, branch, now, delay)
        elif delay > 0:
            call.delete_at = now + delay
        else:
            self.delete_call(call, now, wall)
        return reply

    @staticmethod
    def _branch_to_delete(call: Call, req: Delete) -> Branch | None:
        if req.via_branch:
            return call.branches.get(req.via_branch)
        return None

    def _delete_branch(self, call: Call, branch: Branch, now: float, delay: int) -> None:
        if delay > 0:
            branch.delete_at = now + delay
        else:
            call.remove_branch(branch)

    def _query(self, req: Query, now: float, wall: float) -> Reply:
        call = self._call(req.call_id)
        return {"result": "ok", **call_stats(call, now, wall)}

    def delete_call(self, call: Call, now: float, wall: float) -> None:
        """Remove a call: its recording finished, its sockets closed."""
        if self.calls.get(call.call_id) is call:
            del self.calls[call.call_id]
        self._finish_recording(call, now, wall)
        if self.player is not None:
            for leg in call.legs():
                self.player.stop_playing(leg)
        call.close()
        if self.on_delete is not None:
            self.on_delete(call)

    # ------------------------------------------------------------------ recording
    def _start_recording(self, req: StartRecording, now: float, wall: float) -> Reply:
        call = self._call(req.call_id)
        if req.metadata is not None:
            call.metadata = req.metadata
        if call.recording is None:
            self._begin_recording(call, now, wall)
        return {"result": "ok"}

    def _begin_recording(self, call: Call, now: float, wall: float) -> None:
        if self.sink is None:
            raise NgRequestError("Call recording requested, but no recording sink configured")
        meta = RecordingMeta(
            call_id=call.call_id,
            from_tag=call.a.tag or "",
            started=wall,
            relay="embedded",
            metadata=call.metadata,
        )
        try:
            writer = self.sink.open(call.call_id, meta)
        except (OSError, MediaError) as exc:
            log.error("cannot open a recording for %s: %s", call.call_id, exc)
            raise NgRequestError(f"Cannot open the recording: {exc}") from exc
        recorder = StereoRecorder(
            writer, start=now, latency=self.config.record_latency, sync_every=self.config.sync_every
        )
        call.attach(Recording(recorder=recorder, meta=meta, writer=writer))
        if call.selected is not None:
            self._note_answer(call, call.selected)

    def _finish_recording(self, call: Call, now: float, wall: float) -> None:
        rec, call.recording = call.recording, None
        if rec is None or self.sink is None:
            return
        try:
            self._hand_over(call, rec, now, wall)
        except (OSError, MediaError) as exc:
            log.error("recording of %s lost: %s", call.call_id, exc)

    def _hand_over(self, call: Call, rec: Recording, now: float, wall: float) -> None:
        assert self.sink is not None
        duration = rec.recorder.finish(now)
        caller, callee = (rec.recorder.stats(ch) for ch in (0, 1))
        meta = rec.meta.finished(
            ended=wall,
            duration=duration,
            data_bytes=rec.recorder.writer.data_size,
            metadata=call.metadata,
            codecs=tuple(sorted(caller.codecs | callee.codecs)),
            stats=_recording_stats(rec.recorder),
        )
        if call.answered() or self.config.keep_unanswered:
            self.sink.close(rec.recorder.writer, meta)
            self.stats.recordings_kept += 1
        else:
            self.sink.discard(rec.recorder.writer, meta)
            self.stats.recordings_discarded += 1

    # ------------------------------------------------------------------ play media
    def _play(self, req: PlayMedia) -> Reply:
        call = self._call(req.call_id)
        leg = call.leg_by_tag(req.from_tag)
        if leg is None:
            raise NgRequestError("Unknown from-tag")
        if self.player is None:
            raise NgRequestError("Media playback not supported")
        duration = self.player.play_to(call, leg, req.file, req.blob, req.repeat_times or 1)
        return {"result": "ok", "duration": duration}

    def _stop_media(self, req: StopMedia) -> Reply:
        leg = self._call(req.call_id).leg_by_tag(req.from_tag)
        if leg is None:
            raise NgRequestError("Unknown from-tag")
        if self.player is None or not self.player.stop_playing(leg):
            raise NgRequestError("Not currently playing media")
        return {"result": "ok"}

    def _block(self, req: BlockMedia) -> Reply:
        """`block media` / `unblock media` for one participant: what it sends is still
        counted and recorded, but not forwarded (with `play media`, the notice is heard
        alone on rtpengine too, so the proxy sends the same commands to either relay)."""
        leg = self._call(req.call_id).leg_by_tag(req.from_tag)
        if leg is None:
            raise NgRequestError("Unknown from-tag")
        leg.blocked = not isinstance(req, UnblockMedia)
        return {"result": "ok"}

    # ------------------------------------------------------------------ time
    def tick(self, now: float, wall: float) -> None:
        """Every ~0.5 s: recorders write, delayed deletes and expired calls go."""
        for call in list(self.calls.values()):
            if call.recording is not None:
                call.recording.recorder.tick(now)
            self._expire(call, now, wall)

    def _expire(self, call: Call, now: float, wall: float) -> None:
        for branch in [b for b in call.branches.values() if b.delete_at is not None]:
            if branch.delete_at is not None and branch.delete_at <= now:
                call.remove_branch(branch)
        idle_limit = self.config.hold_timeout if call.on_hold() else self.config.idle_timeout
        if now - call.created > self.config.max_age:
            self.stats.expired_age += 1
        elif now - call.last_activity() > idle_limit:
            self.stats.expired_idle += 1
        elif not (call.delete_at is not None and call.delete_at <= now):
            return
        log.info("relay: call %s removed (expired or delayed delete)", call.call_id)
        self.delete_call(call, now, wall)

    def close(self, now: float, wall: float) -> None:
        """Delete every call (relay shutdown): recordings are finished, not lost."""
        for call in list(self.calls.values()):
            self.delete_call(call, now, wall)


def _party(body: bytes) -> PartySdp:
    try:
        return parse_party_sdp(body)
    except SdpError as exc:
        raise NgRequestError(f"Incomplete SDP specification: {exc.message}") from exc


_ICE = (b"a=candidate", b"a=ice-", b"a=remote-candidates", b"a=end-of-candidates")


def _without_ice(body: bytes) -> bytes:
    """Drop ICE (RFC 8839) attributes: the relay is not an ICE agent, and a peer that saw the
    other party's candidates could send media around the relay — and around the recording.
    rtpengine's `ICE: remove` does the same."""
    lines = body.splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith(_ICE)]
    return body if len(kept) == len(lines) else b"".join(kept)


def _not_found(fatal: bool) -> Reply:
    if fatal:
        raise NgRequestError("Call-ID not found or tags didn't match")
    return {"result": "ok", "warning": "Call-ID not found or tags didn't match"}


def _recording_stats(recorder: StereoRecorder) -> dict[str, object]:
    out: dict[str, object] = {}
    for channel, name in ((0, "caller"), (1, "callee")):
        s = recorder.stats(channel)
        out[name] = {
            "packets": s.packets,
            "octets": s.octets,
            "malformed": s.malformed,
            "unsupported_payloads": s.unsupported,
            "overtaken_samples": s.overtaken,
            **recorder.buffer_stats(channel),
        }
    return out

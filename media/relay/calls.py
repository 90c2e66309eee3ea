"""A relayed call: side A, one side-B leg per fork branch, the media routing between them and
the call's recording. Sans-IO.

Structure (what rtpengine calls monologues, kept to what a forking proxy needs):
- The first `offer` of a Call-ID creates the call and side A, the party whose SDP it carries
  (the caller, from-tag = the SIP From tag), with its port pair.
- Each `via-branch` of an offer from A is a fork branch with its own side-B leg and port
  pair, so the devices of a parallel fork each get their own relay ports (Kamailio's
  `via-branch=auto-next`). An offer without via-branch uses the branch named "".
- `answer` names the answering leg by to-tag (and via-branch): that branch becomes the
  selected one (the latest answer wins: a 183 with SDP from one device, then the 200 of
  another). Before any answer, A's media goes to every branch (early media both ways);
  from then on only to and from the selected branch. Deleting the selected branch falls
  back to another answered one.
- Re-offers inside the dialog (hold, codec change) come from A or from a tagged B leg; the
  SDP's owner is the leg named by from-tag in an offer and by to-tag in an answer, and the
  reply SDP is rewritten with the ports of the OTHER leg — the one that will receive it.

Recording: A's packets go to the caller channel and the selected (or, before the answer,
any) B leg's packets to the callee channel of a `StereoRecorder`, unless A was labelled
`callee` (a late-offer call whose first offer came from the called party): then the channels
swap so the WAV stays caller-left.
"""

from __future__ import annotations

from dataclasses import dataclass

from .legs import Addr, Leg, PartySdp, Side
from .recorder import CALLEE, CALLER, StereoRecorder, codecs_from_sdp
from .sink import RecordingMeta

__all__ = ["Branch", "Call", "Recording"]


@dataclass(slots=True)
class Branch:
    key: str  # the via-branch, "" when the proxy sent none
    leg: Leg
    answered: bool = False
    delete_at: float | None = None  # monotonic; a `delete` with a delay


@dataclass(slots=True)
class Recording:
    recorder: StereoRecorder
    meta: RecordingMeta
    writer: object  # the sink's writer, handed back to it at close


class Call:
    """One Call-ID (see the module docstring)."""

    __slots__ = (
        "_legs_made",
        "a",
        "branches",
        "call_id",
        "created",
        "created_wall",
        "delete_at",
        "last_signal",
        "last_signal_wall",
        "metadata",
        "recording",
        "selected",
    )

    def __init__(self, call_id: str, a: Leg, *, now: float, wall: float) -> None:
        self.call_id = call_id
        self.a = a
        self.branches: dict[str, Branch] = {}
        self.selected: Branch | None = None
        self.created = now
        self.created_wall = wall
        self.last_signal = now
        self.last_signal_wall = wall
        self.metadata: str | None = None
        self.recording: Recording | None = None
        self.delete_at: float | None = None
        self._legs_made = 1

    # ------------------------------------------------------------------ structure
    def legs(self) -> list[Leg]:
        return [self.a, *(b.leg for b in self.branches.values())]

    def leg_by_tag(self, tag: str | None) -> Leg | None:
        if tag is None:
            return None
        return next((leg for leg in self.legs() if leg.tag == tag), None)

    def branch_of(self, leg: Leg) -> Branch | None:
        return next((b for b in self.branches.values() if b.leg is leg), None)

    def new_leg(self, wall: float) -> Leg:
        self._legs_made += 1
        return Leg(side=Side.B, tag=None, created=wall, index=self._legs_made)

    def add_branch(self, key: str, leg: Leg) -> Branch:
        branch = Branch(key=key, leg=leg)
        self.branches[key] = branch
        self.rewire()
        return branch

    def select(self, branch: Branch) -> None:
        """The latest answer wins (as in rtpengine): a 183 from one device and then a 200
        from another moves the media to the one that answered last."""
        branch.answered = True
        self.selected = branch
        self.rewire()

    def remove_branch(self, branch: Branch) -> None:
        self.branches.pop(branch.key, None)
        branch.leg.close()
        if self.selected is branch:
            self.selected = next((b for b in self.branches.values() if b.answered), None)
        self.rewire()

    def rewire(self) -> None:
        """Recompute where each leg's packets go (kept on the legs for the packet path)."""
        targets = [self.selected] if self.selected is not None else self.branches.values()
        self.a.peers = tuple(b.leg for b in targets)
        for branch in self.branches.values():
            live = self.selected is None or self.selected is branch
            branch.leg.peers = (self.a,) if live else ()
        self._update_codecs()

    def close(self) -> None:
        for leg in self.legs():
            leg.close()

    # ------------------------------------------------------------------ packets
    def rtp_in(self, leg: Leg, data: bytes, source: Addr, now: float) -> tuple[Leg, ...]:
        """A datagram from `leg`'s party on its RTP port: the legs to forward it to."""
        if not leg.accept_rtp(source, len(data), now):
            return ()
        recording = self.recording
        if recording is not None and leg.peers:
            recording.recorder.packet(self._channel(leg), data, now)
        return () if leg.blocked else leg.peers

    def rtcp_in(self, leg: Leg, data: bytes, source: Addr, now: float) -> tuple[Leg, ...]:
        if not leg.accept_rtcp(source, len(data), now):
            return ()
        return leg.peers

    def _channel(self, leg: Leg) -> int:
        a_is_caller = self.a.label != "callee"
        return CALLER if (leg is self.a) == a_is_caller else CALLEE

    # ------------------------------------------------------------------ time
    def last_activity(self) -> float:
        times = [self.last_signal, *(t for leg in self.legs() if (t := leg.last_packet()))]
        return max(times)

    def on_hold(self) -> bool:
        return any(leg.sdp is not None and leg.sdp.hold for leg in self.legs())

    def answered(self) -> bool:
        return self.selected is not None

    # ------------------------------------------------------------------ recording
    def attach(self, recording: Recording) -> None:
        self.recording = recording
        self._update_codecs()

    def _update_codecs(self) -> None:
        if self.recording is None:
            return
        maps: dict[int, str] = {}
        events: set[int] = set()
        for sdp in self._sdps():
            maps.update(sdp.rtpmaps)
            events |= sdp.events
        self.recording.recorder.set_payload_types(codecs_from_sdp(maps), frozenset(events))

    def _sdps(self) -> list[PartySdp]:
        return [leg.sdp for leg in self.legs() if leg.sdp is not None]

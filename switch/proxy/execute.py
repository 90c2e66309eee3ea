"""Carrying out routing decisions: `DecisionExecutor` turns a `routing.decisions.Decision`
into branches, hand-offs and replies of a RequestContext (context.py). How each decision is
carried out is listed in the proxy module docstring (switch/proxy/proxy.py); the media URI
format in switch/handoff.py, the forwarding headers in diversion.py; the lease lifecycle in
leases.py.

The executor is given what it uses, nothing more: a scheduler (the lease sweep), the next-hop
resolver, the proxy configuration, the channel leases (leases.ActiveCalls), the metrics (it
counts `routing_decisions_total`) and the routing policy itself (`decide`), which it asks
again when the channel lease refuses a call routing thought had a free channel.

`Decision` is a closed union: `_carry_out` matches every member and ends in `assert_never`,
so a decision type added to routing and forgotten here fails `mypy`, not a call.
"""

from __future__ import annotations

import dataclasses
import logging
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, assert_never

from prometheus_client import Counter

from provisioning.model import Device, Snapshot
from routing.call import Call, LiveState, LiveView
from routing.caps import device_lease_key
from routing.decisions import (
    Announce,
    Busy,
    Decision,
    Forward,
    Internal,
    NoAnswerAction,
    Outbound,
    Reject,
    Ring,
    Voicemail,
    VoicemailMenu,
)
from switch.handoff import CAUSE_NO_ANSWER, HandOff
from switch.sip.message import Request, SipURI, parse_uri

from .anchor import MediaAnchors, RecordingPlan
from .diversion import (
    announce_handoff,
    busy_handoff,
    forward_headers,
    menu_handoff,
    voicemail_decision_handoff,
    voicemail_handoff,
)
from .forking import Stage
from .messages import called_party, device_identity, prefix_display
from .targets import BranchPlan, Peers, ResolveError, plans_for
from .trunk import identity_headers, outbound_request_uri

if TYPE_CHECKING:
    from switch.metrics import Metrics
    from switch.sip.target import Target
    from switch.state.base import Binding, DailyCount
    from switch.tu import Cancellable

    from .cdrs import CdrEvents
    from .config import ProxyConfig
    from .context import RequestContext

__all__ = [
    "MEDIA_RESPONSE_TIMEOUT",
    "CallInputs",
    "Decide",
    "DecisionExecutor",
    "decisions_counter",
]

# Seconds a media service has to answer a hand-off at all (its transaction layer sends 100
# Trying at once) before the next one is tried.
MEDIA_RESPONSE_TIMEOUT = 1.0

log = logging.getLogger(__name__)

Decide = Callable[[Call, Snapshot, LiveView, datetime], Decision]
# called once an Outbound decision took its channel, before the call leaves (usage.py), when
# the acquire did not count it already (Counting)
Started = Callable[[Outbound, str, "CallInputs"], Awaitable[None]]
# the day's counters an Outbound decision adds to, counted by the write taking its channel
Counting = Callable[[Outbound, "CallInputs"], "DailyCount"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallInputs:
    """What routing was given for one new request (kept to carry its decision out, and to
    ask routing again after a lost channel race): the call, the snapshot, the live state
    loaded for it (routing.needs), the time, the bindings of the IDs it may ring, and the
    authenticated device (None for the carrier)."""

    call: Call
    snapshot: Snapshot
    live: LiveState
    now: datetime
    bindings: Mapping[str, list[Binding]]
    device: Device | None


class Scheduler(Protocol):
    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable: ...


class TargetResolver(Protocol):
    async def target(self, uri: SipURI) -> Target: ...


class Leases(Protocol):
    """The channel leases (leases.ActiveCalls)."""

    async def acquire(
        self,
        tenant_id: str,
        call_id: str,
        limit: int,
        ttl: float | None = None,
        *,
        caller: str | None = None,
        called: str | None = None,
        also: str | None = None,
        daily: DailyCount | None = None,
    ) -> bool: ...

    def sweep(self) -> list[str]: ...

    @property
    def leases(self) -> int: ...


class DecisionExecutor:
    """See the module docstring."""

    def __init__(
        self,
        *,
        scheduler: Scheduler,
        resolver: TargetResolver,
        config: ProxyConfig,
        calls: Leases,
        metrics: Metrics,
        decide: Decide,
        started: Started | None = None,
        counting: Counting | None = None,
        anchors: MediaAnchors | None = None,
        cdrs: CdrEvents | None = None,
        peers: Peers | None = None,
    ) -> None:
        self._scheduler = scheduler
        self._peers = peers  # several nodes: whose paths lead to a live process
        self._cdrs = cdrs  # the call records (cdrs.py): a re-decision, hand-offs, expiry
        self._started = started
        self._counting = counting
        self._anchors = anchors  # [recording] the relay for recorded calls (anchor.py)
        self._resolver = resolver
        self._config = config
        self._calls = calls
        self._decide = decide
        self._decisions = decisions_counter(metrics)
        self._children: dict[str, Any] = {}  # rule -> counter child (bounded: rule names)
        self._sweeping = False

    async def execute(
        self, ctx: RequestContext, fwd: Request, inputs: CallInputs, decision: Decision
    ) -> None:
        """Count a new call's decision, take its channel lease, carry it out."""
        if ctx.initial_invite:
            self._count(decision, fwd.call_id)
        taken, counted = await self._take_channel(ctx, fwd, decision, inputs)
        if not taken:
            decision = self._lost_channel_race(inputs, decision)
            self._count(decision, fwd.call_id)
            if self._cdrs is not None:  # the call is now what this decision makes it
                self._cdrs.started(fwd.call_id, decision, inputs, fwd)
        elif (
            isinstance(decision, Outbound) and ctx.initial_invite and self._started and not counted
        ):
            await self._started(decision, fwd.call_id, inputs)  # toll-fraud usage
        await self._carry_out(ctx, fwd, inputs, decision)

    # ---------------------------------------------------------------- decisions
    async def _carry_out(
        self, ctx: RequestContext, fwd: Request, inputs: CallInputs, decision: Decision
    ) -> None:
        """One case per decision (the proxy module docstring says what each does)."""
        match decision:
            case Reject():
                self._reject(ctx, decision, inputs)
            case Ring():
                await self._ring(ctx, fwd, decision, inputs)
            case Internal():
                self._internal(ctx, fwd, decision, inputs)
            case Outbound() | Forward():
                await self._to_gateway(ctx, fwd, decision, inputs.snapshot)
            case Announce() | Busy() | Voicemail() | VoicemailMenu():
                await self._to_media(ctx, fwd, decision, inputs)
            case _:
                assert_never(decision)

    def _reject(self, ctx: RequestContext, decision: Reject, inputs: CallInputs) -> None:
        """Its status; a Warning only towards devices (the carrier learns nothing)."""
        extra = []
        if decision.warning and inputs.device is not None:
            extra.append(("Warning", f'399 {inputs.snapshot.realm} "{decision.warning}"'))
        ctx.reject(decision.status, decision.reason, extra)

    async def _ring(
        self, ctx: RequestContext, fwd: Request, decision: Ring, inputs: CallInputs
    ) -> None:
        """Timed stages (desk phones/ATAs, then apps while a desk branch is alive), the
        dialled number in P-Called-Party-ID, the label before the caller's display name, and
        the no-answer rule: a diversion to voicemail, else `status` after the ring time."""
        called_party(fwd.headers, decision.called_number, inputs.snapshot.realm)
        if decision.display_prefix:
            prefix_display(fwd.headers, decision.display_prefix)
        stages = [
            Stage(
                payloads=plans_for(s.device_ids, inputs.bindings, self._peers),
                delay=s.delay_s,
                only_if_earlier_ringing=s.only_if_earlier_stage_ringing,
            )
            for s in decision.stages
        ]
        na = decision.no_answer
        divert = None
        media = self._config.media
        if na.action is NoAnswerAction.VOICEMAIL and na.mailbox and media is not None:
            index = media.order(fwd.call_id)[0]  # the call's share of the media services
            uri = media.uri_for(voicemail_handoff(
                decision.tenant_id, decision.number, na.mailbox,
                inputs.call.caller_number, CAUSE_NO_ANSWER,
            ), index)  # fmt: skip
            media_target = await self._resolver.target(media.uris[index])
            # the media end's flow goes into our Record-Route token: the media service's own
            # in-dialog requests (its BYE) prove with it that the dialog is ours
            divert = BranchPlan(uri=uri, target=media_target, flow=media_target)
        if decision.record:  # [recording]
            caller = decision.caller_number or inputs.call.caller_number
            self._anchor(ctx, fwd, RecordingPlan(
                tenant_id=decision.tenant_id, number=decision.number, direction="inbound",
                other_party=caller, notice=decision.recording_notice,
            ))  # fmt: skip
        ctx.start(fwd, stages, self._config.timer_c, (na.after_s, na.status), divert)

    def _anchor(self, ctx: RequestContext, fwd: Request, plan: RecordingPlan) -> None:
        """[recording] A recorded call's media goes through the relay (anchor.py)."""
        if self._anchors is not None and ctx.initial_invite and fwd.method == "INVITE":
            ctx.media = self._anchors.start(fwd, plan)

    def _internal(
        self, ctx: RequestContext, fwd: Request, decision: Internal, inputs: CallInputs
    ) -> None:
        """The IDs' bindings in one stage, our identity of the caller, the number dialled."""
        realm = inputs.snapshot.realm
        if inputs.device is not None:
            device_identity(fwd.headers, inputs.device, realm)
        if decision.via_number:
            called_party(fwd.headers, decision.via_number, realm)
        stages = [Stage(payloads=plans_for(decision.device_ids, inputs.bindings, self._peers))]
        ctx.start(fwd, stages, self._config.timer_c)

    async def _to_media(
        self,
        ctx: RequestContext,
        fwd: Request,
        decision: Announce | Busy | Voicemail | VoicemailMenu,
        inputs: CallInputs,
    ) -> None:
        """Hand the call to the media service (handoff.py). Without one configured (or for a
        request that is not an INVITE) the proxy never answers in its place: Busy gets 486,
        the others 480."""
        media = self._config.media
        if media is None or fwd.method != "INVITE":
            if media is None:  # the operator must see every call that had nowhere to go
                log.warning(
                    "call %s: %s hand-off dropped (no media service configured)",
                    fwd.call_id, decision.rule,
                )  # fmt: skip
            ctx.reject(486 if isinstance(decision, Busy) else 480)
            return
        handoff = _handoff(decision, inputs.call.caller_number)
        if not isinstance(decision, VoicemailMenu):
            called_party(fwd.headers, decision.number, inputs.snapshot.realm)
        # Several media services: the call's share first (by Call-ID), the others as fail-over
        # stages that start only when every earlier one failed - a media process that does
        # not answer at all (not even 100 Trying) within MEDIA_RESPONSE_TIMEOUT counts as
        # failed, so a dead one costs a caller that second, not silence.
        stages = []
        for n, index in enumerate(media.order(fwd.call_id)):
            target = await self._resolver.target(media.uris[index])
            plan = BranchPlan(uri=media.uri_for(handoff, index), target=target, flow=target)
            stage = Stage(payloads=(plan,), failover=n > 0, response_timeout=MEDIA_RESPONSE_TIMEOUT)
            stages.append(stage)
        if self._cdrs is not None and ctx.initial_invite and not ctx.cancelled:
            self._cdrs.to_media(fwd.call_id, decision)  # (a CANCEL first: it never got there)
        ctx.start(fwd, stages, self._config.timer_c)

    async def _to_gateway(
        self, ctx: RequestContext, fwd: Request, decision: Outbound | Forward, snap: Snapshot
    ) -> None:
        """The first gateway; the dialled/target number in the Request-URI (national form),
        our identity (PAI/From = the ID's presented number, or the dialled tenant number of a
        forward), History-Info and Diversion on a forward."""
        if not snap.gateways:
            ctx.reject(503)
            return
        gw = snap.gateways[0]
        if isinstance(decision, Outbound):
            dest, presented = decision.destination, decision.presented_number
            withhold = decision.withhold_identity
        else:
            dest, presented, withhold = decision.target, decision.presented_identity, False
        uri = outbound_request_uri(dest, gw)
        identity_headers(
            fwd.headers, presented_number=presented, realm=snap.realm, withhold=withhold
        )
        if isinstance(decision, Forward):
            forward_headers(fwd.headers, decision, snap.realm, uri)
            log.info(
                "call %s forwarded: %s -> %s (caller %s)",
                fwd.call_id, decision.number, decision.target, decision.original_caller,
            )  # fmt: skip
        parsed = parse_uri(uri)
        if not isinstance(parsed, SipURI):  # outbound_request_uri builds sip: URIs only
            raise ResolveError(f"not a SIP URI: {uri}", 500)
        target = await self._resolver.target(parsed)
        if isinstance(decision, Outbound) and decision.record:  # [recording]
            self._anchor(ctx, fwd, RecordingPlan(
                tenant_id=decision.tenant_id, number=decision.presented_number,
                direction="outbound", other_party=decision.destination,
                device_id=decision.device_id,
            ))  # fmt: skip
        self._one_branch(ctx, fwd, BranchPlan(uri=uri, target=target))

    def _one_branch(self, ctx: RequestContext, fwd: Request, plan: BranchPlan) -> None:
        ctx.start(fwd, [Stage(payloads=(plan,))], self._config.timer_c)

    # ---------------------------------------------------------------- channel leases
    async def _take_channel(
        self, ctx: RequestContext, fwd: Request, decision: Decision, inputs: CallInputs
    ) -> tuple[bool, bool]:
        """The tenant's channel lease (service rule: simultaneous calls = number of IDs),
        taken before forking; the state backend is the authority under a race. The call's
        record names the caller (number, else the calling ID) and the number dialled. A
        device's call to the carrier is counted as the ID's call in progress and in the
        day's counters (routing.caps) in the same write. (taken or not needed, counted)."""
        tenant_id = decision.tenant_id
        if not (decision.takes_channel and ctx.initial_invite and tenant_id):
            return True, False
        call = inputs.call
        also = daily = None
        if isinstance(decision, Outbound):
            also = device_lease_key(decision.device_id)
            daily = self._counting(decision, inputs) if self._counting is not None else None
        ok = await self._calls.acquire(
            tenant_id, fwd.call_id, inputs.snapshot.channels(tenant_id),
            caller=call.caller_number or call.device_id, called=call.dialled, also=also,
            daily=daily,
        )  # fmt: skip
        if ok:
            self._arm_sweep()
        return ok, ok and daily is not None

    def _lost_channel_race(self, inputs: CallInputs, lost: Decision) -> Decision:
        """Routing saw a free channel but another call took the last one first (the lease
        is the authority): ask routing again with the tenant's channels shown full, and
        carry out its answer under the rule "<rule>-lost-channel-race". An inbound call gets
        the busy treatment (voicemail or the busy message), a device's call 486."""
        tenant_id = lost.tenant_id
        assert tenant_id is not None  # _take_channel refuses only a tenant's decision
        limit = inputs.snapshot.channels(tenant_id)
        full = LiveState(
            registered=inputs.live.registered,
            channels={**inputs.live.channels, tenant_id: limit},
            usage=inputs.live.usage,
        )
        again = self._decide(inputs.call, inputs.snapshot, full, inputs.now)
        if again.takes_channel:  # a policy that ignores the channels: never a second race
            log.warning("call %s: routing chose a channel shown full", inputs.call.call_id)
            again = Reject(status=486, reason="Busy Here", rule="busy", tenant_id=tenant_id)
        return dataclasses.replace(again, rule=f"{lost.rule}-lost-channel-race")

    def _arm_sweep(self) -> None:
        """Expired leases leave the bookkeeping periodically while any lease is held."""
        if self._sweeping:
            return
        self._sweeping = True

        def sweep() -> None:
            self._sweeping = False
            expired = self._calls.sweep()
            if expired and self._cdrs is not None:
                self._cdrs.expired(expired)
            if self._calls.leases:
                self._arm_sweep()

        self._scheduler.call_later(min(self._config.lease_sweep, self._config.channel_ttl), sweep)

    # ---------------------------------------------------------------- metrics
    def _count(self, decision: Decision, call_id: str) -> None:
        """routing_decisions_total{rule}; routing's anomalies are logged for operators."""
        child = self._children.get(decision.rule)
        if child is None:
            child = self._children[decision.rule] = self._decisions.labels(decision.rule)
        child.inc()
        if decision.anomalies:
            log.warning("call %s: %s (%s)", call_id, decision.rule, decision.anomalies)


def _handoff(decision: Announce | Busy | Voicemail | VoicemailMenu, caller: str | None) -> HandOff:
    match decision:
        case Announce():
            return announce_handoff(decision, caller)
        case Busy():
            return busy_handoff(decision, caller)
        case Voicemail():
            return voicemail_decision_handoff(decision, caller)
        case VoicemailMenu():
            return menu_handoff(decision)
        case _:
            assert_never(decision)


# ==================================================================== metrics
_DECISION_COUNTERS: weakref.WeakKeyDictionary[Metrics, Counter] = weakref.WeakKeyDictionary()


def decisions_counter(metrics: Metrics) -> Counter:
    """`routing_decisions_total{rule}`: new calls (initial INVITEs) by the routing rule that
    fired (routing.decisions.Decision.rule), plus "<rule>-lost-channel-race" when the lease
    refused a channel routing thought free. Registered in the app's own registry, once per
    Metrics (a second proxy on the same Metrics shares it)."""
    counter = _DECISION_COUNTERS.get(metrics)
    if counter is None:
        counter = Counter(
            "routing_decisions_total",
            "Routing decisions for new calls by rule",
            ["rule"],
            registry=metrics.registry,
        )
        _DECISION_COUNTERS[metrics] = counter
    return counter

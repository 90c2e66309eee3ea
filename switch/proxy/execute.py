"""Carrying out routing decisions: the part of the proxy that turns a `routing.decisions`
Decision into branches, hand-offs and replies. How each decision is carried out is listed in
the proxy module docstring (switch/proxy/proxy.py); the media URI format in switch/handoff.py, the
forwarding headers in diversion.py; the lease lifecycle in leases.py.

`Executor` is a mixin of `Proxy`: it uses the proxy's sender, resolver, configuration,
`calls` (leases) and its `_start` (fork) and `_reject` (final reply).
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING

from prometheus_client import Counter

from provisioning.model import Device, Snapshot
from routing.call import Call
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
)
from switch.handoff import CAUSE_NO_ANSWER
from switch.sip.message import Request, parse_uri

from .diversion import (
    announce_handoff,
    busy_handoff,
    forward_headers,
    voicemail_decision_handoff,
    voicemail_handoff,
)
from .forking import Stage
from .targets import BranchPlan, plans_for
from .trunk import (
    called_party,
    device_identity,
    identity_headers,
    outbound_request_uri,
    prefix_display,
)

if TYPE_CHECKING:
    from switch.metrics import Metrics
    from switch.state.base import Binding
    from switch.tu import Sender

    from .leases import ActiveCalls
    from .proxy import ProxyConfig, _Call
    from .targets import Resolver

__all__ = ["Executor", "decisions_counter"]

log = logging.getLogger(__name__)


class Executor:
    """The decision half of the proxy (a mixin; see the module docstring)."""

    if TYPE_CHECKING:
        sender: Sender
        resolver: Resolver
        config: ProxyConfig
        calls: ActiveCalls
        decisions_total: Counter
        _sweeping: bool

        def _start(
            self,
            ctx: _Call,
            fwd: Request,
            stages: list[Stage[BranchPlan]],
            no_answer: tuple[float, int] | None,
            divert: BranchPlan | None = None,
        ) -> None: ...

        def _reject(
            self, ctx: _Call, status: int, reason: str | None, headers: list[tuple[str, str]]
        ) -> None: ...

    async def _execute(
        self,
        ctx: _Call,
        fwd: Request,
        decision: Decision,
        bindings: dict[str, list[Binding]],
        snap: Snapshot,
        device: Device | None,
        call: Call,
    ) -> None:
        """Carry out a routing Decision (one line each in the module docstring)."""
        if not await self._take_channel(ctx, fwd, decision, snap):
            await self._channels_lost(ctx, fwd, decision, snap, device, call)
            return
        if isinstance(decision, Reject):
            extra = []
            if decision.warning and device is not None:
                extra.append(("Warning", f'399 {snap.realm} "{decision.warning}"'))
            self._reject(ctx, decision.status, decision.reason, extra)
        elif isinstance(decision, Ring):
            await self._ring(ctx, fwd, decision, bindings, snap, call)
        elif isinstance(decision, Internal):
            if device is not None:
                device_identity(fwd.headers, device, snap.realm)
            if decision.via_number:
                called_party(fwd.headers, decision.via_number, snap.realm)
            self._start(ctx, fwd, [Stage(payloads=plans_for(decision.device_ids, bindings))], None)
        elif isinstance(decision, Outbound | Forward):
            await self._to_gateway(ctx, fwd, decision, snap)
        elif isinstance(decision, Announce | Busy | Voicemail):
            await self._to_media(ctx, fwd, decision, snap, call)
        else:  # a Decision type this proxy does not know: never guess
            self._reject(ctx, 500, None, [])

    async def _ring(
        self,
        ctx: _Call,
        fwd: Request,
        decision: Ring,
        bindings: dict[str, list[Binding]],
        snap: Snapshot,
        call: Call,
    ) -> None:
        """Timed stages (desk phones/ATAs, then apps while a desk branch is alive), the
        dialled number in P-Called-Party-ID, the label before the caller's display name, and
        the no-answer rule: a diversion to voicemail, else `status` after the ring time."""
        called_party(fwd.headers, decision.called_number, snap.realm)
        if decision.display_prefix:
            prefix_display(fwd.headers, decision.display_prefix)
        stages = [
            Stage(
                payloads=plans_for(s.device_ids, bindings),
                delay=s.delay_s,
                only_if_earlier_ringing=s.only_if_earlier_stage_ringing,
            )
            for s in decision.stages
        ]
        na = decision.no_answer
        divert = None
        media = self.config.media
        if na.action is NoAnswerAction.VOICEMAIL and na.mailbox and media is not None:
            uri = media.uri_for(voicemail_handoff(
                decision.tenant_id, decision.number, na.mailbox,
                call.caller_number, CAUSE_NO_ANSWER,
            ))  # fmt: skip
            media_target = await self.resolver.target(media.uri)
            # the media end's flow goes into our Record-Route token: the media service's own
            # in-dialog requests (its BYE) prove with it that the dialog is ours
            divert = BranchPlan(uri=uri, target=media_target, flow=media_target)
        self._start(ctx, fwd, stages, (na.after_s, na.status), divert)

    async def _to_media(
        self,
        ctx: _Call,
        fwd: Request,
        decision: Announce | Busy | Voicemail,
        snap: Snapshot,
        call: Call,
    ) -> None:
        """Hand the call to the media service (handoff.py). Without one configured (or for a
        request that is not an INVITE) the proxy never answers in its place: Busy gets 486,
        the others 480."""
        media = self.config.media
        if media is None or fwd.method != "INVITE":
            self._reject(ctx, 486 if isinstance(decision, Busy) else 480, None, [])
            return
        caller = call.caller_number
        if isinstance(decision, Announce):
            handoff = announce_handoff(decision, caller)
        elif isinstance(decision, Busy):
            handoff = busy_handoff(decision, caller)
        else:
            handoff = voicemail_decision_handoff(decision, caller)
        uri = media.uri_for(handoff)
        called_party(fwd.headers, decision.number, snap.realm)
        target = await self.resolver.target(media.uri)
        plan = BranchPlan(uri=uri, target=target, flow=target)  # flow: see _ring's divert
        self._start(ctx, fwd, [Stage(payloads=(plan,))], None)

    async def _channels_lost(
        self,
        ctx: _Call,
        fwd: Request,
        decision: Decision,
        snap: Snapshot,
        device: Device | None,
        call: Call,
    ) -> None:
        """Routing saw a free channel but another call took the last one first (the lease
        is the authority). A device's outbound call gets 486 with a Warning; an inbound call
        gets the busy treatment the policy would have chosen: voicemail when the number has
        it (not for a forwarding-ON call: voicemail does not act then), else the message."""
        if not isinstance(decision, Ring | Forward):
            warning = [("Warning", f'399 {snap.realm} "all channels are in use"')]
            self._reject(ctx, 486, None, warning if device is not None else [])
            return
        number = snap.numbers.get(decision.number)
        voicemail = number is not None and number.options.voicemail
        if isinstance(decision, Forward) and decision.rule == "inbound-forwarding":
            voicemail = False
        limit = snap.channels(decision.tenant_id)
        busy = Busy(
            tenant_id=decision.tenant_id,
            number=decision.number,
            then_voicemail=voicemail,
            mailbox=decision.number if voicemail else None,
            channels_in_use=limit,
            channels=limit,
            rule=f"{decision.rule}-lost-channel-race",
        )
        self.decisions_total.labels(rule=busy.rule).inc()
        await self._to_media(ctx, fwd, busy, snap, call)

    async def _take_channel(
        self, ctx: _Call, fwd: Request, decision: Decision, snap: Snapshot
    ) -> bool:
        """The tenant's channel lease (service rule: simultaneous calls = number of IDs),
        taken before forking; the state backend is the authority under a race."""
        tenant_id = getattr(decision, "tenant_id", None)
        if not (decision.takes_channel and ctx.initial_invite and tenant_id):
            return True
        limit = snap.channels(tenant_id)
        ok = await self.calls.acquire(tenant_id, fwd.call_id, limit)
        if ok:
            self._arm_sweep()
        return ok

    def _arm_sweep(self) -> None:
        """Expired leases leave the bookkeeping periodically while any lease is held."""
        if self._sweeping:
            return
        self._sweeping = True

        def sweep() -> None:
            self._sweeping = False
            self.calls.sweep()
            if self.calls.leases:
                self._arm_sweep()

        self.sender.call_later(min(self.config.lease_sweep, self.config.channel_ttl), sweep)

    async def _to_gateway(
        self, ctx: _Call, fwd: Request, decision: Outbound | Forward, snap: Snapshot
    ) -> None:
        """The first gateway; the dialled/target number in the Request-URI (national form),
        our identity (PAI/From = the ID's presented number, or the dialled tenant number of a
        forward), History-Info and Diversion on a forward."""
        if not snap.gateways:
            self._reject(ctx, 503, None, [])
            return
        gw = snap.gateways[0]
        if isinstance(decision, Outbound):
            dest, presented, withhold = (
                decision.destination,
                decision.presented_number,
                decision.withhold_identity,
            )
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
        target = await self.resolver.target(parse_uri(uri))  # type: ignore[arg-type]
        self._start(ctx, fwd, [Stage(payloads=(BranchPlan(uri=uri, target=target),))], None)


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

"""The stateful forking proxy (RFC 3261 §16): the transaction user for every request that is
not a REGISTER.

Wiring (switch/wiring.py `make_proxy`)::

    proxy = Proxy(
        sender=sender,                  # switch.tu.Sender
        snapshot=lambda: current_snapshot,  # the live provisioning Snapshot, read per call
        state=state_backend,            # switch.state.base.StateBackend (bindings)
        authenticator=authenticator,    # DigestAuthenticator for the snapshot's realm
        metrics=metrics,                # switch.metrics.Metrics
        config=ProxyConfig(),           # optional; see ProxyConfig
    )

Optional keywords: `anchors` (anchor.MediaAnchors: the RTP relay recorded calls go
through; None: no call is anchored, none recorded), `decide` (the routing policy; default
`routing.policy.decide`),
`resolver` (targets.Resolver), `wall_clock` (epoch seconds, default time.time: the one wall
clock of the proxy - the state backend's deadlines, digest nonces, and routing's `now`, a
UTC datetime made from it), `flow_tokens` (targets.FlowTokens; give every node the same
secret when several nodes share dialogs), `peers` (targets.Peers: the other nodes' live
processes, whose paths are followed and whose dialogs are taken over once they are gone),
`call_records` and `cdr_sink` (billing.cdr.CallRecords and where finished records go,
`CdrWriter.submit` in switch/node.py; both or neither: without them the proxy keeps no call
records). cdrs.py lists where each of the tracker's events comes from; `dialog_ended` ends a
call the switch itself ends.

Modules: this one is the TransactionUser (the processing order below); context.py the
per-request context (RequestContext: the fork's hooks, replies, outcome counts); execute.py
carries decisions out (DecisionExecutor); outgoing.py builds what leaves (Record-Route, Via);
routeset.py reads the route set; messages.py holds the message checks and edits; auth.py the
digest check shared with the registrar; trunk.py the carrier side; forking.py the fork.

Processing of a request (§16.3-16.6), in order:
1. CANCEL is hop-by-hop: 200 to the CANCEL, the INVITE's branches are cancelled (§16.10),
   481 when it matches nothing.
2. Validation: Max-Forwards 0 -> 483 (an OPTIONS to us is answered); loop detection -> 482
   (our Via branches end in ".<loop hash>", §16.6 step 8, RFC 5393 style); Proxy-Require -> 420.
3. Route preprocessing (§16.4): the strict-router fix, then every top Route that is ours is
   removed. Our Record-Route URIs may carry a flow token (targets.FlowTokens) naming the
   flows of both dialog ends that are registered devices, so that in-dialog requests reach a
   device behind NAT on its registration flow.
4. Requests to the switch itself (our host, no user part, no Route left) are answered here.
5. In-dialog requests (To tag) are not challenged (§22: credentials are per request and
   endpoints do not resend them in a dialog). With Record-Route on (the default) we are in
   the route set of every dialog we proxy, so the route set decides (routeset.Routed):
   a. No Route of ours: not a dialog we are in (a UA that ignored our Record-Route, or a
      request meant for another hop). 404 Not Here, never relayed, whoever sends it, the
      trusted carrier included - as Kamailio's reference configuration does when
      loose_route() fails. Relaying it would make us a relay for anything with a To tag
      (and a request aimed back at us came back as 482 Loop Detected). An ACK is dropped
      and counted (sip_messages_dropped_total{reason="ack_not_here"}).
   b. Our Route with a valid flow token of this Call-ID: to the flow it names, else the
      next hop (first Route, else Request-URI).
   c. Our Route without a valid token: relayed to the next hop for the carrier (a dialog
      with no device end: carrier to media service, a forwarded call); 403 for anyone else
      (a device could otherwise reach the trunk with a replayed or forged Route and no
      credentials; an ACK is dropped, reason "ack_not_in_dialog").
   d. No Route of ours, but the first Route is another node's with a valid token of this
      dialog (nodes sharing the flow secret, routeset.py): relayed to that node, which holds
      the call (its lease, its call record, its keep-alives) and the devices' flows. A BYE
      that lands on the wrong node (DNS or a VIP moved) still ends the call where it is.
      When that node is known dead (`peers`), its Route counts as ours (b. above): the
      request goes where the token says and a BYE releases the call's channel through the
      call's shared record (leases.py).
   With Record-Route off, in-dialog requests follow their Route/Request-URI unchecked.
5'. An initial request with our Route holding a path token (targets.NodePaths) was routed by
   another node to a device whose flow we hold: forwarded down that flow as it is, with our
   Record-Route, and nothing else (no authentication, routing, lease or call record: the
   node that routed it did all that, and it alone holds the call).
6. Out-of-dialog requests: a carrier gateway is trusted; anyone else must authenticate with
   Proxy-Authorization (407, counted in sip_auth_failures_total when credentials fail; 403
   unverified from a source banned for password guessing, bans.py).
   The P-Asserted-Identity of a device is removed (RFC 3325 trust boundary). Routing is
   asked twice with one `Call` (the dialled string classified once): `routing.needs` says
   which live state to load - the registrations of the IDs concerned and, for an INVITE, the
   tenant's leases, from the state backend (never a database query) - and `decide` returns
   a Decision (routing.decisions), counted in `routing_decisions_total{rule}` (new calls
   only). The DecisionExecutor (execute.py) carries it out:

Decisions
---------
- Reject: its status; a Warning `399 <realm> "<text>"` only towards devices (the carrier
  learns nothing of our reasons).
- Ring: take the channel lease, then fork to every live binding of the stage's IDs (sent to
  the binding's flow, not its Contact): stage 0 (desk phones/ATAs) at once, the apps' stage
  after the number's app-ring delay but only while a desk branch is alive (forking.Stage).
  Every branch carries P-Called-Party-ID `<sip:+81…@realm;user=phone>` (RFC 3455) with the
  dialled number and, when enabled, the number's label before the caller's display name.
  No answer: with voicemail (and a media service) the fork diverts after the voicemail ring
  time - CANCELs every device branch and sends the call to the voicemail URI with cause=408;
  it also diverts at once when every device refused before that. Without voicemail: CANCEL
  and 480 after the maximum ring time.
- Forward: take the channel lease; one branch to the first gateway, the target (national
  form) in the Request-URI, P-Asserted-Identity and From = the dialled tenant number
  (trunk.identity_headers), History-Info (RFC 7044) and Diversion (RFC 5806) naming the
  tenant number as the diverting party (diversion.py explains why the caller's own number is
  in neither). No device rings; registrations are not needed; nothing is recorded.
- Outbound: take the channel lease; the first gateway, the dialled number in the
  Request-URI, the ID's presented number as P-Asserted-Identity/From (Privacy: id for 184).
- Internal: the target IDs' bindings in one stage, our P-Asserted-Identity of the caller,
  P-Called-Party-ID when dialled via a tenant number; no channel.
- Announce / Busy / Voicemail: one branch to the media service (`ProxyConfig.media`, the
  `[media] uri` setting) with the service and its parameters in the Request-URI (format in
  switch/handoff.py: `sip:announce@…;prompt=…;then=voicemail|hangup;mailbox=…;tenant=…;
  target=…;caller=…;sig=…`, `sip:busy@…;prompt=busy;…;cause=486`,
  `sip:voicemail@…;mailbox=…;cause=…`), signed with the secret shared with media.
  Busy with voicemail goes to the mailbox; without, the fixed busy message. These take no
  channel (the media service is ours). With no media service configured the proxy never
  answers in its place: Busy gets 486, Announce/Voicemail 480.
- Lost channel race (routing saw a free channel, the atomic lease says no): routing is asked
  again with the tenant's channels shown full and its answer is carried out, counted under
  the rule "<rule>-lost-channel-race": an inbound call gets the Busy treatment above, a
  device's call 486 with a Warning.

Channel leases (leases.py): taken atomically before forking/forwarding, released on any
final failure (CANCEL included) and when a BYE passes - also on a process that did not take
it (the lease's call record in the state backend names the tenant), refreshed by every other
in-dialog request, TTL `channel_ttl` (2 h) or, with Session-Expires negotiated (RFC 4028),
the session interval + `session_margin` (32 s); a lease nobody refreshes expires by itself.

Dialog liveness (dialogs.py): the first 2xx of a new call we record-routed starts in-dialog
OPTIONS keep-alives towards both ends (`keepalive_interval`, 60 s); a failed one (408, 481,
no answer within `keepalive_timeout`) ends the call - BYE both ways, then `dialog_ended`
(the lease released like after a BYE). `end_call` is the operator's way to the same end.

Failures: a request the proxy cannot forward (a malformed header, a next hop that does not
resolve) gets the error's status hint; an unreachable state backend (StateUnavailable) 503
with Retry-After. A new call is counted "failed" and a lease it took is given back.

Responses (§16.7) go through forking.Fork: provisional (not 100) and every 2xx forwarded at
once, 6xx cancels the other branches, otherwise the best final when all branches are done
(503 -> 500, 401/407 challenges merged), 487 after a CANCEL. CANCELs sent because another
branch answered carry `Reason: SIP;cause=200`. Timer C is `ProxyConfig.timer_c`.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from billing.cdr import CallRecords
from provisioning.model import Device, Snapshot
from routing.call import LiveState
from routing.caps import DEFAULT_LIMITS, OutboundLimits, OutboundUsage
from routing.decisions import Outbound
from routing.needs import needs
from routing.policy import decide as policy_decide
from switch.sip.digest import DigestAuthenticator
from switch.sip.message import ParseError, Request, Response, SipURI
from switch.sip.target import Target
from switch.sip.transaction import ClientTransaction, ServerTransaction
from switch.state.base import DailyCount, StateUnavailable

from .anchor import MediaAnchors
from .auth import Authenticated, Refused, check, remove_our_credentials
from .bans import AuthGuard
from .cdrs import CdrEvents, CdrSink
from .config import ProxyConfig
from .context import RequestContext
from .dialogs import DialogWatch, Probe
from .execute import CallInputs, Decide, DecisionExecutor
from .forking import Stage
from .leases import ActiveCalls, session_interval
from .messages import (
    ALLOW,
    Refusal,
    check_request,
    decrement_max_forwards,
    local_answer,
    loop_hash,
)
from .outgoing import Outgoing
from .routeset import Routed, next_hop_uri, preprocess_routes
from .targets import BranchPlan, FlowTokens, Peers, ResolveError, Resolver, via_target
from .trunk import call_for, gateway_for
from .usage import OutboundBook

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from switch.metrics import Metrics
    from switch.state.base import StateBackend
    from switch.tu import Sender

__all__ = ["ALLOW", "BranchPlan", "Proxy", "ProxyConfig"]


class Proxy:
    """The proxy TU. See the module docstring for the wiring and the processing order."""

    def __init__(
        self,
        *,
        sender: Sender,
        snapshot: Callable[[], Snapshot],
        state: StateBackend,
        authenticator: DigestAuthenticator,
        metrics: Metrics,
        config: ProxyConfig | None = None,
        decide: Decide | None = None,
        resolver: Resolver | None = None,
        wall_clock: Callable[[], float] = time.time,
        flow_tokens: FlowTokens | None = None,
        guard: AuthGuard | None = None,
        limits: OutboundLimits = DEFAULT_LIMITS,
        anchors: MediaAnchors | None = None,
        call_records: CallRecords | None = None,
        cdr_sink: CdrSink | None = None,
        peers: Peers | None = None,
    ) -> None:
        self.sender = sender
        # several nodes: which of the others' processes are alive (targets.Peers)
        self.peers = peers
        self.guard = guard
        self.snapshot = snapshot
        self.state = state
        self.auth = authenticator
        self.metrics = metrics
        self.config = config = config or ProxyConfig()
        self.decide: Decide = decide or functools.partial(policy_decide, limits=limits)
        self.resolver = resolver or Resolver(sender.now)
        self.wall_clock = wall_clock
        self.flows = flow_tokens or FlowTokens()
        self.calls = ActiveCalls(
            metrics, state, wall_clock, config.max_dialogs,
            default_ttl=config.channel_ttl, session_margin=config.session_margin,
        )  # fmt: skip
        self.out = Outgoing(sender, self.flows, metrics, record_route=config.record_route)
        self.book = OutboundBook(state, self.calls, limits, metrics)
        # [recording] recorded calls' media through the relay (anchor.py); deleted there when
        # the call ends here (failure, BYE, lease expiry)
        self.anchors = anchors
        if anchors is not None:
            self.calls.on_end = anchors.ended
        # [cdr] the call records (cdrs.py); None: none kept
        self.cdrs: CdrEvents | None = None
        if (call_records is None) != (cdr_sink is None):
            raise ValueError("call_records and cdr_sink go together")
        if call_records is not None and cdr_sink is not None:
            self.cdrs = CdrEvents(
                call_records, cdr_sink, snapshot=snapshot, wall_clock=wall_clock, scheduler=sender
            )
        # dialog liveness (dialogs.py): keep-alives, BYE both ways when an end is gone
        self.dialogs = DialogWatch(
            sender, self.resolver, metrics, self._is_ours, interval=config.keepalive_interval,
            timeout=config.keepalive_timeout, limit=config.max_dialogs,
        )  # fmt: skip
        self.dialogs.on_end = self._watch_ended
        # new calls not answered yet, by Call-ID (an operator may end one: CANCEL); a
        # context leaves by itself once its fork is over and released (context.release)
        self._new_calls: weakref.WeakValueDictionary[str, RequestContext] = (
            weakref.WeakValueDictionary()
        )
        self.executor = DecisionExecutor(
            scheduler=sender, resolver=self.resolver, config=config, calls=self.calls,
            metrics=metrics, decide=self.decide, started=self._outbound_started,
            counting=self._outbound_counting, anchors=anchors, cdrs=self.cdrs, peers=peers,
        )  # fmt: skip

    # ================================================================ TransactionUser
    async def on_request(
        self,
        txn: ServerTransaction,
        request: Request,
        source: Target,
        cancelled: ServerTransaction | None,
    ) -> None:
        if request.method == "CANCEL":
            self._on_cancel(txn, cancelled)
            return
        ctx = RequestContext(self.out, self.calls, txn, source, self.cdrs)
        ctx.watch = self.dialogs
        txn.user_data = ctx
        try:
            await self._process(ctx, request)
        except (ParseError, ResolveError) as exc:
            ctx.fail(exc.status_hint)
        except StateUnavailable as exc:
            # Registrations and leases are unreachable (Redis down): a temporary failure,
            # never a stuck transaction (state/base.py, Failures); Retry-After as the glue
            # answers for any TU (switch.tu.Unavailable, RFC 3261 §21.5.4).
            log.warning("state backend unavailable: %s", exc)
            ctx.fail(exc.status_hint, [("Retry-After", str(exc.retry_after))])

    async def on_ack(self, request: Request, source: Target) -> None:
        """ACK for a 2xx: forwarded statelessly along the route set (§16.11: stateless
        forwarding; the branch is derived from the incoming one so that retransmitted ACKs
        carry the same branch)."""
        try:
            lh = loop_hash(request)
            if check_request(request, lh, self.sender.is_local) is not None:
                return
            received_branch = request.top_via.branch
            # No transaction keeps an ACK (the layer hands it over and forgets it): edit the
            # received one in place instead of a copy.
            fwd = request
            stand_in = self.peers.gone if self.peers is not None else None
            routed = preprocess_routes(fwd, source, self._is_ours, self.flows, stand_in)
            if self._is_local_target(fwd):
                return  # an ACK for a 2xx we sent ourselves: nothing to do
            refusal = self._dialog_refusal(routed, source)
            if refusal is not None:  # no reply to an ACK: dropped and counted
                reason = "ack_not_here" if refusal[0] == 404 else "ack_not_in_dialog"
                self.metrics.messages_dropped_total.labels(reason=reason).inc()
                return
            decrement_max_forwards(fwd)
            target = routed.flow or await self.resolver.target(next_hop_uri(fwd))
            seed = received_branch.encode() if received_branch else b""
            branch = "z9hG4bK" + hashlib.blake2b(seed, digest_size=8).hexdigest()
            self.out.push_via(fwd, target, branch + "." + lh)
            self.sender.send_stateless(fwd, target)
        except (ParseError, ResolveError):
            self.metrics.messages_dropped_total.labels(reason="ack_unroutable").inc()

    def on_response(self, txn: ClientTransaction, response: Response, source: Target) -> None:
        ud = txn.user_data
        if isinstance(ud, tuple):  # (context, branch); None: the response to our CANCEL
            ud[0].on_response(ud[1], response)
        elif isinstance(ud, Probe):  # a keep-alive or BYE of ours (dialogs.py)
            self.dialogs.on_response(ud, response)

    def on_timeout(self, txn: ClientTransaction) -> None:
        ud = txn.user_data
        if isinstance(ud, tuple):
            ud[0].on_timeout(ud[1])
        elif isinstance(ud, Probe):
            self.dialogs.on_timeout(ud)

    def on_stray_response(
        self, response: Response, source: Target, txn: ClientTransaction | None
    ) -> None:
        """2xx retransmissions and further forks' 2xx on a transaction in the Accepted state
        (RFC 6026 §8.4): forwarded statelessly to the next Via once ours is removed.

        A response that matches no transaction at all is dropped (RFC 6026 §7.5 replaces
        RFC 3261 §16.7's stateless forwarding: the Accepted state now covers late 2xx, and a
        proxy that relays anything with our Via on top is an open reflector - anyone could
        make it send a body of their choosing to the address in the second Via).
        `[proxy] forward_stray_responses = true` restores the RFC 3261 behaviour."""
        if txn is None and not self.config.forward_stray_responses:
            self.metrics.messages_dropped_total.labels(reason="stray_response").inc()
            return
        vias = response.headers.vias()
        if response.status >= 300 or len(vias) < 2:
            return
        if not self.sender.is_local(vias[0].host, vias[0].port):
            return
        response.headers.pop_first_value("Via")
        if self.anchors is not None:  # [recording] the SDP the caller got the first time
            self.anchors.rewrite_stray(response)
        self.sender.send_stateless(response, via_target(vias[1]))

    # ================================================================ calls the switch ends
    def _watch_ended(self, call_id: str, reason: str) -> None:
        self.dialog_ended(call_id, reason=reason)

    def end_call(self, call_id: str) -> bool:
        """Operator: end the call - BYE both ways when this process holds its dialog; a call
        still ringing here is cancelled (CANCEL to its branches, 487 to the caller, the
        lease given back as for any failure); and its lease is released in any case (found
        by its record when another process took it). True when the call was ended here."""
        if self.dialogs.end(call_id, "operator"):
            return True
        ringing = self._new_calls.get(call_id)
        fork = None if ringing is None else ringing.fork
        if ringing is not None and fork is not None and not (fork.answered or fork.finished):
            log.info("call %s: cancelled by the operator", call_id)
            self.metrics.dialogs_ended_total.labels("operator").inc()
            ringing.cancel()
            return True
        self.dialog_ended(call_id, reason="operator")
        return False

    # ================================================================ processing
    def _on_cancel(self, txn: ServerTransaction, invite: ServerTransaction | None) -> None:
        """§16.10: answer the CANCEL, then cancel the INVITE's branches."""
        if invite is None:
            self.out.reply(txn, 481)
            return
        self.out.reply(txn, 200)
        ctx = invite.user_data
        if isinstance(ctx, RequestContext):
            ctx.cancel()
        elif invite.last_response is None or invite.last_response.status < 200:
            self.out.reply(invite, 487)

    async def _process(self, ctx: RequestContext, request: Request) -> None:
        ctx.loop = loop_hash(request)
        refusal = check_request(request, ctx.loop, self.sender.is_local)
        if refusal is not None:
            if refusal[0] == 483 and request.method == "OPTIONS" and self._is_local_target(request):
                self._answer_locally(ctx.txn, request)
            else:
                self.out.reply(ctx.txn, *refusal)
            return
        fwd = request.copy()
        stand_in = self.peers.gone if self.peers is not None else None
        routed = preprocess_routes(fwd, ctx.source, self._is_ours, self.flows, stand_in)
        if self._is_local_target(fwd):
            self._answer_locally(ctx.txn, fwd)
            return
        decrement_max_forwards(fwd)
        if request.to_tag is not None:
            refusal = self._dialog_refusal(routed, ctx.source)
            if refusal is not None:
                self.out.reply(ctx.txn, *refusal)
                return
            await self._in_dialog(ctx, fwd, routed.flow)
        elif routed.path and routed.flow is not None:
            self._for_peer(ctx, fwd, routed.flow)
        else:
            await self._out_of_dialog(ctx, fwd)

    def _dialog_refusal(self, routed: Routed, source: Target) -> Refusal | None:
        """The in-dialog rule of step 5 (module docstring): None when the request may follow
        its route set, else the reply: 404 Not Here without a Route of ours, 403 with our
        Route but no valid flow token from anyone but the carrier."""
        if not self.config.record_route:
            return None
        if routed.peer:
            self.metrics.node_relays_total.labels("peer").inc()
            return None
        if not routed.ours:
            return 404, "Not Here", []
        if routed.token or gateway_for(self.snapshot(), source.host, source.port) is not None:
            return None
        return 403, None, [("Warning", '399 - "not a dialog of ours"')]

    def _is_ours(self, uri: SipURI) -> bool:
        """A URI we placed in a Record-Route (our address; no user part or a flow token)."""
        if uri.user is not None and not uri.user.startswith("f-"):
            return False
        return self.sender.is_local(uri.host, uri.port)

    def _is_local_target(self, req: Request) -> bool:
        """Addressed to the switch itself: our host (address or domain), no user, no Route."""
        if "Route" in req.headers:
            return False
        uri = req.parsed_uri
        if not isinstance(uri, SipURI) or uri.user is not None:
            return False
        if self.sender.is_local(uri.host, uri.port):
            return True
        return uri.host == self.snapshot().realm or uri.host in self.config.domains

    def _answer_locally(self, txn: ServerTransaction, req: Request) -> None:
        self.out.reply(txn, *local_answer(req.method))

    async def _in_dialog(self, ctx: RequestContext, fwd: Request, flow: Target | None) -> None:
        """A request inside a dialog follows the route set (loose routing, §16.12)."""
        target = flow or await self.resolver.target(next_hop_uri(fwd))
        self.dialogs.seen(fwd)
        if fwd.method == "BYE":
            self.dialog_ended(fwd.call_id, reason="bye")
        else:
            # Any in-dialog request proves the call is alive (leases.py); a session-timer
            # refresh carries the interval it asks for.
            self.calls.touch(fwd.call_id, session_interval(fwd.headers))
            if self.cdrs is not None:
                self.cdrs.touched(fwd.call_id)
        plan = BranchPlan(uri=fwd.uri, target=target)
        if self.anchors is not None:  # [recording] a re-INVITE/UPDATE offer of an anchored call
            ctx.media = self.anchors.in_dialog(fwd)
        ctx.start(fwd, [Stage(payloads=(plan,))], self.config.timer_c)

    def _for_peer(self, ctx: RequestContext, fwd: Request, flow: Target) -> None:
        """Step 5': another node routed this initial request to a flow we hold."""
        self.metrics.node_relays_total.labels("path_received").inc()
        ctx.caller_flow = ctx.source  # the other node: the far end of our Record-Route token
        plan = BranchPlan(uri=fwd.uri, target=flow, flow=flow)
        ctx.start(fwd, [Stage(payloads=(plan,))], self.config.timer_c)

    async def _out_of_dialog(self, ctx: RequestContext, fwd: Request) -> None:
        snap = self.snapshot()
        gw = gateway_for(snap, ctx.source.host, ctx.source.port)
        device: Device | None = None
        if gw is None:
            device = await self._authenticate(ctx, fwd, snap)
            if device is None:
                return
            fwd.headers.remove("P-Asserted-Identity")  # RFC 3325: not trusted from devices
            remove_our_credentials(fwd.headers, self.auth.realm)
            ctx.caller_flow = ctx.source
        ctx.initial_invite = fwd.method == "INVITE"
        if ctx.initial_invite:
            self._new_calls[fwd.call_id] = ctx
        inputs = await self._inputs(fwd, snap, device, gw.id if gw else None)
        decision = self.decide(inputs.call, snap, inputs.live, inputs.now)
        if ctx.initial_invite:
            self.book.observe(decision, device.id if device is not None else None)
            if self.cdrs is not None:
                self.cdrs.started(fwd.call_id, decision, inputs, fwd)
        await self.executor.execute(ctx, fwd, inputs, decision)

    def dialog_ended(self, call_id: str, *, reason: str, status: int = 200) -> None:
        """The call `call_id` is over: a BYE passed (reason "bye"), or the switch itself ended
        it ("keepalive": the dialog stopped answering; "operator": hung up by an operator).
        Its channel lease is released, its recording closed and its call record finished
        with `reason` and `status`, and handed to the sink. Unknown or already ended
        Call-IDs change nothing (a BYE retransmission, another node's call)."""
        self.calls.ended(call_id)
        if self.cdrs is not None:
            self.cdrs.ended(call_id, status, reason)

    async def _outbound_started(self, decision: Outbound, call_id: str, inputs: CallInputs) -> None:
        await self.book.started(decision, call_id, inputs.snapshot, self.wall_clock())

    def _outbound_counting(self, decision: Outbound, inputs: CallInputs) -> DailyCount:
        return self.book.daily(decision, inputs.snapshot, self.wall_clock())

    async def _inputs(
        self, fwd: Request, snap: Snapshot, device: Device | None, gateway_id: str | None
    ) -> CallInputs:
        """The routing input: the Call, and the live state routing says it needs."""
        call = call_for(fwd, device, gateway_id)
        need = needs(call, snap)
        wall = self.wall_clock()
        tenant = need.tenant_id if need.channels and fwd.method == "INVITE" else None
        # one round trip on Redis (was one per ID plus one for the channels), with a device's
        # outbound usage (the toll-fraud caps) when routing needs it
        usage: dict[str, OutboundUsage] = {}
        if need.usage_of and need.tenant_id is not None and fwd.method == "INVITE":
            query = self.book.query(snap, need.tenant_id, need.usage_of, wall)
            bindings, in_use, found = await self.state.outbound_lookup(
                list(need.device_ids), tenant, wall, query
            )
            usage[need.usage_of] = self.book.usage(found)
        else:
            bindings, in_use = await self.state.routing_lookup(list(need.device_ids), tenant, wall)
        self.calls.backend_answered()
        channels = {}
        if tenant is not None and in_use is not None:
            # leases of calls over whose release is still being retried are not in use
            channels[tenant] = max(0, in_use - self.calls.releasing(tenant))
        registered = frozenset(d for d, bs in bindings.items() if bs)
        live = LiveState(registered=registered, channels=channels, usage=usage)
        now = datetime.fromtimestamp(wall, UTC)
        return CallInputs(
            call=call, snapshot=snap, live=live, now=now, bindings=bindings, device=device
        )

    async def _authenticate(
        self, ctx: RequestContext, req: Request, snap: Snapshot
    ) -> Device | None:
        """Proxy-Authorization (RFC 3261 §22.3, auth.py). None when a 407 (or the guard's
        403) was sent."""
        values = req.headers.get_fields("Proxy-Authorization")
        outcome = await check(
            values, req.method, snap, self.auth, self.wall_clock(),
            guard=self.guard, host=ctx.source.host,
        )  # fmt: skip
        if isinstance(outcome, Authenticated):
            return outcome.device
        if isinstance(outcome, Refused):
            warning = f'399 {snap.realm} "too many failed authentications; try again later"'
            self.out.reply(ctx.txn, 403, None, [("Warning", warning)])
            return None
        for reason in outcome.failures:
            self.metrics.auth_failures_total.labels(reason=reason).inc()
        self.out.reply(ctx.txn, 407, None, [("Proxy-Authenticate", c) for c in outcome.values])
        return None

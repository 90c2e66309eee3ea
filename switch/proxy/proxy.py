"""The stateful forking proxy (RFC 3261 §16): the transaction user for every request that is
not a REGISTER.

Wiring (switch/app.py)::

    proxy = Proxy(
        sender=sender,                  # switch.proxy.interfaces.Sender
        snapshot=lambda: current_snapshot,  # the live provisioning Snapshot, read per call
        state=state_backend,            # switch.state.base.StateBackend (bindings)
        authenticator=authenticator,    # DigestAuthenticator for the snapshot's realm
        metrics=metrics,                # switch.metrics.Metrics
        config=ProxyConfig(),           # optional; see ProxyConfig
    )

Optional keywords: `decide` (the routing policy; default `routing.policy.decide`;
`trunk.simple_decide` has the same signature and ignores the service rules), `resolver`
(targets.Resolver), `wall_clock` (epoch seconds for the state backend and digest nonces;
default time.time), `flow_tokens` (targets.FlowTokens; give every node the same secret when
several nodes share dialogs).

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
5. In-dialog requests (To tag) are not challenged; they go to the flow named by our
   Route's flow token, else the next hop (first Route, else Request-URI). From anyone but
   the carrier they must carry a valid token of the same Call-ID (403 otherwise): without
   it a device could reach the trunk with a forged To tag and no credentials.
6. Out-of-dialog requests: a carrier gateway is trusted; anyone else must authenticate with
   Proxy-Authorization (407, counted in sip_auth_failures_total when credentials fail).
   The P-Asserted-Identity of a device is removed (RFC 3325 trust boundary). The routing
   policy gets a `Call` and a `LiveView` built from memory only (the provisioning snapshot,
   the registrations of the IDs concerned and the tenant's leases from the state backend;
   never a database query) and returns a Decision (routing.decisions), counted in
   `routing_decisions_total{rule}` (new calls only). `_execute` carries it out:

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
- Lost channel race (routing saw a free channel, the atomic lease says no): an inbound Ring
  or Forward gets the Busy treatment above (rule "<rule>-lost-channel-race"); a device's
  call 486 with a Warning.

Channel leases (leases.py): taken atomically before forking/forwarding, released on any
final failure (CANCEL included) and when a BYE passes, refreshed by every other in-dialog
request, TTL `channel_ttl` (2 h) or, with Session-Expires negotiated (RFC 4028), the session
interval + `session_margin` (32 s); a lease nobody refreshes expires by itself.

Responses (§16.7) go through forking.Fork: provisional (not 100) and every 2xx forwarded at
once, 6xx cancels the other branches, otherwise the best final when all branches are done
(503 -> 500, 401/407 challenges merged), 487 after a CANCEL. CANCELs sent because another
branch answered carry `Reason: SIP;cause=200`. Timer C is `ProxyConfig.timer_c`.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from provisioning.model import Device, Snapshot
from routing.call import Call, LiveState, LiveView
from routing.decisions import (
    Decision,
)
from routing.policy import decide as policy_decide
from switch.sip.digest import DigestAuthenticator
from switch.sip.message import (
    ParseError,
    Request,
    Response,
    SipURI,
    make_response,
)
from switch.sip.target import Target, new_branch
from switch.sip.transaction import ClientTransaction, ServerTransaction
from switch.state.base import StateUnavailable

from .dialogs import (
    ActiveCalls,
    aggregate_challenges,
    cancel_for,
    decrement_max_forwards,
    loop_hash,
    outcome_label,
    preprocess_routes,
)
from .diversion import MediaService
from .execute import Executor, decisions_counter
from .forking import DEFAULT_TIMER_C, Branch, Fork, Stage
from .leases import DEFAULT_CHANNEL_TTL, SESSION_MARGIN, session_interval
from .targets import BranchPlan, FlowTokens, ResolveError, Resolver, via_target
from .trunk import (
    call_for,
    candidates,
    gateway_for,
)

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from switch.metrics import Metrics
    from switch.state.base import Binding, StateBackend
    from switch.tu import Sender

__all__ = ["ALLOW", "BranchPlan", "Proxy", "ProxyConfig"]

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, INFO, UPDATE, PRACK, REFER, NOTIFY, SUBSCRIBE"
_KNOWN_METHODS = frozenset(m.strip() for m in ALLOW.split(",")) | {"REGISTER", "PUBLISH"}
_DIALOG_CREATING = frozenset({"INVITE", "SUBSCRIBE", "REFER"})
Decide = Callable[[Call, Snapshot, LiveView, datetime], Decision]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyConfig:
    """Tunables. `timer_c` must exceed 180 s (§16.6 step 11). `domains`: host names that
    mean "this service" besides the snapshot's realm and our listening addresses."""

    timer_c: float = DEFAULT_TIMER_C
    domains: tuple[str, ...] = ()
    record_route: bool = True
    max_dialogs: int = 200_000  # answered calls tracked for sip_calls_active / leases
    # Channel lease TTL without session timers; refreshed by every in-dialog request
    # (leases.py). With Session-Expires: the interval + session_margin.
    channel_ttl: float = DEFAULT_CHANNEL_TTL
    session_margin: float = SESSION_MARGIN
    lease_sweep: float = 30.0  # how often expired leases leave the proxy's bookkeeping
    media: MediaService | None = None  # [media] uri: announcements, busy message, voicemail
    forward_stray_responses: bool = False  # RFC 3261 §16.7 stateless relay of unmatched ones

    def __post_init__(self) -> None:
        if self.timer_c <= 180:
            raise ValueError("Timer C must be greater than 3 minutes (RFC 3261 §16.6)")
        if self.channel_ttl <= 0 or self.session_margin < 0 or self.lease_sweep <= 0:
            raise ValueError("channel_ttl and lease_sweep > 0, session_margin >= 0 required")

    @classmethod
    def from_sections(cls, proxy: Mapping[str, Any], media: Mapping[str, Any]) -> ProxyConfig:
        """The `[proxy]` and `[media]` sections of the configuration file (passed through by
        switch.config as Config.extra). Unknown keys are errors, like everywhere else."""
        known = {
            "timer_c", "channel_ttl", "session_margin", "lease_sweep", "record_route",
            "forward_stray_responses",
        }  # fmt: skip
        unknown = sorted(set(proxy) - known)
        unknown += sorted(f"media.{k}" for k in set(media) - {"uri", "secret"})
        if unknown:
            raise ValueError(f"unknown configuration keys: {', '.join(unknown)}")
        changes: dict[str, Any] = {}
        for key in ("timer_c", "channel_ttl", "session_margin", "lease_sweep"):
            if key in proxy:
                value = proxy[key]
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"proxy.{key}: a number of seconds expected")
                changes[key] = float(value)
        for key in ("record_route", "forward_stray_responses"):
            if key in proxy:
                if not isinstance(proxy[key], bool):
                    raise ValueError(f"proxy.{key}: true or false expected")
                changes[key] = proxy[key]
        uri = media.get("uri", "")
        if not isinstance(uri, str | list) or not all(isinstance(u, str) for u in uri):
            raise ValueError("media.uri: a sip: URI or a list of them expected")
        secret = media.get("secret", "")
        if not isinstance(secret, str):
            raise ValueError("media.secret: a string expected")
        if uri:
            changes["media"] = MediaService.parse(uri, secret.encode())
        return cls(**changes)


class _Call:
    """The response context of one proxied request: its server transaction, the request
    template every branch copies, and the fork. Implements forking.ForkHooks."""

    __slots__ = (
        "caller_flow",
        "cancelled",
        "counted",
        "fork",
        "initial_invite",
        "loop",
        "may_divert",
        "proxy",
        "source",
        "template",
        "txn",
    )

    def __init__(self, proxy: Proxy, txn: ServerTransaction, source: Target) -> None:
        self.proxy = proxy
        self.txn = txn
        self.source = source
        self.template: Request | None = None
        self.fork: Fork[BranchPlan, Response] | None = None
        self.cancelled = False
        self.counted = False
        self.initial_invite = False
        self.caller_flow: Target | None = None  # the caller's flow when it is a device
        self.loop = ""  # the received request's loop hash, suffix of our Via branches
        self.may_divert = False  # the fork may add a voicemail branch (forking: Diversion)

    # ---------------------------------------------------------------- ForkHooks
    def call_later(self, delay: float, callback: Callable[[], None]) -> Any:
        return self.proxy.sender.call_later(delay, functools.partial(self._fired, callback))

    def _fired(self, callback: Callable[[], None]) -> None:
        """A fork timer (Timer C, ring timeout, a stage) may finish the fork."""
        callback()
        self.release()

    def release(self) -> None:
        """Once the fork has finished (the final answer went out, or a 2xx and every branch
        ended), nothing needs the fork, the template or the links between this context and
        its transactions any more: drop them, so that reference counting frees the call's
        objects at once instead of the cyclic GC (the transactions linger for up to 32 s
        and would otherwise keep all of it reachable, and scanned, that long)."""
        fork = self.fork
        if fork is None or not fork.finished:
            return
        for branch in fork.branches:
            ctxn = branch.data
            if ctxn is not None:
                ctxn.user_data = None
                branch.data = None
        self.fork = None
        self.template = None
        if self.txn.user_data is self:
            self.txn.user_data = None

    def start_branch(self, branch: Branch[BranchPlan]) -> None:
        assert self.template is not None and self.fork is not None
        # One copy per branch; a single-branch fork sends the template itself (not when a
        # diversion may add a branch later: it needs the template as received).
        single = len(self.fork.branches) == 1 and not self.may_divert
        req = self.template if single else self.template.copy()
        plan = branch.payload
        req.uri = plan.uri
        self.proxy._add_record_route(req, self, plan)
        self.proxy._push_via(req, plan.target, new_branch() + "." + self.loop)
        branch.data = self.proxy.sender.send_request(req, plan.target, (self, branch))

    def cancel_branch(self, branch: Branch[BranchPlan]) -> None:
        ctxn: ClientTransaction | None = branch.data
        if ctxn is None:
            return
        cancel = cancel_for(ctxn.request)
        if self.fork is not None and self.fork.answered:
            # RFC 3326: tell the other phones the call was answered elsewhere (they show
            # no "missed call").
            cancel.headers.add("Reason", 'SIP;cause=200;text="Call completed elsewhere"')
        self.proxy.sender.send_request(cancel, ctxn.target, None)

    def forward(self, branch: Branch[BranchPlan], response: Response) -> None:
        self.proxy.sender.send_response(self.txn, response)
        if 200 <= response.status < 300:
            if self.initial_invite:
                self.proxy._answered(self, response)
            else:  # a refresh (re-INVITE/UPDATE) may renegotiate the session interval
                self.proxy.calls.session(response.call_id, session_interval(response.headers))

    def finish(
        self, status: int, chosen: Response | None, finals: Any
    ) -> None:  # finals: Sequence[tuple[int, Response | None]]
        if chosen is None or status == 503:
            # §16.7 step 6: a chosen 503 becomes 500 (the caller must not retry elsewhere
            # because one of our branches is overloaded).
            reply = self.proxy._response(self.txn.request, 500 if status == 503 else status)
        else:
            reply = chosen
            if status in (401, 407):
                aggregate_challenges(reply, finals)
        self.proxy.sender.send_response(self.txn, reply)
        self.proxy._count_outcome(self, status)


class Proxy(Executor):
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
    ) -> None:
        self.sender = sender
        self.snapshot = snapshot
        self.state = state
        self.auth = authenticator
        self.metrics = metrics
        self.config = config or ProxyConfig()
        self.decide: Decide = decide or policy_decide
        self.resolver = resolver or Resolver(sender.now)
        self.wall_clock = wall_clock
        self.flows = flow_tokens or FlowTokens()
        self._rr_cache: dict[str, str] = {}  # transport -> "host:port;params" of our RR URI
        self.calls = ActiveCalls(
            metrics,
            state,
            wall_clock,
            self.config.max_dialogs,
            default_ttl=self.config.channel_ttl,
            session_margin=self.config.session_margin,
        )
        self.decisions_total = decisions_counter(metrics)
        # Labelled counter children per (counter, label value): .labels() takes a lock and
        # builds a key on every call. Values are bounded (routing rules, call outcomes).
        self._children: dict[tuple[int, str], Any] = {}
        self._sweeping = False

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
        ctx = _Call(self, txn, source)
        txn.user_data = ctx
        try:
            await self._process(ctx, request)
        except (ParseError, ResolveError) as exc:
            self._fail(ctx, exc.status_hint)
        except StateUnavailable as exc:
            # Registrations and leases are unreachable (Redis down): a temporary failure,
            # never a stuck transaction (state/base.py, Failures).
            log.warning("state backend unavailable: %s", exc)
            self._fail(ctx, exc.status_hint)

    def _fail(self, ctx: _Call, status: int) -> None:
        """An error before any branch answered: reply `status` and, for a new call, count
        it and give back a channel lease already taken (e.g. the next hop did not resolve)."""
        last = ctx.txn.last_response
        if (last is None or last.status < 200) and (ctx.fork is None or not ctx.fork.finished):
            self._reject(ctx, status, None, [])

    async def on_ack(self, request: Request, source: Target) -> None:
        """ACK for a 2xx: forwarded statelessly along the route set (§16.11: stateless
        forwarding; the branch is derived from the incoming one so that retransmitted ACKs
        carry the same branch)."""
        try:
            lh = loop_hash(request)
            if self._check(request, lh) is not None:
                return
            received_branch = request.top_via.branch
            # No transaction keeps an ACK (the layer hands it over and forgets it): edit the
            # received one in place instead of a copy.
            fwd = request
            routed = preprocess_routes(fwd, source, self._is_ours, self.flows)
            if self._is_local_target(fwd):
                return  # an ACK for a 2xx we sent ourselves: nothing to do
            if not self._dialog_allowed(routed.token, source):
                self.metrics.messages_dropped_total.labels(reason="ack_not_in_dialog").inc()
                return
            decrement_max_forwards(fwd)
            target = routed.flow or await self._next_hop(fwd)
            branch = (
                "z9hG4bK"
                + hashlib.blake2b(
                    received_branch.encode() if received_branch else b"", digest_size=8
                ).hexdigest()
            )
            self._push_via(fwd, target, branch + "." + lh)
            self.sender.send_stateless(fwd, target)
        except (ParseError, ResolveError):
            self.metrics.messages_dropped_total.labels(reason="ack_unroutable").inc()

    def on_response(self, txn: ClientTransaction, response: Response, source: Target) -> None:
        ud = txn.user_data
        if not isinstance(ud, tuple):
            return  # the response to one of our CANCELs
        ctx, branch = ud
        if ctx.fork is None:
            return
        h = response.headers
        h.pop_first_value("Via")  # ours (§16.7 step 3)
        if "Via" not in h:
            # A peer that built its response from the wrong request (e.g. a 487 copying
            # the CANCEL's single Via) left none of the caller's: restore them, so the
            # branch still counts and what we forward is well-formed.
            for value in ctx.txn.request.headers.get_all("Via"):
                h.add("Via", value)
        if response.status < 200:
            ctx.fork.on_provisional(branch, response.status, response)
        else:
            ctx.fork.on_final(branch, response.status, response)
            ctx.release()

    def on_timeout(self, txn: ClientTransaction) -> None:
        ud = txn.user_data
        if isinstance(ud, tuple) and ud[0].fork is not None:
            ud[0].fork.on_final(ud[1], 408, None)
            ud[0].release()

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
        self.sender.send_stateless(response, via_target(vias[1]))

    # ================================================================ processing
    def _on_cancel(self, txn: ServerTransaction, invite: ServerTransaction | None) -> None:
        """§16.10: answer the CANCEL, then cancel the INVITE's branches."""
        if invite is None:
            self._reply(txn, 481)
            return
        self._reply(txn, 200)
        ctx = invite.user_data
        if not isinstance(ctx, _Call):
            if invite.last_response is None or invite.last_response.status < 200:
                self._reply(invite, 487)
            return
        if ctx.fork is None:
            ctx.cancelled = True  # still authenticating/routing: _start answers 487
        else:
            ctx.fork.cancel()
            ctx.release()

    async def _process(self, ctx: _Call, request: Request) -> None:
        ctx.loop = loop_hash(request)
        error = self._check(request, ctx.loop)
        if error is not None:
            if error[0] == 483 and request.method == "OPTIONS" and self._is_local_target(request):
                self._answer_locally(ctx.txn, request)
            else:
                self._reply(ctx.txn, *error)
            return
        fwd = request.copy()
        routed = preprocess_routes(fwd, ctx.source, self._is_ours, self.flows)
        if self._is_local_target(fwd):
            self._answer_locally(ctx.txn, fwd)
            return
        decrement_max_forwards(fwd)
        if request.to_tag is not None:
            if not self._dialog_allowed(routed.token, ctx.source):
                self._reply(ctx.txn, 403, None, [("Warning", '399 - "not a dialog of ours"')])
                return
            await self._in_dialog(ctx, fwd, routed.flow)
        else:
            await self._out_of_dialog(ctx, fwd)

    def _check(
        self, request: Request, loop: str
    ) -> tuple[int, str | None, list[tuple[str, str]]] | None:
        """§16.3 steps 3-5. Returns (status, reason, headers) of the error reply, or None.
        `loop` is the request's loop hash (dialogs.loop_hash)."""
        mf = request.headers.get("Max-Forwards")
        if mf is not None and mf.strip() == "0":
            return 483, None, []
        lh = "." + loop
        for via in request.headers.vias():
            b = via.branch
            if b and b.endswith(lh) and self.sender.is_local(via.host, via.port):
                return 482, None, []
        required = request.headers.get_all("Proxy-Require")
        if required:
            return 420, None, [("Unsupported", ", ".join(required))]
        return None

    def _dialog_allowed(self, token: bool, source: Target) -> bool:
        """In-dialog requests are not challenged (§22: credentials are per request, and
        endpoints do not resend them in a dialog), so a request with a To tag must prove it
        belongs to a dialog we record-routed: our Route with a valid flow token (bound to the
        Call-ID). Every dialog with a device end carries one. The carrier is trusted. Without
        this, a device could reach the trunk with a forged To tag and no credentials."""
        if token or not self.config.record_route:
            return True
        return gateway_for(self.snapshot(), source.host, source.port) is not None

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
        return self._is_our_host(uri)

    def _is_our_host(self, uri: SipURI) -> bool:
        if self.sender.is_local(uri.host, uri.port):
            return True
        return uri.host == self.snapshot().realm or uri.host in self.config.domains

    def _answer_locally(self, txn: ServerTransaction, req: Request) -> None:
        if req.method == "OPTIONS":
            # No Supported header: the proxy itself implements no option tags.
            self._reply(txn, 200, None, [("Allow", ALLOW), ("Accept", "application/sdp")])
        elif req.method in _KNOWN_METHODS:
            self._reply(txn, 405, None, [("Allow", "OPTIONS")])
        else:
            self._reply(txn, 501)

    async def _in_dialog(self, ctx: _Call, fwd: Request, flow: Target | None) -> None:
        """A request inside a dialog follows the route set (loose routing, §16.12)."""
        target = flow or await self._next_hop(fwd)
        if fwd.method == "BYE":
            self.calls.ended(fwd.call_id)
        else:
            # Any in-dialog request proves the call is alive (leases.py); a session-timer
            # refresh carries the interval it asks for.
            self.calls.touch(fwd.call_id, session_interval(fwd.headers))
        plan = BranchPlan(uri=fwd.uri, target=target)
        self._start(ctx, fwd, [Stage(payloads=(plan,))], None)

    async def _out_of_dialog(self, ctx: _Call, fwd: Request) -> None:
        snap = self.snapshot()
        gw = gateway_for(snap, ctx.source.host, ctx.source.port)
        device: Device | None = None
        if gw is None:
            device = self._authenticate(ctx.txn, fwd, snap)
            if device is None:
                return
            fwd.headers.remove("P-Asserted-Identity")  # RFC 3325: not trusted from devices
            self._consume_credentials(fwd)
            ctx.caller_flow = ctx.source
        call = call_for(fwd, device, gw.id if gw else None)
        tenant_id, wanted = candidates(call, snap, device)
        bindings = await self._bindings(wanted)
        channels = {}
        if tenant_id is not None and fwd.method == "INVITE":
            channels[tenant_id] = await self.state.channels_in_use(tenant_id, self.wall_clock())
        live = LiveState(
            registered=frozenset(d for d, bs in bindings.items() if bs), channels=channels
        )
        decision = self.decide(call, snap, live, datetime.now(UTC))
        ctx.initial_invite = fwd.method == "INVITE"
        if ctx.initial_invite:
            self._inc(self.decisions_total, decision.rule)
            if decision.anomalies:
                log.warning("call %s: %s (%s)", fwd.call_id, decision.rule, decision.anomalies)
        await self._execute(ctx, fwd, decision, bindings, snap, device, call)

    async def _bindings(self, device_ids: tuple[str, ...]) -> dict[str, list[Binding]]:
        now = self.wall_clock()
        return {d: await self.state.bindings(d, now) for d in device_ids}

    def _start(
        self,
        ctx: _Call,
        fwd: Request,
        stages: list[Stage[BranchPlan]],
        no_answer: tuple[float, int] | None,
        divert: BranchPlan | None = None,
    ) -> None:
        if ctx.cancelled:
            self._reject(ctx, 487, None, [])
            return
        ctx.template = fwd
        ctx.may_divert = divert is not None
        ctx.fork = Fork(stages, ctx, invite=fwd.method == "INVITE", timer_c=self.config.timer_c)
        if no_answer is None:
            ctx.fork.start()
        else:
            ctx.fork.start(ring_timeout=no_answer[0], timeout_status=no_answer[1], divert_to=divert)
        ctx.release()

    def _reject(
        self, ctx: _Call, status: int, reason: str | None, headers: list[tuple[str, str]]
    ) -> None:
        self._reply(ctx.txn, status, reason, headers)
        if ctx.txn.request.method == "INVITE" and ctx.txn.request.to_tag is None:
            ctx.initial_invite = True
            self._count_outcome(ctx, status)

    # ================================================================ authentication
    def _consume_credentials(self, req: Request) -> None:
        """§22.3: our realm's Proxy-Authorization is consumed here; others' pass on."""
        ours = f'realm="{self.auth.realm}"'
        values = req.headers.get_fields("Proxy-Authorization")
        if values:
            req.headers.remove("Proxy-Authorization")
            for v in values:
                if ours not in v:
                    req.headers.add("Proxy-Authorization", v)

    def _authenticate(self, txn: ServerTransaction, req: Request, snap: Snapshot) -> Device | None:
        """Proxy-Authorization (RFC 3261 §22.3). None when a 407 was sent."""
        now = self.wall_clock()
        stale = False

        def lookup(username: str, algorithm: str) -> str | None:
            d = snap.devices_by_username.get(username)
            if d is None:
                return None
            return d.ha1_sha256 if algorithm.upper().startswith("SHA-256") else d.ha1_md5

        for value in req.headers.get_fields("Proxy-Authorization"):
            result = self.auth.verify(value, req.method, lookup, now)
            if result.ok and result.username is not None:
                device = snap.devices_by_username.get(result.username)
                if device is not None:
                    return device
            if result.reason == "realm":
                continue  # credentials for another proxy on the path
            stale = stale or result.stale
            if not result.stale:
                self.metrics.auth_failures_total.labels(reason=result.reason or "unknown").inc()
        challenges = [("Proxy-Authenticate", c) for c in self.auth.challenge(now, stale=stale)]
        self._reply(txn, 407, None, challenges)
        return None

    # ================================================================ message building
    def _add_record_route(self, req: Request, ctx: _Call, plan: BranchPlan) -> None:
        """§16.6 step 4, RFC 5658 double Record-Route when the transports differ. The user
        part carries a flow token when either end is a registered device's flow."""
        if not self.config.record_route or req.method not in _DIALOG_CREATING:
            return
        if req.to_tag is not None:
            return
        token = None
        if ctx.caller_flow is not None or plan.flow is not None:
            token = self.flows.encode(ctx.caller_flow, plan.flow, req.call_id)
        inbound = ctx.source.transport
        outbound = plan.target.transport
        if inbound != outbound:
            req.headers.prepend("Record-Route", self._rr_value(inbound, token))
        req.headers.prepend("Record-Route", self._rr_value(outbound, token))

    def _rr_value(self, transport: str, token: str | None) -> str:
        rest = self._rr_cache.get(transport)
        if rest is None:
            uri = self.sender.local_uri(transport)
            if "lr" not in uri.params:
                uri = uri.with_(params={**uri.params, "lr": None})
            rest = self._rr_cache[transport] = str(uri.with_(user=None)).removeprefix("sip:")
        # Flow tokens are base64url: legal URI user characters, no escaping needed.
        return f"<sip:{token}@{rest}>" if token is not None else f"<sip:{rest}>"

    def _push_via(self, req: Request, target: Target, branch: str) -> None:
        host, port = self.sender.local_via(target.transport)
        req.headers.prepend_own_via(target.transport, host, port, branch)

    async def _next_hop(self, req: Request) -> Target:
        """§16.6 step 6-7: the first Route, else the Request-URI. A first Route without
        `lr` is a strict router: it becomes the Request-URI and the old one goes last."""
        routes = req.headers.name_addrs("Route")
        if routes:
            uri = routes[0].uri
            if isinstance(uri, SipURI) and "lr" not in uri.params:
                values = req.headers.get_all("Route")
                req.headers.remove("Route")
                for r in values[1:]:
                    req.headers.add("Route", r)
                req.headers.add("Route", f"<{req.uri}>")
                req.uri = str(uri)
        else:
            uri = req.parsed_uri
        if not isinstance(uri, SipURI):
            raise ResolveError("no SIP next hop", 416)
        return await self.resolver.target(uri)

    def _response(self, request: Request, status: int, reason: str | None = None) -> Response:
        tag = secrets.token_hex(4) if status > 100 else None
        return make_response(request, status, reason, to_tag=tag)

    def _reply(
        self,
        txn: ServerTransaction,
        status: int,
        reason: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        resp = self._response(txn.request, status, reason)
        for name, value in headers or ():
            resp.headers.add(name, value)
        self.sender.send_response(txn, resp)

    # ================================================================ metrics
    def _inc(self, counter: Any, label: str) -> None:
        """counter.labels(label).inc() for a counter with one label, child cached."""
        key = (id(counter), label)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(label)
        child.inc()

    def _answered(self, ctx: _Call, response: Response) -> None:
        if not ctx.counted:
            ctx.counted = True
            self._inc(self.metrics.calls_total, "answered")
        self.calls.answered(response.call_id, session_interval(response.headers))

    def _count_outcome(self, ctx: _Call, status: int) -> None:
        """The initial INVITE failed with `status`: count it, give its channel back."""
        if ctx.counted or not ctx.initial_invite:
            return
        ctx.counted = True
        self._inc(
            self.metrics.calls_total,
            outcome_label(status, ctx.fork is not None and ctx.fork.cancelled),
        )
        self.calls.failed(ctx.txn.request.call_id)

"""The per-request context of the proxy: one proxied request's server transaction, the
request template its branches copy, and its `Fork` (forking.py), whose `ForkHooks` it is.

What the proxy and the decision executor ask of it (its public methods):
- `start(fwd, stages, timer_c, no_answer, divert)`: fork the request;
- `reject(status, reason, headers)`: answer it ourselves (a decision, a refused request);
- `fail(status, headers)`: an error occurred before any branch answered;
- `cancel()`: the caller's CANCEL (§16.10);
- `on_response(branch, response)` / `on_timeout(branch)`: a branch's client transaction.

It acts only through what it is given: a `BranchSender` (send a branch, a CANCEL, a response;
a timer; count how a new call ended), implemented by outgoing.Outgoing, and a `CallBook`
(the answered calls and their channel leases), implemented by leases.ActiveCalls.

Outcomes of new calls (initial INVITEs): the first 2xx counts the call "answered" in
`sip_calls_total` and marks it answered in the CallBook (every later 2xx of a fork refreshes
it); a final failure counts its `outcome_label` once and gives the channel back.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from .forking import Branch, BranchState, Fork, Stage
from .leases import session_interval
from .messages import aggregate_challenges, cancel_for, reply_to

if TYPE_CHECKING:
    from switch.sip.message import Request, Response
    from switch.sip.target import Target
    from switch.sip.transaction import ClientTransaction, ServerTransaction
    from switch.tu import Cancellable

    from .anchor import MediaExchange
    from .cdrs import CdrEvents
    from .dialogs import DialogWatch
    from .targets import BranchPlan

__all__ = ["BranchSender", "CallBook", "RequestContext", "outcome_label"]


class BranchSender(Protocol):
    """What a RequestContext asks of the proxy (outgoing.Outgoing)."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable: ...

    def send_branch(
        self,
        ctx: RequestContext,
        request: Request,
        plan: BranchPlan,
        user_data: object,
        via_branch: str | None = None,
    ) -> ClientTransaction:
        """Send `request` (Request-URI already set) on a new branch: our Record-Route and
        Via are added there (with `via_branch` when given). `user_data` comes back with the
        branch's responses."""
        ...

    def branch_id(self, ctx: RequestContext) -> str:
        """A fresh Via branch for one of `ctx`'s branches."""
        ...

    def send_cancel(self, cancel: Request, target: Target) -> None: ...

    def send_response(self, txn: ServerTransaction, response: Response) -> None: ...

    def count_outcome(self, outcome: str) -> None:
        """Count a new call's outcome in sip_calls_total."""
        ...


class CallBook(Protocol):
    """Answered calls and their channel leases (leases.ActiveCalls)."""

    def answered(self, call_id: str, interval: float | None = None) -> None: ...

    def session(self, call_id: str, interval: float | None) -> None: ...

    def failed(self, call_id: str) -> None: ...


def outcome_label(status: int, cancelled: bool) -> str:
    """The `outcome` label of sip_calls_total for a call that ended without a 2xx."""
    if status == 487 or cancelled:
        return "cancelled"
    if status in (486, 600):
        return "busy"
    if status in (408, 480):
        return "no_answer"
    if 500 <= status < 600:
        return "failed"
    return "rejected"


class RequestContext:
    """One proxied request (see the module docstring)."""

    __slots__ = (
        "__weakref__",
        "caller_flow",
        "calls",
        "cancelled",
        "cdrs",
        "counted",
        "fork",
        "initial_invite",
        "loop",
        "may_divert",
        "media",
        "out",
        "source",
        "template",
        "txn",
        "watch",
    )

    def __init__(
        self,
        out: BranchSender,
        calls: CallBook,
        txn: ServerTransaction,
        source: Target,
        cdrs: CdrEvents | None = None,
    ) -> None:
        self.out = out
        self.calls = calls
        self.cdrs = cdrs
        self.txn = txn
        self.source = source
        self.template: Request | None = None
        self.fork: Fork[BranchPlan, Response] | None = None
        self.cancelled = False  # the caller CANCELled before the fork existed
        self.counted = False  # the new call's outcome is counted
        self.initial_invite = False
        self.caller_flow: Target | None = None  # the caller's flow when it is a device
        self.loop = ""  # the received request's loop hash, suffix of our Via branches
        self.may_divert = False  # the fork may add a voicemail branch (forking: Diversion)
        # [recording] the relay this request's SDP goes through (anchor.py); None: end to end
        self.media: MediaExchange | None = None
        # the dialog keep-alives (dialogs.DialogWatch), told of the first 2xx of a new call
        self.watch: DialogWatch | None = None

    # ---------------------------------------------------------------- the proxy's requests
    def start(
        self,
        fwd: Request,
        stages: Sequence[Stage[BranchPlan]],
        timer_c: float,
        no_answer: tuple[float, int] | None = None,
        divert: BranchPlan | None = None,
    ) -> None:
        """Fork `fwd` over `stages`; `no_answer` = (ring timeout, status), `divert` the
        voicemail branch that replaces them when nobody answers (forking: Diversion)."""
        if self.cancelled:
            self.reject(487)
            return
        self.template = fwd
        self.may_divert = divert is not None
        fork = self.fork = Fork(stages, self, invite=fwd.method == "INVITE", timer_c=timer_c)
        if no_answer is None:
            fork.start()
        else:
            fork.start(ring_timeout=no_answer[0], timeout_status=no_answer[1], divert_to=divert)
        self.release()

    def reject(
        self, status: int, reason: str | None = None, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        self.out.send_response(self.txn, reply_to(self.txn.request, status, reason, headers))
        request = self.txn.request
        if request.method == "INVITE" and request.to_tag is None:
            self.initial_invite = True
            self._count_failure(status)

    def fail(self, status: int, headers: Iterable[tuple[str, str]] = ()) -> None:
        """An error before any branch answered: reply `status` and, for a new call, count it
        and give back a channel lease already taken (e.g. the next hop did not resolve)."""
        last = self.txn.last_response
        if (last is None or last.status < 200) and (self.fork is None or not self.fork.finished):
            self.reject(status, None, headers)

    def cancel(self) -> None:
        """§16.10: CANCEL the branches; before the fork exists, `start` answers 487."""
        if self.fork is None:
            self.cancelled = True
        else:
            self.fork.cancel()
            self.release()

    def on_response(self, branch: Branch[BranchPlan], response: Response) -> None:
        fork = self.fork
        if fork is None:
            return
        h = response.headers
        h.pop_first_value("Via")  # ours (§16.7 step 3)
        if "Via" not in h:
            # A peer that built its response from the wrong request (e.g. a 487 copying
            # the CANCEL's single Via) left none of the caller's: restore them, so the
            # branch still counts and what we forward is well-formed.
            for value in self.txn.request.headers.get_all("Via"):
                h.add("Via", value)
        if response.status < 200:
            fork.on_provisional(branch, response.status, response)
        else:
            if response.status >= 300 and self.media is not None:  # [recording]
                self.media.failed(branch.index)
            fork.on_final(branch, response.status, response)
            self.release()

    def on_timeout(self, branch: Branch[BranchPlan]) -> None:
        if self.fork is not None:
            if self.media is not None:  # [recording]
                self.media.failed(branch.index)
            self.fork.on_final(branch, 408, None)
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

    # ---------------------------------------------------------------- ForkHooks
    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        return self.out.call_later(delay, functools.partial(self._fired, callback))

    def _fired(self, callback: Callable[[], None]) -> None:
        """A fork timer (Timer C, ring timeout, a stage) may finish the fork."""
        callback()
        self.release()

    def start_branch(self, branch: Branch[BranchPlan]) -> None:
        assert self.template is not None and self.fork is not None
        # One copy per branch; a single-branch fork sends the template itself (not when a
        # diversion may add a branch later: it needs the template as received).
        single = len(self.fork.branches) == 1 and not self.may_divert
        req = self.template if single else self.template.copy()
        plan = branch.payload
        req.uri = plan.uri
        if self.cdrs is not None and self.initial_invite:
            if plan.device_id is not None:
                self.cdrs.rang(req.call_id, plan.device_id)
            elif self.fork.diverted:  # the Ring's no-answer diversion: voicemail
                self.cdrs.to_media(req.call_id)
        if self.media is not None and not self.fork.diverted:  # [recording] relay first
            via = self.out.branch_id(self)
            sent = functools.partial(self._send_offered, branch, req, via)
            self.media.offer(branch.index, req, via, plan.device_id, sent)
            return
        branch.data = self.out.send_branch(self, req, plan, (self, branch))

    def _send_offered(self, branch: Branch[BranchPlan], req: Request, via: str) -> None:
        """[recording] The relay has rewritten the branch's SDP (or could not: the original
        goes). Send it, unless the branch ended meanwhile: the caller's CANCEL came (487,
        as if the callee had answered it) or the fork is over."""
        fork, media = self.fork, self.media
        assert media is not None
        if fork is None or branch.state is BranchState.DONE:
            media.failed(branch.index)
            return
        if branch.cancel_pending:
            branch.cancel_pending = False
            media.failed(branch.index)
            fork.on_final(branch, 487, None)
            self.release()
            return
        branch.data = self.out.send_branch(self, req, branch.payload, (self, branch), via)

    def cancel_branch(self, branch: Branch[BranchPlan]) -> None:
        ctxn: ClientTransaction | None = branch.data
        if ctxn is None:
            return
        cancel = cancel_for(ctxn.request)
        if self.fork is not None and self.fork.answered:
            # RFC 3326: tell the other phones the call was answered elsewhere (they show
            # no "missed call").
            cancel.headers.add("Reason", 'SIP;cause=200;text="Call completed elsewhere"')
        self.out.send_cancel(cancel, ctxn.target)

    def forward(self, branch: Branch[BranchPlan], response: Response) -> None:
        media = self.media
        if media is not None and media.anchored(branch.index):  # [recording] relay first
            media.answer(branch.index, response, self._send_up)
        else:
            self.out.send_response(self.txn, response)
        if not 200 <= response.status < 300:
            return
        interval = session_interval(response.headers)
        if not self.initial_invite:  # a refresh (re-INVITE/UPDATE) may renegotiate it
            self.calls.session(response.call_id, interval)
            return
        if not self.counted:
            self.counted = True
            self.out.count_outcome("answered")
            if self.cdrs is not None:
                self.cdrs.answered(response.call_id, branch.payload.device_id)
            if self.watch is not None:
                flow = branch.payload.flow
                self.watch.answered(self.txn.request, response, self.caller_flow, flow)
        self.calls.answered(response.call_id, interval)

    def _send_up(self, response: Response) -> None:
        """[recording] A response the relay has seen, on to the caller."""
        self.out.send_response(self.txn, response)

    def finish(
        self, status: int, chosen: Response | None, finals: Sequence[tuple[int, Response | None]]
    ) -> None:
        if chosen is None or status == 503:
            # §16.7 step 6: a chosen 503 becomes 500 (the caller must not retry elsewhere
            # because one of our branches is overloaded).
            reply = reply_to(self.txn.request, 500 if status == 503 else status)
        else:
            reply = chosen
            if status in (401, 407):
                aggregate_challenges(reply, finals)
        self.out.send_response(self.txn, reply)
        self._count_failure(status)

    def _count_failure(self, status: int) -> None:
        """The initial INVITE failed with `status`: count it, give its channel back."""
        if self.counted or not self.initial_invite:
            return
        self.counted = True
        cancelled = self.fork is not None and self.fork.cancelled
        self.out.count_outcome(outcome_label(status, cancelled))
        call_id = self.txn.request.call_id
        self.calls.failed(call_id)
        if self.cdrs is not None:
            self.cdrs.ended(call_id, status, "cancel" if cancelled or self.cancelled else None)

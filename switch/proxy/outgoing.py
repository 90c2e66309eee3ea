"""What leaves the proxy on a request's behalf: each branch with our Record-Route and Via,
CANCELs, responses, our own replies, and the count of how new calls end. `Outgoing` is the
`BranchSender` every RequestContext is given (context.py); the proxy uses it for its own
replies and for the Via of the ACKs it forwards statelessly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from switch.sip.target import Target, new_branch

from .messages import reply_to

if TYPE_CHECKING:
    from switch.metrics import Metrics
    from switch.sip.message import Request, Response
    from switch.sip.transaction import ClientTransaction, ServerTransaction
    from switch.tu import Cancellable, Sender

    from .context import RequestContext
    from .targets import BranchPlan, FlowTokens

__all__ = ["DIALOG_CREATING", "Outgoing"]

DIALOG_CREATING = frozenset({"INVITE", "SUBSCRIBE", "REFER"})


class Outgoing:
    """The proxy's BranchSender (see the module docstring)."""

    __slots__ = (
        "_calls_total", "_flows", "_outcomes", "_path_sent", "_record_route", "_rr_cache",
        "_sender",
    )  # fmt: skip

    def __init__(
        self, sender: Sender, flows: FlowTokens, metrics: Metrics, *, record_route: bool
    ) -> None:
        self._sender = sender
        self._flows = flows
        self._record_route = record_route
        self._rr_cache: dict[str, str] = {}  # transport -> "host:port;params" of our RR URI
        self._calls_total = metrics.calls_total
        self._path_sent = metrics.node_relays_total.labels("path_sent")
        # Counter children per outcome: .labels() takes a lock and builds a key every call.
        self._outcomes: dict[str, Any] = {}

    # ---------------------------------------------------------------- BranchSender
    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        return self._sender.call_later(delay, callback)

    def send_branch(
        self,
        ctx: RequestContext,
        request: Request,
        plan: BranchPlan,
        user_data: object,
        via_branch: str | None = None,
    ) -> ClientTransaction:
        """Our Record-Route (initial dialog-creating requests) and Via (its branch ends in
        the received request's loop hash, §16.6 step 8), then a client transaction.
        `via_branch`: the branch already chosen (the relay knows the branch by it)."""
        self._add_record_route(request, ctx, plan)
        if plan.route is not None:  # through the node that holds the device's flow
            request.headers.prepend("Route", plan.route)
            self._path_sent.inc()
        self.push_via(request, plan.target, via_branch or self.branch_id(ctx))
        return self._sender.send_request(request, plan.target, user_data)

    @staticmethod
    def branch_id(ctx: RequestContext) -> str:
        """A new Via branch for one of `ctx`'s branches (§16.6 step 8: the loop hash)."""
        return new_branch() + "." + ctx.loop

    def send_cancel(self, cancel: Request, target: Target) -> None:
        self._sender.send_request(cancel, target, None)

    def send_response(self, txn: ServerTransaction, response: Response) -> None:
        self._sender.send_response(txn, response)

    def reply(
        self,
        txn: ServerTransaction,
        status: int,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        self._sender.send_response(txn, reply_to(txn.request, status, reason, headers))

    def count_outcome(self, outcome: str) -> None:
        """sip_calls_total{outcome} (values bounded: context.outcome_label)."""
        child = self._outcomes.get(outcome)
        if child is None:
            child = self._outcomes[outcome] = self._calls_total.labels(outcome)
        child.inc()

    # ---------------------------------------------------------------- message building
    def push_via(self, req: Request, target: Target, branch: str) -> None:
        host, port = self._sender.local_via(target.transport)
        req.headers.prepend_own_via(target.transport, host, port, branch)

    def _add_record_route(self, req: Request, ctx: RequestContext, plan: BranchPlan) -> None:
        """§16.6 step 4, RFC 5658 double Record-Route when the transports differ. The user
        part carries a flow token when either end is a registered device's flow."""
        if not self._record_route or req.method not in DIALOG_CREATING:
            return
        if req.to_tag is not None:
            return
        token = None
        if ctx.caller_flow is not None or plan.flow is not None:
            token = self._flows.encode(ctx.caller_flow, plan.flow, req.call_id)
        inbound = ctx.source.transport
        outbound = plan.target.transport
        if inbound != outbound:
            req.headers.prepend("Record-Route", self._rr_value(inbound, token))
        req.headers.prepend("Record-Route", self._rr_value(outbound, token))

    def _rr_value(self, transport: str, token: str | None) -> str:
        rest = self._rr_cache.get(transport)
        if rest is None:
            uri = self._sender.local_uri(transport)
            if "lr" not in uri.params:
                uri = uri.with_(params={**uri.params, "lr": None})
            rest = self._rr_cache[transport] = str(uri.with_(user=None)).removeprefix("sip:")
        # Flow tokens are base64url: legal URI user characters, no escaping needed.
        return f"<sip:{token}@{rest}>" if token is not None else f"<sip:{rest}>"

"""SIP transactions (RFC 3261 §17, with RFC 6026's "Accepted" state), sans-IO.

Theory of operation
-------------------
`TransactionLayer` is a pure state machine in the aioquic style: messages go in with the time
(`receive(message, source, now)`, `send_request(...)`, `send_response(...)`), and a list of
events comes out (`SendMessage` for the transport, the rest for the transaction user, "TU").
Timers are data: `get_timer()` gives the earliest deadline, `handle_timer(now)` fires what is
due. Nothing here sleeps, reads a clock or touches a socket; the transport serialises
messages (`to_bytes`) itself.

What lives where (the h11 layout):
- `transitions.py`: everything that decides how a transaction moves: the states, inputs and
  actions, the (kind, state, input) table, the timers each state arms, RFC 6026's Accepted
  state. An input with no table entry is ignored and counted in `stats["ignored"]`.
- `events.py`: the events this layer returns (frozen dataclasses, the `Event` union).
- `matching.py`: which transaction a message belongs to (§17.1.3, §17.2.3), where a server
  transaction's responses go (§18.2.2, RFC 3581), which flow a transport error names.
- `target.py`: `Target`, the address messages go to and come from, and `new_branch`.
- here: the transaction objects, the timer heap, and carrying out the actions the table
  names, which build the messages the layer sends itself (100 Trying, the ACK of a non-2xx).

Other rules worth knowing
-------------------------
- CANCEL is a transaction of its own; `RequestReceived.cancelled` gives the INVITE server
  transaction it targets (§9.2).
- After the TU sends a CANCEL for an INVITE client transaction, that transaction is given
  64*T1 to reach a final response, then times out (§9.1). Timer C (§16.6) is the proxy's.
- `transport_error` ends every transaction to/from a target (matched by `conn_id` when the
  target has one, else by transport/host/port): client transactions without a final response
  report `TransactionTimeout` (§17.1.4), server ones `TransactionTerminated` with reason
  "transport_error" (§17.2.4). The transport should try the §18.2.2 fallbacks before
  reporting a failed response.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any, TypeAlias

from ._grammar import ParseError, fast_constructor
from .events import (
    AckReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    SendMessage,
    StrayResponse,
    TransactionTerminated,
    TransactionTimeout,
)
from .headers import Headers
from .matching import response_target, same_flow, server_key
from .message import Request, Response, make_response
from .target import Target, new_branch
from .transitions import (
    END_REASON,
    INTERVAL_TIMERS,
    LINGERING,
    TRANSITIONS,
    Action,
    Input,
    Kind,
    State,
    Timers,
    entry_rules,
    response_input,
)
from .values import Via

# The events, `State`, `Timers`, `Target` and `new_branch` are re-exported for the code that
# imports them from here (outside switch/sip); new code imports them from their own modules.
__all__ = [
    "AckReceived",
    "ClientTransaction",
    "Event",
    "RequestReceived",
    "ResponseReceived",
    "SendMessage",
    "ServerTransaction",
    "State",
    "StrayResponse",
    "Target",
    "Timers",
    "TransactionLayer",
    "TransactionTerminated",
    "TransactionTimeout",
    "new_branch",
]

_DEFAULT_TIMERS = Timers()


# --------------------------------------------------------------------------- transactions
class ServerTransaction:
    """A server transaction. `user_data` is a free slot for the TU."""

    __slots__ = (
        "_interval",
        "_kind",
        "_timers",
        "is_invite",
        "key",
        "last_response",
        "reliable",
        "request",
        "response_target",
        "source",
        "state",
        "user_data",
    )

    def __init__(self, key: tuple[Any, ...], request: Request, source: Target, via: Via) -> None:
        self.key = key
        self.request = request
        self.source = source
        self.response_target = response_target(source, via)
        self.is_invite = request.method == "INVITE"
        self._kind = Kind.INVITE_SERVER if self.is_invite else Kind.NON_INVITE_SERVER
        self.state = State.PROCEEDING if self.is_invite else State.TRYING
        self.reliable = source.transport != "udp"
        self.last_response: Response | None = None
        self.user_data: object = None
        self._timers: dict[Input, int] = {}
        self._interval = 0.0

    def __repr__(self) -> str:
        return f"<ServerTransaction {self.request.method} {self.state.name} {self.key[0]}>"


class ClientTransaction:
    """A client transaction. `user_data` is a free slot for the TU."""

    __slots__ = (
        "_ack",
        "_interval",
        "_kind",
        "_timers",
        "is_invite",
        "key",
        "last_response",
        "reliable",
        "request",
        "state",
        "target",
        "user_data",
    )

    def __init__(
        self, key: tuple[str, str], request: Request, target: Target, user_data: object
    ) -> None:
        self.key = key
        self.request = request
        self.target = target
        self.is_invite = request.method == "INVITE"
        self._kind = Kind.INVITE_CLIENT if self.is_invite else Kind.NON_INVITE_CLIENT
        self.state = State.CALLING if self.is_invite else State.TRYING
        self.reliable = target.transport != "udp"
        self.last_response: Response | None = None  # the last response passed to the TU
        self.user_data = user_data
        self._timers: dict[Input, int] = {}
        self._interval = 0.0
        self._ack: Request | None = None

    def __repr__(self) -> str:
        return f"<ClientTransaction {self.request.method} {self.state.name} {self.key[0]}>"


Transaction: TypeAlias = ServerTransaction | ClientTransaction

# The layer builds several events per message: positional constructors that skip the
# generated keyword __init__ of the frozen dataclasses (every field given, same objects).
_send = fast_constructor(SendMessage, ("message", "target"))
_request_received = fast_constructor(RequestReceived, ("txn", "request", "source", "cancelled"))
_ack_received = fast_constructor(AckReceived, ("request", "source"))
_response_received = fast_constructor(ResponseReceived, ("txn", "response", "source"))
_terminated = fast_constructor(TransactionTerminated, ("txn", "reason"))


# --------------------------------------------------------------------------- helpers
def _trying(request: Request) -> Response:
    """100 Trying, echoing a Timestamp header field (§8.2.6.1)."""
    timestamp = request.headers.get("Timestamp")
    extra = None if timestamp is None else [("Timestamp", timestamp)]
    return make_response(request, 100, headers=extra)


def _build_ack(request: Request, response: Response) -> Request:
    """The ACK for a non-2xx final response (§17.1.1.3): Request-URI, Call-ID, From, CSeq
    number and the single top Via of the original request, To of the response, the
    original's Route header fields."""
    h = request.headers
    fields = [("Via", h.get_all("Via")[0])]
    fields += [("Route", r) for r in h.get_all("Route")]
    fields += [
        ("Max-Forwards", "70"),
        ("From", h.get("From") or ""),
        ("To", response.headers.get("To") or ""),
        ("Call-ID", h.get("Call-ID") or ""),
        ("CSeq", f"{request.cseq.seq} ACK"),
    ]
    return Request(method="ACK", uri=request.uri, headers=Headers(fields))


# --------------------------------------------------------------------------- the layer
class TransactionLayer:
    """All transactions of one SIP endpoint. See the module docstring."""

    def __init__(self, timers: Timers = _DEFAULT_TIMERS, *, auto_trying: bool = True) -> None:
        self.timers = timers
        self.auto_trying = auto_trying
        self._servers: dict[tuple[Any, ...], ServerTransaction] = {}
        self._clients: dict[tuple[str, str], ClientTransaction] = {}
        # (deadline, seq, txn, timer); an entry is live while txn._timers[timer] == seq.
        self._heap: list[tuple[float, int, Transaction, Input]] = []
        self._live_timers = 0
        self._seq = itertools.count()
        self._counts = {k.value: 0 for k in Kind}
        self._entry = entry_rules(timers)
        self.stats: dict[str, int] = {"ignored": 0, "stray_responses": 0, "malformed": 0}
        # INVITE server transactions without a final response yet (calls being set up): a
        # measure of load the overload control can cap (switch.transport.overload).
        self.pending_invites = 0
        # Headers of lingering transactions' messages whose parsed forms are dropped at the
        # next message or timer (see _enter): not at once, since the TU is still to handle
        # the message that made the transaction linger (a 2xx, a final response).
        self._forget: list[Headers] = []

    # ------------------------------------------------------------------ public API
    def receive(self, message: Request | Response, source: Target, now: float) -> list[Event]:
        """A message from the network. Malformed messages (missing Via/CSeq…) are counted
        in stats["malformed"] and dropped."""
        if self._forget:
            self._forget_parsed()
        try:
            if isinstance(message, Response):
                return self._receive_response(message, source, now)
            return self._receive_request(message, source, now)
        except ParseError:
            self.stats["malformed"] += 1
            return []

    def send_response(self, txn: ServerTransaction, response: Response, now: float) -> list[Event]:
        """The TU answers a server transaction. A response the state does not allow (after
        the final one, a non-2xx after a 2xx …) is ignored and counted."""
        return self._step(txn, response_input(response.status, False), now, response, None)

    def send_request(
        self, request: Request, target: Target, now: float, user_data: object = None
    ) -> tuple[ClientTransaction, list[Event]]:
        """Start a client transaction. The caller has put the top Via with a fresh
        magic-cookie branch on `request` (see `new_branch`). ACK is not a transaction:
        send it with a plain SendMessage. Raises ValueError for an ACK or a duplicate
        (branch, method)."""
        if request.method == "ACK":
            raise ValueError("ACK is not sent through a client transaction")
        branch = request.top_via.branch
        if branch is None:
            raise ValueError("request has no Via branch")
        key = (branch, request.method)
        if key in self._clients:
            raise ValueError(f"client transaction {key} exists")
        txn = ClientTransaction(key, request, target, user_data)
        self._clients[key] = txn
        self._counts[txn._kind.value] += 1
        events: list[Event] = [_send(request, target)]
        self._enter(txn, txn.state, now, events)
        if request.method == "CANCEL":
            self._guard_cancelled(branch, now)
        return txn, events

    def get_timer(self) -> float | None:
        """The earliest deadline over all transactions, or None."""
        heap = self._heap
        while heap:
            when, seq, txn, timer = heap[0]
            if txn._timers.get(timer) == seq:
                return when
            heapq.heappop(heap)
        return None

    def handle_timer(self, now: float) -> list[Event]:
        """Fire every timer due at `now`."""
        if self._forget:
            self._forget_parsed()
        events: list[Event] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, seq, txn, timer = heapq.heappop(heap)
            if txn._timers.get(timer) != seq:
                continue
            del txn._timers[timer]
            self._live_timers -= 1
            events += self._step(txn, timer, now, None, None)
        return events

    def transport_error(self, target: Target, now: float) -> list[Event]:
        """A send to `target` failed or its connection died (§17.1.4, §17.2.4)."""
        events: list[Event] = []
        for c in [c for c in self._clients.values() if same_flow(c.target, target)]:
            events += self._step(c, Input.TRANSPORT_ERROR, now, None, None)
        for s in [s for s in self._servers.values() if same_flow(s.response_target, target)]:
            events += self._step(s, Input.TRANSPORT_ERROR, now, None, None)
        return events

    def counts(self) -> dict[str, int]:
        """Active transactions by kind: client_invite, client_non_invite, server_invite,
        server_non_invite."""
        return dict(self._counts)

    def find_server(self, request: Request) -> ServerTransaction | None:
        """The server transaction a request belongs to (an ACK finds its INVITE)."""
        via = request.top_via
        method = "INVITE" if request.method == "ACK" else request.method
        return self._servers.get(server_key(request, via, method))

    def find_client(self, branch: str, method: str) -> ClientTransaction | None:
        return self._clients.get((branch, method))

    # ------------------------------------------------------------------ receiving
    def _receive_request(self, request: Request, source: Target, now: float) -> list[Event]:
        via = request.top_via
        method = request.method
        is_ack = method == "ACK"
        key = server_key(request, via, "INVITE" if is_ack else method)
        txn = self._servers.get(key)
        if txn is not None:
            return self._step(txn, Input.ACK if is_ack else Input.REQUEST, now, request, source)
        if is_ack:  # an ACK for a 2xx, or for a transaction long gone: the TU's
            return [_ack_received(request, source)]
        txn = ServerTransaction(key, request, source, via)
        self._servers[key] = txn
        self._counts[txn._kind.value] += 1
        if txn.is_invite:
            self.pending_invites += 1
        cancelled = None
        if method == "CANCEL":
            cancelled = self._servers.get(server_key(request, via, "INVITE"))
        # The 100 Trying goes first: the TU may answer at once (407, 404 …), and a 100 that
        # reaches the caller after the final response confuses UACs (SIPp aborts the call).
        events: list[Event] = []
        if txn.is_invite and self.auto_trying:
            events += self._step(txn, Input.SEND_1XX, now, _trying(request), None)
        events.append(_request_received(txn, request, source, cancelled))
        return events

    def _receive_response(self, response: Response, source: Target, now: float) -> list[Event]:
        branch = response.top_via.branch
        txn = self._clients.get((branch or "", response.cseq.method))
        if txn is None:
            self.stats["stray_responses"] += 1
            return [StrayResponse(response=response, source=source)]
        return self._step(txn, response_input(response.status, True), now, response, source)

    # ------------------------------------------------------------------ the engine
    def _step(
        self,
        txn: Transaction,
        inp: Input,
        now: float,
        message: Request | Response | None,
        source: Target | None,
    ) -> list[Event]:
        """Run one input through the table: actions, then the state change. `message` and
        `source` are the input's message (a response, the TU's response, an ACK), if any."""
        transition = TRANSITIONS.get((txn._kind, txn.state, inp))
        if transition is None:
            self.stats["ignored"] += 1
            return []
        actions, next_state = transition
        events: list[Event] = []
        for action in actions:
            self._act(action, txn, now, message, source, events)
        if next_state is not txn.state:
            if next_state is State.TERMINATED:
                self._terminate(txn, END_REASON.get(inp, "normal"), events)
            else:
                self._enter(txn, next_state, now, events)
        return events

    def _act(
        self,
        action: Action,
        txn: Transaction,
        now: float,
        message: Request | Response | None,
        source: Target | None,
        events: list[Event],
    ) -> None:
        if isinstance(txn, ClientTransaction):
            response = message if isinstance(message, Response) else None
            self._act_client(action, txn, now, response, source, events)
        else:
            self._act_server(action, txn, now, message, source, events)

    def _act_client(
        self,
        action: Action,
        txn: ClientTransaction,
        now: float,
        response: Response | None,
        source: Target | None,
        events: list[Event],
    ) -> None:
        match action:
            case Action.PASS_UP:
                assert response is not None and source is not None
                txn.last_response = response
                events.append(_response_received(txn, response, source))
            case Action.PASS_STRAY:
                assert response is not None and source is not None
                self.stats["stray_responses"] += 1
                events.append(StrayResponse(response=response, source=source, txn=txn))
            case Action.SEND_ACK:
                assert response is not None
                if txn._ack is None:
                    txn._ack = _build_ack(txn.request, response)
                events.append(_send(txn._ack, txn.target))
            case Action.RESEND_REQUEST:
                events.append(_send(txn.request, txn.target))
                t2 = self.timers.t2
                if txn._kind is Kind.INVITE_CLIENT:
                    txn._interval *= 2  # Timer A: T1, 2T1, 4T1 … (uncapped; B ends it)
                elif txn.state is State.PROCEEDING:
                    txn._interval = t2  # §17.1.2.2: T2 once a provisional arrived
                else:
                    txn._interval = min(2 * txn._interval, t2)
                self._arm(
                    txn, Input.TIMER_A if txn.is_invite else Input.TIMER_E, txn._interval, now
                )
            case Action.TIMEOUT:
                events.append(TransactionTimeout(txn=txn))
            case _:
                raise AssertionError(action)  # pragma: no cover - the table is static

    def _act_server(
        self,
        action: Action,
        txn: ServerTransaction,
        now: float,
        message: Request | Response | None,
        source: Target | None,
        events: list[Event],
    ) -> None:
        match action:
            case Action.SEND:
                assert isinstance(message, Response)
                txn.last_response = message
                events.append(_send(message, txn.response_target))
            case Action.RESEND_RESPONSE:
                if txn.last_response is not None:
                    events.append(_send(txn.last_response, txn.response_target))
            case Action.RETRANSMIT_RESPONSE:
                assert txn.last_response is not None
                events.append(_send(txn.last_response, txn.response_target))
                txn._interval = min(2 * txn._interval, self.timers.t2)
                self._arm(txn, Input.TIMER_G, txn._interval, now)
            case Action.PASS_ACK:
                assert isinstance(message, Request) and source is not None
                events.append(_ack_received(message, source))
            case _:
                raise AssertionError(action)  # pragma: no cover - the table is static

    def _enter(self, txn: Transaction, state: State, now: float, events: list[Event]) -> None:
        """Enter a (non-terminated) state: cancel and arm timers per `entry_timers`."""
        if txn._kind is Kind.INVITE_SERVER and txn.state is State.PROCEEDING:
            self.pending_invites -= 1  # the INVITE got its final response
        txn.state = state
        if state in LINGERING:
            # The transaction now only lingers (absorbing retransmissions, up to 32 s): let
            # its messages forget their parsed header forms (re-parsed on demand if anyone
            # still asks), so that the lingering heap the cyclic GC scans stays small. Done
            # when the next message or timer comes in: the TU has not yet seen the response
            # that got us here (a 2xx it forwards, a dialog it records) and would re-parse.
            self._forget.append(txn.request.headers)
            if txn.last_response is not None:
                self._forget.append(txn.last_response.headers)
        cancel, arm = self._entry[txn._kind, state, txn.reliable]
        if cancel is None:
            self._cancel_timers(txn)
        elif cancel:
            self._cancel_timers(txn, cancel)
        immediate = []
        for timer, delay in arm:
            if timer in INTERVAL_TIMERS:
                txn._interval = delay
            if delay <= 0:
                immediate.append(timer)
            else:
                self._arm(txn, timer, delay, now)
        for timer in immediate:
            events += self._step(txn, timer, now, None, None)

    def _forget_parsed(self) -> None:
        for headers in self._forget:
            headers.forget_parsed()
        self._forget.clear()

    def _terminate(self, txn: Transaction, reason: str, events: list[Event]) -> None:
        if txn._kind is Kind.INVITE_SERVER and txn.state is State.PROCEEDING:
            self.pending_invites -= 1
        txn.state = State.TERMINATED
        self._cancel_timers(txn)
        if isinstance(txn, ClientTransaction):
            self._clients.pop(txn.key, None)
        else:
            self._servers.pop(txn.key, None)
        self._counts[txn._kind.value] -= 1
        events.append(_terminated(txn, reason))

    def _guard_cancelled(self, branch: str, now: float) -> None:
        """§9.1: an INVITE client transaction that was CANCELled gets 64*T1 more to see a
        final response, then is treated as timed out."""
        invite = self._clients.get((branch, "INVITE"))
        if (
            invite is not None
            and Input.CANCEL_GUARD not in invite._timers
            and invite.state in (State.CALLING, State.PROCEEDING)
        ):
            self._arm(invite, Input.CANCEL_GUARD, 64 * self.timers.t1, now)

    # ------------------------------------------------------------------ timers
    def _arm(self, txn: Transaction, timer: Input, delay: float, now: float) -> None:
        seq = next(self._seq)
        if timer not in txn._timers:
            self._live_timers += 1
        txn._timers[timer] = seq
        heapq.heappush(self._heap, (now + delay, seq, txn, timer))
        if len(self._heap) > 4 * self._live_timers + 1024:
            self._compact()

    def _cancel_timers(self, txn: Transaction, which: tuple[Input, ...] | None = None) -> None:
        if which is None:
            self._live_timers -= len(txn._timers)
            txn._timers.clear()
            return
        for timer in which:
            if txn._timers.pop(timer, None) is not None:
                self._live_timers -= 1

    def _compact(self) -> None:
        """Drop cancelled entries (lazy deletion leaves them in the heap)."""
        self._heap = [e for e in self._heap if e[2]._timers.get(e[3]) == e[1]]
        heapq.heapify(self._heap)

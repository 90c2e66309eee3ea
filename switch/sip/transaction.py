"""SIP transactions (RFC 3261 §17, with RFC 6026's "Accepted" state), sans-IO.

Theory of operation
-------------------
`TransactionLayer` is a pure state machine in the aioquic style: messages go in with the time
(`receive(message, source, now)`, `send_request(...)`, `send_response(...)`), and a list of
events comes out (`SendMessage` for the transport, the rest for the transaction user, "TU").
Timers are data: `get_timer()` gives the earliest deadline, `handle_timer(now)` fires what is
due. Nothing here sleeps, reads a clock or touches a socket; the transport serialises
messages (`to_bytes`) itself.

There are four kinds of transaction (INVITE or non-INVITE, client or server). Every transition
of every kind lives in one table, `_TABLE`, keyed by (kind, state, input) and giving the
actions to run and the next state; the timers a state arms when it is entered live in
`_entry_timers`. An input with no table entry is ignored and counted in `stats["ignored"]`,
never an exception: a late response, a response from the TU to a finished transaction, an
ACK for a transaction still in Proceeding.

2xx handling: RFC 6026 (which updates RFC 3261)
-----------------------------------------------
Both INVITE transactions enter "Accepted" on a 2xx instead of terminating at once:
- server: Timer L (64*T1). Retransmitted INVITEs are absorbed (RFC 3261 would hand them to
  the TU as a new request); every ACK is handed to the TU as `AckReceived`; further 2xx from
  the TU (a proxy forwarding other forks' 2xx or retransmissions) are sent.
- client: Timer M (64*T1). The first 2xx is a `ResponseReceived`; every later 2xx (a
  retransmission, or another fork's 2xx) is a `StrayResponse` carrying `txn`, which a proxy
  forwards statelessly (RFC 6026 §8.4). The ACK for a 2xx is the TU's business.

Matching
--------
- Responses to client transactions (§17.1.3): branch of the top Via + CSeq method.
- Requests to server transactions (§17.2.3): with a magic-cookie branch, (branch, sent-by,
  method), where ACK looks for the INVITE; without one (RFC 2543 peers), the Request-URI,
  From tag, Call-ID, CSeq number, method and top Via (To tag not compared: an ACK carries
  the tag of our response, and INVITE retransmissions carry none).
- CANCEL is a transaction of its own; `RequestReceived.cancelled` gives the INVITE server
  transaction it targets (§9.2: same key with method INVITE).

Other rules worth knowing
-------------------------
- Server transactions answer to `response_target`, computed per §18.2.2 / RFC 3581: the same
  connection for streams, the source address for UDP with `rport`, else source host + Via
  sent-by port. The TU may overwrite it.
- After the TU sends a CANCEL for an INVITE client transaction, that transaction is given
  64*T1 to reach a final response, then times out (§9.1). Timer C (§16.6) is the proxy's.
- `transport_error` ends every transaction to/from a target (matched by `conn_id` when the
  target has one, else by transport/host/port): client transactions without a final response
  report `TransactionTimeout` (§17.1.4), server ones `TransactionTerminated` with reason
  "transport_error" (§17.2.4). The transport should try the §18.2.2 fallbacks before
  reporting a failed response.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import secrets
from dataclasses import dataclass
from typing import Any, TypeAlias

from ._grammar import fast_constructor
from .message import Headers, ParseError, Request, Response, Via, make_response

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

MAGIC_COOKIE = "z9hG4bK"


# --------------------------------------------------------------------------- value types
@dataclass(frozen=True, slots=True)
class Timers:
    """RFC 3261 §17.1.1.1 / Table 4 base values, in seconds."""

    t1: float = 0.5  # RTT estimate
    t2: float = 4.0  # maximum retransmit interval for non-INVITE requests and INVITE responses
    t4: float = 5.0  # maximum duration a message remains in the network


@dataclass(frozen=True, slots=True)
class Target:
    """Where a message goes or came from."""

    transport: str  # "udp" | "tcp" | "tls" (lower-case)
    host: str
    port: int
    conn_id: int | None = None  # a specific stream connection (flow) to reuse, when known

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"


def new_branch() -> str:
    """A fresh RFC 3261 branch: magic cookie + 80 random bits (unique in practice)."""
    return MAGIC_COOKIE + secrets.token_hex(10)


class State(enum.Enum):
    # Members are singletons compared by identity: hash them by identity too (C-level,
    # several times faster than Enum.__hash__ on the hot path).
    __hash__ = object.__hash__

    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"  # RFC 6026
    TERMINATED = "terminated"


class _Kind(enum.Enum):
    __hash__ = object.__hash__

    INVITE_CLIENT = "client_invite"
    NON_INVITE_CLIENT = "client_non_invite"
    INVITE_SERVER = "server_invite"
    NON_INVITE_SERVER = "server_non_invite"


class _Input(enum.Enum):
    __hash__ = object.__hash__

    # from the network
    RESPONSE_1XX = enum.auto()
    RESPONSE_2XX = enum.auto()
    RESPONSE_FINAL = enum.auto()  # 300-699
    REQUEST = enum.auto()  # a retransmission of the request that created the transaction
    ACK = enum.auto()
    # from the TU
    SEND_1XX = enum.auto()
    SEND_2XX = enum.auto()
    SEND_FINAL = enum.auto()
    # timers (§17; L and M from RFC 6026; CANCEL_GUARD from §9.1)
    TIMER_A = enum.auto()
    TIMER_B = enum.auto()
    TIMER_D = enum.auto()
    TIMER_E = enum.auto()
    TIMER_F = enum.auto()
    TIMER_G = enum.auto()
    TIMER_H = enum.auto()
    TIMER_I = enum.auto()
    TIMER_J = enum.auto()
    TIMER_K = enum.auto()
    TIMER_L = enum.auto()
    TIMER_M = enum.auto()
    CANCEL_GUARD = enum.auto()
    # from the transport
    TRANSPORT_ERROR = enum.auto()


class _Action(enum.Enum):
    __hash__ = object.__hash__

    PASS_UP = enum.auto()  # ResponseReceived
    PASS_STRAY = enum.auto()  # StrayResponse(txn=…): 2xx in Accepted, to forward statelessly
    PASS_ACK = enum.auto()  # AckReceived
    SEND = enum.auto()  # send the TU's response, remember it as last_response
    SEND_ACK = enum.auto()  # (re)send the ACK for a non-2xx final (§17.1.1.3)
    RESEND_REQUEST = enum.auto()  # Timer A/E: retransmit and re-arm
    RESEND_RESPONSE = enum.auto()  # retransmitted request: resend last response (if any)
    RETRANSMIT_RESPONSE = enum.auto()  # Timer G: resend final and re-arm
    TIMEOUT = enum.auto()  # TransactionTimeout to the TU


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
        self.response_target = _response_target(source, via)
        self.is_invite = request.method == "INVITE"
        self._kind = _Kind.INVITE_SERVER if self.is_invite else _Kind.NON_INVITE_SERVER
        self.state = State.PROCEEDING if self.is_invite else State.TRYING
        self.reliable = source.transport != "udp"
        self.last_response: Response | None = None
        self.user_data: object = None
        self._timers: dict[_Input, int] = {}
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
        self._kind = _Kind.INVITE_CLIENT if self.is_invite else _Kind.NON_INVITE_CLIENT
        self.state = State.CALLING if self.is_invite else State.TRYING
        self.reliable = target.transport != "udp"
        self.last_response: Response | None = None  # the last response passed to the TU
        self.user_data = user_data
        self._timers: dict[_Input, int] = {}
        self._interval = 0.0
        self._ack: Request | None = None

    def __repr__(self) -> str:
        return f"<ClientTransaction {self.request.method} {self.state.name} {self.key[0]}>"


Transaction: TypeAlias = ServerTransaction | ClientTransaction


# --------------------------------------------------------------------------- events
@dataclass(frozen=True, slots=True, kw_only=True)
class SendMessage:
    """Serialise `message` and send it to `target`."""

    message: Request | Response
    target: Target


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestReceived:
    """A new request (never an ACK) for the TU. For a CANCEL, `txn` is the CANCEL's own
    server transaction and `cancelled` the INVITE server transaction it matches, if any."""

    txn: ServerTransaction
    request: Request
    source: Target
    cancelled: ServerTransaction | None = None  # may already have a final response: check
    # `cancelled.state` (Proceeding: answer 487 to it; later: only 200 the CANCEL)


@dataclass(frozen=True, slots=True, kw_only=True)
class AckReceived:
    """An ACK for the TU: one matching no INVITE server transaction, or one for a 2xx
    (the INVITE server transaction is in Accepted)."""

    request: Request
    source: Target


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseReceived:
    """Each provisional response, and the final response once."""

    txn: ClientTransaction
    response: Response
    source: Target


@dataclass(frozen=True, slots=True, kw_only=True)
class StrayResponse:
    """A response no client transaction wants: a proxy forwards it statelessly (§16.7,
    RFC 6026 §8.4). `txn` is set for a further 2xx to an INVITE client transaction in
    Accepted (a retransmission, or another fork's 2xx)."""

    response: Response
    source: Target
    txn: ClientTransaction | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionTimeout:
    """Timer B or F fired (or a transport error, or the §9.1 CANCEL guard) before a final
    response: the TU acts as if a 408 had arrived."""

    txn: ClientTransaction


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionTerminated:
    """A transaction ended (bookkeeping, metrics). `reason`: "normal", "timeout",
    "timer_h" (no ACK for a non-2xx final), or "transport_error"."""

    txn: ServerTransaction | ClientTransaction
    reason: str = "normal"


Event: TypeAlias = (
    SendMessage
    | RequestReceived
    | AckReceived
    | ResponseReceived
    | StrayResponse
    | TransactionTimeout
    | TransactionTerminated
)


# The layer builds several events per message: positional constructors that skip the
# generated keyword __init__ of the frozen dataclasses (every field given, same objects).
_send = fast_constructor(SendMessage, ("message", "target"))
_request_received = fast_constructor(RequestReceived, ("txn", "request", "source", "cancelled"))
_ack_received = fast_constructor(AckReceived, ("request", "source"))
_response_received = fast_constructor(ResponseReceived, ("txn", "response", "source"))
_terminated = fast_constructor(TransactionTerminated, ("txn", "reason"))

# --------------------------------------------------------------------------- the table
_C, _T, _P, _X = State.CALLING, State.TRYING, State.PROCEEDING, State.COMPLETED
_F, _A, _Z = State.CONFIRMED, State.ACCEPTED, State.TERMINATED
_IC, _NC = _Kind.INVITE_CLIENT, _Kind.NON_INVITE_CLIENT
_IS, _NS = _Kind.INVITE_SERVER, _Kind.NON_INVITE_SERVER
_I = _Input
_PASS, _ACK, _SEND = _Action.PASS_UP, _Action.SEND_ACK, _Action.SEND
_NONE: tuple[_Action, ...] = ()

Transition: TypeAlias = tuple[tuple[_Action, ...], State]

# (kind, state, input) -> (actions, next state). Everything not listed is ignored.
_TABLE: dict[tuple[_Kind, State, _Input], Transition] = {
    # INVITE client, §17.1.1 (Figure 5) + RFC 6026 §7.2
    (_IC, _C, _I.RESPONSE_1XX): ((_PASS,), _P),
    (_IC, _C, _I.RESPONSE_2XX): ((_PASS,), _A),
    (_IC, _C, _I.RESPONSE_FINAL): ((_PASS, _ACK), _X),
    (_IC, _C, _I.TIMER_A): ((_Action.RESEND_REQUEST,), _C),
    (_IC, _C, _I.TIMER_B): ((_Action.TIMEOUT,), _Z),
    (_IC, _C, _I.CANCEL_GUARD): ((_Action.TIMEOUT,), _Z),
    (_IC, _C, _I.TRANSPORT_ERROR): ((_Action.TIMEOUT,), _Z),
    (_IC, _P, _I.RESPONSE_1XX): ((_PASS,), _P),
    (_IC, _P, _I.RESPONSE_2XX): ((_PASS,), _A),
    (_IC, _P, _I.RESPONSE_FINAL): ((_PASS, _ACK), _X),
    (_IC, _P, _I.CANCEL_GUARD): ((_Action.TIMEOUT,), _Z),
    (_IC, _P, _I.TRANSPORT_ERROR): ((_Action.TIMEOUT,), _Z),
    (_IC, _X, _I.RESPONSE_FINAL): ((_ACK,), _X),
    (_IC, _X, _I.TIMER_D): (_NONE, _Z),
    (_IC, _X, _I.TRANSPORT_ERROR): (_NONE, _Z),
    (_IC, _A, _I.RESPONSE_2XX): ((_Action.PASS_STRAY,), _A),
    (_IC, _A, _I.TIMER_M): (_NONE, _Z),
    (_IC, _A, _I.TRANSPORT_ERROR): (_NONE, _Z),
    # non-INVITE client, §17.1.2 (Figure 6)
    (_NC, _T, _I.RESPONSE_1XX): ((_PASS,), _P),
    (_NC, _T, _I.RESPONSE_2XX): ((_PASS,), _X),
    (_NC, _T, _I.RESPONSE_FINAL): ((_PASS,), _X),
    (_NC, _T, _I.TIMER_E): ((_Action.RESEND_REQUEST,), _T),
    (_NC, _T, _I.TIMER_F): ((_Action.TIMEOUT,), _Z),
    (_NC, _T, _I.TRANSPORT_ERROR): ((_Action.TIMEOUT,), _Z),
    (_NC, _P, _I.RESPONSE_1XX): ((_PASS,), _P),
    (_NC, _P, _I.RESPONSE_2XX): ((_PASS,), _X),
    (_NC, _P, _I.RESPONSE_FINAL): ((_PASS,), _X),
    (_NC, _P, _I.TIMER_E): ((_Action.RESEND_REQUEST,), _P),
    (_NC, _P, _I.TIMER_F): ((_Action.TIMEOUT,), _Z),
    (_NC, _P, _I.TRANSPORT_ERROR): ((_Action.TIMEOUT,), _Z),
    (_NC, _X, _I.RESPONSE_1XX): (_NONE, _X),
    (_NC, _X, _I.RESPONSE_2XX): (_NONE, _X),
    (_NC, _X, _I.RESPONSE_FINAL): (_NONE, _X),
    (_NC, _X, _I.TIMER_K): (_NONE, _Z),
    (_NC, _X, _I.TRANSPORT_ERROR): (_NONE, _Z),
    # INVITE server, §17.2.1 (Figure 7) + RFC 6026 §7.1
    (_IS, _P, _I.REQUEST): ((_Action.RESEND_RESPONSE,), _P),
    (_IS, _P, _I.SEND_1XX): ((_SEND,), _P),
    (_IS, _P, _I.SEND_2XX): ((_SEND,), _A),
    (_IS, _P, _I.SEND_FINAL): ((_SEND,), _X),
    (_IS, _P, _I.TRANSPORT_ERROR): (_NONE, _Z),
    (_IS, _X, _I.REQUEST): ((_Action.RESEND_RESPONSE,), _X),
    (_IS, _X, _I.ACK): (_NONE, _F),
    (_IS, _X, _I.TIMER_G): ((_Action.RETRANSMIT_RESPONSE,), _X),
    (_IS, _X, _I.TIMER_H): (_NONE, _Z),
    (_IS, _X, _I.TRANSPORT_ERROR): (_NONE, _Z),
    (_IS, _F, _I.REQUEST): (_NONE, _F),
    (_IS, _F, _I.ACK): (_NONE, _F),
    (_IS, _F, _I.TIMER_I): (_NONE, _Z),
    (_IS, _F, _I.TRANSPORT_ERROR): (_NONE, _Z),
    (_IS, _A, _I.REQUEST): (_NONE, _A),
    (_IS, _A, _I.ACK): ((_Action.PASS_ACK,), _A),
    (_IS, _A, _I.SEND_2XX): ((_SEND,), _A),
    (_IS, _A, _I.TIMER_L): (_NONE, _Z),
    (_IS, _A, _I.TRANSPORT_ERROR): (_NONE, _Z),
    # non-INVITE server, §17.2.2 (Figure 8)
    (_NS, _T, _I.REQUEST): (_NONE, _T),
    (_NS, _T, _I.SEND_1XX): ((_SEND,), _P),
    (_NS, _T, _I.SEND_2XX): ((_SEND,), _X),
    (_NS, _T, _I.SEND_FINAL): ((_SEND,), _X),
    (_NS, _T, _I.TRANSPORT_ERROR): (_NONE, _Z),
    (_NS, _P, _I.REQUEST): ((_Action.RESEND_RESPONSE,), _P),
    (_NS, _P, _I.SEND_1XX): ((_SEND,), _P),
    (_NS, _P, _I.SEND_2XX): ((_SEND,), _X),
    (_NS, _P, _I.SEND_FINAL): ((_SEND,), _X),
    (_NS, _P, _I.TRANSPORT_ERROR): (_NONE, _Z),
    (_NS, _X, _I.REQUEST): ((_Action.RESEND_RESPONSE,), _X),
    (_NS, _X, _I.TIMER_J): (_NONE, _Z),
    (_NS, _X, _I.TRANSPORT_ERROR): (_NONE, _Z),
}

# States in which a transaction only waits for its timers to end it.
_LINGERING = frozenset({State.COMPLETED, State.CONFIRMED, State.ACCEPTED})

# Why a transaction reached Terminated, by the input that took it there.
_END_REASON: dict[_Input, str] = {
    _I.TIMER_B: "timeout",
    _I.TIMER_F: "timeout",
    _I.CANCEL_GUARD: "timeout",
    _I.TIMER_H: "timer_h",
    _I.TRANSPORT_ERROR: "transport_error",
}


def _entry_timers(
    kind: _Kind, state: State, reliable: bool, t: Timers
) -> tuple[bool, tuple[tuple[_Input, float], ...]]:
    """What entering `state` does to the timers: (cancel the running ones?, timers to arm).
    A delay of 0 fires at once (the "0 for reliable transports" timers)."""
    match kind, state:
        case _Kind.INVITE_CLIENT, State.CALLING:
            arm_b = ((_I.TIMER_B, 64 * t.t1),)
            return False, arm_b if reliable else ((_I.TIMER_A, t.t1), *arm_b)
        case _Kind.INVITE_CLIENT, State.PROCEEDING:
            return False, ()  # A and B are cancelled by _enter (CANCEL_GUARD survives)
        case _Kind.INVITE_CLIENT, State.COMPLETED:
            return True, ((_I.TIMER_D, 0.0 if reliable else 32.0),)
        case _Kind.INVITE_CLIENT, State.ACCEPTED:
            return True, ((_I.TIMER_M, 64 * t.t1),)
        case _Kind.NON_INVITE_CLIENT, State.TRYING:
            arm_f = ((_I.TIMER_F, 64 * t.t1),)
            return False, arm_f if reliable else ((_I.TIMER_E, min(t.t1, t.t2)), *arm_f)
        case _Kind.NON_INVITE_CLIENT, State.PROCEEDING:
            return False, ()  # E keeps running (re-armed with T2), F keeps running
        case _Kind.NON_INVITE_CLIENT, State.COMPLETED:
            return True, ((_I.TIMER_K, 0.0 if reliable else t.t4),)
        case _Kind.INVITE_SERVER, State.COMPLETED:
            arm_h = ((_I.TIMER_H, 64 * t.t1),)
            return True, arm_h if reliable else ((_I.TIMER_G, min(t.t1, t.t2)), *arm_h)
        case _Kind.INVITE_SERVER, State.CONFIRMED:
            return True, ((_I.TIMER_I, 0.0 if reliable else t.t4),)
        case _Kind.INVITE_SERVER, State.ACCEPTED:
            return True, ((_I.TIMER_L, 64 * t.t1),)
        case _Kind.NON_INVITE_SERVER, State.COMPLETED:
            return True, ((_I.TIMER_J, 0.0 if reliable else 64 * t.t1),)
        case _:
            return True, ()


def _response_input(status: int, client: bool) -> _Input:
    if status < 200:
        return _I.RESPONSE_1XX if client else _I.SEND_1XX
    if status < 300:
        return _I.RESPONSE_2XX if client else _I.SEND_2XX
    return _I.RESPONSE_FINAL if client else _I.SEND_FINAL


# --------------------------------------------------------------------------- helpers
def _response_target(source: Target, via: Via) -> Target:
    """Where responses go (§18.2.2, RFC 3581): streams reuse the connection the request came
    on; UDP goes to the source address with `rport`, else the source host and the Via
    sent-by port."""
    if source.transport != "udp" or "rport" in via.params:
        return source
    port = via.port or 5060
    return source if port == source.port else Target("udp", source.host, port)


def _server_key(request: Request, via: Via, method: str) -> tuple[Any, ...]:
    """§17.2.3 matching key; `method` is INVITE for an ACK or a CANCEL's target."""
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return (branch, via.host, via.port, method)
    # RFC 2543 fallback: Request-URI, From tag, Call-ID, CSeq number, top Via (+ method).
    via_id = (via.transport, via.host, via.port, branch)
    return (
        "2543",
        request.uri,
        request.from_tag,
        request.call_id,
        request.cseq.seq,
        method,
        via_id,
    )


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

    def __init__(self, timers: Timers = Timers(), *, auto_trying: bool = True) -> None:
        self.timers = timers
        self.auto_trying = auto_trying
        self._servers: dict[tuple[Any, ...], ServerTransaction] = {}
        self._clients: dict[tuple[str, str], ClientTransaction] = {}
        # (deadline, seq, txn, timer); an entry is live while txn._timers[timer] == seq.
        self._heap: list[tuple[float, int, Transaction, _Input]] = []
        self._live_timers = 0
        self._seq = itertools.count()
        self._counts = {k.value: 0 for k in _Kind}
        self._entry = {
            (kind, state, reliable): _entry_timers(kind, state, reliable, timers)
            for kind in _Kind
            for state in State
            for reliable in (False, True)
        }
        self.stats: dict[str, int] = {"ignored": 0, "stray_responses": 0, "malformed": 0}

    # ------------------------------------------------------------------ public API
    def receive(self, message: Request | Response, source: Target, now: float) -> list[Event]:
        """A message from the network. Malformed messages (missing Via/CSeq…) are counted
        in stats["malformed"] and dropped."""
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
        return self._step(txn, _response_input(response.status, False), now, response, None)

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
        for c in [c for c in self._clients.values() if _same_flow(c.target, target)]:
            events += self._step(c, _I.TRANSPORT_ERROR, now, None, None)
        for s in [s for s in self._servers.values() if _same_flow(s.response_target, target)]:
            events += self._step(s, _I.TRANSPORT_ERROR, now, None, None)
        return events

    def counts(self) -> dict[str, int]:
        """Active transactions by kind: client_invite, client_non_invite, server_invite,
        server_non_invite."""
        return dict(self._counts)

    def find_server(self, request: Request) -> ServerTransaction | None:
        """The server transaction a request belongs to (an ACK finds its INVITE)."""
        via = request.top_via
        method = "INVITE" if request.method == "ACK" else request.method
        return self._servers.get(_server_key(request, via, method))

    def find_client(self, branch: str, method: str) -> ClientTransaction | None:
        return self._clients.get((branch, method))

    # ------------------------------------------------------------------ receiving
    def _receive_request(self, request: Request, source: Target, now: float) -> list[Event]:
        via = request.top_via
        method = request.method
        is_ack = method == "ACK"
        key = _server_key(request, via, "INVITE" if is_ack else method)
        txn = self._servers.get(key)
        if txn is not None:
            return self._step(txn, _I.ACK if is_ack else _I.REQUEST, now, request, source)
        if is_ack:  # an ACK for a 2xx, or for a transaction long gone: the TU's
            return [_ack_received(request, source)]
        txn = ServerTransaction(key, request, source, via)
        self._servers[key] = txn
        self._counts[txn._kind.value] += 1
        cancelled = None
        if method == "CANCEL":
            cancelled = self._servers.get(_server_key(request, via, "INVITE"))
        # The 100 Trying goes first: the TU may answer at once (407, 404 …), and a 100 that
        # reaches the caller after the final response confuses UACs (SIPp aborts the call).
        events: list[Event] = []
        if txn.is_invite and self.auto_trying:
            events += self._step(txn, _I.SEND_1XX, now, _trying(request), None)
        events.append(_request_received(txn, request, source, cancelled))
        return events

    def _receive_response(self, response: Response, source: Target, now: float) -> list[Event]:
        branch = response.top_via.branch
        txn = self._clients.get((branch or "", response.cseq.method))
        if txn is None:
            self.stats["stray_responses"] += 1
            return [StrayResponse(response=response, source=source)]
        return self._step(txn, _response_input(response.status, True), now, response, source)

    # ------------------------------------------------------------------ the engine
    def _step(
        self,
        txn: Transaction,
        inp: _Input,
        now: float,
        message: Request | Response | None,
        source: Target | None,
    ) -> list[Event]:
        """Run one input through the table: actions, then the state change. `message` and
        `source` are the input's message (a response, the TU's response, an ACK), if any."""
        transition = _TABLE.get((txn._kind, txn.state, inp))
        if transition is None:
            self.stats["ignored"] += 1
            return []
        actions, next_state = transition
        events: list[Event] = []
        for action in actions:
            self._act(action, txn, now, message, source, events)
        if next_state is not txn.state:
            if next_state is State.TERMINATED:
                self._terminate(txn, _END_REASON.get(inp, "normal"), events)
            else:
                self._enter(txn, next_state, now, events)
        return events

    def _act(
        self,
        action: _Action,
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
        action: _Action,
        txn: ClientTransaction,
        now: float,
        response: Response | None,
        source: Target | None,
        events: list[Event],
    ) -> None:
        match action:
            case _Action.PASS_UP:
                assert response is not None and source is not None
                txn.last_response = response
                events.append(_response_received(txn, response, source))
            case _Action.PASS_STRAY:
                assert response is not None and source is not None
                self.stats["stray_responses"] += 1
                events.append(StrayResponse(response=response, source=source, txn=txn))
            case _Action.SEND_ACK:
                assert response is not None
                if txn._ack is None:
                    txn._ack = _build_ack(txn.request, response)
                events.append(_send(txn._ack, txn.target))
            case _Action.RESEND_REQUEST:
                events.append(_send(txn.request, txn.target))
                t2 = self.timers.t2
                if txn._kind is _Kind.INVITE_CLIENT:
                    txn._interval *= 2  # Timer A: T1, 2T1, 4T1 … (uncapped; B ends it)
                elif txn.state is State.PROCEEDING:
                    txn._interval = t2  # §17.1.2.2: T2 once a provisional arrived
                else:
                    txn._interval = min(2 * txn._interval, t2)
                self._arm(txn, _I.TIMER_A if txn.is_invite else _I.TIMER_E, txn._interval, now)
            case _Action.TIMEOUT:
                events.append(TransactionTimeout(txn=txn))
            case _:
                raise AssertionError(action)  # pragma: no cover - the table is static

    def _act_server(
        self,
        action: _Action,
        txn: ServerTransaction,
        now: float,
        message: Request | Response | None,
        source: Target | None,
        events: list[Event],
    ) -> None:
        match action:
            case _Action.SEND:
                assert isinstance(message, Response)
                txn.last_response = message
                events.append(_send(message, txn.response_target))
            case _Action.RESEND_RESPONSE:
                if txn.last_response is not None:
                    events.append(_send(txn.last_response, txn.response_target))
            case _Action.RETRANSMIT_RESPONSE:
                assert txn.last_response is not None
                events.append(_send(txn.last_response, txn.response_target))
                txn._interval = min(2 * txn._interval, self.timers.t2)
                self._arm(txn, _I.TIMER_G, txn._interval, now)
            case _Action.PASS_ACK:
                assert isinstance(message, Request) and source is not None
                events.append(_ack_received(message, source))
            case _:
                raise AssertionError(action)  # pragma: no cover - the table is static

    def _enter(self, txn: Transaction, state: State, now: float, events: list[Event]) -> None:
        """Enter a (non-terminated) state: cancel and arm timers per `_entry_timers`."""
        txn.state = state
        if state in _LINGERING:
            # The transaction now only lingers (absorbing retransmissions, up to 32 s): let
            # its messages forget their parsed header forms (re-parsed on demand if anyone
            # still asks), so that the lingering heap the cyclic GC scans stays small.
            txn.request.headers.forget_parsed()
            if txn.last_response is not None:
                txn.last_response.headers.forget_parsed()
        cancel_all, arm = self._entry[txn._kind, state, txn.reliable]
        if cancel_all:
            self._cancel_timers(txn)
        elif txn._kind is _Kind.INVITE_CLIENT and state is State.PROCEEDING:
            self._cancel_timers(txn, (_I.TIMER_A, _I.TIMER_B))
        immediate = []
        for timer, delay in arm:
            if timer in (_I.TIMER_A, _I.TIMER_E, _I.TIMER_G):
                txn._interval = delay
            if delay <= 0:
                immediate.append(timer)
            else:
                self._arm(txn, timer, delay, now)
        for timer in immediate:
            events += self._step(txn, timer, now, None, None)

    def _terminate(self, txn: Transaction, reason: str, events: list[Event]) -> None:
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
            and _I.CANCEL_GUARD not in invite._timers
            and invite.state in (State.CALLING, State.PROCEEDING)
        ):
            self._arm(invite, _I.CANCEL_GUARD, 64 * self.timers.t1, now)

    # ------------------------------------------------------------------ timers
    def _arm(self, txn: Transaction, timer: _Input, delay: float, now: float) -> None:
        seq = next(self._seq)
        if timer not in txn._timers:
            self._live_timers += 1
        txn._timers[timer] = seq
        heapq.heappush(self._heap, (now + delay, seq, txn, timer))
        if len(self._heap) > 4 * self._live_timers + 1024:
            self._compact()

    def _cancel_timers(self, txn: Transaction, which: tuple[_Input, ...] | None = None) -> None:
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


def _same_flow(a: Target, b: Target) -> bool:
    if b.conn_id is not None:
        return a.conn_id == b.conn_id
    return a.transport == b.transport and a.host == b.host and a.port == b.port

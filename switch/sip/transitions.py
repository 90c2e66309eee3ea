"""The transaction state machines (RFC 3261 §17, with RFC 6026's "Accepted" state) as data.

Everything that decides how a transaction moves lives here, in the h11 `_state.py` manner:
the states, the inputs that can reach a transaction, the actions a transition runs, the one
table of transitions, and the timers a state arms when it is entered. `transaction.py` owns
the transactions and carries the actions out; it holds no protocol decisions of its own.

The table
---------
There are four kinds of transaction (INVITE or non-INVITE, client or server). Every transition
of every kind lives in one table, `TRANSITIONS`, keyed by (kind, state, input) and giving the
actions to run and the next state. A key that is not in the table is an input the RFC does
not allow in that state: a protocol error of the peer or the TU, which the layer ignores and
counts in `stats["ignored"]`, never an exception: a late response, a response from the TU to
a finished transaction, an ACK for a transaction still in Proceeding.

Timers are inputs like any other (TIMER_A … TIMER_M, CANCEL_GUARD). What entering a state does
to them is `entry_timers`: which running timers it cancels and which it arms, with the delays
of Table 4 (a delay of 0, the "0 for reliable transports" cases, fires at once).

2xx handling: RFC 6026 (which updates RFC 3261)
-----------------------------------------------
Both INVITE transactions enter "Accepted" on a 2xx instead of terminating at once:
- server: Timer L (64*T1). Retransmitted INVITEs are absorbed (RFC 3261 would hand them to
  the TU as a new request); every ACK is handed to the TU as `AckReceived`; further 2xx from
  the TU (a proxy forwarding other forks' 2xx or retransmissions) are sent.
- client: Timer M (64*T1). The first 2xx is a `ResponseReceived`; every later 2xx (a
  retransmission, or another fork's 2xx) is a `StrayResponse` carrying `txn`, which a proxy
  forwards statelessly (RFC 6026 §8.4). The ACK for a 2xx is the TU's business.

After the TU sends a CANCEL for an INVITE client transaction, that transaction is given
64*T1 to reach a final response (CANCEL_GUARD), then times out (§9.1). Timer C (§16.6) is the
proxy's.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "END_REASON",
    "INTERVAL_TIMERS",
    "LINGERING",
    "TRANSITIONS",
    "Action",
    "EntryRule",
    "Input",
    "Kind",
    "State",
    "Timers",
    "Transition",
    "entry_rules",
    "entry_timers",
    "response_input",
]


@dataclass(frozen=True, slots=True)
class Timers:
    """RFC 3261 §17.1.1.1 / Table 4 base values, in seconds."""

    t1: float = 0.5  # RTT estimate
    t2: float = 4.0  # maximum retransmit interval for non-INVITE requests and INVITE responses
    t4: float = 5.0  # maximum duration a message remains in the network


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


class Kind(enum.Enum):
    """The four transaction kinds; the values are the keys of `TransactionLayer.counts()`."""

    __hash__ = object.__hash__

    INVITE_CLIENT = "client_invite"
    NON_INVITE_CLIENT = "client_non_invite"
    INVITE_SERVER = "server_invite"
    NON_INVITE_SERVER = "server_non_invite"


class Input(enum.Enum):
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


class Action(enum.Enum):
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


# --------------------------------------------------------------------------- the table
_C, _T, _P, _X = State.CALLING, State.TRYING, State.PROCEEDING, State.COMPLETED
_F, _A, _Z = State.CONFIRMED, State.ACCEPTED, State.TERMINATED
_IC, _NC = Kind.INVITE_CLIENT, Kind.NON_INVITE_CLIENT
_IS, _NS = Kind.INVITE_SERVER, Kind.NON_INVITE_SERVER
_I = Input
_PASS, _ACK, _SEND = Action.PASS_UP, Action.SEND_ACK, Action.SEND
_NONE: tuple[Action, ...] = ()

Transition: TypeAlias = tuple[tuple[Action, ...], State]

# (kind, state, input) -> (actions, next state). Everything not listed is ignored.
TRANSITIONS: dict[tuple[Kind, State, Input], Transition] = {
    # INVITE client, §17.1.1 (Figure 5) + RFC 6026 §7.2
    (_IC, _C, _I.RESPONSE_1XX): ((_PASS,), _P),
    (_IC, _C, _I.RESPONSE_2XX): ((_PASS,), _A),
    (_IC, _C, _I.RESPONSE_FINAL): ((_PASS, _ACK), _X),
    (_IC, _C, _I.TIMER_A): ((Action.RESEND_REQUEST,), _C),
    (_IC, _C, _I.TIMER_B): ((Action.TIMEOUT,), _Z),
    (_IC, _C, _I.CANCEL_GUARD): ((Action.TIMEOUT,), _Z),
    (_IC, _C, _I.TRANSPORT_ERROR): ((Action.TIMEOUT,), _Z),
    (_IC, _P, _I.RESPONSE_1XX): ((_PASS,), _P),
    (_IC, _P, _I.RESPONSE_2XX): ((_PASS,), _A),
    (_IC, _P, _I.RESPONSE_FINAL): ((_PASS, _ACK), _X),
    (_IC, _P, _I.CANCEL_GUARD): ((Action.TIMEOUT,), _Z),
    (_IC, _P, _I.TRANSPORT_ERROR): ((Action.TIMEOUT,), _Z),
    (_IC, _X, _I.RESPONSE_FINAL): ((_ACK,), _X),
    (_IC, _X, _I.TIMER_D): (_NONE, _Z),
    (_IC, _X, _I.TRANSPORT_ERROR): (_NONE, _Z),
    (_IC, _A, _I.RESPONSE_2XX): ((Action.PASS_STRAY,), _A),
    (_IC, _A, _I.TIMER_M): (_NONE, _Z),
    (_IC, _A, _I.TRANSPORT_ERROR): (_NONE, _Z),
    # non-INVITE client, §17.1.2 (Figure 6)
    (_NC, _T, _I.RESPONSE_1XX): ((_PASS,), _P),
    (_NC, _T, _I.RESPONSE_2XX): ((_PASS,), _X),
    (_NC, _T, _I.RESPONSE_FINAL): ((_PASS,), _X),
    (_NC, _T, _I.TIMER_E): ((Action.RESEND_REQUEST,), _T),
    (_NC, _T, _I.TIMER_F): ((Action.TIMEOUT,), _Z),
    (_NC, _T, _I.TRANSPORT_ERROR): ((Action.TIMEOUT,), _Z),
    (_NC, _P, _I.RESPONSE_1XX): ((_PASS,), _P),
    (_NC, _P, _I.RESPONSE_2XX): ((_PASS,), _X),
    (_NC, _P, _I.RESPONSE_FINAL): ((_PASS,), _X),
    (_NC, _P, _I.TIMER_E): ((Action.RESEND_REQUEST,), _P),
    (_NC, _P, _I.TIMER_F): ((Action.TIMEOUT,), _Z),
    (_NC, _P, _I.TRANSPORT_ERROR): ((Action.TIMEOUT,), _Z),
    (_NC, _X, _I.RESPONSE_1XX): (_NONE, _X),
    (_NC, _X, _I.RESPONSE_2XX): (_NONE, _X),
    (_NC, _X, _I.RESPONSE_FINAL): (_NONE, _X),
    (_NC, _X, _I.TIMER_K): (_NONE, _Z),
    (_NC, _X, _I.TRANSPORT_ERROR): (_NONE, _Z),
    # INVITE server, §17.2.1 (Figure 7) + RFC 6026 §7.1
    (_IS, _P, _I.REQUEST): ((Action.RESEND_RESPONSE,), _P),
    (_IS, _P, _I.SEND_1XX): ((_SEND,), _P),
    (_IS, _P, _I.SEND_2XX): ((_SEND,), _A),
    (_IS, _P, _I.SEND_FINAL): ((_SEND,), _X),
    (_IS, _P, _I.TRANSPORT_ERROR): (_NONE, _Z),
    (_IS, _X, _I.REQUEST): ((Action.RESEND_RESPONSE,), _X),
    (_IS, _X, _I.ACK): (_NONE, _F),
    (_IS, _X, _I.TIMER_G): ((Action.RETRANSMIT_RESPONSE,), _X),
    (_IS, _X, _I.TIMER_H): (_NONE, _Z),
    (_IS, _X, _I.TRANSPORT_ERROR): (_NONE, _Z),
    (_IS, _F, _I.REQUEST): (_NONE, _F),
    (_IS, _F, _I.ACK): (_NONE, _F),
    (_IS, _F, _I.TIMER_I): (_NONE, _Z),
    (_IS, _F, _I.TRANSPORT_ERROR): (_NONE, _Z),
    (_IS, _A, _I.REQUEST): (_NONE, _A),
    (_IS, _A, _I.ACK): ((Action.PASS_ACK,), _A),
    (_IS, _A, _I.SEND_2XX): ((_SEND,), _A),
    (_IS, _A, _I.TIMER_L): (_NONE, _Z),
    (_IS, _A, _I.TRANSPORT_ERROR): (_NONE, _Z),
    # non-INVITE server, §17.2.2 (Figure 8)
    (_NS, _T, _I.REQUEST): (_NONE, _T),
    (_NS, _T, _I.SEND_1XX): ((_SEND,), _P),
    (_NS, _T, _I.SEND_2XX): ((_SEND,), _X),
    (_NS, _T, _I.SEND_FINAL): ((_SEND,), _X),
    (_NS, _T, _I.TRANSPORT_ERROR): (_NONE, _Z),
    (_NS, _P, _I.REQUEST): ((Action.RESEND_RESPONSE,), _P),
    (_NS, _P, _I.SEND_1XX): ((_SEND,), _P),
    (_NS, _P, _I.SEND_2XX): ((_SEND,), _X),
    (_NS, _P, _I.SEND_FINAL): ((_SEND,), _X),
    (_NS, _P, _I.TRANSPORT_ERROR): (_NONE, _Z),
    (_NS, _X, _I.REQUEST): ((Action.RESEND_RESPONSE,), _X),
    (_NS, _X, _I.TIMER_J): (_NONE, _Z),
    (_NS, _X, _I.TRANSPORT_ERROR): (_NONE, _Z),
}

# States in which a transaction only waits for its timers to end it.
LINGERING = frozenset({State.COMPLETED, State.CONFIRMED, State.ACCEPTED})

# Why a transaction reached Terminated, by the input that took it there.
END_REASON: dict[Input, str] = {
    _I.TIMER_B: "timeout",
    _I.TIMER_F: "timeout",
    _I.CANCEL_GUARD: "timeout",
    _I.TIMER_H: "timer_h",
    _I.TRANSPORT_ERROR: "transport_error",
}


def response_input(status: int, client: bool) -> Input:
    """The input a response is: received from the network (`client`) or sent by the TU."""
    if status < 200:
        return _I.RESPONSE_1XX if client else _I.SEND_1XX
    if status < 300:
        return _I.RESPONSE_2XX if client else _I.SEND_2XX
    return _I.RESPONSE_FINAL if client else _I.SEND_FINAL


# --------------------------------------------------------------------------- timers
# The retransmission timers: arming one also sets the transaction's current interval, which
# each firing doubles (capped at T2 where the RFC says so).
INTERVAL_TIMERS = frozenset({_I.TIMER_A, _I.TIMER_E, _I.TIMER_G})

# What entering a state does to the timers: (the running timers to cancel, None for all of
# them; the timers to arm, with their delays).
EntryRule: TypeAlias = tuple[tuple[Input, ...] | None, tuple[tuple[Input, float], ...]]


def entry_timers(kind: Kind, state: State, reliable: bool, t: Timers) -> EntryRule:
    """The timers entering `state` cancels and arms. A delay of 0 fires at once (the "0 for
    reliable transports" timers)."""
    match kind, state:
        case Kind.INVITE_CLIENT, State.CALLING:
            arm_b = ((_I.TIMER_B, 64 * t.t1),)
            return (), arm_b if reliable else ((_I.TIMER_A, t.t1), *arm_b)
        case Kind.INVITE_CLIENT, State.PROCEEDING:
            # §17.1.1.2: a provisional stops retransmissions and Timer B (CANCEL_GUARD runs on)
            return (_I.TIMER_A, _I.TIMER_B), ()
        case Kind.INVITE_CLIENT, State.COMPLETED:
            return None, ((_I.TIMER_D, 0.0 if reliable else 32.0),)
        case Kind.INVITE_CLIENT, State.ACCEPTED:
            return None, ((_I.TIMER_M, 64 * t.t1),)
        case Kind.NON_INVITE_CLIENT, State.TRYING:
            arm_f = ((_I.TIMER_F, 64 * t.t1),)
            return (), arm_f if reliable else ((_I.TIMER_E, min(t.t1, t.t2)), *arm_f)
        case Kind.NON_INVITE_CLIENT, State.PROCEEDING:
            return (), ()  # E keeps running (re-armed with T2), F keeps running
        case Kind.NON_INVITE_CLIENT, State.COMPLETED:
            return None, ((_I.TIMER_K, 0.0 if reliable else t.t4),)
        case Kind.INVITE_SERVER, State.COMPLETED:
            arm_h = ((_I.TIMER_H, 64 * t.t1),)
            return None, arm_h if reliable else ((_I.TIMER_G, min(t.t1, t.t2)), *arm_h)
        case Kind.INVITE_SERVER, State.CONFIRMED:
            return None, ((_I.TIMER_I, 0.0 if reliable else t.t4),)
        case Kind.INVITE_SERVER, State.ACCEPTED:
            return None, ((_I.TIMER_L, 64 * t.t1),)
        case Kind.NON_INVITE_SERVER, State.COMPLETED:
            return None, ((_I.TIMER_J, 0.0 if reliable else 64 * t.t1),)
        case _:
            return None, ()


def entry_rules(t: Timers) -> dict[tuple[Kind, State, bool], EntryRule]:
    """`entry_timers` for every (kind, state, reliable), computed once per layer."""
    return {
        (kind, state, reliable): entry_timers(kind, state, reliable, t)
        for kind in Kind
        for state in State
        for reliable in (False, True)
    }

"""What the transaction layer emits (RFC 3261 §17): one frozen, slotted dataclass per kind of
event, and the closed `Event` union to `match` on.

Every call into `TransactionLayer` returns a list of these: `SendMessage` is for the transport
(serialise and send), the rest are for the transaction user ("TU": the proxy, the registrar).
They are plain data: the layer has already changed its state when they are returned, and
nothing here refers back to the layer. `txn` fields carry the transaction objects themselves
(see `transaction.py`), so that the TU can keep its per-transaction data in `txn.user_data`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from .message import Request, Response
from .target import Target

if TYPE_CHECKING:  # the transaction objects hold no events: a cycle for the type checker only
    from .transaction import ClientTransaction, ServerTransaction

__all__ = [
    "AckReceived",
    "Event",
    "RequestReceived",
    "ResponseReceived",
    "SendMessage",
    "StrayResponse",
    "TransactionTerminated",
    "TransactionTimeout",
]


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

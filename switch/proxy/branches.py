"""The pieces a fork is made of (forking.py has the theory of operation): the plan (`Stage`s
of branch payloads), the `Branch`es and their states, the `ForkHooks` the proxy implements,
and the choice of the best final response (RFC 3261 §16.7 step 6)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

__all__ = [
    "DEFAULT_TIMER_C",
    "Branch",
    "BranchState",
    "ForkHooks",
    "Handle",
    "Stage",
    "choose_best",
]

P = TypeVar("P")  # branch payload (the proxy's per-branch data)
R = TypeVar("R")  # response object (opaque to the engine)
R_contra = TypeVar("R_contra", contravariant=True)

DEFAULT_TIMER_C = 185.0  # seconds; RFC 3261 §16.6 step 11: "greater than 3 minutes"


class Handle(Protocol):
    def cancel(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Stage(Generic[P]):
    """Branches started together, `delay` seconds after the fork starts."""

    payloads: tuple[P, ...]
    delay: float = 0.0
    only_if_earlier_ringing: bool = False
    # A branch that has had no response at all (not even 100 Trying) this many seconds after
    # it started is treated as 408 (a dead next hop: fail over to the next stage fast, the
    # way Kamailio's fr_timer does); None: only Timer C.
    response_timeout: float | None = None
    # A fail-over stage: it starts only when every earlier branch failed for the next hop's
    # own reasons (408 no response, 5xx), never after a real answer such as 486 - and then
    # it starts at once; otherwise it never starts.
    failover: bool = False

    def __post_init__(self) -> None:
        if self.delay < 0:
            raise ValueError("a stage delay cannot be negative")
        if self.response_timeout is not None and self.response_timeout <= 0:
            raise ValueError("a response timeout must be positive")


class BranchState(enum.Enum):
    PENDING = "pending"  # its stage has not started
    TRYING = "trying"  # started, no provisional above 100 yet
    RINGING = "ringing"  # a provisional (101-199) arrived
    DONE = "done"  # final response (or timeout, or never to start)


class Branch(Generic[P]):
    """One branch. `payload` is the proxy's; `data` is a free slot (e.g. its client txn)."""

    __slots__ = (
        "cancel_pending",
        "cancelled",
        "data",
        "final_status",
        "index",
        "payload",
        "response_timeout",
        "stage",
        "state",
        "superseded",
        "timer_c",
    )

    def __init__(self, index: int, stage: int, payload: P) -> None:
        self.index = index
        self.stage = stage
        self.payload = payload
        self.state = BranchState.PENDING
        self.final_status: int | None = None
        self.cancelled = False  # CANCEL sent
        self.cancel_pending = False  # CANCEL wanted, waiting for a provisional (§9.1)
        self.timer_c: Handle | None = None
        self.data: Any = None
        self.superseded = False  # replaced by a diversion: its final does not count
        self.response_timeout: float | None = None  # until the first response (Stage's)

    @property
    def alive(self) -> bool:
        return self.state in (BranchState.TRYING, BranchState.RINGING)

    def __repr__(self) -> str:
        return f"<Branch {self.index} stage={self.stage} {self.state.name}>"


class ForkHooks(Protocol[P, R_contra]):
    """What the engine asks of the proxy."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> Handle: ...

    def start_branch(self, branch: Branch[P]) -> None:
        """Send the request on this branch. May call `Fork.on_final` synchronously (e.g. the
        next hop cannot be resolved)."""
        ...

    def cancel_branch(self, branch: Branch[P]) -> None:
        """Send a CANCEL on a branch that received a provisional."""
        ...

    def forward(self, branch: Branch[P], response: R_contra) -> None:
        """Forward a provisional (101-199) or a 2xx upstream."""
        ...

    def finish(
        self, status: int, chosen: R_contra | None, finals: Sequence[tuple[int, R_contra | None]]
    ) -> None:
        """Send the final non-2xx answer. `chosen` is the response to forward (None when the
        status is synthesised: 408, 480, 487 …); `finals` are every branch's (status,
        response) for 401/407 aggregation."""
        ...


# Preference inside a response class (lower is better). Within 4xx the caller learns most
# from a challenge, then from "busy", and least from a timeout or our own 487.
_RANK = {
    401: 0,
    407: 0,
    415: 1,
    420: 1,
    484: 1,
    486: 2,
    600: 2,
    603: 2,
    480: 3,
    404: 4,
    408: 8,
    487: 9,
}


def choose_best(statuses: Sequence[int]) -> int:
    """Index of the best final non-2xx status (§16.7 step 6): any 6xx wins; otherwise the
    lowest class; inside a class by `_RANK` (unknown codes rank 5), then first received."""
    if not statuses:
        raise ValueError("no final response to choose from")

    def key(i: int) -> tuple[int, int, int]:
        s = statuses[i]
        cls = 0 if s >= 600 else s // 100
        return (cls, _RANK.get(s, 5), i)

    return min(range(len(statuses)), key=key)

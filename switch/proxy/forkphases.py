"""How a fork moves between its phases, as data (the switch/sip/transitions.py manner): the
phases, the inputs that reach a fork, the actions a transition runs, and the one table.
`forking.Fork` carries the actions out; it holds no phase decision of its own.

Phases
------
- RUNNING: branches may start and ring; nothing decided.
- DIVERTIBLE: RUNNING, and a diversion is still to come (`Fork.start(divert_to=…)`): no
  answer within the ring time, or every branch failing before it, diverts the call.
- ANSWERED: a 2xx went upstream; further 2xx still do (forking may produce several).
- DECIDED: a 6xx, the caller's CANCEL or the ring timeout decided the answer; the fork waits
  for the branches it CANCELled to end.
- FINISHED: the final answer went out (or the call was answered and every branch ended).

A (phase, input) pair missing from the table is an input the fork's rules do not allow in
that phase: it is ignored and counted in `IGNORED` (per pair, process-wide), never an
exception. Inputs that are normal but change nothing (a 2xx after the answer, a CANCEL
after a 6xx) are in the table with Action.NONE.
"""

from __future__ import annotations

import collections
import enum
from typing import TypeAlias

__all__ = ["IGNORED", "TRANSITIONS", "Action", "Input", "Phase", "Transition", "transition"]


class Phase(enum.Enum):
    __hash__ = object.__hash__  # identity hash: C-level, for the per-input table lookup

    RUNNING = "running"
    DIVERTIBLE = "divertible"
    ANSWERED = "answered"
    DECIDED = "decided"
    FINISHED = "finished"


class Input(enum.Enum):
    __hash__ = object.__hash__

    ANSWER = enum.auto()  # a branch's 2xx
    GLOBAL_FAILURE = enum.auto()  # a branch's 6xx (§16.7 step 5)
    CANCEL = enum.auto()  # the caller's CANCEL (§16.10)
    RING_TIMEOUT = enum.auto()  # nobody answered within the ring time
    BRANCHES_DONE = enum.auto()  # every branch has ended and no stage is left to start


class Action(enum.Enum):
    __hash__ = object.__hash__

    NONE = enum.auto()
    ANSWER = enum.auto()  # stop the timers, CANCEL every other branch
    DECIDE = enum.auto()  # start no more stages, CANCEL every branch, answer the status
    CANCEL = enum.auto()  # DECIDE 487, and remember the caller cancelled
    DIVERT = enum.auto()  # CANCEL every branch, start the diversion branch
    FINISH = enum.auto()  # send the final answer (nothing after a 2xx)


Transition: TypeAlias = tuple[Action, Phase]

_R, _V, _A = Phase.RUNNING, Phase.DIVERTIBLE, Phase.ANSWERED
_D, _F = Phase.DECIDED, Phase.FINISHED
_I = Input
_NONE = Action.NONE

# (phase, input) -> (action, next phase). Everything not listed is ignored and counted.
TRANSITIONS: dict[tuple[Phase, Input], Transition] = {
    # a 2xx: every one is forwarded (by the fork, before this); the first ends the ringing
    (_R, _I.ANSWER): (Action.ANSWER, _A),
    (_V, _I.ANSWER): (Action.ANSWER, _A),
    (_D, _I.ANSWER): (Action.ANSWER, _A),  # a 2xx racing our CANCEL still wins
    (_A, _I.ANSWER): (_NONE, _A),
    (_F, _I.ANSWER): (_NONE, _F),
    # a 6xx decides while nothing else has
    (_R, _I.GLOBAL_FAILURE): (Action.DECIDE, _D),
    (_V, _I.GLOBAL_FAILURE): (Action.DECIDE, _D),  # no diversion after a 6xx
    (_A, _I.GLOBAL_FAILURE): (_NONE, _A),
    (_D, _I.GLOBAL_FAILURE): (_NONE, _D),
    # the caller's CANCEL
    (_R, _I.CANCEL): (Action.CANCEL, _D),
    (_V, _I.CANCEL): (Action.CANCEL, _D),  # no diversion after a CANCEL
    (_A, _I.CANCEL): (_NONE, _A),
    (_D, _I.CANCEL): (_NONE, _D),
    (_F, _I.CANCEL): (_NONE, _F),
    # the ring timeout: divert once, else answer the timeout status
    (_R, _I.RING_TIMEOUT): (Action.DECIDE, _D),
    (_V, _I.RING_TIMEOUT): (Action.DIVERT, _R),
    (_A, _I.RING_TIMEOUT): (_NONE, _A),
    (_D, _I.RING_TIMEOUT): (_NONE, _D),
    (_F, _I.RING_TIMEOUT): (_NONE, _F),
    # every branch ended: every one failing before the ring time diverts at once
    (_R, _I.BRANCHES_DONE): (Action.FINISH, _F),
    (_V, _I.BRANCHES_DONE): (Action.DIVERT, _R),
    (_A, _I.BRANCHES_DONE): (Action.FINISH, _F),
    (_D, _I.BRANCHES_DONE): (Action.FINISH, _F),
}

IGNORED: collections.Counter[tuple[Phase, Input]] = collections.Counter()


def transition(phase: Phase, event: Input) -> Transition | None:
    """The table's entry, or None (then counted in IGNORED)."""
    entry = TRANSITIONS.get((phase, event))
    if entry is None:
        IGNORED[phase, event] += 1
    return entry

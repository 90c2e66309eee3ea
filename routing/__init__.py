"""Pure call-routing policy: (call, snapshot, live state, time) -> Decision. No I/O.

See `routing.policy` for the rules and their precedence."""

from .call import Call, Direction, LiveState, LiveView
from .decisions import (
    Announce,
    Busy,
    Decision,
    DestinationKind,
    Forward,
    Internal,
    NoAnswer,
    NoAnswerAction,
    Outbound,
    Reject,
    Ring,
    RingStage,
    Voicemail,
)
from .policy import decide

__all__ = [
    "Announce",
    "Busy",
    "Call",
    "Decision",
    "DestinationKind",
    "Direction",
    "Forward",
    "Internal",
    "LiveState",
    "LiveView",
    "NoAnswer",
    "NoAnswerAction",
    "Outbound",
    "Reject",
    "Ring",
    "RingStage",
    "Voicemail",
    "decide",
]

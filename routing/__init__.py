"""Pure call-routing policy: (call, snapshot, live state, time) -> Decision. No I/O.

The proxy asks twice per call, with one classification of the dialled string (`Call`):
`needs(call, snapshot)` says which live state to load (routing.needs), then
`decide(call, snapshot, live, now)` returns the Decision. See `routing.policy` for the rules
and their precedence."""

from .call import Call, Direction, LiveState, LiveView
from .caps import OutboundLimits, OutboundUsage
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
    VoicemailMenu,
)
from .needs import Needs, needs
from .policy import decide
from .settings import RoutingSettings

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
    "Needs",
    "NoAnswer",
    "NoAnswerAction",
    "Outbound",
    "OutboundLimits",
    "OutboundUsage",
    "Reject",
    "Ring",
    "RingStage",
    "RoutingSettings",
    "Voicemail",
    "VoicemailMenu",
    "decide",
    "needs",
]

"""Decisions and calls validate themselves: invalid ones cannot be built."""

from collections.abc import Callable
from datetime import datetime

import pytest

from routing import (
    Announce,
    Busy,
    Call,
    DestinationKind,
    Direction,
    Forward,
    Internal,
    LiveState,
    NoAnswer,
    NoAnswerAction,
    Outbound,
    Reject,
    Ring,
    RingStage,
    Voicemail,
    decide,
)
from routing.testing import office

N = "+81312345678"
STAGE = RingStage(delay_s=0, device_ids=("A",))
NA = NoAnswer(after_s=60, action=NoAnswerAction.REJECT)


def ring(**kw: object) -> Ring:
    fields: dict[str, object] = {
        "tenant_id": "t1",
        "number": N,
        "called_number": N,
        "stages": (STAGE,),
        "no_answer": NA,
        "rule": "r",
    }
    fields.update(kw)
    return Ring(**fields)  # type: ignore[arg-type]


INVALID: list[tuple[str, Callable[[], object]]] = [
    ("empty rule", lambda: Reject(status=404, reason="Not Found", rule="")),
    ("2xx reject", lambda: Reject(status=200, reason="OK", rule="r")),
    (
        "reject taking a channel",
        lambda: Reject(status=486, reason="B", rule="r", takes_channel=True),
    ),
    ("negative delay", lambda: RingStage(delay_s=-1, device_ids=("A",))),
    ("empty stage", lambda: RingStage(delay_s=0, device_ids=())),
    ("duplicate in stage", lambda: RingStage(delay_s=0, device_ids=("A", "A"))),
    ("zero no-answer", lambda: NoAnswer(after_s=0, action=NoAnswerAction.REJECT)),
    ("voicemail without mailbox", lambda: NoAnswer(after_s=5, action=NoAnswerAction.VOICEMAIL)),
    ("reject with mailbox", lambda: NoAnswer(after_s=5, action=NoAnswerAction.REJECT, mailbox=N)),
    ("ring without stages", lambda: ring(stages=())),
    ("first stage delayed", lambda: ring(stages=(RingStage(delay_s=1, device_ids=("A",)),))),
    (
        "first stage conditional",
        lambda: ring(
            stages=(RingStage(delay_s=0, device_ids=("A",), only_if_earlier_stage_ringing=True),)
        ),
    ),
    (
        "decreasing delays",
        lambda: ring(
            stages=(
                STAGE,
                RingStage(delay_s=5, device_ids=("B",)),
                RingStage(delay_s=2, device_ids=("C",)),
            )
        ),
    ),
    ("device in two stages", lambda: ring(stages=(STAGE, RingStage(delay_s=1, device_ids=("A",))))),
    ("notice without recording", lambda: ring(recording_notice=True)),
    ("ring without channel", lambda: ring(takes_channel=False)),
    ("number not E.164", lambda: ring(number="0312345678")),
    ("empty tenant", lambda: ring(tenant_id="")),
    (
        "recorded forward",
        lambda: Forward(
            tenant_id="t1",
            number=N,
            target="+819011112222",
            presented_identity=N,
            rule="r",
            record=True,
        ),
    ),
    (
        "forward to itself",
        lambda: Forward(tenant_id="t1", number=N, target=N, presented_identity=N, rule="r"),
    ),
    (
        "forward without channel",
        lambda: Forward(
            tenant_id="t1",
            number=N,
            target="+819011112222",
            presented_identity=N,
            rule="r",
            takes_channel=False,
        ),
    ),
    (
        "national forward target",
        lambda: Forward(
            tenant_id="t1", number=N, target="09011112222", presented_identity=N, rule="r"
        ),
    ),
    (
        "announce without prompt",
        lambda: Announce(tenant_id="t1", number=N, prompt="", then_voicemail=False, rule="r"),
    ),
    (
        "announce voicemail no mailbox",
        lambda: Announce(tenant_id="t1", number=N, prompt="p", then_voicemail=True, rule="r"),
    ),
    (
        "busy with free channels",
        lambda: Busy(
            tenant_id="t1", number=N, then_voicemail=False, channels_in_use=2, channels=3, rule="r"
        ),
    ),
    (
        "voicemail without mailbox",
        lambda: Voicemail(tenant_id="t1", number=N, mailbox="", rule="r"),
    ),
    (
        "outbound to bare national",
        lambda: Outbound(
            tenant_id="t1",
            device_id="A",
            destination="0355550000",
            destination_kind=DestinationKind.LANDLINE,
            presented_number=N,
            rule="r",
        ),
    ),
    (
        "outbound presenting foreign number",
        lambda: Outbound(
            tenant_id="t1",
            device_id="A",
            destination="+81355550000",
            destination_kind=DestinationKind.LANDLINE,
            presented_number="+12125551234",
            rule="r",
        ),
    ),
    (
        "internal to nobody",
        lambda: Internal(tenant_id="t1", device_id="A", device_ids=(), rule="r"),
    ),
    (
        "internal to itself",
        lambda: Internal(tenant_id="t1", device_id="A", device_ids=("A",), rule="r"),
    ),
    (
        "internal with channel",
        lambda: Internal(
            tenant_id="t1", device_id="A", device_ids=("B",), rule="r", takes_channel=True
        ),
    ),
    (
        "device call without device",
        lambda: Call(call_id="c", direction=Direction.FROM_DEVICE, dialled="0312345678"),
    ),
    (
        "inbound call with device",
        lambda: Call(call_id="c", direction=Direction.INBOUND, dialled="0312345678", device_id="A"),
    ),
    ("call without id", lambda: Call.inbound(call_id="", dialled="0312345678")),
    ("negative channels", lambda: LiveState(channels={"t1": -1})),
]


@pytest.mark.parametrize("build", [b for _, b in INVALID], ids=[i for i, _ in INVALID])
def test_invalid_values_are_refused(build: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        build()


def test_valid_ring_lists_devices_in_stage_order() -> None:
    later = RingStage(delay_s=3, device_ids=("C", "B"), only_if_earlier_stage_ringing=True)
    assert ring(stages=(STAGE, later)).device_ids == ("A", "C", "B")


def test_decisions_are_frozen() -> None:
    decision = Reject(status=404, reason="Not Found", rule="r")
    with pytest.raises(AttributeError):
        decision.status = 500  # type: ignore[misc]


def test_naive_time_is_refused() -> None:
    call = Call.inbound(call_id="c", dialled="0312345678")
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(call, office(), LiveState(), datetime(2026, 11, 20, 10, 0))

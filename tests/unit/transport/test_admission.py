"""The connection policy as tables: which timeout applies to a connection in which state, and
the per-source books."""

from __future__ import annotations

import pytest

from switch.transport.admission import (
    CloseReason,
    Refusal,
    SourceBook,
    StreamLimits,
    StreamState,
    close_reason,
)

L = StreamLimits(
    max_connections=10, max_per_source=4, max_untrusted_per_source=2,
    first_message_timeout=5.0, untrusted_idle_timeout=30.0, idle_timeout=3900.0,
)  # fmt: skip
OPENED = 100.0


def state(
    *, message: float | None = None, activity: float = OPENED, trusted: bool = False
) -> StreamState:
    return StreamState(opened=OPENED, last_activity=activity, last_message=message, trusted=trusted)


@pytest.mark.parametrize(
    ("st", "now", "expected"),
    [
        # nothing complete yet (idle, or half a header with recent octets): 5 s from opening
        (state(), OPENED + 4.9, None),
        (state(), OPENED + 5.0, CloseReason.FIRST_MESSAGE_TIMEOUT),
        (state(activity=OPENED + 4.9), OPENED + 5.0, CloseReason.FIRST_MESSAGE_TIMEOUT),
        # one message delivered, not trusted: 30 s after the last complete message
        (state(message=OPENED + 1), OPENED + 30.9, None),
        (state(message=OPENED + 1, activity=OPENED + 31), OPENED + 31, CloseReason.UNTRUSTED_IDLE),
        # trusted: the long keep-alive timeout from the last octet either way
        (state(trusted=True), OPENED + 3899, None),
        (state(trusted=True), OPENED + 3900, CloseReason.IDLE),
        (state(trusted=True, activity=OPENED + 3000), OPENED + 3900, None),
        (state(trusted=True, message=OPENED + 1), OPENED + 60, None),
    ],
)
def test_close_reason(st: StreamState, now: float, expected: CloseReason | None) -> None:
    assert close_reason(L, st, now) == expected


def test_idle_timeout_caps_the_untrusted_timeouts() -> None:
    short = StreamLimits(idle_timeout=0.2)
    assert close_reason(short, state(), OPENED + 0.2) is CloseReason.FIRST_MESSAGE_TIMEOUT
    assert close_reason(short, state(message=OPENED), OPENED + 0.2) is CloseReason.UNTRUSTED_IDLE


def test_book_per_source_limits() -> None:
    book = SourceBook(L)
    a, b = "192.0.2.1", "192.0.2.2"
    for _ in range(2):
        assert book.refusal(a, trusted=False, open_now=0) is None
        book.opened(a, trusted=False)
    assert book.refusal(a, trusted=False, open_now=2) is Refusal.SOURCE_UNTRUSTED_LIMIT
    assert book.refusal(b, trusted=False, open_now=2) is None  # another source
    book.trusted(a)  # one of them registered
    assert book.count(a) == (2, 1)
    book.opened(a, trusted=False)
    book.opened(a, trusted=True)  # e.g. our own outbound connection to it
    assert book.count(a) == (4, 2)
    assert book.refusal(a, trusted=False, open_now=4) is Refusal.SOURCE_LIMIT
    assert book.refusal(a, trusted=True, open_now=4) is None  # exempt/outbound: global only
    assert book.refusal(b, trusted=True, open_now=10) is Refusal.GLOBAL_LIMIT
    book.closed(a, trusted=False)
    assert book.count(a) == (3, 1)
    for trusted in (True, True, False):
        book.closed(a, trusted=trusted)
    assert book.count(a) == (0, 0) and book.sources() == 0


@pytest.mark.parametrize(
    "kw",
    [
        {"max_untrusted_per_source": 0},
        {"max_per_source": 5, "max_untrusted_per_source": 6},
        {"max_connections": 0},
        {"first_message_timeout": 0},
        {"untrusted_idle_timeout": -1},
    ],
)
def test_limits_validate(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        StreamLimits(**kw)  # type: ignore[arg-type]


def test_sweep_interval_follows_the_shortest_timeout() -> None:
    assert StreamLimits().sweep_interval == 1.0
    assert StreamLimits(first_message_timeout=1.0).sweep_interval == pytest.approx(0.2)
    assert StreamLimits(first_message_timeout=0.1).sweep_interval == 0.1

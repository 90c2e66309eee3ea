"""Fixtures: each relay as a real process on 127.0.0.1 with its own port range.

`relay` is parametrized over `embedded` and `rtpengine`, so every test of
`test_relays.py` runs against both. Port ranges are fixed per kind (46000-46999 rtpengine,
47000-47999 embedded), away from the ranges the SIP tests' peers use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.peers import need

from .harness import (
    EmbeddedProcess,
    RelayProcess,
    RtpengineProcess,
    ToneParty,
    rtpengine_available,
)

RANGES = {"rtpengine": (46000, 46999), "embedded": (47000, 47999)}


@pytest.fixture(params=["embedded", "rtpengine"])
def relay(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RelayProcess]:
    kind: str = request.param
    if kind == "rtpengine":
        need(rtpengine_available(), "rtpengine (Debian rtpengine-daemon)")
        proc: RelayProcess = RtpengineProcess(tmp_path, RANGES[kind])
    else:
        proc = EmbeddedProcess(tmp_path, RANGES[kind])
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def party() -> Iterator[Callable[[float], ToneParty]]:
    """Factory of RTP parties (a tone frequency each); their sockets close at teardown."""
    made: list[ToneParty] = []

    def make(freq: float) -> ToneParty:
        made.append(ToneParty(freq))
        return made[-1]

    yield make
    for p in made:
        p.close()

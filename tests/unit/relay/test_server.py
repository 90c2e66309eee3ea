"""The ng server: cookie cache for retransmissions, error replies, never a crash; the
player's pacing; and the layering of media.relay (sans-IO modules import no asyncio)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import media.relay
from media.g711 import Codec
from media.relay.bencode import decode
from media.relay.core import RelayCore
from media.relay.legs import parse_party_sdp
from media.relay.ng import Request, decode_message
from media.relay.player import Player, choose_codec
from media.relay.server import NgServer

from .fakes import FakePool, FakeSink, party_sdp

OFFER = (
    b"k_1 d7:command5:offer7:call-id1:c8:from-tag2:ft3:sdp"
    + str(len(party_sdp("10.0.0.1", 4000))).encode()
    + b":"
    + party_sdp("10.0.0.1", 4000)
    + b"e"
)


def test_retransmitted_request_gets_the_cached_reply_and_acts_once() -> None:
    pool = FakePool()
    server = NgServer(RelayCore(pool=pool, sink=FakeSink()).handle)
    first = server.datagram_received(OFFER, ("10.0.0.5", 5060), 0.0, 1000.0)
    again = server.datagram_received(OFFER, ("10.0.0.5", 5060), 0.3, 1000.3)
    assert first is not None and first == again
    assert pool.open() == 2 and server.stats.retransmissions == 1
    assert server.stats.requests == {"offer": 1}
    # the same cookie from another client, or after the cache time, is a new request
    server.datagram_received(OFFER, ("10.0.0.6", 5060), 0.4, 1000.4)
    assert server.stats.requests == {"offer": 2}
    server.datagram_received(OFFER, ("10.0.0.5", 5060), 31.0, 1031.0)
    assert server.stats.requests == {"offer": 3}


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        (b"k_2 d7:command5:dancee", b"Unrecognized command"),
        (b"k_3 not bencode", b"Could not decode dictionary"),
        (b"k_4 li1ee", b"Could not decode dictionary"),
        (b"k_5 d7:command5:query7:call-id1:xe", b"Unknown call-id"),
    ],
)
def test_bad_requests_get_error_replies(datagram: bytes, reason: bytes) -> None:
    server = NgServer(RelayCore(pool=FakePool()).handle)
    reply = server.datagram_received(datagram, ("h", 1), 0.0, 0.0)
    assert reply is not None
    cookie, body = decode_message(reply)
    assert cookie == datagram.split(b" ")[0].decode()
    assert body == {"result": b"error", "error-reason": reason}


def test_datagram_without_cookie_is_dropped() -> None:
    server = NgServer(RelayCore(pool=FakePool()).handle)
    assert server.datagram_received(b"d7:command4:pinge", ("h", 1), 0.0, 0.0) is None
    assert server.stats.dropped == 1


def test_a_bug_in_a_handler_is_an_error_reply_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    def broken(request: Request, now: float, wall: float) -> dict[str, object]:
        raise ZeroDivisionError

    server = NgServer(broken)  # type: ignore[arg-type]
    reply = server.datagram_received(b"k_1 d7:command4:pinge", ("h", 1), 0.0, 0.0)
    assert reply is not None and decode(reply.split(b" ", 1)[1]) == {
        "result": b"error",
        "error-reason": b"Internal error",
    }
    assert server.stats.internal_errors == 1


def test_cache_is_bounded() -> None:
    server = NgServer(lambda r, n, w: {"result": "pong"}, cache_size=10)
    for i in range(50):
        server.datagram_received(f"k_{i} d7:command4:pinge".encode(), ("h", 1), 0.0, 0.0)
    assert len(server._cache) <= 11


# --------------------------------------------------------------------------- player
def test_player_paces_20ms_packets_in_the_partys_preferred_law() -> None:
    sdp = parse_party_sdp(party_sdp("10.0.0.1", 4000, pts="8 0 101"))
    assert choose_codec(sdp) == (8, Codec.PCMA)
    assert choose_codec(None) == (0, Codec.PCMU)
    player = Player(bytes(2 * 8000), codec=Codec.PCMA, payload_type=8, start=10.0, repeat=2)
    assert player.duration_ms == 2000 and player.deadline() == 10.0
    first = player.due(10.0)
    assert len(first) == 1 and first[0][1] & 0x7F == 8 and len(first[0]) == 172
    assert player.due(10.019) == [] and len(player.due(10.1)) == 3  # burst after a stall...
    assert len(player.due(11.0)) == 3  # ...at most 3, the rest skipped (clock kept)
    player.due(12.0)
    assert player.done and player.deadline() is None


# --------------------------------------------------------------------------- layering
GLUE = {"client.py", "embedded.py"}
FORBIDDEN = {"asyncio", "uvloop", "aiohttp", "switch", "routing", "provisioning", "threading"}


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_relay_modules_are_sans_io_except_the_glue() -> None:
    folder = Path(media.relay.__file__).parent
    modules = {p.name: imports(p) for p in folder.glob("*.py")}
    assert len(modules) >= 15 and set(modules) >= GLUE
    offenders = {
        name: found & FORBIDDEN
        for name, found in modules.items()
        if name not in GLUE and found & FORBIDDEN
    }
    assert offenders == {}
    assert "asyncio" in modules["embedded.py"]  # the check sees imports at all

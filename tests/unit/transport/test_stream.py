"""TransportManager over real loopback sockets: stream framing glue, keep-alives, framing
errors, connection reuse and limits, idle close, and §18.2.2 response routing through
SipEndpoint when the request's connection is gone."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from switch.metrics import Metrics
from switch.sip.message import Request, Response, make_response
from switch.sip.target import Target
from switch.sip.transaction import ServerTransaction, TransactionLayer
from switch.transport.endpoint import SipEndpoint
from switch.transport.manager import TransportManager, TransportSettings

WAIT = 3.0  # every wait in this module is bounded by this


def options(branch: str, via_host: str = "192.0.2.50:5099", call_id: str = "c1") -> bytes:
    return (
        f"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {via_host};branch=z9hG4bK{branch}\r\n"
        f"From: <sip:a@example.com>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: {call_id}\r\n"
        "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


class Recorder:
    def __init__(self) -> None:
        self.messages: asyncio.Queue[tuple[Request | Response, Target]] = asyncio.Queue()
        self.send_errors: list[Target] = []

    def on_message(self, message: Request | Response, source: Target) -> None:
        self.messages.put_nowait((message, source))

    def on_send_error(self, target: Target) -> None:
        self.send_errors.append(target)

    async def next(self) -> tuple[Request | Response, Target]:
        return await asyncio.wait_for(self.messages.get(), WAIT)


@pytest.fixture
async def manager() -> AsyncIterator[tuple[TransportManager, Recorder]]:
    rec = Recorder()
    tm = TransportManager(rec, Metrics(), TransportSettings(max_connections=4, idle_timeout=3600))
    await tm.start(("127.0.0.1", 0), None, None)
    yield tm, rec
    await close_writers()
    await tm.close()


_writers: list[asyncio.StreamWriter] = []


async def connect(tm: TransportManager) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = tm.bound["tcp"]
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), WAIT)
    _writers.append(writer)
    return reader, writer


async def close_writers() -> None:
    while _writers:
        w = _writers.pop()
        w.close()
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(w.wait_closed(), WAIT)


async def test_udp_and_tcp_share_the_port(manager: tuple[TransportManager, Recorder]) -> None:
    tm, _ = manager
    assert tm.bound["udp"][1] == tm.bound["tcp"][1] != 0
    assert tm.udp_buffers[0] > 0


async def test_partial_chunks_and_pipelining(manager: tuple[TransportManager, Recorder]) -> None:
    tm, rec = manager
    _, writer = await connect(tm)
    first, second = options("a"), options("b", call_id="c2")
    for chunk in (first[:10], first[10:70]):
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(0.02)
    assert rec.messages.empty()  # nothing complete yet
    writer.write(first[70:] + second[:30])
    msgs = [await rec.next()]
    await asyncio.sleep(0.02)
    assert rec.messages.empty()  # the second is still incomplete
    writer.write(second[30:])
    await writer.drain()
    msgs.append(await rec.next())
    assert [m.call_id for m, _ in msgs] == ["c1", "c2"]
    source = msgs[0][1]
    assert source.transport == "tcp" and source.conn_id is not None
    assert msgs[1][1] == source
    req = msgs[0][0]
    assert isinstance(req, Request)
    assert req.top_via.params["received"] == "127.0.0.1"  # §18.2.1 on streams too
    writer.close()


async def test_crlf_ping_gets_pong(manager: tuple[TransportManager, Recorder]) -> None:
    tm, _ = manager
    reader, writer = await connect(tm)
    writer.write(b"\r\n\r\n")
    assert await asyncio.wait_for(reader.readexactly(2), WAIT) == b"\r\n"
    writer.close()


async def test_framing_error_answers_400_and_closes(
    manager: tuple[TransportManager, Recorder],
) -> None:
    tm, rec = manager
    reader, writer = await connect(tm)
    bad = options("x").replace(b"CSeq: 1 OPTIONS", b"CSeq: one OPTIONS")
    writer.write(bad)
    data = await asyncio.wait_for(reader.read(), WAIT)  # read() returns at EOF: closed
    assert data.startswith(b"SIP/2.0 400 ")
    assert b"branch=z9hG4bKx" in data
    assert rec.messages.empty()
    assert tm.metrics.value("sip_parse_errors_total", {"transport": "tcp", "status": "400"}) == 1


async def test_send_reuses_the_flow_by_conn_id(manager: tuple[TransportManager, Recorder]) -> None:
    tm, rec = manager
    reader, writer = await connect(tm)
    writer.write(options("r"))
    req, source = await rec.next()
    assert isinstance(req, Request)
    tm.send(make_response(req, 200), source)
    line = await asyncio.wait_for(reader.readline(), WAIT)
    assert line == b"SIP/2.0 200 OK\r\n"
    writer.close()
    await asyncio.wait_for(_until(lambda: tm.connection_count() == 0), WAIT)
    tm.send(make_response(req, 200), source)  # the flow is gone: reported, not re-opened
    await asyncio.sleep(0)
    assert rec.send_errors == [source]


async def test_send_without_conn_id_opens_then_reuses_a_connection(
    manager: tuple[TransportManager, Recorder],
) -> None:
    tm, _ = manager
    peer_rec = Recorder()
    peer = TransportManager(peer_rec, Metrics(), TransportSettings())
    await peer.start(("127.0.0.1", 0), None, None)
    try:
        target = Target("tcp", "127.0.0.1", peer.bound["tcp"][1])
        for branch in ("p1", "p2"):
            req = await _parsed(options(branch))
            tm.send(req, target)
        got = [await peer_rec.next(), await peer_rec.next()]
        assert [m.top_via.branch for m, _ in got] == ["z9hG4bKp1", "z9hG4bKp2"]
        assert got[0][1].conn_id == got[1][1].conn_id  # one connection, queued behind connect
        assert tm.connection_count() == 1
    finally:
        await peer.close()


async def test_connection_refused_is_a_send_error(
    manager: tuple[TransportManager, Recorder],
) -> None:
    tm, rec = manager
    target = Target("tcp", "127.0.0.1", 1)  # nothing listens on port 1
    tm.send(await _parsed(options("z")), target)
    await asyncio.wait_for(_until(lambda: bool(rec.send_errors)), WAIT)
    assert rec.send_errors == [target]


async def test_connection_limit(manager: tuple[TransportManager, Recorder]) -> None:
    tm, _ = manager
    conns = [await connect(tm) for _ in range(4)]
    await asyncio.wait_for(_until(lambda: tm.connection_count() == 4), WAIT)
    reader, writer = await connect(tm)
    assert await asyncio.wait_for(reader.read(), WAIT) == b""  # aborted at once
    assert tm.connection_count() == 4
    for _, w in [*conns, (reader, writer)]:
        w.close()


async def test_idle_connections_are_closed() -> None:
    rec = Recorder()
    tm = TransportManager(rec, Metrics(), TransportSettings(idle_timeout=0.2))
    await tm.start(("127.0.0.1", 0), None, None)
    try:
        reader, _ = await connect(tm)
        assert await asyncio.wait_for(reader.read(), WAIT) == b""  # closed by the sweep (1 s)
    finally:
        await close_writers()
        await tm.close()


# --------------------------------------------------------------------------- §18.2.2 via SipCore
class LateAnswer:
    """A TU that answers only when told to (after the test closed the connection)."""

    def __init__(self) -> None:
        self.txns: asyncio.Queue[tuple[ServerTransaction, Request]] = asyncio.Queue()

    async def on_request(
        self, txn: ServerTransaction, request: Request, source: Target, cancelled: object
    ) -> None:
        self.txns.put_nowait((txn, request))

    async def on_ack(self, request: Request, source: Target) -> None: ...
    def on_response(self, *a: object) -> None: ...
    def on_timeout(self, *a: object) -> None: ...
    def on_stray_response(self, *a: object) -> None: ...


async def test_response_falls_back_to_received_and_sent_by_port() -> None:
    # A "phone" that listens on its own port (the Via sent-by port) and connects from another.
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def phone(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.put_nowait(await reader.readuntil(b"\r\n\r\n"))
        writer.close()

    phone_server = await asyncio.start_server(phone, "127.0.0.1", 0)
    phone_port = phone_server.sockets[0].getsockname()[1]
    core = SipEndpoint(TransactionLayer(), Metrics())
    tu = LateAnswer()
    core.users.default = tu  # type: ignore[assignment]
    tm = TransportManager(core, core.metrics, TransportSettings())
    await tm.start(("127.0.0.1", 0), None, None)
    core.attach(tm)
    try:
        _, writer = await connect(tm)
        writer.write(options("fb", via_host=f"localhost:{phone_port}"))
        txn, request = await asyncio.wait_for(tu.txns.get(), WAIT)
        writer.close()
        await asyncio.wait_for(_until(lambda: tm.connection_count() == 0), WAIT)
        core.send_response(txn, make_response(request, 200))
        data = await asyncio.wait_for(got.get(), WAIT)
        assert data.startswith(b"SIP/2.0 200 OK")
        assert b"received=127.0.0.1" in data
    finally:
        await close_writers()
        await tm.close()
        core.close()
        phone_server.close()
        await phone_server.wait_closed()


async def _parsed(raw: bytes) -> Request:
    from switch.sip.parser import parse_message

    msg = parse_message(raw)
    assert isinstance(msg, Request)
    return msg


async def _until(cond: object) -> None:
    assert callable(cond)
    for _ in range(300):  # bounded: 300 x 10 ms
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never became true")

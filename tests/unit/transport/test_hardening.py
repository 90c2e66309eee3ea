"""TransportManager hardening over real loopback sockets (short timeouts, small limits):
per-source connection limits, the first-message and untrusted-idle timeouts, trust (by the
TU seam, by the endpoint on an accepting response, for exempt sources and our own outbound
connections), the flood guard on UDP and on streams, and the metrics of each."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import pytest

from switch.metrics import Metrics
from switch.sip.message import Request, make_response
from switch.sip.target import Target
from switch.sip.transaction import ServerTransaction, TransactionLayer
from switch.transport.endpoint import SipEndpoint
from switch.transport.manager import TransportManager, TransportSettings

from .test_stream import Recorder, options

WAIT = 3.0
ATTACKER = "127.0.0.9"


def register(branch: str, call_id: str = "r1") -> bytes:
    return (
        f"REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.50:5099;branch=z9hG4bK{branch}"
        f"\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: {call_id}"
        "\r\nCSeq: 1 REGISTER\r\nContact: <sip:a@192.0.2.50:5099;transport=tcp>\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


class Opened:
    """Client connections opened by a test, closed at the end."""

    def __init__(self, tm: TransportManager) -> None:
        self.tm = tm
        self.writers: list[asyncio.StreamWriter] = []

    async def connect(
        self, source: str = "127.0.0.1"
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = self.tm.bound["tcp"]
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, local_addr=(source, 0)), WAIT
        )
        self.writers.append(writer)
        return reader, writer

    async def close(self) -> None:
        for w in self.writers:
            w.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(w.wait_closed(), WAIT)


@contextlib.asynccontextmanager
async def running(
    receiver: object = None, **kw: object
) -> AsyncIterator[tuple[TransportManager, Recorder, Opened]]:
    rec = Recorder()
    settings = TransportSettings(**kw)  # type: ignore[arg-type]
    tm = TransportManager(receiver or rec, Metrics(), settings)  # type: ignore[arg-type]
    await tm.start(("127.0.0.1", 0), None, None)
    opened = Opened(tm)
    try:
        yield tm, rec, opened
    finally:
        await opened.close()
        await tm.close()


async def closed_by_peer(reader: asyncio.StreamReader, within: float = WAIT) -> float:
    """Seconds until the switch closed the connection (EOF or reset)."""
    t0 = time.monotonic()
    with contextlib.suppress(ConnectionError):
        while await asyncio.wait_for(reader.read(4096), within):
            pass
    return time.monotonic() - t0


def refused(tm: TransportManager, reason: str) -> float:
    return tm.metrics.value("sip_connections_refused_total", {"transport": "tcp", "reason": reason})


def closed(tm: TransportManager, reason: str) -> float:
    return tm.metrics.value("sip_connections_closed_total", {"transport": "tcp", "reason": reason})


async def until(cond: object, within: float = WAIT) -> None:
    assert callable(cond)
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition never became true")
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- limits
async def test_untrusted_connections_per_source_are_limited() -> None:
    async with running(max_untrusted_per_source=3, max_connections_per_source=5) as (tm, _, o):
        for _ in range(3):
            await o.connect(ATTACKER)
        await until(lambda: tm.connection_count() == 3)
        reader, _ = await o.connect(ATTACKER)
        assert await closed_by_peer(reader) < WAIT  # aborted at once
        assert refused(tm, "source_untrusted_limit") == 1
        await o.connect("127.0.0.1")  # another source still gets in
        await until(lambda: tm.connection_count() == 4)


async def test_total_per_source_counts_trusted_connections_too() -> None:
    async with running(max_untrusted_per_source=2, max_connections_per_source=3) as (tm, rec, o):
        for i in range(2):
            _, w = await o.connect(ATTACKER)
            w.write(options(f"t{i}", call_id=f"t{i}"))
            _, source = await rec.next()
            assert tm.mark_trusted(source) and tm.is_trusted(source)
        await o.connect(ATTACKER)  # third: untrusted, total 3
        await until(lambda: tm.connection_count() == 3)
        reader, _ = await o.connect(ATTACKER)
        assert await closed_by_peer(reader) < WAIT
        assert refused(tm, "source_limit") == 1


async def test_global_limit_is_counted_by_reason() -> None:
    async with running(max_connections=2) as (tm, _, o):
        await o.connect()
        await o.connect("127.0.0.2")
        await until(lambda: tm.connection_count() == 2)
        reader, _ = await o.connect("127.0.0.3")
        assert await closed_by_peer(reader) < WAIT
        assert refused(tm, "global_limit") == 1
        assert tm.metrics.value("sip_messages_dropped_total", {"reason": "connection_limit"}) == 1


# --------------------------------------------------------------------------- timeouts
async def test_idle_and_half_header_connections_are_closed_at_the_first_message_timeout() -> None:
    async with running(first_message_timeout=0.5, untrusted_idle_timeout=5.0) as (tm, _, o):
        idle, _ = await o.connect(ATTACKER)
        slow, slow_w = await o.connect(ATTACKER)

        async def trickle() -> None:  # half a header, one octet at a time, plus keep-alives
            for b in [b"\r\n\r\n", *(bytes([c]) for c in options("slow")[:40])]:
                slow_w.write(b)
                await asyncio.sleep(0.03)

        feeder = asyncio.create_task(trickle())
        took = await asyncio.gather(closed_by_peer(idle), closed_by_peer(slow))
        feeder.cancel()
        assert all(0.45 <= t < 0.5 + 0.2 + 0.3 for t in took), took  # timeout + sweep + slack
        assert closed(tm, "first_message_timeout") == 2
        await until(lambda: tm.connection_count() == 0)


async def test_untrusted_idle_then_trusted_keeps_the_long_timeout() -> None:
    async with running(first_message_timeout=0.3, untrusted_idle_timeout=0.6) as (tm, rec, o):
        r1, w1 = await o.connect()
        _, w2 = await o.connect()
        w1.write(options("u1", call_id="u1"))
        w2.write(options("u2", call_id="u2"))
        sources = {m.call_id: s for m, s in [await rec.next(), await rec.next()]}
        assert tm.mark_trusted(sources["u2"])
        took = await closed_by_peer(r1)
        assert 0.55 <= took < 1.2, took  # after a complete message: the untrusted idle timeout
        assert closed(tm, "untrusted_idle") == 1
        await asyncio.sleep(0.8)  # past both short timeouts: the trusted one stays
        assert tm.is_trusted(sources["u2"]) and tm.connection_count() == 1
        w2.write(options("u3", call_id="u3"))
        msg, _ = await rec.next()
        assert msg.call_id == "u3"


async def test_mark_trusted_is_a_no_op_for_udp_and_gone_connections() -> None:
    async with running() as (tm, _, _o):
        assert not tm.mark_trusted(Target("udp", "127.0.0.1", 5060))
        assert not tm.mark_trusted(Target("tcp", "127.0.0.1", 5060, 12345))


async def test_exempt_sources_are_trusted_from_the_start() -> None:
    async with running(
        first_message_timeout=0.3, max_untrusted_per_source=1, flood_exempt=("127.0.0.2",)
    ) as (tm, _, o):
        readers = [(await o.connect("127.0.0.2"))[0] for _ in range(3)]  # no per-source cap
        await asyncio.sleep(0.8)  # no first-message timeout either
        assert tm.connection_count() == 3
        tm.set_exempt([f"{ATTACKER}:5060"])  # run-time set (a gateway's allowed source)
        await o.connect(ATTACKER)
        await o.connect(ATTACKER)
        await until(lambda: tm.connection_count() == 5)
        assert all(not r.at_eof() for r in readers)


async def test_outbound_connections_are_trusted() -> None:
    async with running(first_message_timeout=0.3, untrusted_idle_timeout=0.5) as (tm, _, _o):
        got: asyncio.Queue[bytes] = asyncio.Queue()

        async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            got.put_nowait(await reader.readuntil(b"\r\n\r\n"))
            await reader.read()  # until the switch closes it
            writer.close()

        server = await asyncio.start_server(peer, "127.0.0.1", 0)
        try:
            from switch.sip.parser import parse_message

            req = parse_message(options("out"))
            tm.send(req, Target("tcp", "127.0.0.1", server.sockets[0].getsockname()[1]))
            await asyncio.wait_for(got.get(), WAIT)
            await asyncio.sleep(1.0)
            assert tm.connection_count() == 1
        finally:
            await tm.close()
            server.close()
            await server.wait_closed()


# --------------------------------------------------------------------------- trust by endpoint
class Answer:
    """A TU answering every request with a fixed status."""

    def __init__(self, core: SipEndpoint, status: int) -> None:
        self.core, self.status = core, status

    async def on_request(
        self, txn: ServerTransaction, request: Request, source: Target, cancelled: object
    ) -> None:
        self.core.send_response(txn, make_response(request, self.status))

    async def on_ack(self, request: Request, source: Target) -> None: ...
    def on_response(self, *a: object) -> None: ...
    def on_timeout(self, *a: object) -> None: ...
    def on_stray_response(self, *a: object) -> None: ...


@pytest.mark.parametrize(("status", "trusted"), [(200, True), (401, False), (100, False)])
async def test_the_endpoint_trusts_a_connection_when_it_accepts_a_register(
    status: int, trusted: bool
) -> None:
    core = SipEndpoint(TransactionLayer(), Metrics())
    core.users.default = Answer(core, status)  # type: ignore[assignment]
    async with running(core, untrusted_idle_timeout=0.5) as (tm, _, o):
        core.attach(tm)
        reader, writer = await o.connect()
        writer.write(register("reg"))
        line = await asyncio.wait_for(reader.readline(), WAIT)
        assert line.startswith(f"SIP/2.0 {status} ".encode())
        source = next(iter(tm._conns.by_id.values())).peer
        assert source is not None and tm.is_trusted(source) is trusted
        if trusted:
            await asyncio.sleep(0.8)
            assert not reader.at_eof() and tm.connection_count() == 1
        else:
            assert await closed_by_peer(reader) < 1.5
    core.close()


# --------------------------------------------------------------------------- floods
async def udp_client(source: str) -> tuple[asyncio.DatagramTransport, asyncio.Queue[bytes]]:
    got: asyncio.Queue[bytes] = asyncio.Queue()

    class P(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            got.put_nowait(data)

    loop = asyncio.get_running_loop()
    t, _ = await loop.create_datagram_endpoint(P, local_addr=(source, 0))
    return t, got


async def test_udp_flood_is_cut_at_the_source_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "switch.transport.manager")
    async with running(flood_limit=20, flood_window=1.0, flood_block=0.5) as (tm, rec, _o):
        addr = tm.bound["udp"]
        flood, _ = await udp_client(ATTACKER)
        honest, _ = await udp_client("127.0.0.1")
        for i in range(200):
            flood.sendto(options(f"f{i}", call_id=f"f{i}"), addr)
        honest.sendto(options("h", call_id="honest"), addr)
        await until(lambda: tm.metrics.value("sip_flood_dropped_total") == 180)
        await asyncio.sleep(0.05)
        delivered = [rec.messages.get_nowait()[0].call_id for _ in range(rec.messages.qsize())]
        assert len(delivered) == 21 and "honest" in delivered
        assert tm.metrics.value("sip_flood_blocks_total") == 1
        assert tm.metrics.value("sip_flood_blocked_sources") == 1
        assert sum("SIP flood from 127.0.0.9" in r.message for r in caplog.records) == 1
        # quiet: served again after block time (+ up to a window)
        await until(lambda: tm.metrics.value("sip_flood_blocked_sources") == 0, within=3.0)
        flood.sendto(options("again", call_id="again"), addr)
        msg, _ = await rec.next()
        assert msg.call_id == "again"
        assert any("is over" in r.message for r in caplog.records)
        flood.close()
        honest.close()


async def test_a_blocked_source_loses_its_untrusted_connections_and_cannot_connect() -> None:
    async with running(flood_limit=10, flood_window=1.0, flood_block=5.0) as (tm, rec, o):
        r_untrusted, _ = await o.connect(ATTACKER)
        _, w_trusted = await o.connect(ATTACKER)
        w_trusted.write(options("t", call_id="t"))
        _, source = await rec.next()
        tm.mark_trusted(source)
        flood, _ = await udp_client(ATTACKER)
        for i in range(20):
            flood.sendto(options(f"f{i}", call_id=f"f{i}"), tm.bound["udp"])
        assert await closed_by_peer(r_untrusted) < WAIT
        assert closed(tm, "flood_blocked") == 1
        reader, _ = await o.connect(ATTACKER)
        assert await closed_by_peer(reader) < WAIT
        assert refused(tm, "flood_blocked") == 1
        # the trusted flow stays open, but what it carries is dropped while blocked
        dropped = tm.metrics.value("sip_flood_dropped_total")
        w_trusted.write(options("t2", call_id="t2"))
        await until(lambda: tm.metrics.value("sip_flood_dropped_total") == dropped + 1)
        assert tm.is_trusted(source)
        flood.close()

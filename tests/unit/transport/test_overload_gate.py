"""The overload gate of the TransportManager over real loopback sockets: with the control
refusing (forced by the `overload_max_pending_invites` cap and a pending count the test
sets, so that nothing depends on this machine's load), a new INVITE is answered 503 +
Retry-After before it reaches the receiver, and everything the gate must never refuse still
reaches it: INVITE retransmissions, re-INVITEs, ACK (except the ACK of our own 503), BYE,
REGISTER; over UDP and TCP."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from switch.metrics import Metrics
from switch.sip.message import Request, Response
from switch.sip.parser import parse_message
from switch.sip.transaction import TransactionLayer
from switch.transport.endpoint import ROUTING_BACKLOG, SipEndpoint
from switch.transport.manager import TransportManager, TransportSettings

from .test_stream import Recorder

WAIT = 3.0


def request(
    method: str, branch: str, *, to_tag: str | None = None, transport: str = "UDP"
) -> bytes:
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    return (
        f"{method} sip:bob@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:5099;branch=z9hG4bK{branch};rport\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\n"
        f"To: {to}\r\nCall-ID: c-{branch}\r\nCSeq: 1 {method}\r\n"
        "Contact: <sip:alice@127.0.0.1:5099>\r\nContent-Length: 0\r\n\r\n"
    ).encode()


class Pending:
    """The transaction view the gate asks: pending INVITEs, and known INVITE branches."""

    def __init__(self) -> None:
        self.count = 5
        self.known: set[str] = set()

    def find_server(self, req: Request) -> object:
        return req if req.top_via.branch in self.known else None


@pytest.fixture
async def gate() -> AsyncIterator[tuple[TransportManager, Recorder, Pending, socket.socket]]:
    rec, view = Recorder(), Pending()
    settings = TransportSettings(overload_max_pending_invites=3, overload_retry_after=7)
    tm = TransportManager(rec, Metrics(), settings)
    await tm.start(("127.0.0.1", 0), None, None)
    tm.set_transaction_view(view.find_server, lambda: view.count)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield tm, rec, view, sock
    sock.close()
    await tm.close()


async def exchange(tm: TransportManager, sock: socket.socket, data: bytes) -> Response:
    loop = asyncio.get_running_loop()
    await loop.sock_sendto(sock, data, tm.bound["udp"])
    reply, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), WAIT)
    message = parse_message(reply)
    assert isinstance(message, Response)
    return message


async def delivered(rec: Recorder, tm: TransportManager, sock: socket.socket, data: bytes) -> str:
    await asyncio.get_running_loop().sock_sendto(sock, data, tm.bound["udp"])
    message, _ = await rec.next()
    assert isinstance(message, Request)
    return message.method


async def test_new_invite_refused_with_503_and_retry_after(gate) -> None:  # type: ignore[no-untyped-def]
    tm, rec, _, sock = gate
    reply = await exchange(tm, sock, request("INVITE", "new1"))
    assert reply.status == 503 and reply.headers.get("Retry-After") == "7"
    assert reply.call_id == "c-new1" and reply.cseq.method == "INVITE"
    assert reply.top_via.branch == "z9hG4bKnew1"
    tag = reply.to_tag
    assert tag is not None
    again = await exchange(tm, sock, request("INVITE", "new1"))  # its retransmission
    assert again.status == 503 and again.to_tag == tag  # stateless: the same answer
    # The ACK of that 503 is dropped unparsed; the next request is the first delivered.
    await asyncio.get_running_loop().sock_sendto(
        sock, request("ACK", "new1", to_tag=tag), tm.bound["udp"]
    )
    assert await delivered(rec, tm, sock, request("BYE", "bye1", to_tag="b1")) == "BYE"
    assert rec.messages.empty()
    m = tm.metrics
    assert m.value("sip_overload_rejected_total", {"reason": "pending_invites"}) == 2
    assert m.value("sip_responses_total", {"code": "503", "direction": "sent"}) == 2
    assert m.value("sip_requests_total", {"method": "INVITE"}) == 2


@pytest.mark.parametrize(
    ("method", "to_tag"),
    [("INVITE", "b1"), ("ACK", "b1"), ("BYE", "b1"), ("CANCEL", None), ("REGISTER", None)],
)
async def test_never_refused(gate, method: str, to_tag: str | None) -> None:  # type: ignore[no-untyped-def]
    tm, rec, _, sock = gate
    assert await delivered(rec, tm, sock, request(method, "x1", to_tag=to_tag)) == method
    assert tm.metrics.value("sip_overload_rejected_total", {"reason": "pending_invites"}) == 0


async def test_retransmission_of_an_accepted_invite_passes(gate) -> None:  # type: ignore[no-untyped-def]
    tm, rec, view, sock = gate
    view.known.add("z9hG4bKold1")
    assert await delivered(rec, tm, sock, request("INVITE", "old1")) == "INVITE"


async def test_under_the_cap_new_invites_pass(gate) -> None:  # type: ignore[no-untyped-def]
    tm, rec, view, sock = gate
    view.count = 2
    assert await delivered(rec, tm, sock, request("INVITE", "ok1")) == "INVITE"


async def test_refused_over_tcp_on_the_connection(gate) -> None:  # type: ignore[no-untyped-def]
    tm, rec, _, _ = gate
    reader, writer = await asyncio.open_connection(*tm.bound["tcp"])
    writer.write(request("INVITE", "tcp1", transport="TCP"))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    reply = parse_message(head)
    assert isinstance(reply, Response) and reply.status == 503
    assert reply.headers.get("Retry-After") == "7"
    assert rec.messages.empty()
    writer.close()


async def test_the_udp_delay_probe_measures_the_receive_queue() -> None:
    """While the SIP socket is not read (its reading paused: the loop itself stays on time,
    as it does when it reads datagram after datagram of a long queue), the probes wait in the
    queue and the delay the control samples grows past max_delay: the switch refuses new
    INVITEs; once the queue is read again, the delay is small and the refusals end."""
    rec = Recorder()
    tm = TransportManager(rec, Metrics(), TransportSettings())
    await tm.start(("127.0.0.1", 0), None, None)
    try:
        await asyncio.sleep(0.3)
        assert not tm._gate.control.active
        assert tm._udp is not None
        tm._udp.pause_reading()
        await asyncio.sleep(0.5)
        assert tm._gate.control.active and tm._gate.control.delay >= 0.4
        tm._udp.resume_reading()
        await asyncio.sleep(0.2)
        assert tm._gate.control.delay < 0.1
        lag = tm.metrics.value("sip_event_loop_lag_seconds_sum")
        assert lag < 0.1 * tm.metrics.value("sip_event_loop_lag_seconds_count")  # on time
    finally:
        await tm.close()


async def test_lost_delay_probes_are_forgotten_once_a_later_one_arrives() -> None:
    """A full queue drops probes: the first later probe that arrives ends the wait for the
    lost ones, so the delay measured is the arrived one's, not the age of a lost one."""
    tm = TransportManager(Recorder(), Metrics(), TransportSettings())
    await tm.start(("127.0.0.1", 0), None, None)
    try:
        assert tm._udp is not None
        tm._udp.pause_reading()
        t0 = asyncio.get_running_loop().time()
        for _ in range(3):  # three probes sent 1 s ago: the first two are lost
            tm._gate.probe.sample(t0 - 1.0)
        tm._gate.probe.received(2 * (2 + (tm._gate.probe._next - 1) % 32))  # the third arrives now
        assert tm._gate.probe._oldest == tm._gate.probe._next
        assert tm._gate.probe.sample(t0) >= 0.9  # the one that arrived took 1 s
        assert tm._gate.probe.sample(t0 + 0.01) == pytest.approx(0.01)  # not the lost ones' age
    finally:
        tm._udp.resume_reading()
        await tm.close()


class Slow:
    """A TU that waits (as on Redis) before it answers: the INVITE stays being routed."""

    def __init__(self) -> None:
        self.go = asyncio.Event()

    async def on_request(self, txn: object, request: Request, *a: object) -> None:
        await self.go.wait()

    async def on_ack(self, request: Request, source: object) -> None: ...
    def on_response(self, *a: object) -> None: ...
    def on_timeout(self, *a: object) -> None: ...
    def on_stray_response(self, *a: object) -> None: ...


async def test_invites_waiting_in_a_suspended_tu_count_as_delay() -> None:
    """On a network state backend the backlog waits in suspended TU tasks: the routing
    delay (the oldest new INVITE still in its TU's hands, once ROUTING_BACKLOG wait) is
    sampled like the loop lag."""
    core = SipEndpoint(TransactionLayer(), Metrics())
    slow = Slow()
    core.users.default = slow  # type: ignore[assignment]
    tm = TransportManager(core, Metrics(), TransportSettings())
    await tm.start(("127.0.0.1", 0), None, None)
    core.attach(tm)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for n in range(ROUTING_BACKLOG):
            sock.sendto(request("INVITE", f"slow{n}"), tm.bound["udp"])
        await asyncio.sleep(0.5)
        assert core.routing_delay(asyncio.get_running_loop().time()) >= 0.4
        assert tm._gate.control.active  # a standing delay over 0.1 s
        slow.go.set()
        await asyncio.sleep(0.05)
        assert core.routing_delay(asyncio.get_running_loop().time()) == 0.0
    finally:
        sock.close()
        await tm.close()
        core.close()


async def test_one_invite_waiting_on_an_unreachable_backend_is_not_load() -> None:
    """A single INVITE waiting long (a black-holed Redis: its timeout and breaker answer it
    503) is no backlog: no shedding, so none lingers after the backend recovers."""
    core = SipEndpoint(TransactionLayer(), Metrics())
    slow = Slow()
    core.users.default = slow  # type: ignore[assignment]
    tm = TransportManager(core, Metrics(), TransportSettings())
    await tm.start(("127.0.0.1", 0), None, None)
    core.attach(tm)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.sendto(request("INVITE", "alone"), tm.bound["udp"])
        await asyncio.sleep(0.5)
        assert core.routing_delay(asyncio.get_running_loop().time()) == 0.0
        assert not tm._gate.control.active
        slow.go.set()
    finally:
        sock.close()
        await tm.close()
        core.close()

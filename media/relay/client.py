"""`NgClient`: the asyncio glue over `NgTransactions` — one connected UDP socket to the relay
(embedded or rtpengine), one loop timer, one future per request.

    client = NgClient("udp:127.0.0.1:22222")          # or ("127.0.0.1", 22222)
    sdp = await client.offer(call_id=cid, from_tag=ft, sdp=body, via_branch=br, record=True)
    sdp = await client.answer(call_id=cid, from_tag=ft, to_tag=tt, sdp=body, via_branch=br)
    await client.delete(call_id=cid)                   # whole call, no 30 s delay
    await client.close()

Every call either returns within `transactions.timeout` (1 s by default) or raises an
`NgError`: `NgTimeout`, `NgUnreachable` (ICMP port unreachable on the connected socket: at
once, no waiting), `NgRefused` (`result: error`, with `.reason`), `NgProtocolError`.

Metrics: `observer(command, outcome, seconds)` is called once per request, `outcome` being
`ok`, `timeout`, `unreachable`, `refused` or `malformed`: map it to a Prometheus histogram and
counter. `stats` holds the transaction counters (retransmissions, duplicates, strays).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Sequence

from .bencode import BValue
from .errors import NgProtocolError, NgUnreachable
from .ng import (
    Answer,
    BlockMedia,
    Delete,
    ListCalls,
    Offer,
    Options,
    Ping,
    PlayMedia,
    Query,
    Request,
    StartRecording,
    StopMedia,
    StopRecording,
    SubscribeAnswer,
    SubscribeRequest,
    UnblockMedia,
    reply_int,
    reply_list,
)
from .transactions import DEFAULT_INTERVALS, Completed, Failed, NgTransactions, TransactionStats

__all__ = ["NgClient", "Observer", "parse_relay_address"]

log = logging.getLogger(__name__)

Observer = Callable[[str, str, float], None]


def parse_relay_address(text: str) -> tuple[str, int]:
    """`udp:HOST:PORT` (or `HOST:PORT`, `udp:[v6]:PORT`) -> (host, port); ValueError if bad."""
    rest = text.removeprefix("udp:")
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"relay address must be udp:HOST:PORT, got {text!r}")
    return host, int(port)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, client: NgClient) -> None:
        self.client = client

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.client._received(data)

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionRefusedError):
            self.client._refused()
        else:
            log.debug("ng socket error: %s", exc)


class NgClient:
    """An ng protocol client over UDP (see the module docstring)."""

    def __init__(
        self,
        address: str | tuple[str, int],
        *,
        intervals: tuple[float, ...] = DEFAULT_INTERVALS,
        observer: Observer | None = None,
    ) -> None:
        self.address = parse_relay_address(address) if isinstance(address, str) else address
        self._tx = NgTransactions(intervals=intervals)
        self._observer = observer
        self._transport: asyncio.DatagramTransport | None = None
        self._opening: asyncio.Lock | None = None
        self._futures: dict[str, asyncio.Future[dict[str, BValue]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def stats(self) -> TransactionStats:
        return self._tx.stats

    @property
    def timeout(self) -> float:
        return self._tx.timeout

    # ------------------------------------------------------------------ lifecycle
    async def _open(self) -> asyncio.DatagramTransport:
        if self._transport is not None and not self._transport.is_closing():
            return self._transport
        self._opening = self._opening or asyncio.Lock()
        async with self._opening:
            if self._transport is None or self._transport.is_closing():
                self._transport = await self._connect()
        return self._transport

    async def _connect(self) -> asyncio.DatagramTransport:
        self._loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        try:
            transport, _ = await self._loop.create_datagram_endpoint(
                lambda: _Protocol(self), remote_addr=self.address, family=family
            )
        except OSError as exc:
            raise NgUnreachable(f"cannot open a socket to {self.address}: {exc}") from exc
        return transport

    async def close(self) -> None:
        """Fail what is pending and close the socket (idempotent)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for cookie, fut in list(self._futures.items()):
            self._tx.cancel(cookie)
            if not fut.done():
                fut.set_exception(NgUnreachable("client closed"))
        self._futures.clear()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def __aenter__(self) -> NgClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ requests
    async def request(self, request: Request) -> dict[str, BValue]:
        """Send one request; the reply dictionary (result ok/pong) or an NgError."""
        transport = await self._open()
        loop = asyncio.get_running_loop()
        started = loop.time()
        cookie = self._tx.start(request, started)
        fut: asyncio.Future[dict[str, BValue]] = loop.create_future()
        self._futures[cookie] = fut
        self._flush(transport)
        self._arm()
        try:
            return await fut
        finally:
            self._futures.pop(cookie, None)
            self._tx.cancel(cookie)  # cancelled by our caller: forget the transaction

    async def ping(self) -> None:
        await self.request(Ping())

    async def offer(
        self,
        *,
        call_id: str,
        from_tag: str,
        sdp: bytes,
        via_branch: str | None = None,
        to_tag: str | None = None,
        label: str | None = None,
        flags: Sequence[str] = (),
        record: bool = False,
        metadata: str | None = None,
        options: Options = (),
    ) -> bytes:
        """The SDP rewritten to point at the relay, for the other party."""
        request = Offer(
            call_id=call_id,
            from_tag=from_tag,
            to_tag=to_tag,
            via_branch=via_branch,
            label=label,
            sdp=sdp,
            flags=tuple(flags),
            record_call=record,
            metadata=metadata,
            options=options,
        )
        return _sdp_of(await self.request(request))

    async def answer(
        self,
        *,
        call_id: str,
        from_tag: str,
        to_tag: str,
        sdp: bytes,
        via_branch: str | None = None,
        label: str | None = None,
        flags: Sequence[str] = (),
        record: bool = False,
        metadata: str | None = None,
        options: Options = (),
    ) -> bytes:
        request = Answer(
            call_id=call_id,
            from_tag=from_tag,
            to_tag=to_tag,
            via_branch=via_branch,
            label=label,
            sdp=sdp,
            flags=tuple(flags),
            record_call=record,
            metadata=metadata,
            options=options,
        )
        return _sdp_of(await self.request(request))

    async def delete(
        self,
        *,
        call_id: str,
        from_tag: str | None = None,
        to_tag: str | None = None,
        via_branch: str | None = None,
        delete_delay: int | None = 0,
        fatal: bool = False,
    ) -> dict[str, BValue]:
        """Delete the whole call (no from-tag) or one branch (from-tag + via-branch)."""
        request = Delete(
            call_id=call_id,
            from_tag=from_tag,
            to_tag=to_tag,
            via_branch=via_branch,
            delete_delay=delete_delay,
            fatal=fatal,
        )
        return await self.request(request)

    async def query(
        self, *, call_id: str, from_tag: str | None = None, to_tag: str | None = None
    ) -> dict[str, BValue]:
        return await self.request(Query(call_id=call_id, from_tag=from_tag, to_tag=to_tag))

    async def list_calls(self, limit: int = 32) -> list[str]:
        reply = await self.request(ListCalls(limit=limit))
        return [
            c.decode(errors="replace") for c in reply_list(reply, "calls") if isinstance(c, bytes)
        ]

    async def start_recording(self, *, call_id: str, metadata: str | None = None) -> None:
        await self.request(StartRecording(call_id=call_id, metadata=metadata))

    async def stop_recording(self, *, call_id: str) -> None:
        await self.request(StopRecording(call_id=call_id))

    async def play_media(
        self, *, call_id: str, from_tag: str, file: str, repeat_times: int | None = None
    ) -> int | None:
        """Play `file` (a path on the relay's machine) to `from_tag`; its duration in ms."""
        request = PlayMedia(
            call_id=call_id, from_tag=from_tag, file=file, repeat_times=repeat_times
        )
        return reply_int(await self.request(request), "duration")

    async def stop_media(self, *, call_id: str, from_tag: str) -> None:
        await self.request(StopMedia(call_id=call_id, from_tag=from_tag))

    async def block_media(self, *, call_id: str, from_tag: str) -> None:
        """Stop forwarding what `from_tag` sends (e.g. the callee while a notice plays)."""
        await self.request(BlockMedia(call_id=call_id, from_tag=from_tag))

    async def unblock_media(self, *, call_id: str, from_tag: str) -> None:
        await self.request(UnblockMedia(call_id=call_id, from_tag=from_tag))

    async def subscribe_request(
        self, *, call_id: str, from_tags: Sequence[str] = (), to_tag: str | None = None
    ) -> dict[str, BValue]:
        request = SubscribeRequest(call_id=call_id, from_tags=tuple(from_tags), to_tag=to_tag)
        return await self.request(request)

    async def subscribe_answer(self, *, call_id: str, to_tag: str, sdp: bytes) -> None:
        await self.request(SubscribeAnswer(call_id=call_id, to_tag=to_tag, sdp=sdp))

    # ------------------------------------------------------------------ glue
    def _received(self, data: bytes) -> None:
        self._tx.receive_datagram(data, self._now())
        self._drain()

    def _refused(self) -> None:
        self._tx.connection_refused(self._now())
        self._drain()

    def _on_timer(self) -> None:
        self._timer = None
        self._tx.handle_timer(self._now())
        if self._transport is not None:
            self._flush(self._transport)
        self._drain()

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    def _flush(self, transport: asyncio.DatagramTransport) -> None:
        for datagram in self._tx.datagrams_to_send():
            with contextlib.suppress(OSError):
                transport.sendto(datagram)

    def _arm(self) -> None:
        when = self._tx.next_timer()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if when is not None and self._loop is not None:
            self._timer = self._loop.call_at(when, self._on_timer)

    def _drain(self) -> None:
        while (event := self._tx.next_event()) is not None:
            self._deliver(event)
        self._arm()

    def _deliver(self, event: Completed | Failed) -> None:
        fut = self._futures.get(event.cookie)
        outcome = "ok" if isinstance(event, Completed) else event.kind
        if self._observer is not None:
            self._observer(event.command, outcome, event.latency)
        if fut is None or fut.done():
            return
        if isinstance(event, Completed):
            fut.set_result(event.reply)
        else:
            fut.set_exception(event.error)


def _sdp_of(reply: dict[str, BValue]) -> bytes:
    sdp = reply.get("sdp")
    if not isinstance(sdp, bytes):
        raise NgProtocolError("offer/answer reply without an sdp")
    return sdp

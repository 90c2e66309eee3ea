"""TCP/TLS connections: one asyncio.Protocol per connection, framing with StreamFramer.

A connection knows nothing about transactions; it hands framed messages and errors to its
owner (`StreamOwner`, the TransportManager), whose `ConnectionTable` (switch.transport.
connections) keeps the registry and decides when a connection has been idle too long
(switch.transport.admission: `state`
records when it opened, its last octet and its last complete message, and whether it is
trusted).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol, cast

from switch.sip.message import ParseError, Request, Response
from switch.sip.parser import KeepAlive, StreamFramer
from switch.sip.target import Target

from .admission import StreamState

__all__ = ["Connection", "StreamOwner"]

log = logging.getLogger(__name__)

# Messages framed per data_received call before yielding back to the loop (a bound: a peer
# pipelining thousands of tiny messages cannot starve everyone else forever).
_MAX_FRAMES_PER_READ = 1000
_PONG = b"\r\n"


class StreamOwner(Protocol):
    def connection_made(self, conn: Connection) -> bool:
        """Register; False refuses the connection (limit reached)."""
        ...

    def connection_lost(self, conn: Connection) -> None: ...

    def stream_message(self, message: Request | Response, conn: Connection) -> None: ...

    def stream_error(self, error: ParseError, conn: Connection) -> None:
        """Framing failed: answer if possible; the connection is closed afterwards."""
        ...


class Connection(asyncio.Protocol):
    """One TCP or TLS connection (inbound or outbound)."""

    def __init__(
        self,
        owner: StreamOwner,
        transport_name: str,
        conn_id: int,
        max_size: int,
        *,
        outbound: bool = False,
    ) -> None:
        self.owner = owner
        self.name = transport_name  # "tcp" | "tls"
        self.conn_id = conn_id
        self.outbound = outbound  # opened by the switch (trusted from the start)
        self.framer = StreamFramer(max_size=max_size)
        self.transport: asyncio.Transport | None = None
        self.peer: Target | None = None
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self.state = StreamState(opened=now, last_activity=now, trusted=outbound)
        self.closed = self._loop.create_future()
        self.registered = False

    # ------------------------------------------------------------------ asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # No isinstance check: uvloop's TCPTransport implements the interface without
        # subclassing asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = Target(self.name, peer[0], peer[1], self.conn_id)
        self.state.opened = self.state.last_activity = self._loop.time()
        self.registered = self.owner.connection_made(self)
        if not self.registered:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        now = self.state.last_activity = self._loop.time()
        self.framer.feed(data)
        for _ in range(_MAX_FRAMES_PER_READ):
            try:
                item = self.framer.next()
            except ParseError as exc:
                self.owner.stream_error(exc, self)
                self.close()
                return
            if item is None:
                return
            if isinstance(item, KeepAlive):
                if item.ping:  # RFC 5626 §3.5.1: answer a CRLFCRLF ping with a CRLF pong
                    self.write(_PONG)
                continue
            self.state.last_message = now
            self.owner.stream_message(item, self)
        log.warning("connection %s: frame limit per read reached", self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.registered:
            self.owner.connection_lost(self)
        if not self.closed.done():
            self.closed.set_result(None)

    # ------------------------------------------------------------------ ours
    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def write(self, data: bytes) -> bool:
        if not self.open:
            return False
        assert self.transport is not None
        self.transport.write(data)
        self.state.last_activity = self._loop.time()
        return True

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

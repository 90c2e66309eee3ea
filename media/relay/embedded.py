"""The embedded relay: rtpengine's ng protocol and RTP relaying in the proxy's process (or in
its own, `main()`), so one machine needs nothing but Python. This module is the asyncio glue;
the decisions are in `core` (commands, expiry), `calls`/`legs` (routing, latching),
`recorder` (the WAV) and `server` (cookies, retransmissions).

    relay = EmbeddedRelay(recordings=DirectorySink("/var/lib/softswitch/recordings"))
    await relay.start()
    client = NgClient(relay.ng_address)
    ...
    await relay.stop()            # finishes every recording, closes every socket

Packet path (the hot one): each leg's RTP and RTCP sockets are plain non-blocking sockets
watched with `loop.add_reader` — no transport objects, and binding is synchronous, so an
`offer` allocates its ports inside the request. On readiness one datagram is read (the
reader is level-triggered: more wait for the next loop iteration), goes through
`Call.rtp_in` (latch, count, record) and is sent with `sendto` from the peer leg's socket to
the peer's latched (else SDP) address. A full send buffer drops the datagram (counted), as a
router would; nothing queues.

Timers: one 0.5 s tick for recorders and expiry, and one timer at the earliest playback
deadline while a `play media` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from ..errors import AudioError
from ..ua.rtp_session import PortRange
from ..wav import read_wav
from .calls import Call
from .core import RelayConfig, RelayCore
from .errors import NgRequestError
from .legs import Addr, Leg
from .player import Player, choose_codec
from .server import NgServer
from .sink import DirectorySink, RecordingSink

__all__ = ["EmbeddedRelay", "main"]

log = logging.getLogger(__name__)

TICK = 0.5
DEFAULT_PORTS = PortRange(30000, 39999)


class _Ports:
    """A leg's RTP/RTCP sockets, registered with the loop (implements `legs.PortPair`)."""

    __slots__ = ("_loop", "address", "closed", "rtcp", "rtp", "rtp_port", "send_errors")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, rtp: socket.socket, rtcp: socket.socket
    ) -> None:
        self._loop = loop
        self.rtp = rtp
        self.rtcp = rtcp
        self.address, self.rtp_port = rtp.getsockname()[:2]
        self.send_errors = 0
        self.closed = False

    def send_rtp(self, data: bytes, dest: Addr) -> None:
        try:
            self.rtp.sendto(data, dest)
        except OSError:
            self.send_errors += 1

    def send_rtcp(self, data: bytes, dest: Addr) -> None:
        try:
            self.rtcp.sendto(data, dest)
        except OSError:
            self.send_errors += 1

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for sock in (self.rtp, self.rtcp):
            with contextlib.suppress(Exception):
                self._loop.remove_reader(sock.fileno())
            sock.close()


class _PortPool:
    """Binds even/odd port pairs from the range, rotating the starting point."""

    def __init__(self, relay: EmbeddedRelay, host: str, ports: PortRange) -> None:
        self.relay = relay
        self.host = host
        self.ports = ports
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._span = (ports.last - ports.first + 1) // 2
        self._next = itertools.count()
        self.open = 0

    def allocate(self, call: Call, leg: Leg) -> None:
        start = next(self._next)
        for i in range(self._span):
            port = self.ports.first + 2 * ((start + i) % self._span)
            pair = self._bind(port)
            if pair is not None:
                self._register(call, leg, pair)
                return
        raise OSError(f"no free port pair in {self.ports.first}-{self.ports.last}")

    def _bind(self, port: int) -> tuple[socket.socket, socket.socket] | None:
        rtp = socket.socket(self.family, socket.SOCK_DGRAM)
        rtcp = socket.socket(self.family, socket.SOCK_DGRAM)
        try:
            rtp.bind((self.host, port))
            rtcp.bind((self.host, port + 1))
        except OSError:
            rtp.close()
            rtcp.close()
            return None
        rtp.setblocking(False)
        rtcp.setblocking(False)
        return rtp, rtcp

    def _register(self, call: Call, leg: Leg, pair: tuple[socket.socket, socket.socket]) -> None:
        loop = self.relay.loop
        ports = _Ports(loop, *pair)
        loop.add_reader(ports.rtp.fileno(), self.relay._rtp_ready, call, leg, ports.rtp)
        loop.add_reader(ports.rtcp.fileno(), self.relay._rtcp_ready, call, leg, ports.rtcp)
        leg.ports = ports


class _Control(asyncio.DatagramProtocol):
    def __init__(self, relay: EmbeddedRelay) -> None:
        self.relay = relay
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        reply = self.relay.server.datagram_received(data, addr, time.monotonic(), time.time())
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


class EmbeddedRelay:
    """ng server + RTP relay + recorder (see the module docstring)."""

    def __init__(
        self,
        *,
        ng_host: str = "127.0.0.1",
        ng_port: int = 0,
        media_address: str = "127.0.0.1",
        ports: PortRange = DEFAULT_PORTS,
        recordings: RecordingSink | str | Path | None = None,
        media_root: str | Path | None = None,
        config: RelayConfig | None = None,
    ) -> None:
        sink = DirectorySink(recordings) if isinstance(recordings, str | Path) else recordings
        self._ng = (ng_host, ng_port)
        self.media_address = media_address
        self.port_range = ports
        self.media_root = Path(media_root).resolve() if media_root is not None else None
        self.core = RelayCore(pool=self._pool_proxy(), sink=sink, player=self, config=config)
        self.server = NgServer(self.core.handle)
        self.ng_address: Addr = (ng_host, ng_port)
        self.dropped_sends = 0
        self._pool: _PortPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._control: asyncio.DatagramTransport | None = None
        self._tick: asyncio.TimerHandle | None = None
        self._players: dict[Leg, tuple[Call, Player]] = {}
        self._play_timer: asyncio.TimerHandle | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("relay not started")
        return self._loop

    def _pool_proxy(self) -> _PoolProxy:
        return _PoolProxy(self)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._pool = _PortPool(self, self.media_address, self.port_range)
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _Control(self), local_addr=self._ng
        )
        self._control = transport
        self.ng_address = transport.get_extra_info("sockname")[:2]
        self._tick = self._loop.call_later(TICK, self._on_tick)
        log.info("embedded relay: ng on %s:%d, media on %s", *self.ng_address, self.media_address)

    async def stop(self) -> None:
        """Delete every call (recordings are finished and handed to the sink), close all."""
        for handle in (self._tick, self._play_timer):
            if handle is not None:
                handle.cancel()
        self._tick = self._play_timer = None
        self.core.close(time.monotonic(), time.time())
        self._players.clear()
        if self._control is not None:
            self._control.close()
            self._control = None

    async def __aenter__(self) -> EmbeddedRelay:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _on_tick(self) -> None:
        try:
            self.core.tick(time.monotonic(), time.time())
        except Exception:  # never lose the tick: it is what expires calls
            log.exception("relay tick failed")
        self._tick = self.loop.call_later(TICK, self._on_tick)

    # ------------------------------------------------------------------ packets
    def _rtp_ready(self, call: Call, leg: Leg, sock: socket.socket) -> None:
        # One datagram per readiness event: at 50 packets/s a socket rarely holds two, and a
        # second recvfrom that fails costs a syscall and an exception per packet. The reader
        # is level-triggered, so anything left is read on the next loop iteration.
        try:
            data, source = sock.recvfrom(4096)
        except OSError:  # would block, or an ICMP error queued on the socket
            return
        players = self._players
        for peer in call.rtp_in(leg, data, source, time.monotonic()):
            dest = peer.rtp_destination()
            if dest is None or peer.ports is None:
                continue
            if peer in players:
                players[peer][1].blocked += 1
                continue
            peer.ports.send_rtp(data, dest)

    def _rtcp_ready(self, call: Call, leg: Leg, sock: socket.socket) -> None:
        try:
            data, source = sock.recvfrom(4096)
        except OSError:
            return
        for peer in call.rtcp_in(leg, data, source, time.monotonic()):
            dest = peer.rtcp_destination()
            if dest is not None and peer.ports is not None:
                peer.ports.send_rtcp(data, dest)

    # ------------------------------------------------------------------ play media (PlayerHost)
    def play_to(
        self, call: Call, leg: Leg, file: str | None, blob: bytes | None, repeat: int
    ) -> int:
        try:
            pcm = read_wav(blob if blob is not None else self._media_path(file or ""))
        except AudioError as exc:
            raise NgRequestError(f"Failed to start media playback: {exc.message}") from exc
        pt, codec = choose_codec(leg.sdp)
        player = Player(pcm, codec=codec, payload_type=pt, start=time.monotonic(), repeat=repeat)
        self._players[leg] = (call, player)
        self._arm_player()
        return player.duration_ms

    def stop_playing(self, leg: Leg) -> bool:
        return self._players.pop(leg, None) is not None

    def _media_path(self, file: str) -> str:
        path = Path(file)
        if self.media_root is not None:
            path = (self.media_root / path).resolve()
            if not path.is_relative_to(self.media_root):
                raise NgRequestError("Failed to start media playback: outside the media directory")
        return str(path)

    def _arm_player(self) -> None:
        if self._play_timer is not None:
            self._play_timer.cancel()
            self._play_timer = None
        deadlines = [d for _, p in self._players.values() if (d := p.deadline()) is not None]
        if deadlines:
            self._play_timer = self.loop.call_at(
                _loop_time(self.loop, min(deadlines)), self._on_play
            )

    def _on_play(self) -> None:
        self._play_timer = None
        now = time.monotonic()
        for leg, (_, player) in list(self._players.items()):
            dest = leg.rtp_destination()
            for datagram in player.due(now):
                if dest is not None and leg.ports is not None:
                    leg.ports.send_rtp(datagram, dest)
            if player.done:
                del self._players[leg]
        self._arm_player()


class _PoolProxy:
    """The core's `PortPool`, bound once the loop is known (`start()`)."""

    def __init__(self, relay: EmbeddedRelay) -> None:
        self.relay = relay

    def allocate(self, call: Call, leg: Leg) -> None:
        pool = self.relay._pool
        if pool is None:
            raise OSError("relay not started")
        pool.allocate(call, leg)


def _loop_time(loop: asyncio.AbstractEventLoop, monotonic: float) -> float:
    """A `time.monotonic()` instant on the loop's clock (the same clock on Linux; kept
    explicit so a loop with another clock still fires on time)."""
    return loop.time() + (monotonic - time.monotonic())


# --------------------------------------------------------------------------- process
def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="softswitch relay", description="Embedded RTP relay (ng protocol)"
    )
    parser.add_argument("--ng", default="127.0.0.1:2223", help="HOST:PORT of the ng control socket")
    parser.add_argument("--media-address", default="127.0.0.1", help="address RTP is relayed on")
    parser.add_argument("--ports", default="30000-39999", help="RTP port range FIRST-LAST")
    parser.add_argument("--recordings", default=None, help="directory for recordings")
    parser.add_argument("--media-dir", default=None, help="directory `play media` files are in")
    parser.add_argument("--idle-timeout", type=float, default=60.0)
    parser.add_argument("--max-age", type=float, default=4 * 3600.0)
    parser.add_argument("--sync-every", type=float, default=5.0, help="WAV header patch period")
    parser.add_argument("--no-uvloop", action="store_true")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    host, _, port = args.ng.rpartition(":")
    sink = DirectorySink(args.recordings) if args.recordings else None
    if sink is not None:
        for path in sink.recover():  # .part files of a previous run that crashed
            log.warning("recovered the partial recording %s", path)
    relay = EmbeddedRelay(
        ng_host=host.strip("[]"),
        ng_port=int(port),
        media_address=args.media_address,
        ports=PortRange.parse(args.ports),
        recordings=sink,
        media_root=args.media_dir,
        config=RelayConfig(
            idle_timeout=args.idle_timeout, max_age=args.max_age, sync_every=args.sync_every
        ),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await relay.start()
    print(f"relay listening ng={relay.ng_address[0]}:{relay.ng_address[1]}", flush=True)
    await stop.wait()
    await relay.stop()


def main(argv: list[str] | None = None) -> int:
    """`softswitch relay` / `python -m media.relay.embedded`: run until SIGTERM."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if not args.no_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The transport side of worker processes (`softswitch serve --workers N`, switch/workers.py).

The parent binds every socket before it forks, so a restarted worker inherits the very
sockets of the one that died (the SO_REUSEPORT group never changes, the kernel's hash keeps
sending a source to the same socket) and every port stays the same across restarts:

- the shared SIP port: one UDP socket and one TCP listener per worker, all with SO_REUSEPORT
  on the same address (TLS likewise). The kernel hashes a UDP source (address, port) to one
  socket, so a phone's retransmissions, ACK and CANCEL reach the worker that holds the
  transaction; a TCP/TLS connection belongs to the worker that accepted it.
- a private port per worker (UDP and TCP on the same number, TLS on one of its own): the
  port of the worker's Via sent-by and of its Record-Route, so a dialog's in-dialog requests
  (the callee's BYE, re-INVITEs) come back to the worker that knows the call's channel
  lease. A response to a request this worker sent (a device, a carrier, a media service
  answering a branch) comes from another address than the caller's and would hash to any
  worker on the shared port; it goes to the Via, i.e. straight to this worker. Requests still
  leave from the shared UDP socket, so a NAT pinhole opened by the device's REGISTER to the
  shared port matches them. Our Via carries no `rport`, so a device answers the sent-by port.
  A peer that answers where the request came from instead (symmetric response, SIPp does)
  reaches the shared port, i.e. any worker: a worker that receives a response whose top Via
  port is another worker's private port forwards it, as received, to that port (one loopback
  hop more for those peers, nothing lost). Such a peer also sends its in-dialog requests
  to the shared port, i.e. to the worker its address hashes to: that worker forwards them
  statelessly, and a BYE releases the call's channel lease there too: the lease is found
  through the call's record in the shared state (switch/proxy/leases.py, `ended`); the
  worker that took the call forgets its dialog at the next keep-alive (481).

Counted in `sip_worker_handovers_total{kind}`: response (forwarded to the worker that sent the
request), relay_sent, relay_written (on the owner's connection), relay_failed.

Stream flows owned by another worker: a device registered over TCP/TLS on worker A is
reachable only over A's connection. Connection ids carry their owner in the high bits
(`Siblings.conn_base`: worker index << 48 | generation << 32, so the id of a dead worker's
connection never names a live one), and the bindings keep them (all workers are one node in
the shared state). Worker B sending on a connection of A hands the bytes to A in a relay
datagram on loopback to A's private UDP port (`RELAY`, authenticated by a per-run token);
A writes them on its connection, or answers `RELAY_FAILED` and B's transaction hears a
transport error. The device answers on its connection, i.e. to A: A sees a response whose
top Via port is B's private port and forwards it, as received, to B's private UDP port.
"""

from __future__ import annotations

import hmac
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from switch.sip.target import Target

log = logging.getLogger(__name__)

__all__ = ["RELAY", "RELAY_FAILED", "PreBound", "Siblings", "bind_group"]

RELAY = b"RLY1 "  # + token transport host port conn_id CRLF + the message
RELAY_FAILED = b"RLYE "  # + token transport host port conn_id CRLF
_OWNER_SHIFT = 48
_GENERATION_SHIFT = 32


@dataclass(frozen=True)
class PreBound:
    """One worker's sockets, bound by the parent (see the module docstring)."""

    udp: socket.socket
    tcp: socket.socket
    tls: socket.socket | None
    private_udp: socket.socket
    private_tcp: socket.socket
    private_tls: socket.socket | None = None


@dataclass(frozen=True)
class Siblings:
    """What a worker knows of the others: `private[i]` is worker i's private (host, port)."""

    index: int
    generation: int
    private: tuple[tuple[str, int], ...]
    token: bytes  # hex, shared by the workers of one run
    local_hosts: frozenset[str]  # relay datagrams are accepted from these sources only
    private_tls: tuple[int, ...] = ()  # worker i's private TLS port, when TLS is served

    @property
    def conn_base(self) -> int:
        return (self.index << _OWNER_SHIFT) | ((self.generation & 0xFFFF) << _GENERATION_SHIFT)

    @staticmethod
    def owner(conn_id: int) -> int:
        return conn_id >> _OWNER_SHIFT

    def sibling_of_port(self, port: int | None) -> int | None:
        """The index of the other worker whose private port this is, else None."""
        for i, (_, p) in enumerate(self.private):
            if p == port and i != self.index:
                return i
        for i, p in enumerate(self.private_tls):
            if p == port and i != self.index:
                return i
        return None

    def is_sibling(self, source: tuple[str, int]) -> bool:
        """Did this datagram come from another worker's private socket?"""
        return source[0] in self.local_hosts and any(
            p == source[1] for i, (_, p) in enumerate(self.private) if i != self.index
        )

    def relay_address(self, index: int) -> tuple[str, int]:
        host, port = self.private[index]
        return (_loopback_for(host), port)

    def envelope(self, magic: bytes, target: Target) -> bytes:
        assert target.conn_id is not None
        return b"%s%s %s %s %d %d\r\n" % (
            magic,
            self.token,
            target.transport.encode(),
            target.host.encode(),
            target.port,
            target.conn_id,
        )

    def open(self, data: bytes, source: tuple[str, int]) -> tuple[Target, bytes] | None:
        """A relay datagram's target and payload, or None if it is not a valid one of ours
        (wrong source, wrong token, malformed)."""
        if source[0] not in self.local_hosts:
            return None
        head, sep, body = data.partition(b"\r\n")
        parts = head[len(RELAY) :].split(b" ")
        if not sep or len(parts) != 5 or not hmac.compare_digest(parts[0], self.token):
            return None
        try:
            transport, host = parts[1].decode("ascii"), parts[2].decode("ascii")
            target = Target(transport, host, int(parts[3]), int(parts[4]))
        except (UnicodeDecodeError, ValueError):
            return None
        return target, body


def _loopback_for(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


_BIND_ATTEMPTS = 20
_BACKLOG = 1024


def bind_group(
    host: str,
    port: int,
    tls_port: int | None,
    count: int,
    buffer_bytes: int,
    *,
    preferred: Sequence[int] = (),
    preferred_tls: Sequence[int] = (),
) -> list[PreBound]:
    """`count` workers' sockets: the shared SIP port (UDP + TCP, TLS when `tls_port` is not
    None) with SO_REUSEPORT, and each worker's private UDP + TCP port. Port 0: one ephemeral
    port free for both UDP and TCP, shared by all. `preferred` / `preferred_tls`: the private
    ports of the previous run, taken again when free (dialogs record-routed before a restart
    name them), else an ephemeral port."""
    shared = _pairs(host, port, count, buffer_bytes, reuse=True)
    tls: list[socket.socket | None] = [None] * count
    if tls_port is not None:
        first = _stream(host, tls_port, reuse=True)
        rest = [_stream(host, first.getsockname()[1], reuse=True) for _ in range(count - 1)]
        tls = [first, *rest]
    private = [_private_pair(host, _nth(preferred, i), buffer_bytes) for i in range(count)]
    private_tls = [
        _private_stream(host, _nth(preferred_tls, i)) if tls_port is not None else None
        for i in range(count)
    ]
    return [
        PreBound(udp=u, tcp=t, tls=s, private_udp=pu, private_tcp=pt, private_tls=ps)
        for (u, t), s, (pu, pt), ps in zip(shared, tls, private, private_tls, strict=True)
    ]


def _nth(ports: Sequence[int], i: int) -> int:
    return ports[i] if i < len(ports) else 0


def _private_pair(host: str, port: int, buffer_bytes: int) -> tuple[socket.socket, socket.socket]:
    if port:
        try:
            return _pairs(host, port, 1, buffer_bytes, reuse=False)[0]
        except OSError as exc:
            log.warning("private port %d of the previous run is taken (%s): another one", port, exc)
    return _pairs(host, 0, 1, buffer_bytes, reuse=False)[0]


def _private_stream(host: str, port: int) -> socket.socket:
    if port:
        try:
            return _stream(host, port, reuse=False)
        except OSError as exc:
            log.warning("private TLS port %d of the previous run is taken (%s)", port, exc)
    return _stream(host, 0, reuse=False)


def _pairs(
    host: str, port: int, count: int, buffer_bytes: int, *, reuse: bool
) -> list[tuple[socket.socket, socket.socket]]:
    for _ in range(_BIND_ATTEMPTS):
        udp = _datagram(host, port, buffer_bytes, reuse=reuse)
        bound = udp.getsockname()[1]
        try:
            tcp = _stream(host, bound, reuse=reuse)
        except OSError:
            udp.close()
            if port == 0:
                continue
            raise
        pairs = [(udp, tcp)]
        for _ in range(count - 1):
            pairs.append(
                (_datagram(host, bound, buffer_bytes, reuse=True), _stream(host, bound, reuse=True))
            )
        return pairs
    raise OSError(f"no port free for both UDP and TCP on {host}")


def _datagram(host: str, port: int, buffer_bytes: int, *, reuse: bool) -> socket.socket:
    info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    sock = socket.socket(info[0], socket.SOCK_DGRAM)
    try:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if buffer_bytes:
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                sock.setsockopt(socket.SOL_SOCKET, opt, buffer_bytes)
        sock.bind(info[4])
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _stream(host: str, port: int, *, reuse: bool) -> socket.socket:
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(info[4])
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock

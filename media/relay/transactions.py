"""The ng client's transactions, sans-IO (the aioquic shape: time is an argument, timers are
data, the glue moves datagrams).

    tx = NgTransactions()
    cookie = tx.start(Offer(...), now)         # queues the datagram
    for data in tx.datagrams_to_send(): sock.sendto(data)
    tx.receive_datagram(reply, now)            # or tx.handle_timer(now) at tx.next_timer()
    event = tx.next_event()                    # Completed(...) | Failed(...)

Retransmission: UDP loses datagrams, so a request is sent again with the same cookie (the
relay answers a repeated cookie from its cache, so an offer is never acted on twice) after
each interval of `intervals` — by default 0.2 s, 0.3 s, 0.5 s: three sends and a
`NgTimeout` one second after the first. A call must not wait longer than that on a relay
that is gone; the proxy then fails or bypasses the call as its policy says.

Replies are matched by cookie. A second reply to a finished request (the relay answered the
original and a retransmission) is counted as a duplicate and ignored; a reply with an unknown
cookie is counted as stray; a datagram that is not ng is counted as malformed and does not end
any request (the real reply may still come). `result: error` ends the request with
`NgRefused(error-reason)`. `connection_refused()` (ICMP port unreachable, which the glue sees
on its connected socket) fails every pending request at once with `NgUnreachable`: nothing
listens there, and waiting the full second would only hold calls up.

Cookies are `<random token>_<counter>`: the token is new for every instance, so a restarted
proxy never reuses a cookie the relay still has cached.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from .bencode import BValue
from .errors import NgError, NgProtocolError, NgRefused, NgTimeout, NgUnreachable
from .ng import Request, check_reply, decode_message, encode_message

__all__ = [
    "DEFAULT_INTERVALS",
    "Completed",
    "Event",
    "Failed",
    "NgTransactions",
    "TransactionStats",
]

DEFAULT_INTERVALS = (0.2, 0.3, 0.5)
_REMEMBER_DONE = 512  # finished cookies kept to tell a duplicate reply from a stray one


@dataclass(frozen=True, slots=True, kw_only=True)
class Completed:
    """A request answered `ok`/`pong`."""

    cookie: str
    command: str
    reply: dict[str, BValue]
    latency: float
    attempts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Failed:
    """A request that ended without a usable reply: timeout, unreachable, refused."""

    cookie: str
    command: str
    error: NgError
    latency: float
    attempts: int

    @property
    def kind(self) -> str:
        """`timeout`, `unreachable`, `refused` or `malformed`: the metrics label."""
        return self.error.error_id.removeprefix("relay-")


Event = Completed | Failed


@dataclass(slots=True)
class TransactionStats:
    sent: int = 0
    retransmitted: int = 0
    completed: int = 0
    timeouts: int = 0
    refused: int = 0
    unreachable: int = 0
    duplicates: int = 0
    stray: int = 0
    malformed: int = 0


@dataclass(slots=True)
class _Pending:
    cookie: str
    command: str
    datagram: bytes
    started: float
    deadline: float
    attempts: int = 1
    waits: list[float] = field(default_factory=list)


class NgTransactions:
    """Pending ng requests of one client (see the module docstring)."""

    def __init__(
        self, *, intervals: tuple[float, ...] = DEFAULT_INTERVALS, token: str | None = None
    ) -> None:
        if not intervals or any(i <= 0 for i in intervals):
            raise ValueError(f"retransmission intervals must be positive: {intervals}")
        self.intervals = intervals
        self.token = token or secrets.token_hex(4)
        self.stats = TransactionStats()
        self._counter = 0
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._done: OrderedDict[str, None] = OrderedDict()
        self._outbox: list[bytes] = []
        self._events: deque[Event] = deque()

    @property
    def timeout(self) -> float:
        """Seconds from the first send to NgTimeout."""
        return sum(self.intervals)

    def pending(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------------ input
    def start(self, request: Request, now: float) -> str:
        """Queue `request`; returns its cookie."""
        self._counter += 1
        cookie = f"{self.token}_{self._counter}"
        datagram = encode_message(cookie, request.to_dict())
        waits = list(self.intervals)
        first = waits.pop(0)
        self._pending[cookie] = _Pending(
            cookie=cookie,
            command=request.command,
            datagram=datagram,
            started=now,
            deadline=now + first,
            waits=waits,
        )
        self._send(datagram)
        return cookie

    def receive_datagram(self, data: bytes, now: float) -> None:
        try:
            cookie, reply = decode_message(data)
        except NgProtocolError:
            self.stats.malformed += 1
            return
        pending = self._pending.pop(cookie, None)
        if pending is None:
            self._unmatched(cookie)
            return
        self._finish(pending)
        try:
            check_reply(reply, pending.command)
        except NgError as exc:
            self._fail(pending, exc, now)
            return
        self.stats.completed += 1
        self._events.append(
            Completed(
                cookie=cookie,
                command=pending.command,
                reply=reply,
                latency=now - pending.started,
                attempts=pending.attempts,
            )
        )

    def connection_refused(self, now: float) -> None:
        """ICMP port unreachable: fail everything pending now."""
        for pending in list(self._pending.values()):
            del self._pending[pending.cookie]
            self._finish(pending)
            self._fail(pending, NgUnreachable("relay port unreachable (ICMP)"), now)

    def cancel(self, cookie: str) -> None:
        """Forget a request whose caller gave up; a late reply counts as a duplicate."""
        pending = self._pending.pop(cookie, None)
        if pending is not None:
            self._finish(pending)

    # ------------------------------------------------------------------ timers
    def next_timer(self) -> float | None:
        """When `handle_timer` must run next (None: nothing pending)."""
        return min((p.deadline for p in self._pending.values()), default=None)

    def handle_timer(self, now: float) -> None:
        for pending in [p for p in self._pending.values() if p.deadline <= now]:
            if pending.waits:
                pending.deadline = now + pending.waits.pop(0)
                pending.attempts += 1
                self.stats.retransmitted += 1
                self._send(pending.datagram)
                continue
            del self._pending[pending.cookie]
            self._finish(pending)
            waited = now - pending.started
            self._fail(pending, NgTimeout(f"no reply to {pending.command} in {waited:.2f} s"), now)

    # ------------------------------------------------------------------ output
    def datagrams_to_send(self) -> list[bytes]:
        out, self._outbox = self._outbox, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # ------------------------------------------------------------------ internals
    def _send(self, datagram: bytes) -> None:
        self.stats.sent += 1
        self._outbox.append(datagram)

    def _finish(self, pending: _Pending) -> None:
        self._done[pending.cookie] = None
        while len(self._done) > _REMEMBER_DONE:
            self._done.popitem(last=False)

    def _unmatched(self, cookie: str) -> None:
        if cookie in self._done:
            self.stats.duplicates += 1
        else:
            self.stats.stray += 1

    def _fail(self, pending: _Pending, error: NgError, now: float) -> None:
        match error:
            case NgTimeout():
                self.stats.timeouts += 1
            case NgUnreachable():
                self.stats.unreachable += 1
            case NgRefused():
                self.stats.refused += 1
            case _:
                self.stats.malformed += 1
        self._events.append(
            Failed(
                cookie=pending.cookie,
                command=pending.command,
                error=error,
                latency=now - pending.started,
                attempts=pending.attempts,
            )
        )

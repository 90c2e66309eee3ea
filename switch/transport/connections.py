"""The stream connections of one process: who is open, who is trusted, who has idled too long.

The `TransportManager` is the `StreamOwner` of every TCP/TLS `Connection` and decides what a
connection's bytes become; it holds one `ConnectionTable` that keeps the connections
themselves (the policy, sans-IO, is switch.transport.admission):

- **the registry**: by `conn_id` (a Target that names its flow) and by (transport, host,
  port) (a Target without one reuses any open connection to that address);
- **admission**: the per-source limits of the `SourceBook` on top of the global
  `max_connections`, a refusal counted in `sip_connections_refused_total{reason}`;
- **trust**: `mark_trusted` gives a connection the long keep-alive idle timeout;
- **the idle sweeps**: untrusted connections (few, short timeouts) every `sweep_interval`
  (<= 1 s), every connection at a quarter of the long `idle_timeout` (<= 30 s); a close is
  counted in `sip_connections_closed_total{reason}` once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from switch.metrics import Metrics
from switch.sip.target import Target

from .admission import CloseReason, Refusal, SourceBook, StreamLimits, close_reason
from .stream import Connection

__all__ = ["ConnectionTable"]

log = logging.getLogger(__name__)


class ConnectionTable:
    """The open stream connections (see the module docstring). `fault` counts an exception
    a sweep timer caught."""

    def __init__(
        self,
        limits: StreamLimits,
        idle_timeout: float,
        metrics: Metrics,
        fault: Callable[[str], None],
    ) -> None:
        self.by_id: dict[int, Connection] = {}
        self._by_addr: dict[tuple[str, str, int], dict[int, Connection]] = {}
        self._untrusted: dict[int, Connection] = {}  # swept often; the rest every 30 s
        self._limits = limits
        self._idle_timeout = idle_timeout
        self._book = SourceBook(limits)
        self._metrics = metrics
        self._fault = fault
        self._loop = asyncio.get_running_loop()
        self._sweep: asyncio.TimerHandle | None = None
        self._untrusted_sweep: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self.by_id)

    def get(self, conn_id: int) -> Connection | None:
        return self.by_id.get(conn_id)

    def find(self, target: Target) -> Connection | None:
        """The open connection a Target designates: its conn_id, else any to host:port."""
        if target.conn_id is not None:
            conn = self.by_id.get(target.conn_id)
            return conn if conn is not None and conn.open else None
        for conn in self._by_addr.get((target.transport, target.host, target.port), {}).values():
            if conn.open:
                return conn
        return None

    # ------------------------------------------------------------------ open / lost
    def admit(self, conn: Connection, refusal: Refusal | None) -> bool:
        """Register `conn` unless `refusal` (the flood guard's) or the per-source and global
        limits refuse it; a refusal is counted and logged."""
        assert conn.peer is not None
        host = conn.peer.host
        refusal = refusal or self._book.refusal(
            host, trusted=conn.state.trusted, open_now=len(self.by_id)
        )
        if refusal is not None:
            self._refuse(conn, refusal)
            return False
        self.by_id[conn.conn_id] = conn
        key = (conn.name, host, conn.peer.port)
        self._by_addr.setdefault(key, {})[conn.conn_id] = conn
        self._book.opened(host, trusted=conn.state.trusted)
        if not conn.state.trusted:
            self._untrusted[conn.conn_id] = conn
        self._metrics.connections_active.labels(conn.name).inc()
        return True

    def _refuse(self, conn: Connection, refusal: Refusal) -> None:
        self._metrics.connections_refused_total.labels(conn.name, refusal.value).inc()
        if refusal is Refusal.GLOBAL_LIMIT:
            self._metrics.messages_dropped_total.labels("connection_limit").inc()
            log.warning("connection limit reached, refusing %s", conn.peer)
        else:
            log.debug("refusing %s: %s", conn.peer, refusal.value)

    def lost(self, conn: Connection) -> None:
        if self.by_id.pop(conn.conn_id, None) is None:
            return
        assert conn.peer is not None
        key = (conn.name, conn.peer.host, conn.peer.port)
        same = self._by_addr.get(key)
        if same is not None:
            same.pop(conn.conn_id, None)
            if not same:
                del self._by_addr[key]
        self._untrusted.pop(conn.conn_id, None)
        self._book.closed(conn.peer.host, trusted=conn.state.trusted)
        self._metrics.connections_active.labels(conn.name).dec()

    # ------------------------------------------------------------------ trust
    def mark_trusted(self, source: Target) -> bool:
        """See TransportManager.mark_trusted."""
        conn = self.by_id.get(source.conn_id) if source.conn_id is not None else None
        if conn is None:
            return False
        if not conn.state.trusted:
            assert conn.peer is not None
            conn.state.trusted = True
            self._untrusted.pop(conn.conn_id, None)
            self._book.trusted(conn.peer.host)
        return True

    def is_trusted(self, source: Target) -> bool:
        conn = self.by_id.get(source.conn_id) if source.conn_id is not None else None
        return conn is not None and conn.state.trusted

    def close_untrusted_from(self, host: str) -> None:
        """A source the flood guard blocked loses its untrusted connections."""
        doomed = [c for c in self._untrusted.values() if c.peer and c.peer.host == host]
        for conn in doomed:
            self._close(conn, CloseReason.FLOOD_BLOCKED)

    # ------------------------------------------------------------------ idle sweeps
    def start(self) -> None:
        self._arm_sweep()
        self._arm_untrusted_sweep()

    def stop(self) -> None:
        for timer in (self._sweep, self._untrusted_sweep):
            if timer is not None:
                timer.cancel()

    def _arm_sweep(self) -> None:
        interval = max(1.0, min(30.0, self._idle_timeout / 4))
        self._sweep = self._loop.call_later(interval, self._sweep_idle)

    def _sweep_idle(self) -> None:
        try:
            self._sweep_some([c for c in self.by_id.values() if c.state.trusted])
        except Exception:
            self._fault("idle-sweep")
        self._arm_sweep()

    def _arm_untrusted_sweep(self) -> None:
        interval = self._limits.sweep_interval
        self._untrusted_sweep = self._loop.call_later(interval, self._sweep_untrusted)

    def _sweep_untrusted(self) -> None:
        try:
            self._sweep_some(list(self._untrusted.values()))
        except Exception:
            self._fault("idle-sweep")
        self._arm_untrusted_sweep()

    def _sweep_some(self, conns: list[Connection]) -> None:
        now = self._loop.time()
        for conn in conns:
            reason = close_reason(self._limits, conn.state, now)
            if reason is not None and conn.open:
                self._close(conn, reason)

    def _close(self, conn: Connection, reason: CloseReason) -> None:
        self._untrusted.pop(conn.conn_id, None)  # closed once, counted once
        self._metrics.connections_closed_total.labels(conn.name, reason.value).inc()
        log.debug("closing connection %s: %s", conn.peer, reason.value)
        conn.close()

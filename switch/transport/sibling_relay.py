"""The I/O side of worker siblings: what one worker hands to another over loopback.

switch/transport/siblings.py has the design and the pure parts (`Siblings`: who owns which
port and connection id, the relay envelope). A `TransportManager` of a worker holds one
`SiblingRelay`, which owns the worker's private UDP endpoint and does three things:

- **responses for another worker**: a response whose top Via port is another worker's
  private port (a peer that answers from where it received, or over a connection of ours)
  is forwarded, as received, to that worker's private port (`for_sibling`);
- **stream messages for another worker's connection**: a Target whose conn_id another
  worker owns is wrapped in a `RELAY` envelope and sent to that worker (`relay_elsewhere`);
  that worker writes it on its connection, or answers `RELAY_FAILED` and the transaction
  here hears a transport error (`on_datagram`);
- **the private port's datagrams**: relays and failures from the other workers, responses
  they forwarded (delivered without the flood guard: they come from our own address), and
  everything else as any datagram on the shared port.

Counted in `sip_worker_handovers_total{kind}`. A process without workers has no relay; the
manager's test for it is one attribute (`None`) per message.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from prometheus_client import Counter

from switch.metrics import Metrics
from switch.sip.message import Request, Response
from switch.sip.target import Target

from .siblings import RELAY, RELAY_FAILED, Siblings
from .stream import Connection

__all__ = ["SiblingRelay"]

_MAX_RELAY = 65_000  # one loopback datagram

Datagram = Callable[[bytes, tuple[str, int]], None]


class SiblingRelay:
    """One worker's side of the handovers (see the module docstring). `datagram` takes a
    datagram past the flood guard, `on_datagram` as any received one; `connection` finds an
    open connection of this worker by id; `send_error` reports a failed send."""

    def __init__(
        self,
        siblings: Siblings,
        metrics: Metrics,
        *,
        datagram: Datagram,
        on_datagram: Datagram,
        connection: Callable[[int], Connection | None],
        send_error: Callable[[Target], None],
        fault: Callable[[str], None],
    ) -> None:
        self.siblings = siblings
        self.udp: asyncio.DatagramTransport | None = None  # the private port, once open
        self._metrics = metrics
        self._datagram = datagram
        self._on_datagram = on_datagram
        self._connection = connection
        self._send_error = send_error
        self._fault = fault
        self._loop = asyncio.get_running_loop()
        self._handovers = _handover_counter(metrics)

    def close(self) -> None:
        if self.udp is not None:
            self.udp.close()

    # ------------------------------------------------------------------ receiving
    def on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        """The worker's private port: responses to what it sent, and relays from the other
        workers."""
        if data[:5] in (RELAY, RELAY_FAILED):
            try:
                self._relayed(data, addr)
            except Exception:
                self._fault("relay-receive")
            return
        if self.siblings.is_sibling(addr):
            try:  # a response forwarded by another worker: not a flood from our own address
                self._datagram(data, addr)
            except Exception:
                self._fault("udp-receive")
            return
        self._on_datagram(data, addr)

    def _relayed(self, data: bytes, addr: tuple[str, int]) -> None:
        opened = self.siblings.open(data, addr)
        if opened is None:
            self._metrics.messages_dropped_total.labels("relay_refused").inc()
            return
        target, body = opened
        if data.startswith(RELAY_FAILED):
            self._handed_over("relay_failed")
            self._send_error(target)
            return
        conn = self._connection(target.conn_id) if target.conn_id is not None else None
        if conn is None or not conn.open or not conn.write(body):
            assert self.udp is not None
            failed = self.siblings.envelope(RELAY_FAILED, target)
            with contextlib.suppress(OSError, ValueError):
                self.udp.sendto(failed, addr)
            return
        self._handed_over("relay_written")

    # ------------------------------------------------------------------ handing over
    def for_sibling(self, message: Request | Response, data: bytes | None) -> bool:
        """A response to a request another worker sent (its private port is the top Via's):
        a device that answers from where it received (not to the Via), or over a connection
        of ours. Forwarded as received to that worker's private port."""
        if not isinstance(message, Response):
            return False
        owner = self.siblings.sibling_of_port(message.top_via.port)
        if owner is None:
            return False
        self._to_sibling(owner, data if data is not None else message.to_bytes())
        self._handed_over("response")
        return True

    def relay_elsewhere(self, data: bytes, target: Target) -> bool:
        """True if `target` is a connection another worker owns: `data` was handed to it
        (or the send failed, reported to `send_error` soon)."""
        if target.conn_id is None:
            return False
        owner = self.siblings.owner(target.conn_id)
        if owner == self.siblings.index:
            return False
        envelope = self.siblings.envelope(RELAY, target)
        too_big = len(envelope) + len(data) > _MAX_RELAY
        if self.udp is None or too_big or owner >= len(self.siblings.private):
            self._loop.call_soon(self._send_error, target)
            return True
        self._to_sibling(owner, envelope + data)
        self._handed_over("relay_sent")
        return True

    def _to_sibling(self, owner: int, data: bytes) -> None:
        if self.udp is None or self.udp.is_closing():
            return
        with contextlib.suppress(OSError, ValueError):
            self.udp.sendto(data, self.siblings.relay_address(owner))

    def _handed_over(self, kind: str) -> None:
        self._handovers.labels(kind).inc()


def _handover_counter(metrics: Metrics) -> Counter:
    """Messages a worker handed to another (switch/transport/siblings.py)."""
    return Counter(
        "sip_worker_handovers_total",
        "Between workers: responses forwarded to the worker that sent the request (response),"
        " messages for another worker's connection (relay_sent), written here for another"
        " (relay_written), or failed there (relay_failed)",
        ["kind"],
        registry=metrics.registry,
    )

"""Prometheus metrics of one switch process.

Each `Metrics` owns its own CollectorRegistry (never the global one), so tests can build
several apps in one process. The proxy imports `Metrics` and uses `calls_total` /
`calls_active`; everything else is incremented by the app, the transports and the registrar.

Gauges that mirror live state (`sip_transactions_active`, `sip_registrations_active`) are
filled by callbacks registered by the app (`watch_transactions`, `watch_registrations`) at
scrape time, so the hot path never touches them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Callbacks(Collector):
    """Gauges computed at scrape time from the app's live objects."""

    def __init__(self) -> None:
        self.transactions: Callable[[], dict[str, int]] | None = None
        self.registrations: Callable[[], int] | None = None

    def collect(self) -> Iterator[Metric]:
        txn = GaugeMetricFamily(
            "sip_transactions_active", "Live SIP transactions by kind", labels=["kind"]
        )
        if self.transactions is not None:
            for kind, n in sorted(self.transactions().items()):
                txn.add_metric([kind], n)
        yield txn
        regs = GaugeMetricFamily("sip_registrations_active", "Registered contacts (bindings)")
        regs.add_metric([], self.registrations() if self.registrations is not None else 0)
        yield regs


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests_total = Counter(
            "sip_requests_total", "SIP requests received", ["method"], registry=r
        )
        self.responses_total = Counter(
            "sip_responses_total",
            "SIP responses by status code and direction (received/sent)",
            ["code", "direction"],
            registry=r,
        )
        self.parse_errors_total = Counter(
            "sip_parse_errors_total",
            "Unparseable SIP input by transport and the status hint (0: response, dropped)",
            ["transport", "status"],
            registry=r,
        )
        self.auth_failures_total = Counter(
            "sip_auth_failures_total", "Digest authentication failures", ["reason"], registry=r
        )
        self.messages_dropped_total = Counter(
            "sip_messages_dropped_total", "SIP messages dropped", ["reason"], registry=r
        )
        self.calls_total = Counter(
            "sip_calls_total", "Calls (INVITE dialogs) by outcome", ["outcome"], registry=r
        )
        self.calls_active = Gauge("sip_calls_active", "Calls in progress", registry=r)
        self.connections_active = Gauge(
            "sip_connections_active", "Open TCP/TLS connections", ["transport"], registry=r
        )
        self.registrations_total = Counter(
            "sip_registrations_total",
            "REGISTER outcomes (status code of the final response)",
            ["code"],
            registry=r,
        )
        self._callbacks = _Callbacks()
        r.register(self._callbacks)

    def watch_transactions(self, counts: Callable[[], dict[str, int]]) -> None:
        self._callbacks.transactions = counts

    def watch_registrations(self, count: Callable[[], int]) -> None:
        self._callbacks.registrations = count

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """One sample's value (0.0 if absent) — for tests and the CLI."""
        found = self.registry.get_sample_value(name, labels or {})
        return found if found is not None else 0.0

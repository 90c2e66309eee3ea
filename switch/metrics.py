"""Prometheus metrics of one switch process.

Each `Metrics` owns its own CollectorRegistry (never the global one), so tests can build
several apps in one process. The proxy imports `Metrics` and uses `calls_total` /
`calls_active`; everything else is incremented by the app, the transports and the registrar.

Gauges that mirror live state (`sip_transactions_active`, `sip_registrations_active`) are
filled by callbacks registered by the app (`watch_transactions`, `watch_registrations`) at
scrape time, so the hot path never touches them; so are the flood guard's counters
(`watch_flood`, registered by the transport manager) and the overload control's
(`watch_overload`). `sip_event_loop_lag_seconds` is a histogram of how late the transport's
50 ms probe timer fired: what every message waited on top of its own work.

`sip_requests_total` and `sip_responses_total` are counted once per SIP message, so they are
plain dict counters (`request_counts`, `response_counts`, incremented by the transport
manager without locks: one event loop thread) exposed by a collector at scrape time, with
the same names, labels and `_created` samples as prometheus_client Counters.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# (refused by reason, (active 0/1, refused fraction, UDP queue ratio, pending INVITEs))
OverloadSample = tuple[dict[str, int], tuple[float, float, float, float]]

__all__ = ["CONTENT_TYPE", "MessageCounts", "Metrics"]

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


class _FloodStats(Collector):
    """The flood guard's counters (plain ints on the hot path), read at scrape time."""

    def __init__(self) -> None:
        self.source: Callable[[], tuple[int, int, int]] | None = None

    def collect(self) -> Iterator[Metric]:
        blocks, dropped, blocked = self.source() if self.source is not None else (0, 0, 0)
        started = CounterMetricFamily(
            "sip_flood_blocks", "Sources blocked for flooding (blocks started)"
        )
        started.add_metric([], float(blocks))
        yield started
        gone = CounterMetricFamily(
            "sip_flood_dropped",
            "Datagrams, stream messages and connections dropped unparsed: source blocked",
        )
        gone.add_metric([], float(dropped))
        yield gone
        now = GaugeMetricFamily("sip_flood_blocked_sources", "Sources blocked right now")
        now.add_metric([], float(blocked))
        yield now


class _OverloadStats(Collector):
    """The overload control's state and counters (switch.transport.overload), at scrape time."""

    def __init__(self) -> None:
        self.source: Callable[[], OverloadSample] | None = None

    def collect(self) -> Iterator[Metric]:
        refused = CounterMetricFamily(
            "sip_overload_rejected",
            "New INVITEs refused with 503 + Retry-After by the overload control, by reason "
            "(load: the measured delay; pending_invites: the configured cap)",
            labels=["reason"],
        )
        gauges = {
            name: GaugeMetricFamily(name, text)
            for name, text in (
                ("sip_overload_active", "1 while new INVITEs are refused for measured load"),
                ("sip_overload_refused_fraction", "Share of new INVITEs refused now (0..1)"),
                ("sip_udp_receive_queue_ratio", "UDP receive queue in use / SO_RCVBUF"),
                ("sip_invites_pending", "INVITE server transactions without a final response"),
            )
        }
        if self.source is not None:
            counts, values = self.source()
            for reason, n in counts.items():
                refused.add_metric([reason], float(n))
            for family, value in zip(gauges.values(), values, strict=True):
                family.add_metric([], value)
        yield refused
        yield from gauges.values()


class MessageCounts(Collector):
    """sip_requests_total{method} and sip_responses_total{code,direction} from plain dicts.

    Hot path: `requests[label] += 1` / `responses[(status, direction)] += 1`, on KeyError
    `first_request` / `first_response` (which also records the `_created` time).
    """

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}
        self.responses: dict[tuple[int, str], int] = {}
        self._req_created: dict[str, float] = {}
        self._resp_created: dict[tuple[int, str], float] = {}

    def first_request(self, label: str) -> None:
        self._req_created.setdefault(label, time.time())
        self.requests[label] = self.requests.get(label, 0) + 1

    def first_response(self, key: tuple[int, str]) -> None:
        self._resp_created.setdefault(key, time.time())
        self.responses[key] = self.responses.get(key, 0) + 1

    def _families(self) -> tuple[CounterMetricFamily, CounterMetricFamily]:
        req = CounterMetricFamily("sip_requests_total", "SIP requests received", labels=["method"])
        resp = CounterMetricFamily(
            "sip_responses_total",
            "SIP responses by status code and direction (received/sent)",
            labels=["code", "direction"],
        )
        return req, resp

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        req, resp = self._families()
        for label, n in list(self.requests.items()):
            req.add_metric([label], float(n), created=self._req_created.get(label))
        for (status, direction), n in list(self.responses.items()):
            resp.add_metric(
                [str(status), direction],
                float(n),
                created=self._resp_created.get((status, direction)),
            )
        yield req
        yield resp


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.messages = MessageCounts()
        r.register(self.messages)
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
        self.internal_errors_total = Counter(
            "sip_internal_errors_total",
            "Failures contained while handling one message or timer, by where they happened",
            ["where"],
            registry=r,
        )
        self.calls_total = Counter(
            "sip_calls_total", "Calls (INVITE dialogs) by outcome", ["outcome"], registry=r
        )
        self.calls_active = Gauge("sip_calls_active", "Calls in progress", registry=r)
        self.connections_active = Gauge(
            "sip_connections_active", "Open TCP/TLS connections", ["transport"], registry=r
        )
        self.connections_refused_total = Counter(
            "sip_connections_refused_total",
            "Inbound TCP/TLS connections refused, by reason (global_limit, source_limit, "
            "source_untrusted_limit, flood_blocked)",
            ["transport", "reason"],
            registry=r,
        )
        self.connections_closed_total = Counter(
            "sip_connections_closed_total",
            "TCP/TLS connections closed by the switch, by reason (first_message_timeout, "
            "untrusted_idle, idle, flood_blocked)",
            ["transport", "reason"],
            registry=r,
        )
        self.registrations_total = Counter(
            "sip_registrations_total",
            "REGISTER outcomes (status code of the final response)",
            ["code"],
            registry=r,
        )
        self._security(r)
        self._callbacks = _Callbacks()
        r.register(self._callbacks)
        self._flood = _FloodStats()
        r.register(self._flood)
        self._overload = _OverloadStats()
        r.register(self._overload)
        self.loop_lag = Histogram(
            "sip_event_loop_lag_seconds",
            "How late the SIP transport's periodic probe timer fired (event-loop lag)",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
            registry=r,
        )

    def _security(self, r: CollectorRegistry) -> None:
        """The authentication guard (switch/proxy/bans.py) and the outbound caps
        (routing/caps.py)."""
        self.auth_bans_total = Counter(
            "sip_auth_bans_total", "Auth bans started, by kind (source, id)", ["kind"], registry=r
        )
        self.auth_bans_active = Gauge(
            "sip_auth_bans_active", "Auth bans in force, by kind (source, id)", ["kind"],
            registry=r,
        )  # fmt: skip
        self.auth_refused_total = Counter(
            "sip_auth_refused_total",
            "Requests refused unverified because of an auth ban, by kind (source, id)",
            ["kind"],
            registry=r,
        )
        for kind in ("source", "id"):  # present from the start: alerts see 0, not nothing
            self.auth_bans_total.labels(kind)
            self.auth_bans_active.labels(kind).set(0)
            self.auth_refused_total.labels(kind)
        self.outbound_capped_total = Counter(
            "sip_outbound_capped_total",
            "Outbound calls refused by a toll-fraud cap, by cap (routing rule)",
            ["cap"],
            registry=r,
        )
        self.lease_writes_retried_total = Counter(
            "sip_lease_writes_retried_total",
            "Channel lease releases/records retried because the state backend failed, by"
            " outcome (retry, done after retrying, given_up: left to the lease TTL)",
            ["outcome"],
            registry=r,
        )
        self.node_relays_total = Counter(
            "sip_node_relays_total",
            "Requests passed between nodes: branches sent through the node holding a device's"
            " flow (path_sent), initial requests forwarded down a flow held here for another"
            " node (path_received), in-dialog requests passed on to the node holding the"
            " dialog (peer)",
            ["kind"],
            registry=r,
        )
        self.dialogs_ended_total = Counter(
            "sip_dialogs_ended_total",
            "Calls the switch ended itself (BYE both ways), by reason (keepalive, operator)",
            ["reason"],
            registry=r,
        )
        self.keepalives_total = Counter(
            "sip_dialog_keepalives_total",
            "In-dialog OPTIONS keep-alives sent to call ends, by result (ok, failed)",
            ["result"],
            registry=r,
        )

    def watch_transactions(self, counts: Callable[[], dict[str, int]]) -> None:
        self._callbacks.transactions = counts

    def watch_registrations(self, count: Callable[[], int]) -> None:
        self._callbacks.registrations = count

    def watch_flood(self, stats: Callable[[], tuple[int, int, int]]) -> None:
        """(blocks started, messages dropped, sources blocked now) of the flood guard:
        `sip_flood_blocks_total`, `sip_flood_dropped_total`, `sip_flood_blocked_sources`."""
        self._flood.source = stats

    def watch_gc(self) -> Callable[[], None]:
        """Time every cyclic garbage collection into `python_gc_pause_seconds{generation}`
        (a gc.callbacks hook: two calls per collection, nothing per message): a collection
        stops the event loop for its duration, so this is one source of tail latency an
        operator can see. Returns the function that removes the hook."""
        pause = Histogram(
            "python_gc_pause_seconds",
            "Cyclic garbage collections and how long each stopped the process, by generation",
            ["generation"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
            registry=self.registry,
        )
        children = [pause.labels(str(g)) for g in range(3)]
        started = [0.0]

        def hook(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                children[info["generation"]].observe(time.perf_counter() - started[0])

        gc.callbacks.append(hook)
        return lambda: gc.callbacks.remove(hook) if hook in gc.callbacks else None

    def watch_overload(self, stats: Callable[[], OverloadSample]) -> None:
        """The overload control and the pending INVITEs: `sip_overload_rejected_total`,
        `sip_overload_active`, `sip_overload_refused_fraction`, `sip_udp_receive_queue_ratio`,
        `sip_invites_pending`."""
        self._overload.source = stats

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """One sample's value (0.0 if absent) — for tests and the CLI."""
        found = self.registry.get_sample_value(name, labels or {})
        return found if found is not None else 0.0

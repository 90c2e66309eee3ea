"""Prometheus metrics of the CDR pipeline (switch/cdr_writer.py), in the registry it is given.

Calls: `cdr_calls_total{direction, outcome}` counts every finished call once (at `submit`),
`cdr_call_duration_seconds` the billable seconds of answered calls. From those:

    answer-seizure ratio  = sum(rate(cdr_calls_total{outcome="answered"}[5m]))
                          / sum(rate(cdr_calls_total{outcome!="refused"}[5m]))
    average call duration = rate(cdr_call_duration_seconds_sum[5m])
                          / rate(cdr_call_duration_seconds_count[5m])

(a seizure is a call that was put through to a destination attempt: everything routing did
not refuse; the same PromQL is in the Grafana dashboard.)

Pipeline: queue depth, records only in memory (what a crash would lose), spool size, written
and duplicate records, batch write latency, spooled records by reason, replays, write
failures, rejected and lost records, rating failures; fair use of the 10-minute plan.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from provisioning.records import CallOutcome, CallRecord

if TYPE_CHECKING:
    from .cdr_writer import CdrWriter

__all__ = ["DURATION_BUCKETS", "CdrMetrics"]

# Seconds: the tariff units (30 s, 1 min, 3 min), the 10-minute plan, long calls.
DURATION_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
WRITE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class CdrMetrics:
    def __init__(self, registry: CollectorRegistry, writer: CdrWriter) -> None:
        r = registry
        depth = Gauge("cdr_queue_depth", "CDRs waiting in the writer's queue", registry=r)
        depth.set_function(lambda: writer.queue_depth)
        unsaved = Gauge(
            "cdr_unsaved_records",
            "CDRs only in memory (queue + batch being written): what a crash would lose",
            registry=r,
        )
        unsaved.set_function(lambda: writer.unsaved)
        spool = Gauge("cdr_spool_records", "CDRs in the local spool file", registry=r)
        spool.set_function(lambda: writer.spool.records)
        self.written = Counter(
            "cdr_written_total", "CDRs stored, by path (direct, replay)", ["path"], registry=r
        )
        self.duplicates = Counter(
            "cdr_duplicates_total", "CDRs written again that were stored already", registry=r
        )
        self.write_seconds = Histogram(
            "cdr_write_seconds", "Batch write latency", buckets=WRITE_BUCKETS, registry=r
        )
        self.spooled = Counter(
            "cdr_spooled_total",
            "CDRs appended to the spool (outage, overflow, shutdown)",
            ["reason"],
            registry=r,
        )
        self.replays = Counter(
            "cdr_replays_total", "Spool replays completed (the spool emptied)", registry=r
        )
        self.write_failures = Counter(
            "cdr_write_failures_total",
            "Failed batch writes (unavailable: database away; rejected: refused)",
            ["reason"],
            registry=r,
        )
        self.rejected = Counter(
            "cdr_rejected_total", "CDRs set aside to the rejected file", registry=r
        )
        self.lost = Counter("cdr_lost_total", "CDRs lost", ["reason"], registry=r)
        self.rating_failures = Counter(
            "cdr_rating_failures_total", "CDRs stored unrated", ["error_id"], registry=r
        )
        self._init_calls(r, writer)

    def _init_calls(self, r: CollectorRegistry, writer: CdrWriter) -> None:
        self.calls = Counter(
            "cdr_calls_total", "Finished calls by direction and outcome",
            ["direction", "outcome"], registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "cdr_call_duration_seconds", "Billable seconds of answered calls",
            buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.fair_use_flags = Counter(
            "cdr_fair_use_flags",
            "IDs on the 10-minute plan reaching the daily call threshold (once per ID and day)",
            registry=r,
        )
        flagged = Gauge(
            "cdr_fair_use_flagged_ids",
            "IDs on the 10-minute plan flagged for their current local day (this node's calls)",
            registry=r,
        )
        flagged.set_function(lambda: _flagged_today(writer))
        self._children: dict[tuple[str, str], Any] = {}

    def count_call(self, record: CallRecord) -> None:
        """One finished call (the call path: a cached child's inc, a histogram observe)."""
        key = (record.direction.value, record.outcome.value)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.calls.labels(*key)
        child.inc()
        if record.outcome is CallOutcome.ANSWERED:
            self.duration.observe(record.billable_seconds)


def _flagged_today(writer: CdrWriter) -> int:
    return writer.fair_use.flagged_at(writer.wall_clock())

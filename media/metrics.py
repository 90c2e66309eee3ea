"""Prometheus metrics of the media service. Registered in the registry it is given: the
switch's own when media runs in-process (one `/metrics` shows both), a registry of its own in
a standalone media process.

- `media_sessions_active{service}` / `media_sessions_total{service}`: calls answered by media.
- `media_handoffs_refused_total{status}`: INVITEs refused (bad hand-off, source, SDP, no port).
- `media_rtp_packets_total{direction}`, `media_rtp_bytes_total{direction}`: RTP in and out.
- `media_rtp_problems_total{kind}`: `lost` and `late` (received, recording buffer),
  `late_send` (a packet sent > 20 ms after its deadline), `foreign` (from an address other than
  the latched one), `malformed`.
- `media_prompt_plays_total{prompt}`, `media_dtmf_total{digit}`.
- `voicemail_messages_total{event}`: `stored`, `deleted`, `expired`, `too_short`,
  `mailbox_full` (refusals).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from .ua.rtp_session import RtpStats

__all__ = ["MediaMetrics"]


class MediaMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.sessions_active = Gauge(
            "media_sessions_active", "Media calls in progress", ["service"], registry=r
        )
        self.sessions_total = Counter(
            "media_sessions_total", "Media calls started", ["service"], registry=r
        )
        self.refused_total = Counter(
            "media_handoffs_refused_total", "Hand-offs refused, by SIP status", ["status"],
            registry=r,
        )  # fmt: skip
        self.packets_total = Counter(
            "media_rtp_packets_total", "RTP packets", ["direction"], registry=r
        )
        self.bytes_total = Counter("media_rtp_bytes_total", "RTP bytes", ["direction"], registry=r)
        self.problems_total = Counter(
            "media_rtp_problems_total", "RTP packets lost, late, foreign or malformed", ["kind"],
            registry=r,
        )  # fmt: skip
        self.prompts_total = Counter(
            "media_prompt_plays_total", "Prompts played", ["prompt"], registry=r
        )
        self.dtmf_total = Counter("media_dtmf_total", "DTMF digits received", ["digit"], registry=r)
        self.voicemail_total = Counter(
            "voicemail_messages_total", "Voicemail message events", ["event"], registry=r
        )

    def count(self, what: str, label: str) -> None:
        """The agent's and the services' events (see the module docstring)."""
        match what:
            case "started":
                self.sessions_total.labels(label).inc()
                self.sessions_active.labels(label).inc()
            case "ended":
                self.sessions_active.labels(label).dec()
            case "refused":
                self.refused_total.labels(label).inc()
            case "prompt":
                self.prompts_total.labels(label).inc()
            case "dtmf":
                self.dtmf_total.labels(label).inc()
            case "stored" | "deleted" | "expired" | "too_short" | "mailbox_full":
                self.voicemail_total.labels(what).inc()

    def rtp(self, stats: RtpStats) -> None:
        """Add one finished session's RTP counters."""
        self.packets_total.labels("in").inc(stats.packets_in)
        self.packets_total.labels("out").inc(stats.packets_out)
        self.bytes_total.labels("in").inc(stats.bytes_in)
        self.bytes_total.labels("out").inc(stats.bytes_out)
        for kind in ("lost", "late", "foreign", "malformed", "late_sends"):
            value = getattr(stats, kind)
            if value:
                self.problems_total.labels(kind.removesuffix("s")).inc(value)

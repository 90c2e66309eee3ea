"""The proxy's tunables (`ProxyConfig`) and how they are read from the `[proxy]` and
`[media]` sections of the configuration file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .dialogs import DEFAULT_KEEPALIVE_INTERVAL, DEFAULT_KEEPALIVE_TIMEOUT
from .diversion import MediaService
from .forking import DEFAULT_TIMER_C
from .leases import DEFAULT_CHANNEL_TTL, SESSION_MARGIN

__all__ = ["ProxyConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyConfig:
    """Tunables. `timer_c` must exceed 180 s (§16.6 step 11). `domains`: host names that
    mean "this service" besides the snapshot's realm and our listening addresses."""

    timer_c: float = DEFAULT_TIMER_C
    domains: tuple[str, ...] = ()
    record_route: bool = True
    max_dialogs: int = 200_000  # answered calls tracked for sip_calls_active / leases
    # Channel lease TTL without session timers; refreshed by every in-dialog request
    # (leases.py). With Session-Expires: the interval + session_margin.
    channel_ttl: float = DEFAULT_CHANNEL_TTL
    session_margin: float = SESSION_MARGIN
    lease_sweep: float = 30.0  # how often expired leases leave the proxy's bookkeeping
    # In-dialog OPTIONS to both ends of answered calls (dialogs.py); 0 switches them off.
    # A call whose end vanished ends within interval + timeout.
    keepalive_interval: float = DEFAULT_KEEPALIVE_INTERVAL
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT
    media: MediaService | None = None  # [media] uri: announcements, busy message, voicemail
    forward_stray_responses: bool = False  # RFC 3261 §16.7 stateless relay of unmatched ones

    def __post_init__(self) -> None:
        if self.timer_c <= 180:
            raise ValueError("Timer C must be greater than 3 minutes (RFC 3261 §16.6)")
        if self.channel_ttl <= 0 or self.session_margin < 0 or self.lease_sweep <= 0:
            raise ValueError("channel_ttl and lease_sweep > 0, session_margin >= 0 required")
        if self.keepalive_interval < 0 or self.keepalive_timeout <= 0:
            raise ValueError("keepalive_interval >= 0 and keepalive_timeout > 0 required")

    @classmethod
    def from_sections(cls, proxy: Mapping[str, Any], media: Mapping[str, Any]) -> ProxyConfig:
        """The `[proxy]` and `[media]` sections of the configuration file (passed through by
        switch.config as Config.extra). Unknown keys are errors, like everywhere else."""
        known = {
            "timer_c", "channel_ttl", "session_margin", "lease_sweep", "record_route",
            "forward_stray_responses", "keepalive_interval", "keepalive_timeout",
        }  # fmt: skip
        unknown = sorted(set(proxy) - known)
        unknown += sorted(f"media.{k}" for k in set(media) - {"uri", "secret"})
        if unknown:
            raise ValueError(f"unknown configuration keys: {', '.join(unknown)}")
        changes: dict[str, Any] = {}
        numbers = ("timer_c", "channel_ttl", "session_margin", "lease_sweep")
        for key in (*numbers, "keepalive_interval", "keepalive_timeout"):
            if key in proxy:
                value = proxy[key]
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"proxy.{key}: a number of seconds expected")
                changes[key] = float(value)
        for key in ("record_route", "forward_stray_responses"):
            if key in proxy:
                if not isinstance(proxy[key], bool):
                    raise ValueError(f"proxy.{key}: true or false expected")
                changes[key] = proxy[key]
        uri = media.get("uri", "")
        if not isinstance(uri, str | list) or not all(isinstance(u, str) for u in uri):
            raise ValueError("media.uri: a sip: URI or a list of them expected")
        secret = media.get("secret", "")
        if not isinstance(secret, str):
            raise ValueError("media.secret: a string expected")
        if uri:
            changes["media"] = MediaService.parse(uri, secret.encode())
        return cls(**changes)

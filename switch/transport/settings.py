"""The transport's settings (`TransportSettings`) and the server TLS context.

The defaults are those of switch.config ([sip] and [security]); `from_config` maps a Config.
The hardening knobs are explained in switch.transport.admission (connections) and
switch.transport.flood (per-source flood limits), the overload knobs in switch.transport.overload.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, fields
from typing import Any

from .admission import StreamLimits
from .flood import FloodSettings
from .overload import OverloadSettings

__all__ = ["TransportSettings", "server_tls_context"]

# TransportSettings field -> the attribute of the configuration object that holds it
_FROM_CONFIG = {
    "max_message_bytes": "max_message_bytes", "max_connections": "max_connections",
    "idle_timeout": "idle_timeout", "udp_buffer_bytes": "udp_buffer_bytes",
    "max_connections_per_source": "max_connections_per_source",
    "max_untrusted_per_source": "max_untrusted_per_source",
    "first_message_timeout": "first_message_timeout",
    "untrusted_idle_timeout": "untrusted_idle_timeout",
    "flood_limit": "flood_limit", "flood_window": "flood_window",
    "flood_block": "flood_block", "flood_exempt": "flood_exempt",
    "overload_max_delay": "overload_max_delay",
    "overload_max_pending_invites": "overload_max_pending_invites",
    "overload_retry_after": "overload_retry_after",
}  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportSettings:
    """The transport's knobs; the defaults are switch.config's ([sip] and [security])."""

    max_message_bytes: int = 65_535
    max_connections: int = 10_000
    idle_timeout: float = 3900.0
    udp_buffer_bytes: int = 4 * 1024 * 1024
    client_tls: ssl.SSLContext | None = None  # for outbound TLS (default: verify peers)
    max_connections_per_source: int = 1_000
    max_untrusted_per_source: int = 100
    first_message_timeout: float = 5.0
    untrusted_idle_timeout: float = 30.0
    flood_limit: int = 600
    flood_window: float = 2.0
    flood_block: float = 10.0
    flood_exempt: tuple[str, ...] = ()
    overload_max_delay: float = 0.1
    overload_max_pending_invites: int = 0
    overload_retry_after: int = 5

    def __post_init__(self) -> None:
        self.limits  # noqa: B018 - validates (ValueError)
        self.flood  # noqa: B018
        self.overload  # noqa: B018

    @classmethod
    def from_config(cls, cfg: Any) -> TransportSettings:
        """From switch.config's Config (or any object with the same attribute names: the
        transport does not import the configuration layer above it)."""
        assert set(_FROM_CONFIG) <= {f.name for f in fields(cls)}
        return cls(**{name: getattr(cfg, attr) for name, attr in _FROM_CONFIG.items()})

    @property
    def limits(self) -> StreamLimits:
        return StreamLimits(
            max_connections=self.max_connections,
            max_per_source=self.max_connections_per_source,
            max_untrusted_per_source=self.max_untrusted_per_source,
            first_message_timeout=self.first_message_timeout,
            untrusted_idle_timeout=self.untrusted_idle_timeout,
            idle_timeout=self.idle_timeout,
        )

    @property
    def flood(self) -> FloodSettings:
        return FloodSettings(
            limit=self.flood_limit,
            window=self.flood_window,
            block=self.flood_block,
            exempt=self.flood_exempt,
        )

    @property
    def overload(self) -> OverloadSettings:
        return OverloadSettings(
            max_delay=self.overload_max_delay,
            max_pending_invites=self.overload_max_pending_invites,
            retry_after=self.overload_retry_after,
        )


def server_tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx

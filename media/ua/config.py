"""The `[media]` section: the media service's own settings (the proxy reads `uri` and `secret`
from the same section: switch/proxy/proxy.py `ProxyConfig`).

    [media]
    uri = ""                  # external media services; empty: the switch runs one itself
    secret = ""               # signs hand-offs; empty: generated once into the data directory
    listen = "127.0.0.1:5062" # `softswitch media` only (the embedded one takes a free port)
    rtp_host = ""             # address RTP binds to and SDP announces; empty: the SIP host
    rtp_ports = "20000-29999" # even RTP ports, RTCP on the odd one above
    max_session = 600         # seconds: the hard cap on any media call
    allowed_sources = []      # `softswitch media`: proxy addresses that may hand calls over
    mwi_unsolicited = true    # NOTIFY message-summary to devices that never SUBSCRIBE
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .rtp_session import PortRange

__all__ = ["MEDIA_KEYS", "PROXY_KEYS", "MediaConfig"]

PROXY_KEYS = frozenset({"uri", "secret"})
MEDIA_KEYS = frozenset(
    {"listen", "rtp_host", "rtp_ports", "max_session", "allowed_sources", "mwi_unsolicited"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaConfig:
    listen: tuple[str, int] = ("127.0.0.1", 5062)
    rtp_host: str = ""
    rtp_ports: PortRange = field(default_factory=PortRange)
    max_session: float = 600.0
    allowed_sources: frozenset[str] | None = None
    mwi_unsolicited: bool = True

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> MediaConfig:
        unknown = sorted(set(section) - MEDIA_KEYS - PROXY_KEYS)
        if unknown:
            raise ValueError(
                f"unknown configuration keys: {', '.join('media.' + k for k in unknown)}"
            )
        changes: dict[str, Any] = {}
        if "listen" in section:
            changes["listen"] = _host_port(section["listen"])
        if "rtp_host" in section:
            changes["rtp_host"] = _text(section["rtp_host"], "rtp_host")
        if "rtp_ports" in section:
            changes["rtp_ports"] = PortRange.parse(_text(section["rtp_ports"], "rtp_ports"))
        if "max_session" in section:
            value = section["max_session"]
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError("media.max_session: a positive number of seconds expected")
            changes["max_session"] = float(value)
        if "mwi_unsolicited" in section:
            if not isinstance(section["mwi_unsolicited"], bool):
                raise ValueError("media.mwi_unsolicited: true or false expected")
            changes["mwi_unsolicited"] = section["mwi_unsolicited"]
        if "allowed_sources" in section:
            sources = section["allowed_sources"]
            if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
                raise ValueError("media.allowed_sources: a list of addresses expected")
            changes["allowed_sources"] = frozenset(sources) or None
        return cls(**changes)


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"media.{key}: a string expected")
    return value


def _host_port(value: Any) -> tuple[str, int]:
    host, _, port = _text(value, "listen").rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"media.listen: HOST:PORT expected, got {value!r}")
    return host.strip("[]"), int(port)

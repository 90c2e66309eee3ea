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

Call recording (README "Call recording"): the RTP relay recorded calls go through, and where
the recordings are kept.

    relay = "embedded"        # a relay process the switch runs; "inprocess"; "off";
                              # "udp:HOST:PORT": rtpengine's ng socket
    relay_ports = "30000-39999"  # the embedded relay's RTP ports (RTCP on the odd one above)
    relay_host = ""           # address the embedded relay relays on; empty: the SIP address
    relay_spool = ""          # rtpengine: its --recording-dir (pcaps converted by this node)
    relay_notice = ""         # the recording notice as the relay reads it; empty: shipped
    recordings_dir = ""       # the recordings; empty: <data>/recordings
    recordings_node = ""      # this node's subdirectory of it; empty: the host name
    recording_retention_days = 30
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .rtp_session import PortRange

__all__ = ["MEDIA_KEYS", "PROXY_KEYS", "RECORDING_KEYS", "MediaConfig"]

PROXY_KEYS = frozenset({"uri", "secret"})
RECORDING_KEYS = frozenset(
    {
        "relay", "relay_ports", "relay_host", "relay_spool", "relay_notice", "recordings_dir",
        "recordings_node", "recording_retention_days",
    }
)  # fmt: skip
MEDIA_KEYS = (
    frozenset(
        {"listen", "rtp_host", "rtp_ports", "max_session", "allowed_sources", "mwi_unsolicited"}
    )
    | RECORDING_KEYS
)
_RELAY = re.compile(r"embedded|inprocess|off|udp:(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+):[0-9]{1,5}")


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaConfig:
    listen: tuple[str, int] = ("127.0.0.1", 5062)
    rtp_host: str = ""
    rtp_ports: PortRange = field(default_factory=PortRange)
    max_session: float = 600.0
    allowed_sources: frozenset[str] | None = None
    mwi_unsolicited: bool = True
    relay: str = "embedded"
    relay_ports: PortRange = field(default_factory=lambda: PortRange(30000, 39999))
    relay_host: str = ""
    relay_spool: str = ""
    relay_notice: str = ""
    recordings_dir: str = ""
    recordings_node: str = ""
    recording_retention_days: float = 30.0

    @property
    def relay_address(self) -> tuple[str, int] | None:
        """rtpengine's ng address (`relay = "udp:HOST:PORT"`), else None."""
        if not self.relay.startswith("udp:"):
            return None
        host, _, port = self.relay.removeprefix("udp:").rpartition(":")
        return host.strip("[]"), int(port)

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
        changes.update(_recording(section))
        if "allowed_sources" in section:
            sources = section["allowed_sources"]
            if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
                raise ValueError("media.allowed_sources: a list of addresses expected")
            changes["allowed_sources"] = frozenset(sources) or None
        return cls(**changes)


def _recording(section: Mapping[str, Any]) -> dict[str, Any]:
    """The call recording keys (module docstring)."""
    changes: dict[str, Any] = {}
    for key in ("relay_host", "relay_spool", "relay_notice", "recordings_dir", "recordings_node"):
        if key in section:
            changes[key] = _text(section[key], key)
    if "relay" in section:
        relay = _text(section["relay"], "relay")
        if not _RELAY.fullmatch(relay) or (
            relay.startswith("udp:") and int(relay.rsplit(":", 1)[1]) > 65535
        ):
            raise ValueError(
                f'media.relay: "embedded", "inprocess", "off" or "udp:HOST:PORT", got {relay!r}'
            )
        changes["relay"] = relay
    if "relay_ports" in section:
        changes["relay_ports"] = PortRange.parse(_text(section["relay_ports"], "relay_ports"))
    if "recordings_node" in changes and "/" in changes["recordings_node"]:
        raise ValueError("media.recordings_node: a directory name, not a path")
    if "recording_retention_days" in section:
        value = section["recording_retention_days"]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError("media.recording_retention_days: a positive number expected")
        changes["recording_retention_days"] = float(value)
    return changes


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"media.{key}: a string expected")
    return value


def _host_port(value: Any) -> tuple[str, int]:
    host, _, port = _text(value, "listen").rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"media.listen: HOST:PORT expected, got {value!r}")
    return host.strip("[]"), int(port)

"""The one configuration loader: a TOML file (`--config FILE`) plus command-line overrides.

Every key is documented in deploy/softswitch.example.toml. Unknown sections or keys are
errors (a typo must not silently fall back to a default). Defaults listen on 127.0.0.1 only.

Secrets that must survive restarts but need no operator (the digest nonce secret, the admin
token) are generated on first start and persisted under the data directory with mode 0600
when the file does not set them (`resolve_secret`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from routing.caps import OutboundLimits
    from switch.proxy.bans import GuardSettings

__all__ = [
    "Config",
    "ConfigError",
    "HostPort",
    "load_config",
    "parse_host_port",
    "resolve_secret",
]


class ConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_host_port(text: str, default_port: int | None = None) -> HostPort:
    """ "127.0.0.1:5060", "[::1]:5060", "localhost:0"; port 0 asks for an ephemeral port."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(f"bad address {text!r}")
    else:
        host, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise ConfigError(f"bad address {text!r}: no host")
    if not port_text:
        if default_port is None:
            raise ConfigError(f"bad address {text!r}: HOST:PORT expected")
        return HostPort(host, default_port)
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"bad port in {text!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"port out of range in {text!r}")
    return HostPort(host, port)


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    # [sip]
    sip: HostPort = HostPort("127.0.0.1", 5060)  # UDP and TCP on the same address
    tls: HostPort | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    advertised_host: str | None = None  # host for Via/Record-Route when listening on 0.0.0.0
    realm: str | None = None  # overrides the snapshot's realm when set
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    idle_timeout: float = 3900.0  # idle TCP/TLS connections closed after this (s)
    max_connections: int = 10_000
    udp_buffer_bytes: int = 4 * 1024 * 1024
    max_message_bytes: int = 65_535
    # [registrar]
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    # [auth]
    nonce_secret: str | None = None
    nonce_ttl: float = 300.0
    # MD5 only by default: what the phones in the field answer (baresip 1.0 and SIPp 3.6 fail
    # on a SHA-256 challenge instead of skipping it, against RFC 8760 §2.4), and the default of
    # Kamailio's auth module and Asterisk's res_pjsip. SHA-256 is opt-in for fleets known to
    # cope: ["SHA-256", "MD5"]. Both HA1 hashes are stored either way.
    digest_algorithms: tuple[str, ...] = ("MD5",)
    # [http]
    http: HostPort | None = HostPort("127.0.0.1", 8080)
    admin_token: str | None = None
    # [data]
    data_dir: Path = Path("data")
    seed: Path | None = None
    database_url: str | None = None
    # [state]
    state_url: str = "memory"  # or redis://host:port/db (rediss:// for TLS)
    state_timeout: float = 0.5  # seconds a Redis command may take (switch/state/redis.py)
    # [log]
    log_level: str = "INFO"
    # [security] (README "Floods and connection limits"; switch/transport/flood.py, admission.py)
    flood_limit: int = 600  # messages per source within flood_window; 0 = no flood limit
    flood_window: float = 2.0
    flood_block: float = 10.0  # blocked until under the limit for this long (s)
    flood_exempt: tuple[str, ...] = ()  # addresses/networks never flood-blocked
    max_connections_per_source: int = 1_000  # TCP/TLS connections from one address
    max_untrusted_per_source: int = 100  # of which not yet trusted
    first_message_timeout: float = 5.0  # a new connection must deliver a message by then
    untrusted_idle_timeout: float = 30.0  # idle timeout until a connection is trusted
    # [overload] (README "Overload"; switch/transport/overload.py)
    overload_max_delay: float = 0.1  # s a message waits (loop lag, UDP queue); 0 = no refusal
    overload_max_pending_invites: int = 0  # INVITEs without a final response; 0 = no cap
    overload_retry_after: int = 5  # s, Retry-After of the 503 to refused INVITEs
    # [security] password guessing (README "Password guessing"; switch/proxy/bans.py)
    auth_max_failures: int = 5  # digest failures per source address within auth_window
    auth_id_max_failures: int = 10  # per username (from any address) within auth_window
    auth_window: float = 600.0
    auth_ban_time: float = 600.0
    auth_ban_action: str = "reject"  # or "drop"
    auth_known_source_ttl: float = 7 * 86400.0
    # [security] toll-fraud caps (README "Toll fraud"; routing/caps.py); 0 = no cap
    max_outbound_concurrent_per_id: int = 3
    max_outbound_per_id_per_day: int = 300
    max_outbound_per_tenant_per_day: int = 2000
    max_expensive_per_id_per_day: int = 20
    expensive_classes: tuple[str, ...] = ("navi-dial", "directory", "other")
    extra: Mapping[str, Any] = field(default_factory=dict)  # sections owned by other modules

    def __post_init__(self) -> None:
        if not 0 < self.t1 <= self.t2:
            raise ConfigError("timers: 0 < t1 <= t2 required")
        if self.t4 <= 0:
            raise ConfigError("timers: t4 > 0 required")
        if not 0 < self.min_expires <= self.default_expires <= self.max_expires:
            raise ConfigError("registrar: 0 < min_expires <= default_expires <= max_expires")
        if self.idle_timeout <= self.max_expires:
            # A device refreshes its registration (and keeps its flow busy) at most every
            # max_expires seconds; closing earlier would cut the flow we call it on.
            raise ConfigError("sip.idle_timeout must be longer than registrar.max_expires")
        if (self.tls is not None) and (self.tls_cert is None or self.tls_key is None):
            raise ConfigError("sip.tls_listen needs sip.tls_cert and sip.tls_key")
        if self.max_connections < 1 or self.udp_buffer_bytes < 0:
            raise ConfigError("sip.max_connections >= 1 and udp_buffer_bytes >= 0 required")
        self._check_security()
        self._check_overload()
        check_state_url(self.state_url)
        if not 0 < self.state_timeout <= 10:
            raise ConfigError("state.timeout: seconds in (0, 10] expected")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(f"log.level: unknown level {self.log_level!r}")

    def _check_overload(self) -> None:
        if self.overload_max_delay < 0:
            raise ConfigError("overload: max_delay >= 0")
        if self.overload_max_pending_invites < 0 or self.overload_retry_after < 0:
            raise ConfigError("overload: max_pending_invites >= 0 and retry_after >= 0")

    def _check_security(self) -> None:
        if self.flood_limit < 0 or not (self.flood_window > 0 and self.flood_block > 0):
            raise ConfigError("security: flood_limit >= 0, flood_window > 0, flood_block > 0")
        if not 1 <= self.max_untrusted_per_source <= self.max_connections_per_source:
            raise ConfigError(
                "security: 1 <= max_untrusted_per_source <= max_connections_per_source"
            )
        if min(self.first_message_timeout, self.untrusted_idle_timeout) <= 0:
            raise ConfigError("security: connection timeouts must be > 0")
        if self.untrusted_idle_timeout >= self.idle_timeout:
            raise ConfigError("security.untrusted_idle_timeout must be below sip.idle_timeout")
        self._check_guard()

    def _check_guard(self) -> None:
        """The auth_* and outbound-cap keys: the guard's and routing's own checks."""
        from routing.caps import OutboundLimits
        from switch.proxy.bans import BanAction

        if self.auth_ban_action not in {a.value for a in BanAction}:
            raise ConfigError("security.auth_ban_action: 'reject' or 'drop'")
        try:
            self.guard_settings()
            OutboundLimits.from_classes(
                concurrent_per_id=self.max_outbound_concurrent_per_id,
                per_id_per_day=self.max_outbound_per_id_per_day,
                per_tenant_per_day=self.max_outbound_per_tenant_per_day,
                expensive_per_id_per_day=self.max_expensive_per_id_per_day,
                expensive_classes=self.expensive_classes,
            )
        except ValueError as exc:
            raise ConfigError(f"security: {exc}") from None

    def guard_settings(self) -> GuardSettings:
        """The authentication guard's settings (switch/proxy/bans.py)."""
        from switch.proxy.bans import BanAction, GuardSettings
        from switch.transport.flood import parse_exempt

        return GuardSettings(
            source_max_failures=self.auth_max_failures,
            id_max_failures=self.auth_id_max_failures,
            window=self.auth_window,
            ban_time=self.auth_ban_time,
            known_source_ttl=self.auth_known_source_ttl,
            action=BanAction(self.auth_ban_action),
            exempt=tuple(parse_exempt(e) for e in self.flood_exempt),
        )

    def outbound_limits(self) -> OutboundLimits:
        """The toll-fraud caps routing applies (routing/caps.py)."""
        from routing.caps import OutboundLimits

        return OutboundLimits.from_classes(
            concurrent_per_id=self.max_outbound_concurrent_per_id,
            per_id_per_day=self.max_outbound_per_id_per_day,
            per_tenant_per_day=self.max_outbound_per_tenant_per_day,
            expensive_per_id_per_day=self.max_expensive_per_id_per_day,
            expensive_classes=self.expensive_classes,
        )

    @property
    def effective_database_url(self) -> str:
        """The configured URL, else SQLite under the data directory."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'softswitch.db').resolve()}"

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


# (section, key) -> (field name, converter)
def _addr(v: Any) -> HostPort:
    return parse_host_port(_str(v))


def _opt_addr(v: Any) -> HostPort | None:
    return _addr(v) if v not in ("", None) else None


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise ConfigError(f"string expected, got {v!r}")
    return v


def _opt_str(v: Any) -> str | None:
    return _str(v) or None


def _path(v: Any) -> Path:
    return Path(_str(v))


def _opt_path(v: Any) -> Path | None:
    return Path(_str(v)) if v else None


def _num(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ConfigError(f"number expected, got {v!r}")
    return float(v)


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"integer expected, got {v!r}")
    return v


def _algorithms(v: Any) -> tuple[str, ...]:
    """Digest algorithms offered in challenges (RFC 8760): SHA-256 and/or MD5; SHA-256 is
    always offered first when enabled. The default is MD5 only (see Config.digest_algorithms)."""
    if not isinstance(v, list) or not v:
        raise ConfigError(f"a non-empty list of digest algorithms expected, got {v!r}")
    algs = tuple(str(a).upper() for a in v)
    unknown = [a for a in algs if a not in ("SHA-256", "MD5")]
    if unknown or len(set(algs)) != len(algs):
        raise ConfigError(f"digest algorithms must be SHA-256 and/or MD5, got {v!r}")
    return algs


def _words(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise ConfigError(f"a list of strings expected, got {v!r}")
    return tuple(_str(e) for e in v)


def _exempt(v: Any) -> tuple[str, ...]:
    """[security] exempt: IP addresses or networks ("192.0.2.10", "198.51.100.0/24")."""
    from switch.transport.flood import parse_exempt

    if not isinstance(v, list):
        raise ConfigError(f"a list of addresses or networks expected, got {v!r}")
    entries = tuple(_str(e) for e in v)
    for entry in entries:
        try:
            parse_exempt(entry)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return entries


_KEYS: dict[tuple[str, str], tuple[str, Any]] = {
    ("sip", "listen"): ("sip", _addr),
    ("sip", "tls_listen"): ("tls", _opt_addr),
    ("sip", "tls_cert"): ("tls_cert", _opt_path),
    ("sip", "tls_key"): ("tls_key", _opt_path),
    ("sip", "advertised_host"): ("advertised_host", _opt_str),
    ("sip", "realm"): ("realm", _opt_str),
    ("sip", "t1"): ("t1", _num),
    ("sip", "t2"): ("t2", _num),
    ("sip", "t4"): ("t4", _num),
    ("sip", "idle_timeout"): ("idle_timeout", _num),
    ("sip", "max_connections"): ("max_connections", _int),
    ("sip", "udp_buffer_bytes"): ("udp_buffer_bytes", _int),
    ("sip", "max_message_bytes"): ("max_message_bytes", _int),
    ("registrar", "min_expires"): ("min_expires", _int),
    ("registrar", "max_expires"): ("max_expires", _int),
    ("registrar", "default_expires"): ("default_expires", _int),
    ("auth", "nonce_secret"): ("nonce_secret", _opt_str),
    ("auth", "nonce_ttl"): ("nonce_ttl", _num),
    ("auth", "algorithms"): ("digest_algorithms", _algorithms),
    ("http", "listen"): ("http", _opt_addr),
    ("http", "admin_token"): ("admin_token", _opt_str),
    ("data", "dir"): ("data_dir", _path),
    ("data", "seed"): ("seed", _opt_path),
    ("data", "database_url"): ("database_url", _opt_str),
    ("state", "url"): ("state_url", _str),
    ("state", "timeout"): ("state_timeout", _num),
    ("log", "level"): ("log_level", _str),
    ("security", "flood_limit"): ("flood_limit", _int),
    ("security", "flood_window"): ("flood_window", _num),
    ("security", "flood_block"): ("flood_block", _num),
    ("security", "exempt"): ("flood_exempt", _exempt),
    ("security", "max_connections_per_source"): ("max_connections_per_source", _int),
    ("security", "max_untrusted_per_source"): ("max_untrusted_per_source", _int),
    ("security", "first_message_timeout"): ("first_message_timeout", _num),
    ("security", "untrusted_idle_timeout"): ("untrusted_idle_timeout", _num),
    ("overload", "max_delay"): ("overload_max_delay", _num),
    ("overload", "max_pending_invites"): ("overload_max_pending_invites", _int),
    ("overload", "retry_after"): ("overload_retry_after", _int),
    ("security", "auth_max_failures"): ("auth_max_failures", _int),
    ("security", "auth_id_max_failures"): ("auth_id_max_failures", _int),
    ("security", "auth_window"): ("auth_window", _num),
    ("security", "auth_ban_time"): ("auth_ban_time", _num),
    ("security", "auth_ban_action"): ("auth_ban_action", _str),
    ("security", "auth_known_source_ttl"): ("auth_known_source_ttl", _num),
    ("security", "max_outbound_concurrent_per_id"): ("max_outbound_concurrent_per_id", _int),
    ("security", "max_outbound_per_id_per_day"): ("max_outbound_per_id_per_day", _int),
    ("security", "max_outbound_per_tenant_per_day"): ("max_outbound_per_tenant_per_day", _int),
    ("security", "max_expensive_per_id_per_day"): ("max_expensive_per_id_per_day", _int),
    ("security", "expensive_classes"): ("expensive_classes", _words),
}
_SECTIONS = {s for s, _ in _KEYS}
# Sections other modules own (read by them from Config.extra); unknown keys there are theirs.
EXTRA_SECTIONS = {"provisioning", "proxy", "media", "routing", "redis", "cdr"}


def config_from_mapping(doc: Mapping[str, Any], base: Config | None = None) -> Config:
    changes: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for section, body in doc.items():
        if section in EXTRA_SECTIONS:
            extra[section] = body
            continue
        if section not in _SECTIONS or not isinstance(body, Mapping):
            raise ConfigError(f"unknown configuration section [{section}]")
        for key, value in body.items():
            spec = _KEYS.get((section, key))
            if spec is None:
                raise ConfigError(f"unknown configuration key {section}.{key}")
            name, convert = spec
            try:
                changes[name] = convert(value)
            except ConfigError as exc:
                raise ConfigError(f"{section}.{key}: {exc}") from None
    if extra:
        changes["extra"] = extra
        _check_proxy_sections(extra)
        _check_cdr_section(extra)
    try:
        return (base or Config()).replace(**changes)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def _check_proxy_sections(extra: Mapping[str, Any]) -> None:
    """[proxy] and [media] are read by the proxy (ProxyConfig.from_sections: [proxy], and
    `uri`/`secret` of [media]) and by the media service (media.ua.config.MediaConfig: the
    rest of [media]); check them at load time so that a typo stops `softswitch serve` with a
    message, not a traceback."""
    if not {"proxy", "media", "routing"} & set(extra):
        return
    from media.ua.config import PROXY_KEYS, MediaConfig
    from routing.settings import RoutingSettings
    from switch.proxy.proxy import ProxyConfig

    proxy, media = extra.get("proxy", {}), extra.get("media", {})
    if not isinstance(proxy, Mapping) or not isinstance(media, Mapping):
        raise ConfigError("[proxy] and [media] must be tables")
    try:
        RoutingSettings.from_section(extra.get("routing", {}))
        MediaConfig.from_section(media)
        ProxyConfig.from_sections(proxy, {k: v for k, v in media.items() if k in PROXY_KEYS})
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _check_cdr_section(extra: Mapping[str, Any]) -> None:
    """[cdr] is the CDR writer's (switch/cdr_writer.py CdrConfig): checked at load time."""
    if "cdr" not in extra:
        return
    from switch.cdr_writer import CdrConfig

    section = extra["cdr"]
    if not isinstance(section, Mapping):
        raise ConfigError("[cdr] must be a table")
    try:
        CdrConfig.from_section(section)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def load_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Defaults <- the TOML file (if any) <- `overrides` (Config field names, None = unset).
    Relative paths in the file are taken relative to the current directory, like the CLI's."""
    doc: dict[str, Any] = {}
    if path is not None:
        try:
            doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    file_config = config_from_mapping(doc)
    changes = {k: v for k, v in (overrides or {}).items() if v is not None}
    try:
        return file_config.replace(**changes)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def resolve_secret(configured: str | None, data_dir: Path, name: str) -> str:
    """The configured secret, else the one persisted in data_dir/name, else a new random one
    written there (mode 0600, created atomically so two starting processes agree)."""
    if configured:
        return configured
    path = data_dir / name
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(value + "\n")
    return value


def check_state_url(url: str) -> None:
    """ "memory", redis[s]://[[user]:password@]host[:port][/db][?options] (redis-py's URL),
    or redis+sentinel://… (switch/state/redis_pool.py). The message never repeats the URL: it
    may hold a password."""
    if url == "memory":
        return
    if url.startswith("redis+sentinel://"):
        from switch.state.redis_pool import parse_sentinel_url  # redis-py: only when asked

        try:
            parse_sentinel_url(url)
        except ValueError as exc:
            raise ConfigError(f"state.url: {exc}") from None
        return
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError("state.url: 'memory' or redis://host:port/db expected")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ConfigError("state.url: bad port")
    if not parts.hostname:
        raise ConfigError("state.url: no host")
    db = parts.path.removeprefix("/")
    if db and not db.isdigit():
        raise ConfigError("state.url: the database must be a number (redis://host:port/0)")


def is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False

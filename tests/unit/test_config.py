"""Configuration: defaults, the TOML file, overrides, validation, persisted secrets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from switch.config import (
    Config,
    ConfigError,
    HostPort,
    load_config,
    parse_host_port,
    resolve_secret,
)

EXAMPLE = Path(__file__).parents[2] / "deploy" / "softswitch.example.toml"


def test_defaults_listen_on_loopback_only() -> None:
    c = Config()
    assert c.sip == HostPort("127.0.0.1", 5060)
    assert c.http == HostPort("127.0.0.1", 8080)
    assert c.tls is None
    assert c.data_dir == Path("data")
    assert c.effective_database_url.startswith("sqlite:///")
    assert c.effective_database_url.endswith("data/softswitch.db")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5060", HostPort("127.0.0.1", 5060)),
        ("localhost:0", HostPort("localhost", 0)),
        ("[::1]:5061", HostPort("::1", 5061)),
        ("0.0.0.0:65535", HostPort("0.0.0.0", 65535)),
    ],
)
def test_parse_host_port(text: str, expected: HostPort) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1", ":5060", "h:70000", "h:x", "[::1", "[::1]x"])
def test_parse_host_port_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_host_port(text)


def test_example_file_loads_and_equals_defaults() -> None:
    # The example documents every key with its default value; [proxy]/[media]/[routing] are
    # the proxy's, the media service's and routing's own (Config.extra) and must equal their
    # defaults.
    from media.ua.config import MEDIA_KEYS, PROXY_KEYS, MediaConfig
    from routing.settings import RoutingSettings
    from switch.cdr_writer import CdrConfig
    from switch.proxy.proxy import ProxyConfig

    loaded = load_config(EXAMPLE)
    assert loaded.replace(extra={}) == Config()
    assert set(loaded.extra) == {"proxy", "media", "routing", "cdr"}
    media = loaded.extra["media"]
    assert set(media) == MEDIA_KEYS | PROXY_KEYS  # every key documented
    proxy_media = {k: v for k, v in media.items() if k in PROXY_KEYS}
    assert ProxyConfig.from_sections(loaded.extra["proxy"], proxy_media) == ProxyConfig()
    assert MediaConfig.from_section(media) == MediaConfig()
    assert RoutingSettings.from_section(loaded.extra["routing"]) == RoutingSettings()
    cdr = CdrConfig.from_section(loaded.extra["cdr"])
    assert cdr == CdrConfig()  # every key at its default ("" node: the host name)
    assert set(loaded.extra["cdr"]) == {
        "batch_size", "batch_interval", "max_queue", "retry_max", "retention_days", "node",
        "pg_insert", "enabled",
    }  # fmt: skip


def test_file_then_overrides(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        '[sip]\nlisten = "127.0.0.1:0"\nt1 = 0.25\n'
        '[registrar]\nmin_expires = 30\n[data]\nseed = "s.toml"\n'
        "[provisioning]\nanything = 1\n"
    )
    c = load_config(f, {"http": HostPort("127.0.0.1", 0), "seed": None})
    assert c.sip.port == 0 and c.t1 == 0.25 and c.min_expires == 30
    assert c.http == HostPort("127.0.0.1", 0)
    assert c.seed == Path("s.toml")  # None override = not given
    assert c.extra == {"provisioning": {"anything": 1}}


@pytest.mark.parametrize(
    "body",
    [
        "[sip]\nlistne = '127.0.0.1:5060'\n",  # typo
        "[nope]\nx = 1\n",
        "[sip]\nt1 = 'fast'\n",
        "[sip]\nt1 = 5.0\nt2 = 4.0\n",
        "[registrar]\nmin_expires = 7200\n",
        "[sip]\nidle_timeout = 60.0\n",  # shorter than max_expires
        "[sip]\ntls_listen = '127.0.0.1:5061'\n",  # no cert/key
        "[log]\nlevel = 'LOUD'\n",
        "[sip]\nmax_connections = true\n",
        "[state]\nurl = ''\n",
        "[state]\nurl = 'postgresql://127.0.0.1/x'\n",  # not a state backend
        "[state]\nurl = 'redis://'\n",  # no host
        "[state]\nurl = 'redis://127.0.0.1:port/0'\n",
        "[state]\nurl = 'redis://127.0.0.1:0/0'\n",
        "[state]\nurl = 'redis://127.0.0.1:6379/zero'\n",
        "[state]\nurl = 6379\n",
        "[state]\nredis = 'redis://127.0.0.1'\n",  # unknown key
        "[auth]\nalgorithms = []\n",
        "[auth]\nalgorithms = ['SHA-512']\n",
        "[auth]\nalgorithms = ['MD5', 'md5']\n",
        "[auth]\nalgorithms = 'MD5'\n",
        "not toml [",
    ],
)
def test_bad_files_raise_config_error(tmp_path: Path, body: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(body)
    with pytest.raises(ConfigError):
        load_config(f)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("", ("MD5",)),  # the default: what every phone answers (issue 12)
        ("[auth]\nalgorithms = ['SHA-256', 'MD5']\n", ("SHA-256", "MD5")),
        ("[auth]\nalgorithms = ['md5']\n", ("MD5",)),
        ("[auth]\nalgorithms = ['MD5', 'SHA-256']\n", ("MD5", "SHA-256")),
    ],
)
def test_digest_algorithms(tmp_path: Path, body: str, expected: tuple[str, ...]) -> None:
    f = tmp_path / "c.toml"
    f.write_text(body)
    assert load_config(f).digest_algorithms == expected


@pytest.mark.parametrize(
    "url",
    [
        "memory",
        "redis://127.0.0.1:6379/0",
        "redis://redis.example.net",
        "rediss://:s3cret@[2001:db8::1]:6380/2",
        "redis://user:pw@h:6379/0?socket_keepalive=true",
        "redis+sentinel://10.0.0.1:26379/softswitch",
        "redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379,[2001:db8::3]:26379/ss/2",
        "redis+sentinel://s1.example:26379/ss?sentinel_password=x",
    ],
)
def test_state_url(tmp_path: Path, url: str) -> None:
    assert Config().state_url == "memory"
    f = tmp_path / "c.toml"
    f.write_text(f"[state]\nurl = '{url}'\n")
    assert load_config(f).state_url == url


@pytest.mark.parametrize(
    "url",
    [
        "redis://:s3cret@h:99999/0",
        "redis+sentinel://:s3cret@h/ss",  # no port
        "redis+sentinel://:s3cret@h:26379",  # no service
        "redis+sentinel://:s3cret@h:26379/ss/x",  # bad database
        "redis+sentinel://:s3cret@h:26379/ss/0/1",
        "redis+sentinel://:s3cret@h:26379,:26380/ss",
        "redis+sentinel://:s3cret@h:26379/ss?max_connections=5",  # an option we do not pass
    ],
)
def test_state_url_errors_do_not_echo_the_password(url: str) -> None:
    with pytest.raises(ConfigError, match=r"state\.url") as info:
        Config(state_url=url)
    assert "s3cret" not in str(info.value)


def test_sentinel_url_parts() -> None:
    from switch.state.redis_pool import parse_sentinel_url

    u = parse_sentinel_url("redis+sentinel://me:p%40ss@a:1,[::1]:2/my%20ss/3?sentinel_password=q")
    assert (u.sentinels, u.service, u.db) == ([("a", 1), ("::1", 2)], "my ss", 3)
    assert (u.username, u.password, u.sentinel_password) == ("me", "p@ss", "q")
    u = parse_sentinel_url("redis+sentinel://a:26379/ss")
    assert (u.db, u.username, u.password, u.sentinel_password) == (0, None, None, None)


def test_missing_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_resolve_secret_generates_once_and_persists(tmp_path: Path) -> None:
    d = tmp_path / "data"
    first = resolve_secret(None, d, "nonce-secret")
    assert len(first) >= 32
    assert resolve_secret(None, d, "nonce-secret") == first
    assert os.stat(d / "nonce-secret").st_mode & 0o777 == 0o600
    assert resolve_secret("configured", d, "nonce-secret") == "configured"


def test_proxy_and_media_sections_reach_the_proxy_config(tmp_path: Path) -> None:
    from switch.proxy.proxy import ProxyConfig

    f = tmp_path / "c.toml"
    f.write_text(
        '[proxy]\nchannel_ttl = 5\nsession_margin = 10\n[media]\nuri = "sip:media@127.0.0.1:5090"\n'
    )
    c = load_config(f)
    pc = ProxyConfig.from_sections(c.extra["proxy"], c.extra["media"])
    assert pc.channel_ttl == 5.0 and pc.session_margin == 10.0
    assert pc.media is not None and str(pc.media.uri) == "sip:media@127.0.0.1:5090"
    assert ProxyConfig.from_sections({}, {}).media is None  # no media service: 480/486


@pytest.mark.parametrize(
    "body",
    [
        "[proxy]\nchanel_ttl = 5\n",  # typo
        "[proxy]\nchannel_ttl = 0\n",
        "[proxy]\nchannel_ttl = 'long'\n",
        "[media]\nuri = 'http://media'\n",
        "[media]\nurl = 'sip:media@127.0.0.1'\n",
        "[cdr]\nbatch_sise = 10\n",  # typo
        "[cdr]\nbatch_size = 0\n",
        "[cdr]\npg_insert = 'bulk'\n",
        "[cdr]\nretention_days = 0\n",
        "[cdr]\nenabled = 'no'\n",
        "cdr = 1\n",
    ],
)
def test_bad_proxy_or_media_section_is_a_config_error(tmp_path: Path, body: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(body)
    with pytest.raises(ConfigError):
        load_config(f)

"""The [security] configuration keys and their way into TransportSettings."""

from __future__ import annotations

from pathlib import Path

import pytest

from switch.config import Config, ConfigError, load_config
from switch.transport.admission import StreamLimits
from switch.transport.flood import FloodSettings
from switch.transport.manager import TransportSettings


def test_defaults_agree_everywhere() -> None:
    # Config (what `serve` runs on), TransportSettings (what app.py builds from it today
    # without the [security] keys), and the policy objects' own defaults.
    assert TransportSettings.from_config(Config()) == TransportSettings()
    s = TransportSettings()
    assert s.limits == StreamLimits()
    assert s.flood == FloodSettings()


def test_security_section_reaches_the_transport(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        "[security]\nflood_limit = 0\nflood_window = 1.5\nflood_block = 60\n"
        'exempt = ["192.0.2.10", "198.51.100.0/24", "203.0.113.5:5060"]\n'
        "max_connections_per_source = 50\nmax_untrusted_per_source = 5\n"
        "first_message_timeout = 2.5\nuntrusted_idle_timeout = 10\n"
    )
    s = TransportSettings.from_config(load_config(f))
    assert (s.flood_limit, s.flood_window, s.flood_block) == (0, 1.5, 60.0)
    assert s.flood_exempt == ("192.0.2.10", "198.51.100.0/24", "203.0.113.5:5060")
    assert s.limits == StreamLimits(
        max_per_source=50, max_untrusted_per_source=5,
        first_message_timeout=2.5, untrusted_idle_timeout=10.0,
    )  # fmt: skip


@pytest.mark.parametrize(
    "body",
    [
        "flood_limit = -1",
        "flood_limit = 1.5",
        "flood_window = 0",
        "flood_block = -3",
        "exempt = '192.0.2.1'",
        "exempt = ['gw.example.net']",
        "exempt = [5060]",
        "max_untrusted_per_source = 0",
        "max_connections_per_source = 10\nmax_untrusted_per_source = 11",
        "first_message_timeout = 0",
        "untrusted_idle_timeout = 3900",  # not below sip.idle_timeout
        "flood = 1",  # unknown key
    ],
)
def test_bad_security_keys_are_config_errors(tmp_path: Path, body: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(f"[security]\n{body}\n")
    with pytest.raises(ConfigError):
        load_config(f)

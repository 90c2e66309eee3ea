"""The `softswitch` command: argument parsing, configuration overrides, the extension hook,
and a real `python -m switch serve` subprocess (the lines the integration tests rely on,
port 0, graceful SIGTERM, `device release` against it)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from switch import cli
from switch.config import HostPort

ROOT = Path(__file__).parents[2]
SEED = ROOT / "deploy" / "demo-seed.toml"


def test_serve_options_override_the_config_file(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[sip]\nlisten = "127.0.0.1:7000"\n[http]\nlisten = "127.0.0.1:7001"\n')
    args = cli.build_parser().parse_args(
        ["serve", "--config", str(f), "--sip", "127.0.0.1:0", "--seed", "s.toml",
         "--data", str(tmp_path / "d")]
    )  # fmt: skip
    config = cli.config_from_args(args)
    assert config.sip == HostPort("127.0.0.1", 0)
    assert config.http == HostPort("127.0.0.1", 7001)  # from the file
    assert config.seed == Path("s.toml")
    assert config.data_dir == tmp_path / "d"
    assert args.func is cli.cmd_serve


def test_http_off_disables_the_listener() -> None:
    args = cli.build_parser().parse_args(["serve", "--http", "off"])
    assert cli.config_from_args(args).http is None


def test_bad_address_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.build_parser().parse_args(["serve", "--sip", "127.0.0.1"])
    assert info.value.code == 2
    assert "HOST:PORT" in capsys.readouterr().err


def test_config_error_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[sip]\nbogus = 1\n")
    assert cli.main(["serve", "--config", str(f)]) == 2
    assert "sip.bogus" in capsys.readouterr().err


def test_extension_modules_register_subcommands(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("fake_provisioning_cli")

    def register(sub: object) -> None:
        p = sub.add_parser("db")  # type: ignore[attr-defined]
        p.add_argument("action", choices=["upgrade"])
        p.set_defaults(func=lambda args: 7)

    module.register = register  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_provisioning_cli", module)
    monkeypatch.setattr(cli, "EXTENSION_MODULES", ("fake_provisioning_cli", "absent_module_x"))
    assert cli.main(["db", "upgrade"]) == 7


def test_listening_lines_format() -> None:
    app = types.SimpleNamespace(
        sip_addresses={"udp": ("127.0.0.1", 5060), "tcp": ("127.0.0.1", 5060),
                       "tls": ("::1", 5061)},
        http_address=("127.0.0.1", 8080),
    )  # fmt: skip
    assert cli.listening_lines(app) == [
        "SIP listening on udp+tcp 127.0.0.1:5060",
        "SIP listening on tls [::1]:5061",
        "HTTP listening on http://127.0.0.1:8080 (API at /v1, metrics at /metrics)",
    ]


def test_serve_subprocess_prints_real_ports_and_stops_on_sigterm(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "switch", "serve", "--sip", "127.0.0.1:0", "--http",
         "127.0.0.1:0", "--seed", str(SEED), "--data", str(data)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        sip_line = proc.stdout.readline().rstrip("\n")
        http_line = proc.stdout.readline().rstrip("\n")
        sip = re.fullmatch(r"SIP listening on udp\+tcp 127\.0\.0\.1:(\d+)", sip_line)
        http = re.fullmatch(
            r"HTTP listening on http://127\.0\.0\.1:(\d+) \(API at /v1, metrics at /metrics\)",
            http_line,
        )
        assert sip and http, (sip_line, http_line)
        assert int(sip.group(1)) != 0 and int(http.group(1)) != 0

        # `device release` finds the token the switch generated under the data directory.
        code = cli.main(
            ["device", "release", "demo-app", "--http", f"127.0.0.1:{http.group(1)}",
             "--data", str(data)]
        )  # fmt: skip
        assert code == 0
        code = cli.main(
            ["device", "release", "demo-app", "--http", f"127.0.0.1:{http.group(1)}",
             "--token", "wrong"]
        )  # fmt: skip
        assert code == 1

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_port_in_use_exits_1(tmp_path: Path) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "switch", "serve", "--sip", f"127.0.0.1:{port}",
             "--http", "off", "--data", str(tmp_path)],
            capture_output=True, text=True, cwd=ROOT, timeout=30,
        )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "cannot listen" in result.stderr
    assert time.monotonic() - started < 30

"""Fixtures for tests against real peers: the switch as a subprocess, SIPp, certificates.

    def test_x(switch_proc, sipp):
        sw = switch_proc(SeedSpec(devices=[DeviceSpec("alice", "pw")]))
        res = sipp("register", remote=sw.udp, credentials=[("alice", "pw")]).run()

Every process started here is stopped at teardown (SIGTERM, then SIGKILL), pass or fail.
The machinery lives in `harness.py` (shared with the benchmark).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import (
    SeedSpec,
    Sipp,
    SwitchProcess,
    make_self_signed,
)


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(cert.pem, key.pem): self-signed for 127.0.0.1, for the switch and SIPp's TLS."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed (scripts/ensure-test-deps.sh installs it)")
    return make_self_signed(tmp_path_factory.mktemp("tls"))


class RunningSwitch:
    """What a test sees of a started switch."""

    def __init__(self, proc: SwitchProcess) -> None:
        self.proc = proc
        self.ip = proc.ip
        self.sip_port = proc.sip_port
        self.tls_port = proc.tls_port
        self.http_port = proc.http_port

    @property
    def udp(self) -> tuple[str, int]:
        return (self.ip, self.sip_port)

    tcp = udp

    @property
    def tls(self) -> tuple[str, int]:
        return (self.ip, self.tls_port)

    def addr(self, transport: str) -> tuple[str, int]:
        return self.tls if transport == "tls" else self.udp

    def metrics(self):  # type: ignore[no-untyped-def]
        return self.proc.metrics()

    def alive(self) -> bool:
        return self.proc.alive()

    def logs(self) -> str:
        return self.proc.logs()


@pytest.fixture
def switch_proc(
    tmp_path: Path, tls_cert: tuple[Path, Path]
) -> Iterator[Callable[..., RunningSwitch]]:
    """Factory: `switch_proc(seed_spec_or_toml, config_toml=None)` starts a switch;
    `workdir=` an earlier one's directory restarts that node (its data directory kept)."""
    started: list[SwitchProcess] = []

    def start(
        seed: SeedSpec | str,
        config_toml: str | None = None,
        *,
        workdir: Path | None = None,
        **kw: Any,
    ) -> RunningSwitch:
        toml = seed.toml() if isinstance(seed, SeedSpec) else seed
        proc = SwitchProcess(
            workdir or tmp_path / f"switch{len(started)}",
            toml,
            cert=tls_cert[0],
            key=tls_cert[1],
            config_toml=config_toml,
            **kw,
        )
        started.append(proc)
        proc.start(timeout=15)
        return RunningSwitch(proc)

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def sipp(tmp_path: Path, tls_cert: tuple[Path, Path]) -> Iterator[Callable[..., Sipp]]:
    """Factory: `sipp(scenario, remote=(ip, port), **options)` -> a not-yet-started Sipp.

    Options as `harness.Sipp`; TLS gets the session certificate. Whatever is still running at
    teardown (a UAS, a failed run) is stopped.
    """
    if shutil.which("sipp") is None:
        pytest.fail("sipp is not installed (scripts/ensure-test-deps.sh installs sip-tester)")
    made: list[Sipp] = []

    def make(scenario: str, remote: tuple[str, int] | None = None, **kw: Any) -> Sipp:
        if kw.get("transport") == "tls":
            kw.setdefault("tls_cert", tls_cert[0])
            kw.setdefault("tls_key", tls_cert[1])
        s = Sipp(scenario, tmp_path, remote=remote, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        if s.running:
            s.stop()

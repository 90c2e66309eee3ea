"""Password guessing with the real tool: SIPVicious `svcrack` against the switch on loopback
(README "Password guessing"; switch/proxy/bans.py).

- One attacking address, a 300-word dictionary with the right password last: the address is
  banned after `auth_max_failures` (5) wrong guesses, the password is never found, and a
  legitimate device of the same tenant (SIPp REGISTER loop from another address) registers
  every time during the attack. The ban is listed and lifted through the admin API.
- Drop mode: after the ban the attacker gets no answer at all.
- Guessing spread over many addresses (each under the source threshold; the stdlib client,
  as svcrack cannot choose its address): the ID comes under guard; the ID's own device keeps
  registering from its usual address, the right password from a new address is refused.

`measure_attack` prints the figures the README quotes (guesses before the ban, time to ban,
legitimate registrations during the attack).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.peers import need

from .conftest import RunningSwitch
from .harness import REPO, DeviceSpec, SeedSpec, Sipp, stop_process
from .sipclient import SipClient, register

pytestmark = pytest.mark.integration

VICTIM = DeviceSpec("alice", "Tr0ub4dor-and-3")
COLLEAGUE = DeviceSpec("bob", "bob-secret-2")
ATTACKER_IP = "127.0.0.1"
COLLEAGUE_IP = "127.0.0.5"
VICTIM_PHONE_IP = "127.0.0.6"


def svcrack_path() -> str | None:
    venv = REPO / ".venv" / "bin" / "sipvicious_svcrack"
    return str(venv) if venv.exists() else shutil.which("sipvicious_svcrack")


@pytest.fixture(autouse=True)
def _svcrack() -> None:
    need(svcrack_path() is not None, "sipvicious (svcrack; scripts/ensure-test-deps.sh)")


def dictionary(path: Path, words: int, last: str | None) -> Path:
    """`words` wrong passwords, then `last` (the right one) if given."""
    lines = [f"guess{i:04d}" for i in range(words - (1 if last else 0))]
    if last:
        lines.append(last)
    path.write_text("\n".join(lines) + "\n")
    return path


class Svcrack:
    """svcrack in the background against one switch, bound to one source address."""

    def __init__(self, workdir: Path, sw: RunningSwitch, words: Path, source: str) -> None:
        # `-b` is accepted but not used by svcrack 0.3.x: it sends from the kernel's choice,
        # 127.0.0.1 towards a switch on 127.0.0.1 (ATTACKER_IP).
        exe = svcrack_path()
        assert exe is not None
        self.log = workdir / f"svcrack-{source}-{time.monotonic_ns()}.log"
        self.args = [
            exe, "-u", VICTIM.id, "-d", str(words), "-b", source, "-p", str(sw.sip_port),
            sw.ip,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Svcrack:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        return self

    def wait(self, timeout: float) -> bool:
        """True if it ended by itself within `timeout`; else it is stopped."""
        assert self.proc is not None
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            stop_process(self.proc, grace=2)
            return False

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def found_password(self) -> bool:
        """svcrack's result table names the password it found."""
        return f"| {VICTIM.password} " in self.output() or VICTIM.password in self.output()


@dataclass
class AttackFigures:
    guesses_verified: float  # digest failures the switch counted (= guesses it checked)
    seconds_to_ban: float | None  # from the attack's start to the first ban
    seconds_to_crack: float | None  # svcrack found the password after this long
    legit_ok: int  # REGISTERs of the colleague that succeeded during the attack
    legit_failed: int


def auth_failures(sw: RunningSwitch) -> float:
    return sw.metrics().total("sip_auth_failures_total")


def measure_attack(
    sw: RunningSwitch, sipp: Callable[..., Sipp], workdir: Path, *, words: int = 300,
    duration: float = 12.0,
) -> tuple[AttackFigures, Svcrack]:  # fmt: skip
    """svcrack with `words` guesses (the right one last) while the colleague registers
    every 0.2 s from another address; polls the ban counter to time the ban."""
    legit = sipp(
        "register", remote=sw.udp, local_ip=COLLEAGUE_IP, calls=int(duration * 5), rate=5,
        credentials=[(COLLEAGUE.id, COLLEAGUE.password)], keys={"expires": "300"},
        timeout_s=duration + 20, name="colleague",
    ).start()  # fmt: skip
    words_file = dictionary(workdir / "words.txt", words, VICTIM.password)
    crack = Svcrack(workdir, sw, words_file, ATTACKER_IP)
    start = time.monotonic()
    crack.start()
    banned_at = cracked_at = None
    while time.monotonic() - start < duration:
        if banned_at is None and sw.metrics().total("sip_auth_bans_total") > 0:
            banned_at = time.monotonic() - start
        if cracked_at is None and crack.proc is not None and crack.proc.poll() is not None:
            cracked_at = time.monotonic() - start if crack.found_password() else None
        time.sleep(0.05)
    crack.wait(0)
    result = legit.wait(grace=30)
    figures = AttackFigures(
        guesses_verified=auth_failures(sw),
        seconds_to_ban=banned_at,
        seconds_to_crack=cracked_at,
        legit_ok=result.successful,
        legit_failed=result.failed,
    )
    print(f"\nattack figures: {figures}")
    return figures, crack


class Admin:
    def __init__(self, sw: RunningSwitch) -> None:
        self.base = f"http://{sw.ip}:{sw.http_port}"
        self.token = (sw.proc.data_dir / "admin-token").read_text().strip()

    def call(self, method: str, path: str, token: str | None = None) -> tuple[int, Any]:
        req = urllib.request.Request(self.base + path, method=method)
        req.add_header("Authorization", f"Bearer {token or self.token}")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())


def register_once(sw: RunningSwitch, device: DeviceSpec, source: str) -> int | None:
    """The final status (the 403 of a refusal comes instead of the challenge); None: silence."""
    with SipClient("udp", sw.udp, local_ip=source) as c:
        first, final = register(c, user=device.id, password=device.password, algorithm="MD5")
    answer = final or first
    return None if answer is None else answer.status


@pytest.fixture
def two_devices() -> SeedSpec:
    return SeedSpec(devices=[VICTIM, COLLEAGUE])


def test_svcrack_is_banned_and_the_colleague_keeps_registering(
    switch_proc: Callable[..., RunningSwitch],
    sipp: Callable[..., Sipp],
    tmp_path: Path,
    two_devices: SeedSpec,
) -> None:
    sw = switch_proc(two_devices)
    figures, crack = measure_attack(sw, sipp, tmp_path)
    assert not crack.found_password(), crack.output()[-2000:]
    assert figures.guesses_verified == 5  # auth_max_failures: nothing verified after it
    assert figures.seconds_to_ban is not None and figures.seconds_to_ban < 5
    assert figures.legit_failed == 0 and figures.legit_ok >= 50
    m = sw.metrics()
    assert m.get_value("sip_auth_bans_total", kind="source") == 1
    assert m.get_value("sip_auth_bans_active", kind="source") == 1
    assert m.get_value("sip_auth_refused_total", kind="source") > 0
    assert "auth source ban: 127.0.0.1 after 5 failures" in sw.logs()
    # The operator sees the ban and lifts it; the address authenticates again.
    admin = Admin(sw)
    assert admin.call("GET", "/admin/bans", token="wrong")[0] == 401
    status, body = admin.call("GET", "/admin/bans")
    assert status == 200 and [(b["kind"], b["key"]) for b in body["bans"]] == [
        ("source", ATTACKER_IP)
    ]
    assert 600 - 30 < body["bans"][0]["remaining"] <= 600
    assert register_once(sw, VICTIM, ATTACKER_IP) == 403  # still banned: refused unverified
    assert admin.call("DELETE", f"/admin/bans/source/{ATTACKER_IP}")[0] == 200
    assert admin.call("DELETE", f"/admin/bans/source/{ATTACKER_IP}")[1]["error_id"] == (
        "no-such-ban"
    )
    assert admin.call("DELETE", "/admin/bans/nope/x")[1]["error_id"] == "bad-ban-kind"
    assert register_once(sw, VICTIM, ATTACKER_IP) == 200
    assert sw.metrics().get_value("sip_auth_bans_active", kind="source") == 0


def test_drop_mode_leaves_the_attacker_without_answers(
    switch_proc: Callable[..., RunningSwitch],
    sipp: Callable[..., Sipp],
    tmp_path: Path,
    two_devices: SeedSpec,
) -> None:
    sw = switch_proc(two_devices, config_toml='[security]\nauth_ban_action = "drop"\n')
    figures, crack = measure_attack(sw, sipp, tmp_path, duration=8.0)
    assert not crack.found_password()
    assert figures.guesses_verified == 5 and figures.legit_failed == 0
    m = sw.metrics()
    assert m.get_value("sip_messages_dropped_total", reason="auth_banned") > 0
    # The failure that made the ban got its 401; everything after it is dropped unanswered.
    assert m.get_value("sip_auth_refused_total", kind="source") == 0
    assert register_once(sw, COLLEAGUE, ATTACKER_IP) is None  # any ID: no answer at all
    assert register_once(sw, COLLEAGUE, COLLEAGUE_IP) == 200


def test_guessing_spread_over_addresses_puts_the_id_under_guard(
    switch_proc: Callable[..., RunningSwitch],
    two_devices: SeedSpec,
) -> None:
    """svcrack 0.3.x cannot send from a chosen address (its -b is not passed on), so the
    spread guesses come from the stdlib client, four wrong passwords per address."""
    sw = switch_proc(two_devices)
    assert register_once(sw, VICTIM, VICTIM_PHONE_IP) == 200  # the ID's own phone
    answers = []
    for source in (f"127.0.0.{20 + i}" for i in range(3)):  # 3 x 4 = 12 > auth_id_max (10)
        for n in range(4):  # under the source threshold (5)
            wrong = DeviceSpec(VICTIM.id, f"guess-{n}")
            answers.append(register_once(sw, wrong, source))
    assert answers == [401] * 10 + [403] * 2  # the 11th guess onwards: refused unverified
    m = sw.metrics()
    assert m.get_value("sip_auth_bans_total", kind="source") == 0
    assert m.get_value("sip_auth_bans_total", kind="id") == 1
    assert m.total("sip_auth_failures_total") == 10
    # The owner's phone, from its usual address: verified as usual and registered.
    assert register_once(sw, VICTIM, VICTIM_PHONE_IP) == 200
    # The right password from a new address: refused unverified while the guard lasts.
    assert register_once(sw, VICTIM, "127.0.0.30") == 403
    # Another ID of the tenant is not concerned.
    assert register_once(sw, COLLEAGUE, "127.0.0.30") == 200
    status, body = Admin(sw).call("GET", "/admin/bans")
    assert status == 200 and [(b["kind"], b["key"]) for b in body["bans"]] == [("id", VICTIM.id)]

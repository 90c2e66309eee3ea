"""A call between two real softphones (baresip 1.0) registered to the switch.

Each baresip runs headless: no sound card (audio source = a generated 8 kHz WAV through
aufile, no player), G.711 only, controlled and observed through its ctrl_tcp module
(netstring-framed JSON: commands in, events such as CALL_ESTABLISHED out). bob answers
automatically (account answermode=auto); alice dials bob by username, then hangs up.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import wave
from pathlib import Path

import pytest

from .harness import DeviceSpec, SeedSpec, free_port, stop_process, tail

pytestmark = pytest.mark.integration

ALICE = DeviceSpec("alice", "alice-baresip-1", kind="app")
BOB = DeviceSpec("bob", "bob-baresip-2", kind="desk")


class Baresip:
    def __init__(self, workdir: Path, dev: DeviceSpec, switch_port: int, *, auto_answer: bool):
        self.dir = workdir / f"baresip-{dev.id}"
        self.dir.mkdir(parents=True)
        self.sip_port = free_port()
        self.ctrl_port = free_port(udp=False)
        tone = self.dir / "tone.wav"
        with wave.open(str(tone), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(b"\x00\x08" * 8000 * 2)
        (self.dir / "config").write_text(
            "poll_method epoll\n"
            f"sip_listen 127.0.0.1:{self.sip_port}\n"
            "call_local_timeout 20\n"
            f"audio_source aufile,{tone}\n"
            "module_path /usr/lib/baresip/modules\n"
            "module g711.so\n"
            "module aufile.so\n"
            "module_tmp account.so\n"
            "module_app menu.so\n"
            "module_app ctrl_tcp.so\n"
            f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}\n"
        )
        answer = ";answermode=auto" if auto_answer else ""
        (self.dir / "accounts").write_text(
            f"<sip:{dev.id}@127.0.0.1:{switch_port};transport=udp>;auth_pass={dev.password}"
            f";regint=60;audio_codecs=PCMU,PCMA{answer}\n"
        )
        self.log = self.dir / "baresip.log"
        with open(self.log, "wb") as out:
            # -s: SIP trace on stdout (kept in the log); -t: hard stop after 40 s whatever
            # happens to the test.
            self.proc = subprocess.Popen(
                ["baresip", "-s", "-f", str(self.dir), "-t", "40"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.sock: socket.socket | None = None
        self.events: list[dict] = []
        self._buf = b""

    def connect(self, timeout: float = 8.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"baresip exited {self.proc.returncode}\n{tail(self.log)}")
            try:
                self.sock = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"baresip ctrl_tcp not reachable\n{tail(self.log)}")

    def command(self, command: str, params: str = "") -> None:
        assert self.sock is not None
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self.sock.sendall(str(len(body)).encode() + b":" + body + b",")

    def _pump(self, timeout: float) -> None:
        assert self.sock is not None
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return
        if not chunk:
            raise AssertionError(f"baresip closed ctrl_tcp\n{tail(self.log)}")
        self._buf += chunk
        while b":" in self._buf:
            head, _, rest = self._buf.partition(b":")
            n = int(head)
            if len(rest) < n + 1:
                break
            self.events.append(json.loads(rest[:n]))
            self._buf = rest[n + 1 :]

    def wait_event(self, etype: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events:
                if e.get("type") == etype:
                    return e
            left = deadline - time.monotonic()
            if left <= 0:
                got = [e.get("type") for e in self.events if e.get("event")]
                raise AssertionError(
                    f"no {etype} within {timeout}s (events: {got})\n{tail(self.log, 6000)}"
                )
            self._pump(min(left, 0.5))

    def stop(self) -> None:
        if self.sock is not None:
            self.sock.close()
        stop_process(self.proc, grace=3)


@pytest.fixture
def baresips(tmp_path):
    made: list[Baresip] = []

    def make(*a, **kw) -> Baresip:
        b = Baresip(tmp_path, *a, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


def wait_registered(sw, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sw.metrics().get_value("sip_registrations_total", code="200") >= n:
            return
        time.sleep(0.2)
    raise AssertionError(f"{n} baresip registrations not seen in /metrics\n{sw.logs()}")


@pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip is not installed")
def test_call_between_two_baresip_softphones(switch_proc, baresips):
    sw = switch_proc(SeedSpec(devices=[ALICE, BOB]))
    bob = baresips(BOB, sw.sip_port, auto_answer=True)
    alice = baresips(ALICE, sw.sip_port, auto_answer=False)
    bob.connect()
    alice.connect()
    wait_registered(sw, 2)
    m0 = sw.metrics()

    alice.command("dial", f"sip:{BOB.id}@127.0.0.1:{sw.sip_port}")
    alice.wait_event("CALL_ESTABLISHED", 10)
    bob.wait_event("CALL_ESTABLISHED", 10)
    time.sleep(0.5)
    alice.command("hangup")
    alice.wait_event("CALL_CLOSED", 8)
    bob.wait_event("CALL_CLOSED", 8)

    m1 = sw.metrics()
    for method in ("INVITE", "ACK", "BYE"):
        delta = m1.get_value("sip_requests_total", method=method) - m0.get_value(
            "sip_requests_total", method=method
        )
        assert delta >= 1, f"{method} did not pass through the switch ({delta})\n{sw.logs()}"
    # bob saw the switch's Record-Route on the INVITE (baresip's -s trace).
    bob_trace = bob.log.read_text(errors="replace")
    assert (
        f"@127.0.0.1:{sw.sip_port};lr" in bob_trace or f"127.0.0.1:{sw.sip_port};lr" in bob_trace
    ), tail(bob.log, 6000)
    assert sw.alive(), sw.logs()

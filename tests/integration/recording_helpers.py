"""Helpers of the call recording tests (`test_recording_*.py`): the relay under test (the
switch's own embedded relay process, or a real rtpengine), seeds with the recording option,
baresip phones that play a tone and keep what they hear, and the recordings API.

Addresses: the switch and the devices on 127.0.0.1, the carrier's caller on 127.0.0.2, the
outside phone (the gateway's far end) on 127.0.0.3 (tests/integration/README.md).
"""

from __future__ import annotations

import io
import json
import re
import time
import urllib.request
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from media.prompts import default_library

from .audio import best_match, read_wav, resample, tone_wav
from .baresip_helpers import Baresip
from .e2e_helpers import Api, operator_token, poll_until
from .harness import CARRIER_IP, OUTSIDE_IP, REALM, DeviceSpec, proc_cpu_seconds, tail
from .relay.harness import RtpengineProcess, dominant

NUMBER = "0355500100"
E164 = "+81355500100"
CALLER = "0312345678"
OUTSIDE = "0311112222"
CALLER_TONE, CALLEE_TONE = 440.0, 1000.0
RELAY_PORTS = {"embedded": "47200-47399", "rtpengine": (46200, 46399)}


def recording_seed(
    *,
    gw_port: int,
    devices: int = 1,
    notice: bool = False,
    recording: bool = True,
    forwarding: bool = False,
    spare: int = 4,
) -> str:
    """One tenant, one number with the recording option ringing `devices` desk phones
    (dev0…), spare IDs for channels, the gateway at OUTSIDE_IP:gw_port."""
    lines = [
        f'realm = "{REALM}"',
        "[[gateways]]", 'id = "carrier"', f'host = "{OUTSIDE_IP}"', f"port = {gw_port}",
        'transport = "udp"', f'allowed_sources = ["{CARRIER_IP}"]',
        "[[tenants]]", 'id = "t1"', 'timezone = "Asia/Tokyo"', "identity_verified = true",
    ]  # fmt: skip
    ids = [f"dev{i}" for i in range(devices)] + [f"spare{i}" for i in range(spare)]
    for dev in ids:
        lines += [
            "  [[tenants.devices]]", f'  id = "{dev}"', '  kind = "desk"',
            f'  password = "{dev}-password"', f'  presented_number = "{NUMBER}"',
        ]  # fmt: skip
    options = f"recording = {str(recording).lower()}, forwarding = {str(forwarding).lower()}"
    group = ", ".join(f'"dev{i}"' for i in range(devices))
    lines += [
        "  [[tenants.numbers]]", f'  number = "{NUMBER}"', '  kind = "contract"',
        f"  ring_group = [{group}]", f"  options = {{ {options} }}",
        f"  recording_notice = {str(notice).lower()}",
    ]  # fmt: skip
    if forwarding:
        lines += ["  [tenants.numbers.forwarding]", "  enabled = true", f'  target = "{OUTSIDE}"']
    return "\n".join(lines) + "\n"


def device(i: int) -> DeviceSpec:
    return DeviceSpec(f"dev{i}", f"dev{i}-password", kind="desk")


# --------------------------------------------------------------------------- relays
@dataclass
class RelayUnderTest:
    """The relay a switch uses: `config` is its [media] TOML; `ng()` / `pid()` find it."""

    kind: str
    workdir: Path
    rtpengine: RtpengineProcess | None = None
    config: str = ""
    switch_log: Path | None = None

    @classmethod
    def start(cls, kind: str, workdir: Path, extra: str = "") -> RelayUnderTest:
        if kind == "rtpengine":
            proc = RtpengineProcess(workdir / "rtpengine", RELAY_PORTS["rtpengine"])  # type: ignore[arg-type]
            proc.start()
            media = f'relay = "udp:127.0.0.1:{proc.ng_port}"\nrelay_spool = "{proc.spool}"\n'
            return cls(kind, workdir, proc, f"[media]\n{media}{extra}")
        media = f'relay = "embedded"\nrelay_ports = "{RELAY_PORTS["embedded"]}"\n'
        return cls(kind, workdir, None, f"[media]\n{media}{extra}")

    def ng(self) -> tuple[str, int]:
        if self.rtpengine is not None:
            return self.rtpengine.ng
        return self._logged()[1]

    def pid(self) -> int:
        if self.rtpengine is not None:
            return self.rtpengine.pid
        return self._logged()[0]

    def _logged(self) -> tuple[int, tuple[str, int]]:
        assert self.switch_log is not None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            text = self.switch_log.read_text(errors="replace")
            found = re.findall(r"relay process (\d+) at ng (\S+):(\d+)", text)
            if found:
                pid, host, port = found[-1]
                return int(pid), (host, int(port))
            time.sleep(0.2)
        raise AssertionError(f"the switch never started its relay\n{tail(self.switch_log)}")

    def list_calls(self) -> list[str]:
        """The relay's own view: the calls it holds (ng `list`)."""
        import asyncio

        from media.relay.client import NgClient

        async def ask() -> list[str]:
            async with NgClient(self.ng()) as client:
                return await client.list_calls(100)

        return asyncio.run(ask())

    def cpu(self) -> float:
        return proc_cpu_seconds(self.pid())

    def stop(self) -> None:
        if self.rtpengine is not None:
            self.rtpengine.stop()


# --------------------------------------------------------------------------- phones
@dataclass
class Phones:
    workdir: Path
    made: list[Baresip] = field(default_factory=list)

    def make(self, spec: DeviceSpec, switch_port: int, **kw: Any) -> Baresip:
        phone = Baresip(self.workdir, spec, switch_port, **kw)
        self.made.append(phone)
        phone.connect()
        return phone

    def tone(self, name: str, freq: float, seconds: float = 60.0) -> Path:
        return tone_wav(self.workdir / f"tone-{name}.wav", freq, seconds, level=0.3)

    def caller(self, switch_port: int, freq: float = CALLER_TONE) -> Baresip:
        """The carrier's caller on CARRIER_IP (trusted by address, no registration)."""
        return self.make(
            DeviceSpec(CALLER, "unused-password"), switch_port, auto_answer=False,
            local_ip=CARRIER_IP, register=False, record=True,
            source_wav=self.tone("caller", freq), lifetime_s=90,
        )  # fmt: skip

    def desk(
        self, i: int, switch_port: int, *, freq: float = CALLEE_TONE, answer: bool = True
    ) -> Baresip:
        return self.make(
            device(i), switch_port, auto_answer=answer, record=True,
            source_wav=self.tone(f"dev{i}", freq), lifetime_s=90,
        )  # fmt: skip

    def outside(self, switch_port: int, freq: float = CALLEE_TONE) -> Baresip:
        """The gateway's far end on OUTSIDE_IP: answers calls to OUTSIDE."""
        return self.make(
            DeviceSpec(OUTSIDE, "unused-password"), switch_port, auto_answer=True,
            local_ip=OUTSIDE_IP, register=False, record=True,
            source_wav=self.tone("outside", freq), lifetime_s=90,
        )  # fmt: skip

    def stop(self) -> None:
        for phone in self.made:
            phone.stop()


def heard(phone: Baresip) -> np.ndarray:
    """What a phone heard (8 kHz float)."""
    files = phone.heard()
    assert files, f"{phone.dev.id} recorded nothing\n{tail(phone.log, 3000)}"
    data, rate, _ = read_wav(files[-1])
    return resample(data[:, 0], rate, 8000)


def notice_audio(seconds: float = 2.5) -> np.ndarray:
    """A stretch of the recording notice from 0.3 s in (what a phone heard may start a
    packet late)."""
    pcm = default_library().pcm("recording-notice")
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0
    return x[2400 : 2400 + int(seconds * 8000)]


def notice_score(audio: np.ndarray) -> float:
    return best_match(audio, notice_audio())[0]


# --------------------------------------------------------------------------- the API
class Recordings:
    """The switch's recordings API with an operator token."""

    def __init__(self, http_port: int, data_dir: Path) -> None:
        self.api = Api(f"http://127.0.0.1:{http_port}/v1", operator_token(data_dir=data_dir))

    def list(self, query: str = "") -> list[dict[str, Any]]:
        r = self.api.get(f"/tenants/t1/recordings{query}")
        assert r.status == 200, r
        items: list[dict[str, Any]] = r.body["items"]
        return items

    def wait(self, count: int, *, since: float, deadline: float = 60.0) -> list[dict[str, Any]]:
        waited = poll_until(self.list, lambda items: len(items) >= count, since=since,
                            deadline=deadline, interval=0.5)  # fmt: skip
        assert waited.met_after is not None, f"no {count} recording(s):\n{waited.describe()}"
        return list(waited.value)

    def audio(self, recording_id: str) -> bytes:
        req = urllib.request.Request(
            f"{self.api.base}/tenants/t1/recordings/{recording_id}/audio",
            headers={"Authorization": f"Bearer {self.api.token}"},
        )
        with urllib.request.urlopen(req, timeout=20) as resp:
            body: bytes = resp.read()
        return body


def channels(wav: bytes) -> tuple[bytes, bytes, float]:
    """(left PCM, right PCM, seconds) of a stereo 8 kHz 16-bit WAV."""
    with wave.open(io.BytesIO(wav), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    return frames[:, 0].tobytes(), frames[:, 1].tobytes(), len(frames) / 8000


def tone_of(pcm: bytes) -> float:
    return dominant(pcm, (CALLER_TONE, CALLEE_TONE))


def metric(sw: Any, name: str, **labels: str) -> float:
    return float(sw.metrics().total(name, **labels))


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)

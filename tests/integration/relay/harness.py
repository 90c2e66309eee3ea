"""Relays under test as processes, and RTP endpoints that play and hear tones. No pytest:
the benchmark (`tests.bench.relay_bench`) uses it too.

- `RtpengineProcess`: Debian's `rtpengine` in userspace (`--table=-1`) on 127.0.0.1 with a
  private port range and spool (`--recording-method=pcap`), the start line of
  `docs/media-notes.md`; stopped with SIGTERM then SIGKILL.
- `EmbeddedProcess`: `python -m media.relay.embedded` the same way.
- Both: `ng` (address), `recordings()` (the WAV/JSON pairs; rtpengine's spool is converted
  first), `restart()`, `pid`.
- `ToneParty`: a UDP socket that sends a G.711 sine tone as paced 20 ms RTP packets and keeps
  what it receives (decoded), for a Goertzel check of who heard whom.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from media.g711 import Codec, decode, encode
from media.relay.pcap import convert_spool
from media.relay.sink import DirectorySink
from media.rtp import is_rtcp
from tests.integration.harness import free_port, stop_process

ROOT = Path(__file__).resolve().parents[3]
RATE = 8000


# --------------------------------------------------------------------------- tones
def tone_pcm(freq: float, seconds: float, *, amplitude: float = 8000.0, phase: int = 0) -> bytes:
    n = round(seconds * RATE)
    samples = (
        round(amplitude * math.sin(2 * math.pi * freq * (phase + i) / RATE)) for i in range(n)
    )
    return struct.pack(f"<{n}h", *samples)


def goertzel(pcm: bytes, freq: float) -> float:
    """Power of `freq` in 16-bit mono PCM (normalised by length)."""
    n = len(pcm) // 2
    if n == 0:
        return 0.0
    samples = struct.unpack(f"<{n}h", pcm[: 2 * n])
    coeff = 2 * math.cos(2 * math.pi * freq / RATE)
    s1 = s2 = 0.0
    for x in samples:
        s0 = x + coeff * s1 - s2
        s2, s1 = s1, s0
    return (s1 * s1 + s2 * s2 - coeff * s1 * s2) / n


def dominant(pcm: bytes, freqs: tuple[float, ...] = (440.0, 1000.0)) -> float:
    """Which of `freqs` is the strongest in `pcm` (and by at least 10 times, else 0.0)."""
    powers = sorted(((goertzel(pcm, f), f) for f in freqs), reverse=True)
    top, runner = powers[0], powers[1]
    return top[1] if top[0] > 10 * max(runner[0], 1.0) else 0.0


@dataclass
class ToneParty:
    """One party's RTP: sends a tone, keeps what it hears (see the module docstring)."""

    freq: float
    codec: Codec = Codec.PCMU
    host: str = "127.0.0.1"
    sock: socket.socket = field(init=False)
    heard: bytearray = field(default_factory=bytearray)
    received: int = 0
    sent: int = 0
    sources: set[tuple[str, int]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.host, 0))
        self.sock.setblocking(False)
        self.ssrc = int.from_bytes(os.urandom(4), "big")

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def sdp(self, session: int = 1) -> bytes:
        pt = int(self.codec)
        return (
            f"v=0\r\no=- {session} 1 IN IP4 {self.host}\r\ns=-\r\nc=IN IP4 {self.host}\r\n"
            f"t=0 0\r\nm=audio {self.port} RTP/AVP {pt} 101\r\n"
            f"a=rtpmap:{pt} {self.codec.name}/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
            "a=sendrecv\r\n"
        ).encode()

    async def talk(self, dest: tuple[str, int], seconds: float, *, start_seq: int = 0) -> None:
        """Send `seconds` of tone as 20 ms packets, paced by deadline; read what arrives."""
        loop = asyncio.get_running_loop()
        payload = encode(self.codec, tone_pcm(self.freq, seconds))
        start = loop.time()
        for i in range(len(payload) // 160):
            header = struct.pack(
                "!BBHII", 0x80, int(self.codec), (start_seq + i) & 0xFFFF, i * 160, self.ssrc
            )
            self.sock.sendto(header + payload[160 * i : 160 * (i + 1)], dest)
            self.sent += 1
            self.drain()
            await asyncio.sleep(max(0.0, start + (i + 1) * 0.02 - loop.time()))
        self.drain()

    def drain(self) -> None:
        while True:
            try:
                data, source = self.sock.recvfrom(4096)
            except BlockingIOError:
                return
            if len(data) < 12 or is_rtcp(data):
                continue
            self.received += 1
            self.sources.add(source)
            if data[1] & 0x7F in (0, 8):
                self.heard += decode(Codec(data[1] & 0x7F), data[12:])

    def close(self) -> None:
        self.sock.close()


# --------------------------------------------------------------------------- relays
class RelayProcess:
    kind = "relay"

    def __init__(self, workdir: Path, ports: tuple[int, int]) -> None:
        self.workdir = workdir
        self.ports = ports
        self.ng_port = free_port(udp=True, tcp=False)
        self.ng = ("127.0.0.1", self.ng_port)
        self.out = workdir / "recordings"
        self.out.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"{self.kind}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 10.0) -> RelayProcess:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited: {self.logs()}")
            if ping_sync(self.ng):
                return self
            time.sleep(0.1)
        raise RuntimeError(f"{self.kind} did not answer ping: {self.logs()}")

    def stop(self) -> None:
        stop_process(self.proc)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def recordings(self) -> list[tuple[Path, dict[str, object]]]:
        """(WAV, sidecar) pairs written so far."""
        return [
            (wav, json.loads(wav.with_suffix(".json").read_text()))
            for wav in sorted(self.out.rglob("*.wav"))
        ]


def ping_sync(ng: tuple[str, int], timeout: float = 0.3) -> bool:
    """A blocking ng ping (usable from inside a running event loop)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(b"harness_ping d7:command4:pinge", ng)
            return b"pong" in sock.recv(4096)
        except OSError:
            return False


class RtpengineProcess(RelayProcess):
    kind = "rtpengine"

    def __init__(self, workdir: Path, ports: tuple[int, int]) -> None:
        super().__init__(workdir, ports)
        self.spool = workdir / "spool"
        self.spool.mkdir(exist_ok=True)

    def command(self) -> list[str]:
        binary = shutil.which("rtpengine") or "rtpengine"
        return [
            binary,
            "--config-file=none",
            "--table=-1",
            "--interface=127.0.0.1",
            f"--listen-ng=127.0.0.1:{self.ng_port}",
            "--foreground",
            "--log-stderr",
            "--log-level=5",
            f"--port-min={self.ports[0]}",
            f"--port-max={self.ports[1]}",
            f"--recording-dir={self.spool}",
            "--recording-method=pcap",
            "--delete-delay=0",
            f"--dtmf-log-dest=127.0.0.1:{free_port(udp=True, tcp=False)}",
        ]

    def recordings(self) -> list[tuple[Path, dict[str, object]]]:
        convert_spool(self.spool, DirectorySink(self.out))
        return super().recordings()


class EmbeddedProcess(RelayProcess):
    kind = "embedded"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "media.relay.embedded",
            f"--ng=127.0.0.1:{self.ng_port}",
            f"--ports={self.ports[0]}-{self.ports[1]}",
            f"--recordings={self.out}",
            "--sync-every=1",
        ]


def rtpengine_available() -> bool:
    return shutil.which("rtpengine") is not None

"""baresip 1.0 as a headless, scriptable softphone for the integration tests.

Each instance runs with no sound card (audio source = a generated 8 kHz WAV through aufile, no
player), G.711 only, and is controlled and observed through its ctrl_tcp module
(netstring-framed JSON: commands in, events such as CALL_ESTABLISHED out). `-s` puts baresip's
SIP trace in its log: every message is preceded by `#` and a line `<TRANSPORT> src -> dst`,
which `trace_messages` parses so tests can check which transport a request really used.

TLS (baresip 1.0 + libre 1.1.0, Debian): the account URI carries `;transport=tls`; the config
options are `sip_cafile` (CA bundle loaded with `tls_add_ca`) and `sip_certificate` (our own
certificate + key, PEM, also used for baresip's TLS listener). baresip 1.0 has no
`sip_verify_server` option (added in later releases) and, as packaged, does not reject a server
certificate that `sip_cafile` does not vouch for: a wrong CA file still connects.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .harness import DeviceSpec, free_port, stop_process, tail

# "#\nTLS 127.0.0.1:40001 -> 127.0.0.1:5061\nINVITE sip:bob@... SIP/2.0" (ANSI colour around #)
_TRACE = re.compile(
    r"^(UDP|TCP|TLS|WS|WSS) (\S+):(\d+) -> (\S+):(\d+)\r?\n([^\r\n]+)", re.MULTILINE
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class TracedMessage:
    transport: str  # "UDP", "TLS", ...
    src: tuple[str, int]
    dst: tuple[str, int]
    first_line: str

    @property
    def method(self) -> str | None:
        """The request method, or None for a response."""
        word = self.first_line.split(" ", 1)[0]
        return None if word.startswith("SIP/") else word


def trace_messages(log: Path) -> list[TracedMessage]:
    text = _ANSI.sub("", log.read_text(errors="replace"))
    return [
        TracedMessage(m[1], (m[2], int(m[3])), (m[4], int(m[5])), m[6])
        for m in _TRACE.finditer(text)
    ]


def _port_pair(ip: str = "127.0.0.1") -> int:
    """A port P free for UDP+TCP with P+1 free for TCP: baresip listens for TLS on P+1."""
    for _ in range(50):
        port = free_port(ip)
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            probe.bind((ip, port + 1))
        except OSError:
            continue
        finally:
            probe.close()
        return port
    raise RuntimeError("no free port pair for baresip")


class Baresip:
    """One baresip process registered as `dev` to the switch at ("127.0.0.1", switch_port).

    transport: "udp" or "tls" (the account's `;transport=`). cafile / certificate: the TLS
    config options `sip_cafile` / `sip_certificate` (paths), omitted when None.
    """

    def __init__(
        self,
        workdir: Path,
        dev: DeviceSpec,
        switch_port: int,
        *,
        auto_answer: bool,
        transport: str = "udp",
        cafile: Path | None = None,
        certificate: Path | None = None,
        lifetime_s: int = 40,
        local_ip: str = "127.0.0.1",
        register: bool = True,
        source_wav: Path | None = None,
        record: bool = False,
        extra_modules: Sequence[str] = (),
        extra_config: str = "",
    ) -> None:
        self.dev = dev
        self.dir = workdir / f"baresip-{dev.id}"
        self.dir.mkdir(parents=True)
        self.sip_port = _port_pair(local_ip)
        self.ctrl_port = free_port(udp=False)
        tone = source_wav or self.dir / "tone.wav"
        if source_wav is None:
            with wave.open(str(tone), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(8000)
                w.writeframes(b"\x00\x08" * 8000 * 2)
        # `record`: the sndfile module writes what the phone hears to dump-*-dec.wav here.
        self.record_dir = self.dir / "heard"
        self.record_dir.mkdir()
        recording = f"module sndfile.so\nsnd_path {self.record_dir}\n" if record else ""
        modules = "".join(f"module {m}\n" for m in extra_modules)
        tls_lines = ""
        if cafile is not None:
            tls_lines += f"sip_cafile {cafile}\n"
        if certificate is not None:
            tls_lines += f"sip_certificate {certificate}\n"
        (self.dir / "config").write_text(
            "poll_method epoll\n"
            f"sip_listen {local_ip}:{self.sip_port}\n"
            f"{tls_lines}"
            "call_local_timeout 20\n"
            f"audio_source aufile,{tone}\n"
            "module_path /usr/lib/baresip/modules\n"
            "module g711.so\n"
            "module aufile.so\n"
            "module_tmp account.so\n"
            "module_app menu.so\n"
            "module_app ctrl_tcp.so\n"
            f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}\n"
            f"{recording}{modules}{extra_config}"
        )
        answer = ";answermode=auto" if auto_answer else ""
        (self.dir / "accounts").write_text(
            f"<sip:{dev.id}@127.0.0.1:{switch_port};transport={transport}>"
            f";auth_pass={dev.password};regint={60 if register else 0}"
            f";audio_codecs=PCMU,PCMA{answer}\n"
        )
        self.log = self.dir / "baresip.log"
        with open(self.log, "wb") as out:
            # -s: SIP trace on stdout (kept in the log); -t: hard stop after `lifetime_s`
            # whatever happens to the test.
            self.proc = subprocess.Popen(
                ["baresip", "-s", "-f", str(self.dir), "-t", str(lifetime_s)],
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
                    f"{self.dev.id}: no {etype} within {timeout}s (events: {got})\n"
                    f"{tail(self.log, 6000)}"
                )
            self._pump(min(left, 0.5))

    def heard(self) -> list[Path]:
        """The WAV files of what the phone heard (sndfile module, `record=True`)."""
        return sorted(self.record_dir.glob("dump-*-dec.wav"))

    def trace(self) -> list[TracedMessage]:
        return trace_messages(self.log)

    def stop(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        stop_process(self.proc, grace=3)

#!/usr/bin/env python3
"""`make fuzz`: mutated and random SIP at a running switch, then check it survived.

Starts the switch on its defaults (as the integration harness does: `python -m switch serve`
on ephemeral loopback ports, a small seed), then sends

- `--datagrams` (10^5) UDP datagrams at a bounded rate (`--rate`/s): mutations of real
  INVITE/REGISTER/OPTIONS/BYE/ACK/CANCEL requests and 100/180/200/401 responses (bit flips,
  byte edits, cut/duplicated ranges, header edits: huge or negative Content-Length, bad
  CSeq, folded and repeated headers, NULs, bare LF, oversize datagrams) and random bytes;
- `--connections` (10^3) TCP connections with mutated streams (valid messages pipelined
  with mutated ones, partial headers, huge Content-Length, garbage, CRLF pings), a few at a
  time;

all seeded (`--seed`), from 32 loopback source addresses (127.0.100.1-32) so that no source
exceeds the default flood limit (600 per 2 s): the fuzz reaches the parser instead of being
dropped by the flood guard. Then it checks that the process is alive, that its logs hold no
"Traceback", that it still answers OPTIONS over UDP and TCP, that parse errors were counted
in `sip_parse_errors_total` and that nothing was counted in `sip_internal_errors_total`, and
prints the figures (datagrams/s sent, errors counted, RSS before/after). Exit status 1 when
a check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import secrets
import selectors
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.harness import (  # noqa: E402
    DeviceSpec,
    Metrics,
    SeedSpec,
    SwitchProcess,
)
from tests.integration.sipclient import SipClient, build_request  # noqa: E402

SOURCES = [f"127.0.100.{i}" for i in range(1, 33)]

SDP = (
    "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\n"
    "c=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
)


def _request(method: str, uri: str, extra: str = "", body: str = "", cseq: int = 1) -> bytes:
    ctype = "Content-Type: application/sdp\r\n" if body else ""
    return (
        f"{method} {uri} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.100.1:5070;branch=z9hG4bK776asdhds;rport\r\n"
        "Max-Forwards: 70\r\n"
        'From: "Alice" <sip:alice@softswitch.local>;tag=1928301774\r\n'
        "To: <sip:0355500100@softswitch.local>\r\n"
        "Call-ID: a84b4c76e66710@pc33.example.com\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Contact: <sip:alice@127.0.100.1:5070>\r\n"
        f"{extra}{ctype}Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def _response(status: str, method: str, extra: str = "") -> bytes:
    return (
        f"SIP/2.0 {status}\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-proxy-1.abc\r\n"
        "Via: SIP/2.0/UDP 127.0.100.1:5070;branch=z9hG4bK776asdhds;rport=5070\r\n"
        "From: <sip:alice@softswitch.local>;tag=1928301774\r\n"
        "To: <sip:0355500100@softswitch.local>;tag=a6c85cf\r\n"
        "Call-ID: a84b4c76e66710@pc33.example.com\r\n"
        f"CSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
    ).encode()


CORPUS = [
    _request("INVITE", "sip:0355500100@softswitch.local", body=SDP),
    _request("INVITE", "sip:+81312345678@softswitch.local;user=phone", body=SDP),
    _request("REGISTER", "sip:softswitch.local", "Expires: 300\r\n"),
    _request(
        "REGISTER",
        "sip:softswitch.local",
        'Authorization: Digest username="alice", realm="softswitch.local", nonce="abc", '
        'uri="sip:softswitch.local", response="0123456789abcdef0123456789abcdef", '
        'algorithm=MD5, qop=auth, nc=00000001, cnonce="xyz"\r\n',
        cseq=2,
    ),
    _request("OPTIONS", "sip:127.0.0.1"),
    _request("BYE", "sip:alice@127.0.100.1:5070", "Route: <sip:127.0.0.1;lr>\r\n", cseq=2),
    _request("ACK", "sip:alice@127.0.100.1:5070"),
    _request("CANCEL", "sip:0355500100@softswitch.local"),
    _request("SUBSCRIBE", "sip:alice@softswitch.local", "Event: message-summary\r\n"),
    _response("100 Trying", "INVITE"),
    _response("180 Ringing", "INVITE"),
    _response("200 OK", "INVITE", "Contact: <sip:bob@127.0.0.1:5090>\r\n"),
    _response("401 Unauthorized", "REGISTER", 'WWW-Authenticate: Digest realm="x", nonce="y"\r\n'),
]

HEADER_EDITS = [
    b"Content-Length: -1",
    b"Content-Length: 99999999999999999999",
    b"Content-Length: abc",
    b"Content-Length: 4294967296",
    b"CSeq: 4294967296 INVITE",
    b"CSeq: 1 REGISTER",
    b"CSeq: -1 INVITE",
    b"Via: SIP/2.0/UDP",
    b"Via: SIP/2.0/UDP [::1:5060;branch=z9hG4bK",
    b"Via: SIP/3.0/UDP 127.0.0.1;branch=z9hG4bKx;rport=99999",
    b"Max-Forwards: 0",
    b"Max-Forwards: 256",
    b"To: <sip:\x00@softswitch.local>",
    b"From: <sips:alice@[::1]>;tag=",
    b"Call-ID: ",
    b"Expires: -5",
    b"Expires: 99999999999",
    b"Contact: *",
    b"Contact: <sip:a@b;transport=tcp>;expires=0, <tel:+81>",
    b"Route: <sip:127.0.0.1;lr>, <sip:127.0.0.1:5060;lr;f-bogus>",
    b'Proxy-Authorization: Digest username="a"' + b", nc=zz" * 50,
    b"Event: message-summary;id=" + b"9" * 400,
    b"X-Long: " + b"x" * 8000,
    b" folded continuation",
    b"NoColonHere",
    b":",
]


# Well-formed but unusual: these reach the transaction layer and the TUs.
MILD_EDITS = [
    b"Max-Forwards: 0",
    b"Max-Forwards: 1",
    b"Expires: 0",
    b"Expires: 30",
    b"Expires: 4294967295",
    b"To: <sip:0355500100@softswitch.local>;tag=x1",
    b"To: <sip:alice@softswitch.local>;tag=abc",
    b"To: <tel:+81355500100>",
    b"Require: 100rel, foo",
    b"Proxy-Require: bar",
    b"Supported: timer, replaces",
    b"Session-Expires: 90;refresher=uac",
    b"Min-SE: 90",
    b"Route: <sip:127.0.0.1;lr>",
    b"Route: <sip:f-abcdef@127.0.0.1;lr>",
    b"Route: <sip:192.0.2.1;lr>",
    b"Record-Route: <sip:192.0.2.1;lr>",
    b"Contact: *",
    b'Contact: <sip:alice@127.0.100.1:5070>;expires=60;+sip.instance="<urn:uuid:1>"',
    b"Contact: <sip:alice@[::1]:5070;transport=tcp>",
    b"P-Asserted-Identity: <sip:+81312345678@carrier>",
    b"Event: message-summary",
    b"Event: presence",
    b"Accept: application/simple-message-summary",
    b"Replaces: a84b4c76e66710@pc33.example.com;to-tag=1;from-tag=2",
    b"Referred-By: <sip:bob@softswitch.local>",
    b"Refer-To: <sip:bob@softswitch.local>",
    b"Diversion: <sip:0355500101@x>;reason=unconditional",
    b"Allow: INVITE, ACK, BYE",
    b"User-Agent: fuzz/1.0",
    b"Call-ID: fuzz-call-1",
    b"Call-ID: fuzz-call-2@host",
    b"CSeq: 2 INVITE",
    b"CSeq: 2147483647 REGISTER",
    b"CSeq: 3 BYE",
    b"CSeq: 1 CANCEL",
    b"Via: SIP/2.0/UDP 127.0.100.7:5070;branch=z9hG4bKother;rport",
    b"Via: SIP/2.0/UDP 127.0.100.7:5070;branch=old-2543-branch",
    b"Via: SIP/2.0/TCP 127.0.100.7;branch=z9hG4bKtcp;received=1.2.3.4",
    b"v: SIP/2.0/UDP 127.0.100.8:5070;branch=z9hG4bKcompact",
    b"f: <sip:bob@softswitch.local>;tag=99",
    b"t: <sip:alice@softswitch.local>",
    b"i: compact-call-id",
    b"m: <sip:bob@127.0.100.8:5070>",
    b"X-Unknown: value",
]


MILD_LINES = [
    b"INVITE sip:0355500100@127.0.0.1 SIP/2.0",
    b"INVITE sip:alice@softswitch.local SIP/2.0",
    b"INVITE tel:+81355500100 SIP/2.0",
    b"INVITE sip:127.0.0.1 SIP/2.0",
    b"OPTIONS sip:0355500100@softswitch.local SIP/2.0",
    b"MESSAGE sip:alice@softswitch.local SIP/2.0",
    b"REFER sip:alice@softswitch.local SIP/2.0",
    b"PRACK sip:alice@127.0.100.1:5070 SIP/2.0",
    b"UPDATE sip:alice@127.0.100.1:5070 SIP/2.0",
    b"INFO sip:alice@127.0.100.1:5070 SIP/2.0",
    b"NOTIFY sip:alice@softswitch.local SIP/2.0",
    b"PUBLISH sip:alice@softswitch.local SIP/2.0",
    b"FOO sip:alice@softswitch.local SIP/2.0",
    b"REGISTER sip:127.0.0.1 SIP/2.0",
    b"SIP/2.0 183 Session Progress",
    b"SIP/2.0 486 Busy Here",
    b"SIP/2.0 503 Service Unavailable",
    b"SIP/2.0 699 Whatever",
]
BAD_LINES = [
    b"INVITE sip:x SIP/2.1",
    b"INVITE  sip:x  SIP/2.0",
    b"SIP/2.0 99 Weird",
    b"SIP/2.0 7000 Huge",
    b"INVITE http://x SIP/2.0",
    b"INVITE sip:x",
    b"",
    b"REGISTER sip:%zz SIP/2.0",
    b"\x00INVITE sip:x SIP/2.0",
]


class Mutator:
    """Seeded mutations of the corpus (each returns new bytes)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.ops: list[Callable[[bytes], bytes]] = [
            self.flip_bits, self.set_bytes, self.insert_random, self.delete_range,
            self.duplicate_range, self.truncate, self.edit_header, self.edit_header,
            self.swap_lines, self.repeat_header, self.line_endings, self.start_line,
        ]  # fmt: skip

    def datagram(self) -> bytes:
        r = self.rng.random()
        if r < 0.12:
            return self.random_bytes()
        if r < 0.13:
            return self.oversize()
        data = self.rng.choice(CORPUS)
        if r < 0.45:  # mild: parseable, reaching the transaction layer and the TUs
            for _ in range(self.rng.randint(1, 4)):
                data = self.edit_header(data, MILD_EDITS)
            return self.start_line(data, mild=True) if self.rng.random() < 0.3 else data
        for _ in range(self.rng.choice((1, 1, 1, 2, 3))):
            data = self.rng.choice(self.ops)(data)
        return data[:65_000]

    def random_bytes(self) -> bytes:
        n = self.rng.choice((0, 1, 2, 4, 16, 100, 512, 1400))
        if self.rng.random() < 0.5:
            return self.rng.randbytes(n)
        return bytes(
            self.rng.choice(b"SIP/2.0 INVITE:;<>@\r\n \t=,abc0123456789") for _ in range(n)
        )

    def oversize(self) -> bytes:
        base = self.rng.choice(CORPUS)
        return base.replace(b"\r\n\r\n", b"\r\nX-Pad: " + b"p" * 65_500 + b"\r\n\r\n", 1)[:65_507]

    def _pos(self, data: bytes) -> int:
        return self.rng.randrange(len(data) + 1)

    def flip_bits(self, data: bytes) -> bytes:
        if not data:
            return data
        b = bytearray(data)
        for _ in range(self.rng.randint(1, 8)):
            i = self.rng.randrange(len(b))
            b[i] ^= 1 << self.rng.randrange(8)
        return bytes(b)

    def set_bytes(self, data: bytes) -> bytes:
        if not data:
            return data
        b = bytearray(data)
        for _ in range(self.rng.randint(1, 4)):
            b[self.rng.randrange(len(b))] = self.rng.choice(b'\x00\xff\r\n:;<>"\\ %')
        return bytes(b)

    def insert_random(self, data: bytes) -> bytes:
        i = self._pos(data)
        return data[:i] + self.rng.randbytes(self.rng.randint(1, 64)) + data[i:]

    def delete_range(self, data: bytes) -> bytes:
        i = self._pos(data)
        return data[:i] + data[i + self.rng.randint(1, 200) :]

    def duplicate_range(self, data: bytes) -> bytes:
        i = self._pos(data)
        chunk = data[i : i + self.rng.randint(1, 300)]
        return data[:i] + chunk * self.rng.randint(2, 20) + data[i:]

    def truncate(self, data: bytes) -> bytes:
        return data[: self._pos(data)]

    def _lines(self, data: bytes) -> tuple[list[bytes], bytes]:
        head, sep, body = data.partition(b"\r\n\r\n")
        return head.split(b"\r\n"), (sep + body)

    def edit_header(self, data: bytes, edits: list[bytes] = HEADER_EDITS) -> bytes:
        lines, rest = self._lines(data)
        edit = self.rng.choice(edits)
        name = edit.split(b":", 1)[0].lower()
        for i, line in enumerate(lines[1:], 1):
            if line.lower().startswith(name + b":"):
                lines[i] = edit
                break
        else:
            lines.insert(self.rng.randint(1, len(lines)), edit)
        return b"\r\n".join(lines) + rest

    def swap_lines(self, data: bytes) -> bytes:
        lines, rest = self._lines(data)
        if len(lines) > 2:
            i, j = self.rng.sample(range(len(lines)), 2)
            lines[i], lines[j] = lines[j], lines[i]
        return b"\r\n".join(lines) + rest

    def repeat_header(self, data: bytes) -> bytes:
        lines, rest = self._lines(data)
        if len(lines) > 1:
            i = self.rng.randrange(1, len(lines))
            lines[i:i] = [lines[i]] * self.rng.choice((2, 10, 100, 1000))
        return b"\r\n".join(lines) + rest

    def line_endings(self, data: bytes) -> bytes:
        return self.rng.choice(
            (data.replace(b"\r\n", b"\n"), data.replace(b"\r\n", b"\r"), data + b"\r\n" * 3)
        )

    def start_line(self, data: bytes, mild: bool = False) -> bytes:
        lines, rest = self._lines(data)
        lines[0] = self.rng.choice(MILD_LINES if mild else BAD_LINES)
        return b"\r\n".join(lines) + rest

    def stream(self) -> list[bytes]:
        """What one TCP connection sends, as chunks."""
        kind = self.rng.choice(("pipeline", "partial", "huge", "garbage", "pings", "mutated"))
        valid = [CORPUS[i] for i in (0, 2, 4)]
        tcp = [v.replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP") for v in valid]
        if kind == "pipeline":
            msgs = [self.rng.choice(tcp) for _ in range(self.rng.randint(1, 5))]
            msgs.insert(self.rng.randrange(len(msgs) + 1), self.datagram())
            data = b"".join(msgs)
        elif kind == "partial":
            data = self.rng.choice(tcp)[: self.rng.randint(1, 200)]
        elif kind == "huge":
            big = self.rng.choice((70_000, 10**9, 10**30))
            data = self.rng.choice(tcp).replace(b"Content-Length: 0", b"Content-Length: %d" % big)
            data = data.replace(b"Content-Length: 150", b"Content-Length: %d" % big)
            data += self.rng.randbytes(self.rng.randint(0, 4000))
        elif kind == "garbage":
            data = self.rng.randbytes(self.rng.randint(1, 3000))
        elif kind == "pings":
            data = b"\r\n\r\n" * self.rng.randint(1, 5) + self.rng.choice(tcp) + b"\r\n"
        else:
            data = self.datagram()
        cuts = sorted(self.rng.sample(range(1, max(2, len(data))), min(3, max(0, len(data) - 1))))
        return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


# --------------------------------------------------------------------------- sending
def send_datagrams(target: tuple[str, int], mutator: Mutator, count: int, rate: float) -> float:
    """Send `count` datagrams at most `rate`/s, round-robin over SOURCES; seconds taken."""
    socks = []
    for ip in SOURCES:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((ip, 0))
        s.setblocking(False)
        socks.append(s)
    batch = 50
    t0 = time.monotonic()
    try:
        for i in range(count):
            with contextlib.suppress(BlockingIOError, OSError):
                socks[i % len(socks)].sendto(mutator.datagram(), target)
            if i % batch == batch - 1:
                ahead = t0 + (i + 1) / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            if i % 10_000 == 9_999:
                print(f"  {i + 1} datagrams", flush=True)
    finally:
        for s in socks:
            s.close()
    return time.monotonic() - t0


def send_streams(
    target: tuple[str, int], mutator: Mutator, count: int, parallel: int
) -> tuple[int, int]:
    """`count` TCP connections with mutated streams, `parallel` at a time; returns how many
    connected, and how many of those the switch closed or reset while we were sending."""
    sel = selectors.DefaultSelector()
    opened = done = connected = cut = 0
    deadline_of: dict[socket.socket, float] = {}
    while done < count:
        while opened < count and len(deadline_of) < parallel:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((SOURCES[opened % len(SOURCES)], 0))
            opened += 1
            chunks = mutator.stream()
            made = False
            try:
                s.settimeout(2.0)
                s.connect(target)
                connected, made = connected + 1, True
                for chunk in chunks:
                    s.sendall(chunk)
            except OSError:
                cut += made  # connected, then closed by the switch while we were sending
                s.close()
                done += 1
                continue
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            deadline_of[s] = time.monotonic() + 0.3
        for key, _ in sel.select(timeout=0.05):
            with contextlib.suppress(OSError):
                key.fileobj.recv(65536)  # type: ignore[union-attr]
        now = time.monotonic()
        for s in [s for s, d in deadline_of.items() if d <= now]:
            sel.unregister(s)
            s.close()
            del deadline_of[s]
            done += 1
    sel.close()
    return connected, cut


# --------------------------------------------------------------------------- checks
def answers_options(transport: str, target: tuple[str, int]) -> bool:
    try:
        with SipClient(transport, target, timeout=3) as c:
            host = f"{target[0]}:{target[1]}"
            req = build_request(
                "OPTIONS", f"sip:{host}", transport=transport, local=c.local,
                from_user="check", host=host, call_id=secrets.token_hex(8), cseq=1,
            )  # fmt: skip
            r = c.request(req)
            return r is not None and r.status == 200
    except OSError:
        return False


def print_figures(sw: SwitchProcess, m: Metrics | None, sent: dict[str, float]) -> None:
    n, secs = sent["datagrams"], sent["udp_seconds"]
    print("--- figures")
    print(f"datagrams sent        {n:.0f} in {secs:.1f} s = {n / secs:.0f}/s")
    print(
        f"TCP connections       {sent['connected']:.0f}/{sent['connections']:.0f} in "
        f"{sent['tcp_seconds']:.1f} s ({sent['cut']:.0f} cut by the switch while sending)"
    )
    if m is not None:
        print(f"parse errors counted  {m.total('sip_parse_errors_total'):.0f}")
        for key, value in sorted(m.items()):
            if key.startswith("sip_parse_errors_total{"):
                print(f"    {key} {value:.0f}")
        received = m.total("sip_responses_total", direction="received")
        print(f"requests parsed       {m.total('sip_requests_total'):.0f}")
        print(f"responses parsed      {received:.0f}")
        print(f"internal errors       {m.total('sip_internal_errors_total'):.0f}")
        print(f"flood drops           {m.get_value('sip_flood_dropped_total'):.0f}")
        print(f"connections refused   {m.total('sip_connections_refused_total'):.0f}")
    if sw.alive():
        print(f"RSS                   {sent['rss0']:.0f} KiB before, {sw.rss_kib()} KiB after")
        print(f"CPU                   {sw.cpu_seconds() - sent['cpu0']:.1f} s")


def run_checks(sw: SwitchProcess, m: Metrics | None, target: tuple[str, int]) -> list[str]:
    alive = sw.alive()
    logs = sw.stdout_path.read_text(errors="replace") + sw.stderr_path.read_text(errors="replace")
    checks = {
        "process alive": alive,
        "no Traceback in the logs": "Traceback" not in logs,
        "answers OPTIONS over UDP": alive and answers_options("udp", target),
        "answers OPTIONS over TCP": alive and answers_options("tcp", target),
        "parse errors counted": m is not None and m.total("sip_parse_errors_total") > 0,
        "no internal errors counted": m is not None and m.total("sip_internal_errors_total") == 0,
    }
    print("--- checks")
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'}  {name}")
    return [name for name, ok in checks.items() if not ok]


def fuzz(sw: SwitchProcess, args: argparse.Namespace) -> dict[str, float]:
    target = (sw.ip, sw.sip_port)
    sent: dict[str, float] = {"rss0": sw.rss_kib(), "cpu0": sw.cpu_seconds()}
    mutator = Mutator(args.seed)
    print(f"UDP: {args.datagrams} datagrams, at most {args.rate:g}/s, seed {args.seed}")
    sent["udp_seconds"] = send_datagrams(target, mutator, args.datagrams, args.rate)
    sent["datagrams"] = args.datagrams
    print(f"TCP: {args.connections} connections, {args.parallel} at a time")
    t1 = time.monotonic()
    sent["connected"], sent["cut"] = send_streams(target, mutator, args.connections, args.parallel)
    sent["tcp_seconds"] = time.monotonic() - t1
    sent["connections"] = args.connections
    time.sleep(1.0)  # let the switch drain its socket buffers
    return sent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--datagrams", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=3000.0, help="datagrams per second (bound)")
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--parallel", type=int, default=20, help="TCP connections at a time")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="softswitch-fuzz-"))
    spec = SeedSpec(devices=[DeviceSpec("alice", "alice-secret-1")])
    sw = SwitchProcess(work / "switch", spec.toml(), tls=False).start()
    print(f"switch pid {sw.pid} on {sw.ip}:{sw.sip_port}, work directory {work}")
    try:
        sent = fuzz(sw, args)
        m = sw.metrics() if sw.alive() else None
        print_figures(sw, m, sent)
        failures = run_checks(sw, m, (sw.ip, sw.sip_port))
        if failures:
            print(sw.logs())
    finally:
        sw.stop()
    if not args.keep and not failures:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())

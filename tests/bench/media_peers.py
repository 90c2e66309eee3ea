"""The media process's peers in tests/bench/media_bench.py, each run as a process of its own:

    python -m tests.bench.media_peers receiver OUT.npz
    python -m tests.bench.media_peers loadgen --media HOST:PORT --uri HANDOFF --rtp-port P
                                              --calls N [--ramp 100] [--hold 30]

- `receiver`: one UDP socket, 64 MB SO_RCVBUF, kernel receive timestamps (SO_TIMESTAMPNS: a
  receiver that is descheduled does not make packets look late); records (ssrc, seq,
  timestamp, source port, arrival) per packet in a tight loop until a STOP datagram, then
  writes them to OUT.npz and prints its socket's kernel drop count (/proc/net/udp).
- `loadgen`: N calls ramped at --ramp calls/s, each an INVITE to the signed hand-off URI with
  SDP offering PCMU to the receiver's port; 200 -> ACK (again for a retransmitted 200); with
  every call up it prints HOLD_START, holds --hold s, prints HOLD_END, BYEs every call at the
  ramp rate and prints DONE with its counts. INVITE and BYE are retransmitted as RFC 3261
  Timers A/E say; a BYE from the media process is answered.
Loopback only, bounded in count and time (35 s for set-up, 10 s for the BYEs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import socket
import struct
import sys
import time
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tests.integration.harness import percentile

E164, CALLER = "+81355500100", "+81312345678"
SO_TIMESTAMPNS, SO_RCVBUFFORCE = 35, 33  # Linux values; the socket module lacks the names
STOP = b"STOP"  # shorter than any RTP packet


# =========================================================================== receiver
def receiver_main(out: Path) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)  # root: past rmem_max
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    print(port, flush=True)
    ssrcs, seqs, stamps, arrivals, ports = (array(t) for t in ("I", "H", "I", "q", "H"))
    header, tstamp = struct.Struct("!2xHII").unpack_from, struct.Struct("=qq").unpack
    recvmsg, anc = sock.recvmsg, socket.CMSG_SPACE(16)
    while True:  # the tight loop: one syscall and five appends per packet
        data, ancdata, _, addr = recvmsg(2048, anc)
        if len(data) < 12:
            if data == STOP:
                break
            continue
        seq, ts, ssrc = header(data)
        sec, nsec = tstamp(ancdata[0][2])
        ssrcs.append(ssrc)
        seqs.append(seq)
        stamps.append(ts)
        ports.append(addr[1])
        arrivals.append(sec * 1_000_000_000 + nsec)
    drops = udp_drops(port)
    sock.close()
    assert ssrcs.itemsize == 4, "array('I') is 32 bits on every Linux ABI we run on"
    np.savez(out, ssrc=np.frombuffer(ssrcs, np.uint32), seq=np.frombuffer(seqs, np.uint16),
             ts=np.frombuffer(stamps, np.uint32), arrival=np.frombuffer(arrivals, np.int64),
             sport=np.frombuffer(ports, np.uint16))  # fmt: skip
    print(json.dumps({"packets": len(seqs), "socket_drops": drops}), flush=True)
    return 0


def udp_drops(port: int) -> int:
    """The kernel's drop counter of our socket (last column of /proc/net/udp)."""
    with open("/proc/net/udp") as f:
        for line in f:
            fields = line.split()
            if fields[1].endswith(f":{port:04X}"):
                return int(fields[-1])
    return -1


# =========================================================================== load generator
@dataclass(slots=True)
class Leg:
    call_id: str
    tag: str
    request: bytes  # the INVITE, later the BYE: what `_retransmit` resends
    started: float
    to_tag: str = ""
    contact: str = ""
    state: str = "calling"  # calling, up, failed, bye, done
    setup_ms: float = 0.0
    timer: asyncio.TimerHandle | None = None


def _headers(text: str) -> tuple[str, dict[str, str]]:
    lines = text.split("\r\n")
    compact = {"i": "call-id", "t": "to", "f": "from", "m": "contact", "v": "via"}
    out: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        out.setdefault(compact.get(name.strip().lower(), name.strip().lower()), value.strip())
    return lines[0], out


class LoadGen(asyncio.DatagramProtocol):
    def __init__(self, media: tuple[str, int], uri: str, rtp_port: int) -> None:
        self.media, self.uri, self.rtp_port = media, uri, rtp_port
        self.loop = asyncio.get_running_loop()
        self.legs: dict[str, Leg] = {}
        self.transport: Any = None
        self.port = 0
        self.media_byes = 0  # the prompt ended before our hold did

    def connection_made(self, transport: Any) -> None:
        self.transport, self.port = transport, transport.get_extra_info("sockname")[1]

    def _head(self, first: str, leg: Leg, cseq: str) -> str:
        to_tag = f";tag={leg.to_tag}" if leg.to_tag else ""
        return (
            f"{first}\r\nVia: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK"
            f"{secrets.token_hex(8)};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{CALLER}@127.0.0.1>"
            f";tag={leg.tag}\r\nTo: <sip:{E164}@127.0.0.1>{to_tag}\r\nCall-ID: {leg.call_id}"
            f"\r\nCSeq: {cseq}\r\nContact: <sip:load@127.0.0.1:{self.port}>\r\n"
        )

    def invite(self, n: int) -> None:
        leg = Leg(f"mb-{n}-{secrets.token_hex(6)}", secrets.token_hex(4), b"", self.loop.time())
        sdp = (
            f"v=0\r\no=- {n} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {self.rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
        )
        leg.request = (
            self._head(f"INVITE {self.uri} SIP/2.0", leg, "1 INVITE")
            + f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
        ).encode()
        self.legs[leg.call_id] = leg
        self._retransmit(leg, 0.5)

    def bye(self, leg: Leg) -> None:
        if leg.state == "up":
            leg.state, leg.started = "bye", self.loop.time()
            head = self._head(f"BYE {leg.contact} SIP/2.0", leg, "2 BYE")
            leg.request = (head + "Content-Length: 0\r\n\r\n").encode()
            self._retransmit(leg, 0.5)

    def _retransmit(self, leg: Leg, interval: float) -> None:
        """RFC 3261 Timer A/E doubling up to T2; gives up after 32 s (Timer B/F)."""
        if leg.state not in ("calling", "bye"):
            return
        if self.loop.time() - leg.started > 32:
            leg.state = "failed" if leg.state == "calling" else "done"
            return
        self.transport.sendto(leg.request, self.media)
        leg.timer = self.loop.call_later(interval, self._retransmit, leg, min(2 * interval, 4.0))

    def _stop_timer(self, leg: Leg) -> None:
        if leg.timer is not None:
            leg.timer.cancel()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        first, h = _headers(data.decode(errors="replace").partition("\r\n\r\n")[0])
        leg = self.legs.get(h.get("call-id", ""))
        if leg is None:
            return
        if not first.startswith("SIP/2.0 "):  # a BYE from media: answer it
            self.media_byes += first.startswith("BYE ")
            leg.state = "done" if first.startswith("BYE ") else leg.state
            keys = ("via", "from", "to", "call-id", "cseq")
            reply = "".join(f"{k}: {h[k]}\r\n" for k in keys if k in h)
            self.transport.sendto(
                f"SIP/2.0 200 OK\r\n{reply}Content-Length: 0\r\n\r\n".encode(), addr
            )
            return
        status, method = int(first.split()[1]), h.get("cseq", "").split()[-1]
        if method == "BYE" and status >= 200 and leg.state == "bye":
            leg.state = "done"
            self._stop_timer(leg)
        elif method == "INVITE" and (status < 200 and leg.state == "calling"):
            self._stop_timer(leg)  # Timer A stops on a provisional response
        elif method == "INVITE" and status >= 300 and leg.state == "calling":
            leg.state = "failed"
        elif method == "INVITE" and status >= 200:
            if leg.state == "calling":
                leg.to_tag = h.get("to", "").partition(";tag=")[2].split(";")[0]
                leg.contact = h.get("contact", "").strip("<>").split(">")[0]
                leg.state, leg.setup_ms = "up", (self.loop.time() - leg.started) * 1000
                self._stop_timer(leg)
            ack = self._head(f"ACK {leg.contact} SIP/2.0", leg, "1 ACK")
            self.transport.sendto((ack + "Content-Length: 0\r\n\r\n").encode(), self.media)


async def _paced(items: list[Any], rate: float, act: Any) -> None:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i, item in enumerate(items):
        await asyncio.sleep(max(0.0, t0 + i / rate - loop.time()))
        act(item)


async def _until_none(gen: LoadGen, state: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while any(g.state == state for g in gen.legs.values()) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def loadgen_main(args: argparse.Namespace) -> int:
    host, port = args.media.rsplit(":", 1)
    gen = LoadGen((host, int(port)), args.uri, args.rtp_port)
    await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: gen, local_addr=("127.0.0.1", 0)
    )
    await _paced(list(range(args.calls)), args.ramp, gen.invite)
    await _until_none(gen, "calling", 35)
    print("HOLD_START", time.time_ns(), flush=True)
    await asyncio.sleep(args.hold)
    print("HOLD_END", time.time_ns(), flush=True)
    await _paced([g for g in gen.legs.values() if g.state == "up"], args.ramp, gen.bye)
    await _until_none(gen, "bye", 10)
    legs = list(gen.legs.values())
    setup = [g.setup_ms for g in legs if g.setup_ms]
    print("DONE", json.dumps({
        "established": len(setup), "failed": sum(g.state in ("failed", "calling") for g in legs),
        "ended_by_media": gen.media_byes, "bye_unanswered": sum(g.state == "bye" for g in legs),
        "setup_p50_ms": percentile(setup, 50) if setup else None,
        "setup_p99_ms": percentile(setup, 99) if setup else None,
    }), flush=True)  # fmt: skip
    return 0


def loadgen_args(argv: list[str]) -> argparse.Namespace:
    lp = argparse.ArgumentParser(prog="media_peers loadgen")
    for name in ("--media", "--uri"):
        lp.add_argument(name, required=True)
    for name in ("--rtp-port", "--calls"):
        lp.add_argument(name, type=int, required=True)
    lp.add_argument("--ramp", type=float, default=100.0)
    lp.add_argument("--hold", type=float, default=30.0)
    return lp.parse_args(argv)


def main(argv: list[str]) -> int:
    if argv[:1] == ["receiver"] and len(argv) == 2:
        return receiver_main(Path(argv[1]))
    if argv[:1] == ["loadgen"]:
        return asyncio.run(loadgen_main(loadgen_args(argv[1:])))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

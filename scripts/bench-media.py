#!/usr/bin/env python3
"""Micro-benchmark of the media hot path: µs per 20 ms frame (160 samples).

Not a test. Run: .venv/bin/python scripts/bench-media.py
A call needs 50 frames per second per direction; at 10 µs per frame one core could carry
thousands of media streams in these building blocks (the socket I/O costs more).
"""

from __future__ import annotations

import random
import struct
import timeit

from media.g711 import Codec, decode, encode
from media.jitter import RecordingBuffer
from media.prompts import default_library
from media.rtp import ReceiverStats, RtpPacket, RtpStream, parse_rtp


def per_call_us(stmt: object, number: int = 20000) -> float:
    best = min(timeit.repeat(stmt, number=number, repeat=5))  # type: ignore[arg-type]
    return best / number * 1e6


def main() -> None:
    rnd = random.Random(1)
    pcm = struct.pack("<160h", *(rnd.randint(-20000, 20000) for _ in range(160)))
    ulaw, alaw = encode(Codec.PCMU, pcm), encode(Codec.PCMA, pcm)
    packet = RtpPacket(payload_type=0, sequence=1, timestamp=160, ssrc=0x1234, payload=ulaw)
    wire = packet.build()
    stream = RtpStream(rng=rnd)
    stats = ReceiverStats()
    seq = [0]

    def receive() -> None:
        seq[0] += 1
        p = parse_rtp(wire)
        stats.update(sequence=seq[0] & 0xFFFF, timestamp=p.timestamp, arrival=seq[0] * 0.02)

    buf = RecordingBuffer(latency=0.0)
    n = [0]

    def record() -> None:
        n[0] += 1
        buf.push(
            ssrc=1,
            sequence=n[0] & 0xFFFF,
            timestamp=(160 * n[0]) & 0xFFFFFFFF,
            payload=ulaw,
            arrival=n[0] * 0.02,
        )

    lib = default_library()
    lib.payloads("template-1", Codec.PCMU)
    rows = [
        ("G.711 µ-law encode (160 samples)", lambda: encode(Codec.PCMU, pcm)),
        ("G.711 µ-law decode", lambda: decode(Codec.PCMU, ulaw)),
        ("G.711 A-law encode", lambda: encode(Codec.PCMA, pcm)),
        ("G.711 A-law decode", lambda: decode(Codec.PCMA, alaw)),
        ("RTP build (12 + 160 octets)", packet.build),
        ("RTP parse", lambda: parse_rtp(wire)),
        (
            "RtpStream.media + build",
            lambda: stream.media(ulaw, payload_type=0, samples=160).build(),
        ),
        ("parse + ReceiverStats.update", receive),
        ("RecordingBuffer.push (in order)", record),
        ("prompt payload lookup (cached)", lambda: lib.payloads("template-1", Codec.PCMU)),
    ]
    print(f"{'operation':40s} {'µs/frame':>9s}")
    for name, fn in rows:
        print(f"{name:40s} {per_call_us(fn):9.2f}")


if __name__ == "__main__":
    main()

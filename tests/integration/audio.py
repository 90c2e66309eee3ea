"""Checks on real audio for the media tests: is a prompt in what a phone heard (normalised
cross-correlation over a sliding window, with numpy), which tone is in a channel (Goertzel),
and reading WAV files. Standard library + numpy only."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np


def read_wav(path: Path | bytes) -> tuple[np.ndarray, int, int]:
    """(samples as float64 in [-1, 1], shape (frames, channels), rate, channels)."""
    import io

    src = io.BytesIO(path) if isinstance(path, bytes | bytearray) else str(path)
    with wave.open(src, "rb") as w:
        rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        raw = w.readframes(w.getnframes())
    assert width == 2, f"16-bit WAV expected, got {8 * width}-bit"
    data = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    return data.reshape(-1, channels), rate, channels


def resample(x: np.ndarray, rate: int, to: int) -> np.ndarray:
    if rate == to:
        return x
    n = round(len(x) * to / rate)
    return np.interp(np.linspace(0, len(x) - 1, n), np.arange(len(x)), x)


def best_match(heard: np.ndarray, prompt: np.ndarray) -> tuple[float, int]:
    """The highest normalised cross-correlation of `prompt` against `heard` (1.0: identical
    up to gain) and the offset where it is reached. FFT correlation, then normalised by the
    energy of each window of `heard`."""
    h = heard - heard.mean()
    p = prompt - prompt.mean()
    n = len(h) + len(p)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(h, size) * np.conj(np.fft.rfft(p, size)), size)[: len(h)]
    energy = np.convolve(h * h, np.ones(len(p)), "full")[len(p) - 1 : len(p) - 1 + len(h)]
    denom = np.sqrt(np.maximum(energy, 1e-12) * (p * p).sum())
    score = corr / denom
    valid = len(h) - len(p) + 1
    if valid <= 0:
        return 0.0, 0
    i = int(np.argmax(score[:valid]))
    return float(score[i]), i


def goertzel(x: np.ndarray, rate: int, freq: float) -> float:
    """Power of one frequency in `x` (relative to the signal's power)."""
    n = len(x)
    k = round(n * freq / rate)
    w = 2 * np.pi * k / n
    coeff = 2 * np.cos(w)
    s1 = s2 = 0.0
    for sample in x:
        s1, s2 = sample + coeff * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2
    return float(power / max(n * (x * x).sum(), 1e-12))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


def tone_wav(path: Path, freq: float, seconds: float, rate: int = 8000, level: float = 0.3) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (level * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def pcap_rtp_payloads(path: Path) -> list[bytes]:
    """The RTP payloads of a classic libpcap file of Ethernet/IPv4/UDP/RTP packets (what
    sip-tester ships in /usr/share/sip-tester), in file order."""
    import struct

    data = path.read_bytes()
    magic, _, _, _, _, _, link = struct.unpack("<IHHiIII", data[:24])
    assert magic == 0xA1B2C3D4 and link == 1, "little-endian Ethernet pcap expected"
    out, off = [], 24
    while off + 16 <= len(data):
        incl = struct.unpack("<IIII", data[off : off + 16])[2]
        frame = data[off + 16 : off + 16 + incl]
        off += 16 + incl
        ip = frame[14:]
        if frame[12:14] != b"\x08\x00" or ip[9] != 17:
            continue
        udp = ip[(ip[0] & 0x0F) * 4 :]
        rtp = udp[8:]
        header = 12 + 4 * (rtp[0] & 0x0F)
        out.append(rtp[header:])
    return out

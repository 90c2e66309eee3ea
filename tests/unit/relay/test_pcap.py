"""rtpengine's pcap spool -> WAV + JSON: pcap reading, metadata parsing, channel mapping,
spool handling. The metadata text follows what rtpengine 10.5.3.5 wrote in a run on this
machine (see the module docstring of media.relay.pcap)."""

from __future__ import annotations

import io
import ipaddress
import json
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from media.g711 import Codec
from media.relay.pcap import PcapError, convert_spool, parse_metadata, read_pcap
from media.relay.sink import DirectorySink

from .fakes import rtp, tone_frame

T0 = 1_796_234_257.0
CALLER, CALLEE = ("127.0.0.1", 30000), ("127.0.0.1", 30010)
TO_CALLER_PORT, TO_CALLEE_PORT = 40010, 40026  # rtpengine's ports facing each party


def sdp(port: int) -> str:
    return (
        f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        f"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\na=rtcp:{port + 1}\r\n"
    )


def block(port: int, mode: str, at: float, label: str | None) -> str:
    head = f"\nLabel: {label}" if label else ""
    return (
        f"{head}\nTimestamp started ms: {at * 1000:.3f}\nSDP mode: {mode}\n"
        f"SDP before RTP packet: 1\n\n{sdp(port)}"
    )


def metadata(
    pcap: Path, *, labels: bool = True, answered: bool = True, end: float | None = T0 + 3
) -> str:
    text = f"{pcap}\n\n" + block(TO_CALLEE_PORT, "offer", T0, "caller" if labels else None)
    if answered:
        text += block(TO_CALLER_PORT, "answer", T0 + 0.5, "callee" if labels else None)
    if end is not None:
        text += f"\nTimestamp terminated ms(first monologue): {end * 1000:.3f}\n\n"
        text += "call start time: 2026-12-02T17:57:37\ncall end time: 2026-12-02T17:57:40\n\n\n"
        text += "call-id:c1@x|from-tag:ft|to-tag:tt\n"
    return text


def ip_udp(
    src: tuple[str, int], dst: tuple[str, int], payload: bytes, *, v6: bool = False
) -> bytes:
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    if v6:
        return (
            struct.pack("!IHBB", 6 << 28, len(udp), 17, 64)
            + ipaddress.IPv6Address("::1").packed * 2
            + udp
        )
    return (
        struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0)
        + bytes([127, 0, 0, 1]) * 2
        + udp
    )


def pcap_bytes(records: list[tuple[float, bytes]], *, link: int = 101) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, link)
    for at, data in records:
        sec = int(at)
        out += struct.pack("<IIII", sec, round((at - sec) * 1e6), len(data), len(data)) + data
    return out


def call_pcap(*, talk: float = 2.0) -> list[tuple[float, bytes]]:
    """Caller 440-ish level (+) from 0.5 s, callee (-) from 0.5 s; RTCP too."""
    records = []
    for i in range(round(talk / 0.02)):
        at = T0 + 0.5 + 0.02 * i
        a = rtp(i, 160 * i, tone_frame(Codec.PCMU, 5000), ssrc=1)
        b = rtp(i, 160 * i, tone_frame(Codec.PCMA, -5000), pt=8, ssrc=2)
        records.append((at, ip_udp(CALLER, ("127.0.0.1", TO_CALLER_PORT), a)))
        records.append((at + 0.001, ip_udp(CALLEE, ("127.0.0.1", TO_CALLEE_PORT), b)))
    records.append(
        (T0 + 1.0, ip_udp(CALLER, ("127.0.0.1", TO_CALLER_PORT + 1), b"\x81\xc9" + bytes(30)))
    )
    return records


def spool(tmp_path: Path, text_of: object = metadata, **kw: object) -> tuple[Path, Path]:
    root = tmp_path / "spool"
    (root / "pcaps").mkdir(parents=True)
    (root / "metadata").mkdir()
    pcap = root / "pcaps" / "c1%40x-ecfb1d223d6312f5.pcap"
    pcap.write_bytes(pcap_bytes(call_pcap()))
    meta = root / "metadata" / "rtpengine-meta-c1%40x-ecfb1d223d6312f5.txt"
    meta.write_text(text_of(pcap, **kw))  # type: ignore[operator]
    return root, pcap


def stereo(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)


def test_metadata_file_is_parsed() -> None:
    meta = parse_metadata(metadata(Path("/spool/pcaps/x.pcap")))
    assert meta.pcap == Path("/spool/pcaps/x.pcap")
    assert [(b.mode, b.label) for b in meta.blocks] == [("offer", "caller"), ("answer", "callee")]
    assert meta.blocks[0].started == pytest.approx(T0) and meta.terminated == pytest.approx(T0 + 3)
    assert meta.blocks[1].sdp.startswith(b"v=0\r\n") and b"m=audio 40010" in meta.blocks[1].sdp
    assert meta.metadata == "call-id:c1@x|from-tag:ft|to-tag:tt"


@pytest.mark.parametrize("labels", [True, False])
def test_spool_call_becomes_a_caller_left_callee_right_wav(tmp_path: Path, labels: bool) -> None:
    root, pcap = spool(tmp_path, labels=labels)
    out = tmp_path / "out"
    result = convert_spool(root, DirectorySink(out))
    assert (result.converted, result.failed) == (1, 0)
    wav = next(out.rglob("*.wav"))
    assert wav.name == "c1@x.wav"
    frames = stereo(wav)
    assert len(frames) == 3 * 8000  # start of the first offer to the termination
    assert (frames[: int(0.49 * 8000)] == 0).all()  # nobody talked before 0.5 s
    assert frames[8000, 0] > 4000 and frames[8000, 1] < -4000  # caller left, callee right
    assert (frames[int(2.6 * 8000) :] == 0).all()
    sidecar = json.loads(wav.with_suffix(".json").read_text())
    assert sidecar["relay"] == "rtpengine" and sidecar["to_tag"] == "tt"
    assert sidecar["codecs"] == ["PCMA", "PCMU"] and sidecar["duration"] == 3.0
    assert sidecar["stats"]["caller"]["packets"] == 100
    assert not pcap.exists() and not any((root / "metadata").iterdir())


def test_unanswered_call_is_dropped_without_a_recording(tmp_path: Path) -> None:
    root, pcap = spool(tmp_path, answered=False)
    result = convert_spool(root, DirectorySink(tmp_path / "out"))
    assert result.unanswered == 1 and not pcap.exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.wav"))


def test_broken_pcap_goes_to_failed(tmp_path: Path) -> None:
    root, pcap = spool(tmp_path)
    pcap.write_bytes(b"not a pcap at all")
    result = convert_spool(root, DirectorySink(tmp_path / "out"))
    assert result.failed == 1
    assert sorted(p.name for p in (root / "failed").iterdir()) == [
        pcap.name,
        "rtpengine-meta-c1%40x-ecfb1d223d6312f5.txt",
    ]
    assert not any((tmp_path / "out").rglob("*.wav"))  # the .part was removed too
    assert not any((tmp_path / "out").rglob("*.part"))


def test_orphan_of_a_crashed_rtpengine_is_converted_from_its_spool_tmp_metadata(
    tmp_path: Path,
) -> None:
    root, pcap = spool(tmp_path, end=None)
    tmp = root / "tmp"  # where rtpengine keeps the metadata of calls in progress
    tmp.mkdir()
    finished = root / "metadata" / "rtpengine-meta-c1%40x-ecfb1d223d6312f5.txt"
    (tmp / "rtpengine-meta-c1%40x-ecfb1d223d6312f5.tmp").write_text(finished.read_text())
    finished.unlink()
    out = tmp_path / "out"
    assert convert_spool(root, DirectorySink(out)).orphans == 0  # too recent
    result = convert_spool(root, DirectorySink(out), orphan_after=0.0, now=pcap.stat().st_mtime + 1)
    assert result.orphans == 1 and result.converted == 1
    wav = next(out.rglob("*.wav"))
    assert wav.name == "c1@x.wav"  # from the file name: no metadata string in a crashed call
    assert len(stereo(wav)) == pytest.approx(8000 * 2.501, abs=2)  # with the last packet


def test_pcap_reader_handles_ethernet_ipv6_and_a_truncated_tail() -> None:
    payload = rtp(1, 160, b"x" * 160)
    eth = bytes(12) + b"\x86\xdd" + ip_udp(("::1", 5), ("::1", 6), payload, v6=True)
    data = pcap_bytes([(T0, eth), (T0 + 1, eth)], link=1)
    packets = list(read_pcap(io.BytesIO(data[:-10])))  # the writer died mid-record
    assert len(packets) == 1
    assert packets[0].source == ("::1", 5) and packets[0].destination == ("::1", 6)
    assert packets[0].payload == payload and packets[0].time == pytest.approx(T0)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00" * 24, struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 113)],
)
def test_pcap_reader_refuses_what_it_cannot_read(data: bytes) -> None:
    with pytest.raises(PcapError):
        list(read_pcap(io.BytesIO(data)))

"""Recordings from rtpengine: its pcap spool turned into the embedded relay's WAV + JSON.

Why pcap, not the live fork (`subscribe request` to a recorder of ours) — measured with
`python -m tests.bench.relay_bench --recording --levels 100 --seconds 20` (100 recorded
calls, 2 x 50 packets/s each, on the shared 2-core test machine), CPU-seconds per
call-minute:

    rtpengine, no recording         0.129
    rtpengine + pcap                0.143  + 0.091 conversion after the call  = 0.234
    rtpengine + live fork           0.160  + 0.110 Python recorder, real time = 0.269
    embedded relay, no recording    0.113
    embedded relay + WAV            0.222

With pcap, recording adds ~10 % to rtpengine (one buffered `fwrite` per packet it
receives) and nothing of ours is in the media path while the call runs; the conversion runs
after the call, off the real-time path, and can be retried (the pcap stays until converted);
a crash of rtpengine loses at most libpcap's unflushed 4 KiB (~0.2 s), and the rest of the
call is converted from the metadata in progress. The live fork makes rtpengine send a second
copy of every packet (+25 %), puts a Python receiver in the real-time path (late packets for
the parties went up from 1 to 17,050 of 200,000 in that run), needs two more ng round trips
after every answer (and again after a re-INVITE or a branch change), and a crash of the
recorder loses the rest of the call. What pcap costs: disk (~20 kB/s per call while it
runs) and the recording exists only once the call ended. Both gave correct WAVs (caller
tone left, callee tone right, 20/20 calls checked).

rtpengine's spool (`--recording-dir=DIR`, checked with 10.5.3.5):
- `DIR/pcaps/<url-escaped call-id>-<16 hex>.pcap`: link type 101 (raw IPv4/IPv6; type 1,
  Ethernet, with `--recording-format=eth`), one record per packet received, source = the
  party, destination = rtpengine's port facing that party, timestamp = arrival.
- `DIR/metadata/<same name>.txt`, moved there at `delete`: the pcap path, then per offer/answer
  a block `Label:` (if the proxy sent `label`), `Timestamp started ms:`, `SDP mode:`, the SDP
  rtpengine SENT (so its m= port is where the OTHER party's packets arrive), then
  `Timestamp terminated ms(first monologue):`, `call start time:`, `call end time:` and the
  proxy's `metadata` string. While the call runs it is `DIR/tmp/rtpengine-meta-<name>.tmp`.

Channels: the SDP a party sent is labelled with that party; its rewritten version carries the
port facing the other party. With `label: caller` on the offer and `label: callee` on the
answer (recommended; they also cover late offers and re-INVITEs from the callee), packets to
a port from a `caller`-labelled block are the callee's (right channel), from a `callee`
block the caller's (left). Without labels, offers are taken as the caller's SDP and answers
as the callee's. Packets are pushed into the same `StereoRecorder` as the embedded relay's,
with the capture time as arrival time and the first block's start as origin, and the file
is cut at the termination time — the same wall-clock alignment and duration rule.

`convert_spool()` converts every finished call and removes its pcap and metadata (or moves
them to `failed/`); a pcap whose call never finished (rtpengine crashed) is converted after
`orphan_after` seconds without change from its `DIR/tmp` metadata, ending with its last
packet. libpcap writes through a 4 KiB stdio buffer, so a crash loses at most the last
~20 packets (~0.2 s of a call).
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import struct
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..errors import MediaError, SdpError
from ..g711 import Codec
from ..sdp import parse_sdp, rtp_destination
from .recorder import CALLEE, CALLER, StereoRecorder, codecs_from_sdp
from .sink import RecordingMeta, RecordingSink

__all__ = [
    "PcapError",
    "PcapPacket",
    "RtpengineMeta",
    "SdpBlock",
    "SpoolResult",
    "convert_recording",
    "convert_spool",
    "parse_metadata",
    "read_pcap",
]

log = logging.getLogger(__name__)

_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
LINK_RAW = 101
LINK_ETHERNET = 1
_MAX_RECORD = 262_144
TICK = 0.5
_FRAME = 0.02


class PcapError(MediaError):
    default_id = "pcap-malformed"


@dataclass(frozen=True, slots=True, kw_only=True)
class PcapPacket:
    """One UDP datagram of the capture."""

    time: float
    source: tuple[str, int]
    destination: tuple[str, int]
    payload: bytes


# --------------------------------------------------------------------------- pcap reading
def read_pcap(stream: BinaryIO) -> Iterator[PcapPacket]:
    """The UDP packets of a pcap (raw-IP or Ethernet link); other packets are skipped. A
    record cut short (the writer crashed mid-record) ends the iteration quietly."""
    header = stream.read(24)
    if len(header) < 24 or header[:4] not in _MAGIC:
        raise PcapError("not a pcap file")
    order, unit = _MAGIC[header[:4]]
    linktype = struct.unpack(order + "I", header[20:24])[0] & 0x0FFFFFFF
    if linktype not in (LINK_RAW, LINK_ETHERNET):
        raise PcapError(f"pcap link type {linktype}; expected raw IP (101) or Ethernet (1)")
    record = struct.Struct(order + "IIII")
    while len(head := stream.read(16)) == 16:
        seconds, fraction, length, _ = record.unpack(head)
        if length > _MAX_RECORD:
            raise PcapError(f"pcap record of {length} octets")
        data = stream.read(length)
        if len(data) < length:
            return
        packet = _udp(data[14:] if linktype == LINK_ETHERNET else data, seconds + fraction * unit)
        if packet is not None:
            yield packet


def _udp(data: bytes, at: float) -> PcapPacket | None:
    version = data[0] >> 4 if data else 0
    if version == 4 and len(data) >= 20 and data[9] == 17:
        start = (data[0] & 0x0F) * 4
        src, dst = _ip4(data[12:16]), _ip4(data[16:20])
    elif version == 6 and len(data) >= 40 and data[6] == 17:
        start = 40
        src, dst = _ip6(data[8:24]), _ip6(data[24:40])
    else:
        return None
    if len(data) < start + 8:
        return None
    sport, dport, length = struct.unpack_from("!HHH", data, start)
    payload = data[start + 8 : start + max(length, 8)]
    return PcapPacket(time=at, source=(src, sport), destination=(dst, dport), payload=payload)


def _ip4(raw: bytes) -> str:
    return ".".join(str(b) for b in raw)


def _ip6(raw: bytes) -> str:
    return str(ipaddress.IPv6Address(raw))


# --------------------------------------------------------------------------- metadata
@dataclass(frozen=True, slots=True, kw_only=True)
class SdpBlock:
    mode: str  # "offer" / "answer"
    started: float  # UNIX seconds
    sdp: bytes
    label: str | None = None


@dataclass(slots=True, kw_only=True)
class RtpengineMeta:
    pcap: Path | None = None
    blocks: list[SdpBlock] = field(default_factory=list)
    terminated: float | None = None
    metadata: str | None = None


def parse_metadata(text: str) -> RtpengineMeta:
    """Read rtpengine's pcap-method metadata file (format in the module docstring)."""
    meta = RtpengineMeta()
    lines = text.splitlines()
    i = 0
    label: str | None = None
    while i < len(lines):
        line = lines[i].rstrip("\r")
        i += 1
        if meta.pcap is None and line.startswith("/"):
            meta.pcap = Path(line)
        elif line.startswith("Label: "):
            label = line[7:]
        elif line.startswith("Timestamp started ms: "):
            block, i = _block(lines, i, float(line.split(": ", 1)[1]) / 1000, label)
            meta.blocks.append(block)
            label = None
        elif line.startswith("Timestamp terminated ms"):
            meta.terminated = float(line.split(": ", 1)[1]) / 1000
        elif line.startswith("call end time:"):
            meta.metadata = "\n".join(lines[i:]).strip("\r\n") or None
            break
    return meta


def _block(lines: list[str], i: int, started: float, label: str | None) -> tuple[SdpBlock, int]:
    mode = ""
    while i < len(lines) and not lines[i].startswith("v="):
        if lines[i].startswith("SDP mode: "):
            mode = lines[i][10:].strip()
        i += 1
    sdp: list[str] = []
    while i < len(lines) and len(lines[i]) > 1 and lines[i][1] == "=":
        sdp.append(lines[i].rstrip("\r"))
        i += 1
    body = ("\r\n".join(sdp) + "\r\n").encode()
    return SdpBlock(mode=mode, started=started, sdp=body, label=label), i


def _ports(meta: RtpengineMeta) -> tuple[set[int], set[int], bool]:
    """(ports receiving the caller's packets, ports receiving the callee's, answered?)."""
    caller_in: set[int] = set()
    callee_in: set[int] = set()
    answered = False
    for block in meta.blocks:
        owner = block.label or ("caller" if block.mode == "offer" else "callee")
        answered |= owner == "callee"
        try:
            dest = rtp_destination(block.sdp)
        except SdpError:
            continue
        if dest is not None:
            (callee_in if owner == "caller" else caller_in).add(dest[1])
    return caller_in, callee_in, answered


def _metadata_fields(text: str | None) -> dict[str, str]:
    """rtpengine's convention `key:value|key:value` (its README, "metadata")."""
    out: dict[str, str] = {}
    for part in (text or "").split("|"):
        key, sep, value = part.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


# --------------------------------------------------------------------------- conversion
def convert_recording(
    meta_text: str,
    pcap: Path,
    sink: RecordingSink,
    *,
    call_id: str | None = None,
    keep_unanswered: bool = False,
) -> RecordingMeta | None:
    """Convert one call; the meta handed to the sink, or None (not answered: nothing kept)."""
    meta = parse_metadata(meta_text)
    caller_in, callee_in, answered = _ports(meta)
    if not meta.blocks or (not answered and not keep_unanswered):
        return None
    fields = _metadata_fields(meta.metadata)
    call_id = fields.get("call-id") or call_id or _call_id_of(pcap)
    start = meta.blocks[0].started
    info = RecordingMeta(
        call_id=call_id,
        from_tag=fields.get("from-tag", ""),
        to_tag=fields.get("to-tag"),
        started=start,
        relay="rtpengine",
        metadata=meta.metadata,
    )
    writer = sink.open(call_id, info)
    recorder = StereoRecorder(writer, start=start, codecs=_codecs(meta))
    try:
        end = _replay(pcap, recorder, caller_in, callee_in, meta.terminated)
    except (OSError, MediaError):
        sink.discard(writer, info)
        raise
    duration = recorder.finish(end)
    stats = {name: _channel_stats(recorder, ch) for ch, name in ((0, "caller"), (1, "callee"))}
    codecs = recorder.stats(0).codecs | recorder.stats(1).codecs
    done = info.finished(
        ended=end,
        duration=duration,
        data_bytes=writer.data_size,
        codecs=tuple(sorted(codecs)),
        stats=stats,
    )
    sink.close(writer, done)
    return done


def _replay(
    pcap: Path,
    recorder: StereoRecorder,
    caller_in: set[int],
    callee_in: set[int],
    end: float | None,
) -> float:
    last = recorder.start
    next_tick = last + TICK
    with pcap.open("rb") as stream:
        for packet in read_pcap(stream):
            port = packet.destination[1]
            channel = CALLER if port in caller_in else CALLEE if port in callee_in else None
            if channel is not None:
                recorder.packet(channel, packet.payload, packet.time)
            last = max(last, packet.time)
            if last >= next_tick:
                recorder.tick(last)
                next_tick = last + TICK
    return end if end is not None else last + _FRAME  # the last packet's audio included


def _codecs(meta: RtpengineMeta) -> dict[int, Codec]:
    maps: dict[int, str] = {}
    for block in meta.blocks:
        try:
            sdp = parse_sdp(block.sdp)
        except SdpError:
            continue
        for media in sdp.media:
            maps.update({pt: m.encoding for pt, m in media.rtpmaps().items()})
    return codecs_from_sdp(maps)


def _channel_stats(recorder: StereoRecorder, channel: int) -> dict[str, int]:
    s = recorder.stats(channel)
    return {
        "packets": s.packets,
        "octets": s.octets,
        "malformed": s.malformed,
        "unsupported_payloads": s.unsupported,
        "overtaken_samples": s.overtaken,
        **recorder.buffer_stats(channel),
    }


def _call_id_of(pcap: Path) -> str:
    """rtpengine names files `<g_uri_escape_string(call-id)>-<16 hex digits>`."""
    stem = pcap.stem
    escaped = stem.rsplit("-", 1)[0] if len(stem.rsplit("-", 1)[-1]) == 16 else stem
    return urllib.parse.unquote(escaped)


# --------------------------------------------------------------------------- spool
@dataclass(slots=True)
class SpoolResult:
    converted: int = 0
    unanswered: int = 0
    failed: int = 0
    orphans: int = 0


def convert_spool(
    spool: Path,
    sink: RecordingSink,
    *,
    tmp_dir: Path | None = None,
    orphan_after: float = 4 * 3600.0 + 600,
    now: float | None = None,
) -> SpoolResult:
    """Convert every finished call of rtpengine's spool (see the module docstring)."""
    result = SpoolResult()
    tmp_dir = spool / "tmp" if tmp_dir is None else tmp_dir
    for meta_file in sorted((spool / "metadata").glob("*.txt")):
        _convert_file(spool, meta_file, meta_file.read_text(errors="replace"), sink, result)
    now = time.time() if now is None else now
    for pcap in sorted((spool / "pcaps").glob("*.pcap")):
        tmp_meta = tmp_dir / f"rtpengine-meta-{pcap.stem}.tmp"
        finished = (spool / "metadata" / f"rtpengine-meta-{pcap.stem}.txt").exists()
        if not finished and now - pcap.stat().st_mtime > orphan_after and tmp_meta.exists():
            result.orphans += 1
            _convert_file(spool, tmp_meta, tmp_meta.read_text(errors="replace"), sink, result)
    return result


def _convert_file(
    spool: Path, meta_file: Path, text: str, sink: RecordingSink, result: SpoolResult
) -> None:
    meta = parse_metadata(text)
    pcap = meta.pcap if meta.pcap is not None else spool / "pcaps" / "missing.pcap"
    if not pcap.exists():  # the spool was moved since rtpengine wrote the path
        pcap = spool / "pcaps" / pcap.name
    try:
        done = convert_recording(text, pcap, sink)
    except (OSError, MediaError) as exc:
        log.error("rtpengine recording %s not converted: %s", meta_file.name, exc)
        result.failed += 1
        failed = spool / "failed"
        failed.mkdir(exist_ok=True)
        for path in (meta_file, pcap):
            if path.exists():
                shutil.move(str(path), failed / path.name)
        return
    if done is None:
        result.unanswered += 1
    else:
        result.converted += 1
    meta_file.unlink(missing_ok=True)
    pcap.unlink(missing_ok=True)

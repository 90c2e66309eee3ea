"""The `query` / `delete` statistics of a call, in the shape of rtpengine's reply (README,
"query Message"): `created`, `last signal`, `tags` (one entry per leg: `tag`, `created`,
`in dialogue with`, `medias` → `streams` with `local port`, `endpoint`, `advertised
endpoint`, `last packet`, `stats` {packets, bytes, errors}) and `totals` {RTP, RTCP}. An
untagged leg (a branch not answered yet) is listed as `<untagged N>` as rtpengine does.
Ours adds `via-branch` per branch leg and `recording` (seconds written so far).
"""

from __future__ import annotations

from .bencode import EncodableValue
from .calls import Call
from .legs import Addr, Leg, StreamStats

__all__ = ["call_stats"]

Dict = dict[str, EncodableValue]


def call_stats(call: Call, now: float, wall: float) -> Dict:
    tags: Dict = {}
    totals = {"RTP": StreamStats(), "RTCP": StreamStats()}
    for leg in call.legs():
        key = leg.tag or f"<untagged {leg.index}>"
        tags[key] = _leg(call, leg, now, wall)
        for name, stats in (("RTP", leg.rtp), ("RTCP", leg.rtcp)):
            totals[name].packets += stats.packets
            totals[name].octets += stats.octets
            totals[name].errors += stats.errors
    out: Dict = {
        "created": int(call.created_wall),
        "last signal": int(call.last_signal_wall),
        "tags": tags,
        "totals": {name: _counters(s) for name, s in totals.items()},
    }
    if call.recording is not None:
        out["recording"] = {"seconds": int(call.recording.recorder.seconds)}
    return out


def _leg(call: Call, leg: Leg, now: float, wall: float) -> Dict:
    peers = [p.tag or f"<untagged {p.index}>" for p in leg.peers]
    out: Dict = {
        "tag": leg.tag or "",
        "created": int(leg.created),
        "medias": [_media(leg, now, wall)],
    }
    if peers:
        out["in dialogue with"] = peers[0]
    if leg.label:
        out["label"] = leg.label
    branch = call.branch_of(leg)
    if branch is not None and branch.key:
        out["via-branch"] = branch.key
    return out


def _media(leg: Leg, now: float, wall: float) -> Dict:
    ports = leg.ports
    port = ports.rtp_port if ports is not None else 0
    sdp = leg.sdp
    rtp = (leg.rtp, leg.rtp_destination(), sdp.rtp if sdp else None, port, "RTP")
    rtcp = (leg.rtcp, leg.rtcp_destination(), sdp.rtcp if sdp else None, port + 1, "RTCP")
    return {
        "index": 1,
        "type": "audio",
        "protocol": "RTP/AVP",
        "streams": [_stream(*rtp, now, wall), _stream(*rtcp, now, wall)],
    }


def _stream(
    stats: StreamStats,
    endpoint: Addr | None,
    advertised: Addr | None,
    port: int,
    kind: str,
    now: float,
    wall: float,
) -> Dict:
    out: Dict = {
        "local port": port,
        "endpoint": _endpoint(endpoint),
        "advertised endpoint": _endpoint(advertised),
        "flags": [kind],
        "stats": _counters(stats),
    }
    if stats.last is not None:
        out["last packet"] = int(wall - (now - stats.last))
    return out


def _endpoint(addr: Addr | None) -> Dict:
    if addr is None:
        return {}
    family = "IPv6" if ":" in addr[0] else "IPv4"
    return {"family": family, "address": addr[0], "port": addr[1]}


def _counters(stats: StreamStats) -> Dict:
    return {"packets": stats.packets, "bytes": stats.octets, "errors": stats.errors}

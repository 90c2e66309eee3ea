"""How the Redis state backend stores its values (switch/state/redis.py has the keys):
bindings and call records as compact JSON, binding members as "<len>:<device><contact>",
numbers as Lua reads them back."""

from __future__ import annotations

import json
import logging

from switch.sip.target import Target

from .base import Binding, CallRecord

log = logging.getLogger("switch.state.redis")


def num(x: float) -> str:
    """A float as Redis and Lua read it back exactly (repr round-trips)."""
    return repr(float(x))


def member(device_id: str, contact: str) -> str:
    return f"{len(device_id.encode())}:{device_id}{contact}"


def split_member(member: str) -> tuple[str, str]:
    head, _, rest = member.partition(":")
    raw = rest.encode()
    n = int(head)
    return raw[:n].decode(), raw[n:].decode()


def encode_binding(b: Binding) -> str:
    s = b.source
    return json.dumps(
        {
            "device_id": b.device_id,
            "contact": b.contact,
            "instance_id": b.instance_id,
            "expires_at": b.expires_at,
            "source": [s.transport, s.host, s.port, s.conn_id],
            "call_id": b.call_id,
            "cseq": b.cseq,
            "user_agent": b.user_agent,
            "q": b.q,
            "node": b.node,
            "path": b.path,
        },
        separators=(",", ":"),
    )


def decode_binding(text: str) -> Binding:
    d = json.loads(text)
    transport, host, port, conn_id = d["source"]
    return Binding(
        device_id=d["device_id"],
        contact=d["contact"],
        instance_id=d["instance_id"],
        expires_at=float(d["expires_at"]),
        source=Target(transport, host, int(port), conn_id),
        call_id=d["call_id"],
        cseq=int(d["cseq"]),
        user_agent=d["user_agent"],
        q=d["q"],
        node=d["node"],
        path=d.get("path"),  # absent in bindings written before paths existed
    )


def encode_call(r: CallRecord) -> str:
    return json.dumps(
        {
            "call_id": r.call_id, "tenant_id": r.tenant_id, "until": r.until,
            "started": r.started, "caller": r.caller, "called": r.called,
            "answered": r.answered, "also": r.also, "node": r.node,
        },
        separators=(",", ":"),
    )  # fmt: skip


def decode_call(text: str) -> CallRecord | None:
    try:
        d = json.loads(text)
        answered = d["answered"]
        return CallRecord(
            call_id=d["call_id"], tenant_id=d["tenant_id"], until=float(d["until"]),
            started=float(d["started"]), caller=d["caller"], called=d["called"],
            answered=None if answered is None else float(answered), also=d["also"],
            node=d["node"],
        )  # fmt: skip
    except (ValueError, KeyError, TypeError):
        log.warning("unreadable call record in redis skipped: %.200r", text)
        return None

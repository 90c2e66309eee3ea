"""A call detail record as one line of JSON: the CDR writer's spool format. Pure.

`encode(record)` gives one line (no newline inside: JSON escapes them), `decode(line)` the
record back, equal to the original (rated or not). Instants are ISO-8601 with their offset;
enums by value; a version field `v` lets a later format read today's spools. `decode`
raises `ValueError` for anything that is not such a line (a torn last line after a crash,
a line from another program), so the writer can set it aside instead of crashing.
"""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import datetime
from typing import Any

from provisioning.model import DeviceKind
from provisioning.records import CallDirection, CallOutcome, CallRating, CallRecord

__all__ = ["FORMAT", "decode", "encode"]

FORMAT = 1
_INSTANTS = ("started_at", "ended_at", "answered_at")
_KINDS = ("caller_device_kind", "answered_device_kind")
_TUPLES = ("rang", "shown_to")
_NAMES = frozenset(f.name for f in fields(CallRecord))
_RATING_NAMES = frozenset(f.name for f in fields(CallRating))


def encode(record: CallRecord) -> str:
    doc: dict[str, Any] = {"v": FORMAT}
    for name in _NAMES:
        value = getattr(record, name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, CallRating):
            value = {n: getattr(value, n) for n in _RATING_NAMES}
        doc[name] = value
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def decode(line: str) -> CallRecord:
    try:
        doc = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not a CDR line: {exc}") from None
    if not isinstance(doc, dict) or doc.pop("v", None) != FORMAT or set(doc) != _NAMES:
        raise ValueError("not a CDR line of this format")
    try:
        return CallRecord(**_values(doc))
    except (TypeError, KeyError, AttributeError) as exc:
        raise ValueError(f"not a CDR line: {exc}") from None


def _values(doc: dict[str, Any]) -> dict[str, Any]:
    for name in _INSTANTS:
        if doc[name] is not None:
            doc[name] = datetime.fromisoformat(doc[name])
    for name in _KINDS:
        if doc[name] is not None:
            doc[name] = DeviceKind(doc[name])
    for name in _TUPLES:
        doc[name] = tuple(doc[name])
    doc["direction"] = CallDirection(doc["direction"])
    doc["outcome"] = CallOutcome(doc["outcome"])
    if doc["rating"] is not None:
        doc["rating"] = CallRating(**doc["rating"])
    return doc

"""Read-side records: what the provisioning store returns besides the routing model.

`provisioning.model` is the routing snapshot (what the switch needs). The REST API also shows
things the switch never looks at: an ID's timestamps and release counter without its hashes,
uploaded prompts, the web phonebook, API tokens, voicemail messages (the media service's:
each at most 30 s, at most 15 per mailbox, kept 7 days; limits in provisioning.rules). Those
are these frozen records, built from rows by `provisioning.store.queries` and rendered by
`provisioning.api.resources`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from .model import DeviceKind

__all__ = [
    "DeviceInfo",
    "MessageInfo",
    "NewMessage",
    "NewRecording",
    "PhonebookEntry",
    "PromptInfo",
    "RecordingInfo",
    "RecordingQuery",
    "Scope",
    "TokenInfo",
]

Scope = Literal["operator", "tenant"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceInfo:
    """An ID as the API shows it: never a password nor a hash.
    `release_seq` counts the "release the logged-in device" requests;
    `release_requested_at` is the last one (UTC)."""

    id: str
    tenant_id: str
    username: str
    kind: DeviceKind
    presented_number: str
    display_name: str | None
    free_calls_10min: bool
    web_phonebook: bool
    release_seq: int
    release_requested_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptInfo:
    """An uploaded announcement. Reference it as `announcement="prompt:<id>"`."""

    id: str
    tenant_id: str
    name: str
    content_type: str
    size: int
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class PhonebookEntry:
    id: str
    tenant_id: str
    name: str
    number: str
    company: str | None
    note: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenInfo:
    id: str
    scope: Scope
    tenant_id: str | None
    label: str | None
    created_at: datetime


# --------------------------------------------------------------------------- voicemail
@dataclass(frozen=True, slots=True, kw_only=True)
class NewMessage:
    """A message to store: 8 kHz 16-bit mono PCM and what the caller's INVITE said."""

    tenant_id: str
    mailbox: str  # the number (E.164) whose voicemail recorded it
    caller: str | None  # the caller's number as received
    dialled: str  # the number dialled (E.164)
    received_at: dt.datetime  # timezone-aware
    pcm: bytes

    def __post_init__(self) -> None:
        if self.received_at.tzinfo is None:
            raise ValueError("received_at must be timezone-aware")
        if len(self.pcm) % 2:
            raise ValueError("PCM must be whole 16-bit samples")

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 16000


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageInfo:
    """A stored message without its audio."""

    id: str
    tenant_id: str
    mailbox: str
    caller: str | None
    dialled: str
    received_at: dt.datetime
    duration: float
    heard: bool


# --------------------------------------------------------------------------- call recordings
RecordingDirection = Literal["inbound", "outbound"]


@dataclass(frozen=True, slots=True, kw_only=True)
class NewRecording:
    """A finished recording to register: its metadata and where its WAV is (`path`, relative
    to the recordings directory). `number` is the tenant's recorded number (E.164),
    `other_party` the caller of an inbound call / the callee of an outbound one (E.164 when
    it is a Japanese number, else as received; None when withheld), `device_id` the ID that
    answered (inbound) or called (outbound)."""

    tenant_id: str
    number: str
    direction: RecordingDirection
    other_party: str | None
    device_id: str | None
    call_id: str
    started_at: dt.datetime
    answered_at: dt.datetime | None
    ended_at: dt.datetime
    duration: float
    size_bytes: int
    path: str
    relay: str

    def __post_init__(self) -> None:
        for name in ("started_at", "ended_at", "answered_at"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware")
        if self.direction not in ("inbound", "outbound"):
            raise ValueError(f"direction must be inbound or outbound, not {self.direction!r}")
        if self.duration < 0 or self.size_bytes < 0:
            raise ValueError("duration and size cannot be negative")
        if not self.path or self.path.startswith("/") or ".." in self.path.split("/"):
            raise ValueError(f"a recording path is relative and stays inside: {self.path!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingInfo:
    """A registered recording (what the API lists)."""

    id: str
    tenant_id: str
    number: str
    direction: RecordingDirection
    other_party: str | None
    device_id: str | None
    call_id: str
    started_at: dt.datetime
    answered_at: dt.datetime | None
    ended_at: dt.datetime
    duration: float
    size_bytes: int
    path: str
    relay: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingQuery:
    """Filters of a recordings list, archive or bulk delete (all ANDed; None: any).
    `since`/`until`: the call's start in [since, until)."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    number: str | None = None
    direction: RecordingDirection | None = None
    party: str | None = None

    @property
    def empty(self) -> bool:
        return all(getattr(self, f) is None for f in self.__slots__)

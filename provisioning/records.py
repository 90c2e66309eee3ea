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
    "AuditEntry",
    "DeviceInfo",
    "MessageInfo",
    "NewMessage",
    "PhonebookEntry",
    "PromptInfo",
    "Scope",
    "TokenInfo",
]

Scope = Literal["operator", "tenant"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One successful write through the REST API: who (`token_id`, `scope`), what (`method`,
    the `route` template, its path parameters `params`), on which tenant, when (`at`, UTC)
    and the answer's `status`. Never a request body, never a secret."""

    id: str
    at: datetime
    token_id: str | None
    scope: Scope
    tenant_id: str | None
    method: str
    route: str
    params: dict[str, str]
    status: int


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

"""The voicemail seam: what the media service needs of wherever messages are kept, and what a
message is. The store behind it (provisioning/, SQLite or PostgreSQL) keeps each message whole
or not at all, visible from every node and media process; this module has no I/O.

Service rules (../shared/docs/service-rules.md): each message at most 30 s, at most 15 kept per
mailbox (the 16th caller hears "mailbox full" and nothing is stored), a message shorter than
1 s is not kept, each is deleted 7 days after it was received, the greeting is fixed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "MAILBOX_LIMIT",
    "MAX_MESSAGE_SECONDS",
    "MIN_MESSAGE_SECONDS",
    "RETENTION",
    "MessageInfo",
    "NewMessage",
    "PromptSource",
    "VoicemailStore",
]

MAX_MESSAGE_SECONDS = 30.0
MIN_MESSAGE_SECONDS = 1.0
MAILBOX_LIMIT = 15
RETENTION = dt.timedelta(days=7)


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
    id: str
    tenant_id: str
    mailbox: str
    caller: str | None
    dialled: str
    received_at: dt.datetime
    duration: float
    heard: bool


class VoicemailStore(Protocol):
    async def count(self, tenant_id: str, mailbox: str) -> int:
        """Messages kept in the mailbox now (heard or not)."""
        ...

    async def save(self, message: NewMessage, limit: int) -> str | None:
        """Store the message whole, unless the mailbox already holds `limit` messages (None:
        refused, nothing stored; checked atomically with the insert). Returns its id."""
        ...

    async def messages(self, tenant_id: str, mailboxes: tuple[str, ...]) -> list[MessageInfo]:
        """The mailboxes' messages, newest first."""
        ...

    async def audio(self, tenant_id: str, message_id: str) -> bytes | None:
        """The message's PCM, None if it is gone."""
        ...

    async def mark(self, tenant_id: str, message_id: str, heard: bool) -> bool: ...

    async def delete(self, tenant_id: str, message_id: str) -> bool: ...


class PromptSource(Protocol):
    def pcm(self, tenant_id: str, name: str) -> bytes | None:
        """A prompt by hand-off name (`template-1`, `busy`, …, or `prompt:<id>` of a file the
        tenant uploaded); None when it does not exist."""
        ...

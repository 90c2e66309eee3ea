"""The voicemail seam: what the media service needs of wherever messages are kept (the records
themselves are provisioning.voicemail's). The store behind it (provisioning/services/
voicemail.py, SQLite or PostgreSQL) keeps each message whole or not at all, visible from every
node and media process; this module has no I/O.

Service rules (../shared/docs/service-rules.md): each message at most 30 s, at most 15 kept per
mailbox (the 16th caller hears "mailbox full" and nothing is stored), a message shorter than
1 s is not kept, each is deleted 7 days after it was received, the greeting is fixed.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from provisioning.records import MessageInfo, NewMessage
from provisioning.rules import (
    VOICEMAIL_MAILBOX_LIMIT,
    VOICEMAIL_MAX_SECONDS,
    VOICEMAIL_MIN_SECONDS,
    VOICEMAIL_RETENTION_DAYS,
)

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

MAX_MESSAGE_SECONDS = VOICEMAIL_MAX_SECONDS
MIN_MESSAGE_SECONDS = VOICEMAIL_MIN_SECONDS
MAILBOX_LIMIT = VOICEMAIL_MAILBOX_LIMIT
RETENTION = dt.timedelta(days=VOICEMAIL_RETENTION_DAYS)


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
    async def pcm(self, tenant_id: str, name: str) -> bytes | None:
        """A prompt by hand-off name (`template-1`, `busy`, …, or `prompt:<id>` of a file the
        tenant uploaded); None when it does not exist."""
        ...

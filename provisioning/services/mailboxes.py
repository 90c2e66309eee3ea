"""The voicemail messages of a tenant number, for the REST API (`api/resources/voicemail.py`),
over the `VoicemailRepo` the media service stores into.

A mailbox is a number of the tenant with the voicemail option (`option-required` otherwise:
the messages of a number whose option was dropped age out with the retention period); its
name is the number's E.164. A message of another mailbox or another tenant is `not-found`,
exactly like one that does not exist. A message never changes mailbox, so checking that an
id belongs to the mailbox and then acting on it by (tenant, id) cannot touch another mailbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..errors import NotFound, RuleViolation
from ..records import MessageInfo
from .base import Principal
from .numbers import NumberService
from .voicemail import VoicemailRepo

__all__ = ["DeletedMessages", "MailboxService"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeletedMessages:
    """What a delete-many did: the messages deleted, and the ids not found in the mailbox."""

    deleted: tuple[MessageInfo, ...]
    not_found: tuple[str, ...]


class MailboxService:
    __slots__ = ("numbers", "repo")

    def __init__(self, numbers: NumberService, repo: VoicemailRepo) -> None:
        self.numbers = numbers
        self.repo = repo

    async def mailbox(self, principal: Principal, tenant_id: str, number: str) -> str:
        """The mailbox of the tenant's `number`. Errors: not-found, option-required."""
        n = await self.numbers.get_number(principal, tenant_id, number)
        if not n.options.voicemail:
            raise RuleViolation(
                "option-required",
                "the number has no voicemail option",
                {"rule": "voicemail needs its option", "option": "voicemail", "number": n.e164},
            )
        return n.e164

    async def list_messages(
        self, principal: Principal, tenant_id: str, number: str, *, heard: bool | None = None
    ) -> list[MessageInfo]:
        """Newest first; `heard` filters when given."""
        box = await self.mailbox(principal, tenant_id, number)
        found = await self.repo.list_mailbox(principal, tenant_id, box)
        return [m for m in found if heard is None or m.heard == heard]

    async def get_message(
        self, principal: Principal, tenant_id: str, number: str, message_id: str
    ) -> MessageInfo:
        messages = await self.list_messages(principal, tenant_id, number)
        return _one(messages, message_id)

    async def get_audio(
        self, principal: Principal, tenant_id: str, number: str, message_id: str
    ) -> tuple[MessageInfo, bytes]:
        """The message and its PCM (8 kHz, 16-bit little-endian, mono)."""
        box = await self.mailbox(principal, tenant_id, number)
        return await self.repo.get(principal, tenant_id, box, message_id)

    async def mark(
        self, principal: Principal, tenant_id: str, number: str, message_id: str, heard: bool
    ) -> MessageInfo:
        info = await self.get_message(principal, tenant_id, number, message_id)
        if not await self.repo.mark(tenant_id, message_id, heard):
            raise NotFound("voicemail message", message_id)  # deleted meanwhile
        return replace(info, heard=heard)

    async def delete(
        self, principal: Principal, tenant_id: str, number: str, message_id: str
    ) -> None:
        await self.get_message(principal, tenant_id, number, message_id)
        if not await self.repo.delete(tenant_id, message_id):
            raise NotFound("voicemail message", message_id)

    async def delete_many(
        self, principal: Principal, tenant_id: str, number: str, ids: Sequence[str]
    ) -> DeletedMessages:
        """Deletes the mailbox's messages among `ids`; the others are reported not found."""
        wanted = tuple(dict.fromkeys(ids))
        mine = {m.id for m in await self.list_messages(principal, tenant_id, number)}
        gone = await self.repo.delete_many(tenant_id, tuple(i for i in wanted if i in mine))
        deleted = {m.id: m for m in gone}
        return DeletedMessages(
            deleted=tuple(deleted[i] for i in wanted if i in deleted),
            not_found=tuple(i for i in wanted if i not in deleted),
        )


def _one(messages: list[MessageInfo], message_id: str) -> MessageInfo:
    for m in messages:
        if m.id == message_id:
            return m
    raise NotFound("voicemail message", message_id)

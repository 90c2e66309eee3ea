"""Voicemail messages: the repository the media service stores into (it satisfies
`media.voicemail.VoicemailStore` structurally) and the operations the REST API and the
retention sweeper use.

Durability: the audio is in the message's row (BYTEA/BLOB) and written in one transaction
with it, so a message is stored whole or not at all and is visible from every switch node and
media process that uses the same store, across restarts. Writes go through `Store.data()`
(no routing version bump). The mailbox limit is checked in the same transaction as the insert;
on PostgreSQL an advisory lock per mailbox serialises concurrent deposits (SQLite serialises
every writer anyway), so a 16th message can never slip in.

Change listeners (`on_change`) hear (tenant, mailbox) after every commit that changed a
mailbox (deposit, delete, heard/unheard, expiry): message-waiting indication (RFC 3842) sends
its NOTIFYs from there. On PostgreSQL the same event goes out as `NOTIFY
softswitch_mailboxes, 'tenant<TAB>mailbox'` for the other processes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from .. import rules
from ..errors import NotFound
from ..records import MessageInfo, NewMessage
from ..store.base import Store, Tx
from ..store.queries import voicemail as q
from .base import Principal, new_id

__all__ = ["MAILBOX_CHANNEL", "VoicemailRepo"]

log = logging.getLogger(__name__)

MAILBOX_CHANNEL = q.MAILBOX_CHANNEL
MailboxListener = Callable[[str, str], None]


class VoicemailRepo:
    """Voicemail over a provisioning `Store` (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._listeners: list[MailboxListener] = []

    def on_change(self, listener: MailboxListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _changed(self, changed: set[tuple[str, str]]) -> None:
        for tenant_id, mailbox in sorted(changed):
            for listener in list(self._listeners):
                try:
                    listener(tenant_id, mailbox)
                except Exception:
                    log.exception("mailbox listener failed")

    # ------------------------------------------------------------------ the media seam
    async def count(self, tenant_id: str, mailbox: str) -> int:
        async with self.store.read() as tx:
            return await q.count(tx, tenant_id, mailbox)

    async def save(self, message: NewMessage, limit: int) -> str | None:
        message_id = new_id("vm")
        async with self.store.data() as tx:
            await q.lock_mailbox(tx, self.store.dialect, message.tenant_id, message.mailbox)
            if await q.count(tx, message.tenant_id, message.mailbox) >= limit:
                return None
            await q.insert(tx, message_id, message)
            await self._notify(tx, {(message.tenant_id, message.mailbox)})
        self._changed({(message.tenant_id, message.mailbox)})
        return message_id

    async def messages(self, tenant_id: str, mailboxes: tuple[str, ...]) -> list[MessageInfo]:
        async with self.store.read() as tx:
            return await q.list_for(tx, tenant_id, mailboxes)

    async def audio(self, tenant_id: str, message_id: str) -> bytes | None:
        async with self.store.read() as tx:
            found = await q.get_audio(tx, tenant_id, message_id)
        return None if found is None else found[1]

    async def mark(self, tenant_id: str, message_id: str, heard: bool) -> bool:
        async with self.store.data() as tx:
            info = await q.set_heard(tx, tenant_id, message_id, heard)
            if info is not None:
                await self._notify(tx, {(info.tenant_id, info.mailbox)})
        if info is not None:
            self._changed({(info.tenant_id, info.mailbox)})
        return info is not None

    async def delete(self, tenant_id: str, message_id: str) -> bool:
        return bool(await self.delete_many(tenant_id, (message_id,)))

    async def delete_many(self, tenant_id: str, ids: tuple[str, ...]) -> list[MessageInfo]:
        async with self.store.data() as tx:
            gone = await q.delete_ids(tx, tenant_id, ids)
            changed = {(m.tenant_id, m.mailbox) for m in gone}
            await self._notify(tx, changed)
        self._changed(changed)
        return gone

    # ------------------------------------------------------------------ the API (per tenant)
    async def list_mailbox(
        self, principal: Principal, tenant_id: str, mailbox: str
    ) -> list[MessageInfo]:
        principal.require_tenant(tenant_id)
        return await self.messages(tenant_id, (mailbox,))

    async def get(
        self, principal: Principal, tenant_id: str, mailbox: str, message_id: str
    ) -> tuple[MessageInfo, bytes]:
        """Errors: not-found (also for another tenant's or another mailbox's message)."""
        principal.require_tenant(tenant_id)
        async with self.store.read() as tx:
            found = await q.get_audio(tx, tenant_id, message_id)
        if found is None or found[0].mailbox != mailbox:
            raise NotFound("voicemail message", message_id)
        return found

    # ------------------------------------------------------------------ retention
    async def expire(self, now: datetime, *, batch: int = 500) -> list[MessageInfo]:
        """Delete every message received more than the retention period before `now`
        (service rule: 7 days), in batches; returns what was deleted."""
        cutoff = now.astimezone(UTC) - timedelta(days=rules.VOICEMAIL_RETENTION_DAYS)
        expired: list[MessageInfo] = []
        while True:
            async with self.store.data() as tx:
                gone = await q.delete_older_than(tx, cutoff, batch)
                await self._notify(tx, {(m.tenant_id, m.mailbox) for m in gone})
            expired += gone
            self._changed({(m.tenant_id, m.mailbox) for m in gone})
            if len(gone) < batch:
                return expired

    async def _notify(self, tx: Tx, changed: set[tuple[str, str]]) -> None:
        await q.notify_changed(tx, self.store.dialect, changed)

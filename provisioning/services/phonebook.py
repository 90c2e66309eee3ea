"""The web phonebook: one shared phonebook per tenant (the `phonebook` API resource), at
most `rules.MAX_PHONEBOOK_ENTRIES` entries.

Decision: the CSV import is all-or-nothing: any bad row refuses the whole file, and the error
lists every bad row (line number and reason), so the tenant fixes the file once.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import fields, rules
from ..errors import NotFound, PhonebookImportRejected
from ..phonebook_csv import parse_phonebook_csv
from ..records import PhonebookEntry
from ..store.base import Tx, utcnow_text
from ..store.queries import phonebook
from .base import (
    Page,
    Principal,
    StoreService,
    decode_cursor,
    new_id,
    page_limit,
    page_of,
    require_tenant,
)

__all__ = ["PhonebookEntryInput", "PhonebookImportResult", "PhonebookService"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PhonebookEntryInput:
    name: str
    number: str  # digits with optional + - ( ) and spaces; kept as given, trimmed
    company: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PhonebookImportResult:
    imported: int
    total: int  # entries of the tenant after the import


class PhonebookService(StoreService):
    __slots__ = ()

    async def add_phonebook_entry(
        self, principal: Principal, tenant_id: str, data: PhonebookEntryInput
    ) -> PhonebookEntry:
        """Errors: phonebook-full, invalid-input."""
        principal.require_tenant(tenant_id)
        row = fields.check_phonebook_entry(data.name, data.number, data.company, data.note)
        entry_id = new_id("pb")
        async with self.store.write() as tx:
            await require_tenant(tx, tenant_id)
            rules.check_phonebook_size(await phonebook.count(tx, tenant_id) + 1)
            await phonebook.insert_entries(tx, tenant_id, [(entry_id, row)], utcnow_text())
            return await _entry(tx, tenant_id, entry_id)

    async def list_phonebook(
        self,
        principal: Principal,
        tenant_id: str,
        *,
        name_contains: str | None = None,
        cursor: str | None = None,
        limit: int = rules.PAGE_DEFAULT,
    ) -> Page[PhonebookEntry]:
        """Ordered by (name, id)."""
        principal.require_tenant(tenant_id)
        after = decode_cursor(cursor, 2)
        n = page_limit(limit)
        async with self.store.read() as tx:
            await require_tenant(tx, tenant_id)
            items = await phonebook.list_entries(
                tx,
                tenant_id,
                name_contains=name_contains,
                after=(after[0], after[1]) if after else None,
                limit=n + 1,
            )
        return page_of(items, n, lambda e: [e.name, e.id])

    async def update_phonebook_entry(
        self, principal: Principal, tenant_id: str, entry_id: str, data: PhonebookEntryInput
    ) -> PhonebookEntry:
        principal.require_tenant(tenant_id)
        row = fields.check_phonebook_entry(data.name, data.number, data.company, data.note)
        async with self.store.write() as tx:
            await _entry(tx, tenant_id, entry_id)
            await phonebook.update_entry(tx, entry_id, row, utcnow_text())
            return await _entry(tx, tenant_id, entry_id)

    async def delete_phonebook_entry(
        self, principal: Principal, tenant_id: str, entry_id: str
    ) -> None:
        principal.require_tenant(tenant_id)
        async with self.store.write() as tx:
            await _entry(tx, tenant_id, entry_id)
            await phonebook.delete_entry(tx, entry_id)

    async def import_phonebook_csv(
        self, principal: Principal, tenant_id: str, csv_data: bytes | str, *, replace: bool = False
    ) -> PhonebookImportResult:
        """CSV rows `name,number[,company[,note]]`; an optional header row (first cell "name"
        or "名前") is skipped; bytes are decoded as UTF-8 (BOM allowed) or else CP932 (Excel).
        All-or-nothing: any bad row → `PhonebookImportRejected` (400
        `phonebook-import-invalid`, details.errors = [{row, reason}, …]) and nothing changes.
        `replace=True` replaces the whole phonebook. phonebook-full if the result would
        exceed the limit."""
        principal.require_tenant(tenant_id)
        rows, errors = parse_phonebook_csv(csv_data)
        if errors:
            raise PhonebookImportRejected(errors)
        entries = [(new_id("pb"), r) for r in rows]
        async with self.store.write() as tx:
            await require_tenant(tx, tenant_id)
            current = 0 if replace else await phonebook.count(tx, tenant_id)
            rules.check_phonebook_size(current + len(entries))
            if replace:
                await phonebook.delete_all(tx, tenant_id)
            await phonebook.insert_entries(tx, tenant_id, entries, utcnow_text())
            total = await phonebook.count(tx, tenant_id)
        return PhonebookImportResult(imported=len(entries), total=total)


async def _entry(tx: Tx, tenant_id: str, entry_id: str) -> PhonebookEntry:
    entry = await phonebook.get_entry(tx, tenant_id, entry_id)
    if entry is None:
        raise NotFound("phonebook entry", entry_id)
    return entry

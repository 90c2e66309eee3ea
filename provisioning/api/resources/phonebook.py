"""The web phonebook: one shared cloud phonebook per tenant, at most
`rules.MAX_PHONEBOOK_ENTRIES` entries.

CSV import: `POST /v1/tenants/{id}/phonebook/import` with a `text/csv` body of rows
`name,number[,company[,note]]` (optional header row; UTF-8 or CP932). The import is
all-or-nothing: any bad row answers 400 `phonebook-import-invalid` with
`details.errors = [{"row": n, "reason": "…"}, …]` for every bad row, and nothing changes.
`?replace=true` replaces the whole phonebook instead of appending.
"""

from __future__ import annotations

from typing import Any

from provisioning import rules
from provisioning.records import PhonebookEntry
from provisioning.services import PhonebookEntryInput

from ..common import ENTRY_ID, PAGE_QUERY, TENANT_ID, TIMESTAMP, iso, page_args, page_body, page_of
from ..core import Ctx, Operation, Reply
from ..schema import Boolean, Integer, Nullable, Object, Ref, Schema, String

CSV_LIMIT = 1024 * 1024  # 1,000 rows of generous width fit easily


class CsvText(Schema):
    def validate(self, value: Any, path: str = "") -> Any:
        return value

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "string",
            "maxLength": CSV_LIMIT,
            "description": "rows name,number[,company[,note]]",
        }


ENTRY_INPUT = Object(
    {
        "name": String(min_length=1, max_length=rules.PHONEBOOK_NAME_MAX),
        "number": String(
            min_length=1, max_length=rules.PHONEBOOK_NUMBER_MAX, pattern=r"[0-9+\-() ]+"
        ),
        "company": Nullable(String(max_length=rules.PHONEBOOK_TEXT_MAX)),
        "note": Nullable(String(max_length=rules.PHONEBOOK_TEXT_MAX)),
    },
    required=("name", "number"),
)
ENTRY = Ref(
    "PhonebookEntry",
    Object(
        {
            "id": String(),
            "tenant_id": String(),
            "name": String(),
            "number": String(),
            "company": Nullable(String()),
            "note": Nullable(String()),
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
        },
        required=(
            "id",
            "tenant_id",
            "name",
            "number",
            "company",
            "note",
            "created_at",
            "updated_at",
        ),
    ),
)
ENTRY_PAGE = page_of("PhonebookPage", ENTRY)
IMPORT_RESULT = Ref(
    "PhonebookImportResult",
    Object(
        {"imported": Integer(minimum=0), "total": Integer(minimum=0)},
        required=("imported", "total"),
    ),
)


def render_entry(e: PhonebookEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "tenant_id": e.tenant_id,
        "name": e.name,
        "number": e.number,
        "company": e.company,
        "note": e.note,
        "created_at": iso(e.created_at),
        "updated_at": iso(e.updated_at),
    }


async def list_entries(ctx: Ctx) -> Reply:
    q = ctx.query
    page = await ctx.services.phonebook.list_phonebook(
        ctx.principal,
        ctx.path["tenant_id"],
        name_contains=q.get("name_contains"),
        **page_args(q),
    )
    return Reply(200, page_body(page, render_entry))


async def add_entry(ctx: Ctx) -> Reply:
    entry = await ctx.services.phonebook.add_phonebook_entry(
        ctx.principal, ctx.path["tenant_id"], PhonebookEntryInput(**ctx.body)
    )
    return Reply(201, render_entry(entry), {"Location": f"phonebook/{entry.id}"})


async def put_entry(ctx: Ctx) -> Reply:
    p = ctx.path
    entry = await ctx.services.phonebook.update_phonebook_entry(
        ctx.principal, p["tenant_id"], p["entry_id"], PhonebookEntryInput(**ctx.body)
    )
    return Reply(200, render_entry(entry))


async def delete_entry(ctx: Ctx) -> Reply:
    p = ctx.path
    await ctx.services.phonebook.delete_phonebook_entry(
        ctx.principal, p["tenant_id"], p["entry_id"]
    )
    return Reply(204)


async def import_csv(ctx: Ctx) -> Reply:
    result = await ctx.services.phonebook.import_phonebook_csv(
        ctx.principal, ctx.path["tenant_id"], ctx.body, replace=ctx.query.get("replace", False)
    )
    return Reply(200, {"imported": result.imported, "total": result.total})


_T = {"tenant_id": TENANT_ID}
_E = {"tenant_id": TENANT_ID, "entry_id": ENTRY_ID}
_BASE = "/tenants/{tenant_id}/phonebook"
# "import" is not an entry id: without this, PUT/DELETE …/phonebook/import would match the
# entry routes and a 405 on …/import would advertise them in its Allow header.
_ENTRY = _BASE + "/{entry_id:(?!import$)[^/]+}"

OPERATIONS = [
    Operation(
        method="GET",
        path=_BASE,
        handler=list_entries,
        operation_id="listPhonebook",
        summary="List phonebook entries",
        tag="phonebook",
        path_params=_T,
        query={
            **PAGE_QUERY,
            "name_contains": String(min_length=1, max_length=rules.PHONEBOOK_NAME_MAX),
        },
        responses={200: ENTRY_PAGE},
    ),
    Operation(
        method="POST",
        path=_BASE,
        handler=add_entry,
        operation_id="addPhonebookEntry",
        summary=f"Add a phonebook entry (at most {rules.MAX_PHONEBOOK_ENTRIES:,})",
        tag="phonebook",
        path_params=_T,
        body=ENTRY_INPUT,
        responses={201: ENTRY},
    ),
    Operation(
        method="PUT",
        path=_ENTRY,
        handler=put_entry,
        operation_id="replacePhonebookEntry",
        summary="Replace a phonebook entry",
        tag="phonebook",
        path_params=_E,
        body=ENTRY_INPUT,
        responses={200: ENTRY},
    ),
    Operation(
        method="DELETE",
        path=_ENTRY,
        handler=delete_entry,
        operation_id="deletePhonebookEntry",
        summary="Delete a phonebook entry",
        tag="phonebook",
        path_params=_E,
        responses={204: None},
    ),
    Operation(
        method="POST",
        path=_BASE + "/import",
        handler=import_csv,
        operation_id="importPhonebookCsv",
        summary="Import CSV rows (all-or-nothing; per-row errors in details.errors)",
        tag="phonebook",
        path_params=_T,
        query={"replace": Boolean(description="replace the whole phonebook")},
        raw_body={"text/csv": CsvText()},
        body_limit=CSV_LIMIT,
        responses={200: IMPORT_RESULT},
    ),
]

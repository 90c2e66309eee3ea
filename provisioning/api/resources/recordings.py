"""Call recordings of a tenant's numbers with the recording option (the customer page's
feature: tenant and operator tokens; devices have no API access).

    GET    /v1/tenants/{tenant_id}/recordings                  filters, cursor paging
    GET    /v1/tenants/{tenant_id}/recordings/{id}             one recording's metadata
    GET    /v1/tenants/{tenant_id}/recordings/{id}/audio       audio/wav, byte ranges
    DELETE /v1/tenants/{tenant_id}/recordings/{id}
    POST   /v1/tenants/{tenant_id}/recordings/archive          {"ids": [...]} | {"filter": {...}}
                                                               -> application/zip, streamed
    POST   /v1/tenants/{tenant_id}/recordings/delete           {"ids": [...]} | {"filter": {...}}

Filters (AND; the query of the list, the `filter` object of archive and delete): `since` /
`until` (RFC 3339 with an offset: the call's start in [since, until)), `number` (the tenant's
recorded number, any usual form), `direction` (`inbound` / `outbound`), `party` (the other
party: a Japanese number in any form, else exactly as received). A filter that cannot match by
construction (`since` not before `until`, a number that is not one) is 400 `invalid-filter`.

The audio is a two-channel WAV (8 kHz, 16-bit; caller left, callee right). One download
honours a single byte range (RFC 9110 §14) with the recording id as a strong ETag. The ZIP is
written while it is sent: one WAV at a time, read in `CHUNK` octets and written on at once
(stored, not deflated: PCM barely compresses), so memory stays at a chunk whatever the
archive's size; an `index.csv` of the recordings' metadata closes it, and a recording whose
file has gone is listed in `missing.txt` instead of failing the whole download.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, BinaryIO

from aiohttp import web

from provisioning import rules
from provisioning.errors import NotFound
from provisioning.model import normalize_number
from provisioning.records import RecordingInfo, RecordingQuery
from provisioning.services.base import invalid_filter
from provisioning.services.recordings import RecordingsRepo

from ..audio import Binary, byte_range
from ..common import (
    E164,
    ID_PATTERN,
    NULLABLE_TIMESTAMP,
    PAGE_QUERY,
    TENANT_ID,
    TIMESTAMP,
    instant_filter,
    iso,
    page_args,
    page_body,
    page_of,
)
from ..core import Ctx, Operation, PathParam, Reply
from ..errors import invalid_payload
from ..schema import Array, Enum, Integer, Nullable, Object, Ref, Schema, String
from ..schema import Number as Num

__all__ = ["API_RECORDINGS", "CHUNK", "OPERATIONS", "render_recording"]

log = logging.getLogger(__name__)

API_RECORDINGS = web.AppKey("api_recordings", RecordingsRepo)
WAV = "audio/wav"
ZIP = "application/zip"
CHUNK = 256 * 1024  # octets read from a recording file at a time
_DIRECTIONS = ("inbound", "outbound")

RECORDING_ID = PathParam(
    schema=String(pattern=ID_PATTERN), what="recording", description="recording id"
)
_FIELDS: dict[str, Schema] = {
    "id": String(),
    "number": E164,
    "direction": Enum(list(_DIRECTIONS)),
    "other_party": Nullable(
        String(any_text=True), description="the caller (inbound) or callee (outbound)"
    ),
    "device_id": Nullable(String(), description="the ID that answered (inbound) or called"),
    "call_id": String(any_text=True),
    "started_at": TIMESTAMP,
    "answered_at": NULLABLE_TIMESTAMP,
    "ended_at": TIMESTAMP,
    "duration": Num(minimum=0, description="seconds of audio in the file"),
    "size_bytes": Integer(minimum=0),
}
RECORDING = Ref("Recording", Object(_FIELDS, required=tuple(_FIELDS)))
RECORDING_PAGE = page_of("RecordingPage", RECORDING)
FILTERS: dict[str, Schema] = {
    "since": String(format="date-time", max_length=64, description="start >= (RFC 3339)"),
    "until": String(format="date-time", max_length=64, description="start < (RFC 3339)"),
    "number": String(min_length=1, max_length=rules.NUMBER_TEXT_MAX, description="our number"),
    "direction": Enum(list(_DIRECTIONS)),
    "party": String(min_length=1, max_length=64, any_text=True, description="the other party"),
}
FILTER = Ref("RecordingFilter", Object(FILTERS, min_properties=1))
SELECTION = Ref(
    "RecordingSelection",
    Object(
        {
            "ids": Array(
                String(pattern=ID_PATTERN), min_items=1, max_items=rules.RECORDING_IDS_MAX
            ),
            "filter": FILTER,
        },
        min_properties=1,
        extra={"maxProperties": 1},
        description="either ids or filter",
    ),
)
DELETED = Ref(
    "RecordingsDeleted",
    Object(
        {
            "deleted": Integer(minimum=0, description="how many recordings were deleted"),
            "not_found": Array(String(), description="ids that are not the tenant's"),
        },
        required=("deleted", "not_found"),
    ),
)
ARCHIVE = Binary(description="a ZIP of WAV files, index.csv (and missing.txt)")
INDEX_COLUMNS = (
    "file", "id", "number", "direction", "other_party", "device_id", "started_at",
    "answered_at", "ended_at", "duration", "size_bytes",
)  # fmt: skip


def render_recording(r: RecordingInfo) -> dict[str, Any]:
    return {
        "id": r.id,
        "number": r.number,
        "direction": r.direction,
        "other_party": r.other_party,
        "device_id": r.device_id,
        "call_id": r.call_id,
        "started_at": iso(r.started_at),
        "answered_at": iso(r.answered_at),
        "ended_at": iso(r.ended_at),
        "duration": round(r.duration, 3),
        "size_bytes": r.size_bytes,
    }


# --------------------------------------------------------------------------- filters
def party_key(text: str) -> str:
    """How the other party is stored and matched: E.164 when it is a Japanese number."""
    try:
        return normalize_number(text)
    except ValueError:
        return text


def recording_query(given: dict[str, Any]) -> RecordingQuery:
    since, until = (
        instant_filter("since", given.get("since")),
        instant_filter("until", given.get("until")),
    )
    if since is not None and until is not None and since >= until:
        raise invalid_filter("until", "must be after since")
    number = given.get("number")
    if number is not None:
        try:
            number = normalize_number(number)
        except ValueError:
            raise invalid_filter("number", "not a Japanese number") from None
    party = given.get("party")
    return RecordingQuery(
        since=since,
        until=until,
        number=number,
        direction=given.get("direction"),
        party=None if party is None else party_key(party),
    )


def _selection(body: dict[str, Any]) -> tuple[tuple[str, ...] | None, RecordingQuery | None]:
    if len(body) != 1:
        raise invalid_payload("", "give either ids or filter, not both")
    if "ids" in body:
        return tuple(body["ids"]), None
    return None, recording_query(body["filter"])


# --------------------------------------------------------------------------- handlers
def _repo(ctx: Ctx) -> RecordingsRepo:
    return ctx.request.app[API_RECORDINGS]


def _one(ctx: Ctx) -> tuple[Any, str, str]:
    return ctx.principal, ctx.path["tenant_id"], ctx.path["recording_id"]


async def list_recordings(ctx: Ctx) -> Reply:
    query = recording_query(ctx.query)
    found = await _repo(ctx).page(
        ctx.principal, ctx.path["tenant_id"], query, **page_args(ctx.query)
    )
    return Reply(200, page_body(found, render_recording))


async def get_recording(ctx: Ctx) -> Reply:
    return Reply(200, render_recording(await _repo(ctx).get(*_one(ctx))))


async def delete_recording(ctx: Ctx) -> Reply:
    await _repo(ctx).delete(*_one(ctx))
    return Reply(204)


async def delete_recordings(ctx: Ctx) -> Reply:
    ids, query = _selection(ctx.body)
    repo, tenant_id = _repo(ctx), ctx.path["tenant_id"]
    if ids is not None:
        gone, missing = await repo.delete_ids(ctx.principal, tenant_id, ids)
        return Reply(200, {"deleted": len(gone), "not_found": missing})
    assert query is not None
    count = await repo.delete_matching(ctx.principal, tenant_id, query)
    return Reply(200, {"deleted": count, "not_found": []})


def file_missing(recording_id: str) -> NotFound:
    err = NotFound("recording audio", recording_id)
    err.error_id = "recording-file-missing"
    return err


async def get_audio(ctx: Ctx) -> web.StreamResponse:
    """The WAV, streamed from the recordings store; one byte range when asked."""
    repo = _repo(ctx)
    info = await repo.get(*_one(ctx))
    try:
        size = await asyncio.to_thread(repo.files.size, info.path)
    except OSError:
        raise file_missing(info.id) from None
    etag = f'"{info.id}"'
    if_range = ctx.request.headers.get("If-Range")
    wanted = ctx.request.headers.get("Range") if if_range in (None, etag) else None
    span = byte_range(wanted, size)
    first, last = span if span is not None else (0, size - 1)
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Content-Disposition": f'attachment; filename="{info.id}.wav"',
    }
    if span is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    try:
        handle = await asyncio.to_thread(repo.files.open, info.path)
    except OSError:
        raise file_missing(info.id) from None
    resp = web.StreamResponse(status=206 if span is not None else 200, headers=headers)
    resp.content_type = WAV
    resp.content_length = max(0, last - first + 1)
    try:
        await resp.prepare(ctx.request)
        await _copy(handle, resp, first, last - first + 1)
    finally:
        await asyncio.to_thread(handle.close)
    await resp.write_eof()
    return resp


async def _copy(handle: BinaryIO, resp: web.StreamResponse, offset: int, length: int) -> None:
    if offset:
        await asyncio.to_thread(handle.seek, offset)
    while length > 0:
        chunk = await asyncio.to_thread(handle.read, min(CHUNK, length))
        if not chunk:
            raise OSError("the recording file is shorter than it was")
        length -= len(chunk)
        await resp.write(chunk)


async def archive(ctx: Ctx) -> web.StreamResponse:
    """A ZIP of the selected recordings, streamed (see the module docstring). The selection
    is checked (count limit, tenant) before the answer starts, so refusals are clean JSON."""
    ids, query = _selection(ctx.body)
    repo, tenant_id = _repo(ctx), ctx.path["tenant_id"]
    count, rows = await repo.archive(ctx.principal, tenant_id, ids=ids, query=query)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    resp = web.StreamResponse(
        headers={
            "Content-Disposition": f'attachment; filename="recordings-{tenant_id}-{stamp}.zip"',
            "X-Recordings": str(count),
        }
    )
    resp.content_type = ZIP
    await resp.prepare(ctx.request)
    try:
        await ZipStream(repo, resp).write(rows)
    except (OSError, ConnectionError) as exc:  # the client went away, or the disk failed
        log.warning("recordings archive for %s cut short: %s", tenant_id, exc)
        return resp
    await resp.write_eof()
    return resp


class _Pipe:
    """What `zipfile` writes into: chunks kept until the stream takes them (it never seeks:
    `zipfile` then writes data descriptors after each entry)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self.buffered = 0

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        self.buffered += len(data)
        return len(data)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None

    def take(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        self.buffered = 0
        return out


class ZipStream:
    """Writes recordings into a ZIP on `resp` one chunk at a time (module docstring).
    `peak` is the most octets ever buffered between `zipfile` and the socket."""

    def __init__(self, repo: RecordingsRepo, resp: web.StreamResponse) -> None:
        self.repo = repo
        self.resp = resp
        self.pipe = _Pipe()
        self.zip = zipfile.ZipFile(self.pipe, "w", compression=zipfile.ZIP_STORED)
        self.peak = 0
        self.index: list[list[str]] = []
        self.missing: list[str] = []

    async def write(self, rows: AsyncIterator[RecordingInfo]) -> None:
        async for info in rows:
            await self._entry(info)
        self._text("index.csv", _index_csv(self.index))
        if self.missing:
            self._text("missing.txt", "".join(f"{m}\n" for m in self.missing))
        self.zip.close()
        await self._send()

    async def _entry(self, info: RecordingInfo) -> None:
        files = self.repo.files
        try:
            size = await asyncio.to_thread(files.size, info.path)
            handle = await asyncio.to_thread(files.open, info.path)
        except OSError:
            self.missing.append(info.id)
            return
        name = _file_name(info)
        entry = zipfile.ZipInfo(name, date_time=_zip_time(info.started_at))
        entry.compress_type = zipfile.ZIP_STORED
        entry.file_size = size
        try:
            with self.zip.open(entry, "w") as out:
                while chunk := await asyncio.to_thread(handle.read, CHUNK):
                    out.write(chunk)
                    await self._send()
        finally:
            await asyncio.to_thread(handle.close)
        self.index.append([name, *_index_row(info)])
        await self._send()

    def _text(self, name: str, text: str) -> None:
        entry = zipfile.ZipInfo(name, date_time=_zip_time(datetime.now(UTC)))
        self.zip.writestr(entry, text.encode("utf-8"))

    async def _send(self) -> None:
        self.peak = max(self.peak, self.pipe.buffered)
        data = self.pipe.take()
        if data:
            await self.resp.write(data)


def _file_name(info: RecordingInfo) -> str:
    when = info.started_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    party = "".join(c for c in (info.other_party or "anonymous") if c.isalnum() or c in "+-")
    return f"{when}_{info.direction}_{party[:32] or 'unknown'}_{info.id}.wav"


def _zip_time(value: datetime) -> tuple[int, int, int, int, int, int]:
    t = value.astimezone(UTC)
    return (max(t.year, 1980), t.month, t.day, t.hour, t.minute, t.second)


def _index_row(info: RecordingInfo) -> list[str]:
    doc = render_recording(info)
    return [str(doc[c]) if doc[c] is not None else "" for c in INDEX_COLUMNS[1:]]


def _index_csv(rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(INDEX_COLUMNS)
    for row in rows:
        writer.writerow([_cell(c) for c in row])
    return out.getvalue()


def _cell(text: str) -> str:
    """A cell no spreadsheet runs as a formula (CWE-1236); numbers (+81…) left intact."""
    if text[:1] in ("=", "@", "\t", "\r") or (text[:1] in "+-" and not text[1:].isdigit()):
        return "'" + text
    return text


# --------------------------------------------------------------------------- routes
BASE = "/tenants/{tenant_id}/recordings"
ONE = BASE + "/{recording_id:(?!archive$|delete$)[^/]+}"
_T = {"tenant_id": TENANT_ID}
_R = {"tenant_id": TENANT_ID, "recording_id": RECORDING_ID}
_TAG = "recordings"

OPERATIONS = [
    Operation(
        method="GET",
        path=BASE,
        handler=list_recordings,
        operation_id="listCallRecordings",
        summary="List the tenant's call recordings, newest first",
        tag=_TAG,
        path_params=_T,
        query={**FILTERS, **PAGE_QUERY},
        responses={200: RECORDING_PAGE},
    ),
    Operation(
        method="POST",
        path=BASE + "/archive",
        handler=archive,
        operation_id="downloadCallRecordings",
        summary="Download several recordings as one ZIP (by ids or by filter), streamed",
        description=(
            f"At most {rules.RECORDING_ARCHIVE_MAX} recordings (400 too-many-recordings). "
            "The ZIP holds one WAV per recording (stored), index.csv with their metadata, and "
            "missing.txt listing recordings whose audio has gone."
        ),
        tag=_TAG,
        path_params=_T,
        body=SELECTION,
        responses={200: ARCHIVE},
        response_media=ZIP,
    ),
    Operation(
        method="POST",
        path=BASE + "/delete",
        handler=delete_recordings,
        operation_id="deleteCallRecordings",
        summary="Delete several recordings (by ids or by filter)",
        tag=_TAG,
        path_params=_T,
        body=SELECTION,
        responses={200: DELETED},
    ),
    Operation(
        method="GET",
        path=ONE,
        handler=get_recording,
        operation_id="getCallRecording",
        summary="Get a recording's metadata",
        tag=_TAG,
        path_params=_R,
        responses={200: RECORDING},
    ),
    Operation(
        method="DELETE",
        path=ONE,
        handler=delete_recording,
        operation_id="deleteCallRecording",
        summary="Delete a recording",
        tag=_TAG,
        path_params=_R,
        responses={204: None},
    ),
    Operation(
        method="GET",
        path=ONE + "/audio",
        handler=get_audio,
        operation_id="getCallRecordingAudio",
        summary="Download a recording as audio/wav (8 kHz, 16-bit, stereo: caller left)",
        description=(
            "A single byte range (Range: bytes=first-last) answers 206 with Content-Range; "
            "a range starting past the end answers 416 range-not-satisfiable; audio that has "
            "gone from the store answers 404 recording-file-missing."
        ),
        tag=_TAG,
        path_params=_R,
        responses={200: Binary(), 206: Binary()},
        response_media=WAV,
        errors=(416,),
    ),
]

"""The voicemail messages API, on SQLite and on PostgreSQL: messages are deposited through
`VoicemailRepo.save` (the media service's entry point), then listed, downloaded, marked and
deleted over HTTP with the tenant's own token. Every refusal changes nothing."""

from __future__ import annotations

import io
import wave
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from provisioning.api import API_VOICEMAIL, mount_api
from provisioning.records import NewMessage
from provisioning.rules import VOICEMAIL_DELETE_MAX
from provisioning.services import Principal, Services
from provisioning.services.voicemail import VoicemailRepo

from .conftest import BOTH_BACKENDS, Api, nq

pytestmark = pytest.mark.parametrize("backend", BOTH_BACKENDS, indirect=True)

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def pcm_of(seconds: float, seed: int) -> bytes:
    """Distinct, non-silent 16-bit samples (so a swapped message would be noticed)."""
    n = int(seconds * 8000)
    return b"".join(
        ((i * 37 + seed * 101) % 20000 - 10000).to_bytes(2, "little", signed=True) for i in range(n)
    )


def repo(api: Api) -> VoicemailRepo:
    return api.app[API_VOICEMAIL]


async def deposit(
    api: Api, tenant: str, number: str, *, minutes: int, caller: str | None = "09011112222"
) -> tuple[str, bytes]:
    pcm = pcm_of(1.5, minutes)
    mid = await repo(api).save(
        NewMessage(
            tenant_id=tenant,
            mailbox=number,
            caller=caller,
            dialled=number,
            received_at=T0 + timedelta(minutes=minutes),
            pcm=pcm,
        ),
        limit=15,
    )
    assert mid is not None
    return mid, pcm


async def with_voicemail(api: Api, tenant: str, ids: int = 1) -> tuple[str, str]:
    """The tenant, its contract number (E.164) with the voicemail option, and its token."""
    await api.tenant(tenant, ids=ids)
    number = await api.contract_number(tenant)
    r = await api.patch(f"/v1/tenants/{tenant}/numbers/{nq(number)}/options", {"voicemail": True})
    assert r.status == 200, r.body
    return number, await api.token_for(tenant)


def box_path(tenant: str, number: str) -> str:
    return f"/v1/tenants/{tenant}/numbers/{nq(number)}/voicemail/messages"


async def snapshot(api: Api, tenant: str, number: str) -> Any:
    """The mailbox as the operator sees it, with every message's audio."""
    r = await api.get(box_path(tenant, number))
    assert r.status == 200, r.body
    audio = [await repo(api).audio(tenant, m["id"]) for m in r.body["items"]]
    return r.body, audio


async def download(api: Api, path: str, token: str, **headers: str) -> Any:
    resp = await api.client.get(path, headers={"Authorization": f"Bearer {token}", **headers})
    return resp, await resp.read()


async def test_list_get_download_mark_delete(api: Api) -> None:
    number, token = await with_voicemail(api, "acme")
    old, _ = await deposit(api, "acme", number, minutes=1, caller=None)
    new, pcm = await deposit(api, "acme", number, minutes=5, caller="anonymous")
    national = "0" + number.removeprefix("+81")
    for form in (nq(number), national):  # E.164 or national, like every number path
        r = await api.get(f"/v1/tenants/acme/numbers/{form}/voicemail/messages", token=token)
        assert r.status == 200, r.body
        assert [m["id"] for m in r.body["items"]] == [new, old]  # newest first
    first = r.body["items"][0]
    assert first == {
        "id": new,
        "mailbox": number,
        "caller": "anonymous",
        "dialled": number,
        "received_at": (T0 + timedelta(minutes=5)).isoformat(),
        "duration": 1.5,
        "heard": False,
    }
    assert r.body["items"][1]["caller"] is None
    one = await api.get(f"{box_path('acme', number)}/{new}", token=token)
    assert (one.status, one.body) == (200, first)

    resp, wav = await download(api, f"{box_path('acme', number)}/{new}/audio", token)
    assert resp.status == 200 and resp.content_type == "audio/wav"
    assert resp.headers["Accept-Ranges"] == "bytes"
    with wave.open(io.BytesIO(wav)) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (8000, 2, 1)
        assert w.readframes(w.getnframes()) == pcm
    assert len(wav) == 44 + len(pcm)

    marked = await api.patch(f"{box_path('acme', number)}/{new}", {"heard": True}, token=token)
    assert (marked.status, marked.body) == (200, {**first, "heard": True})
    unheard = await api.get(box_path("acme", number) + "?heard=false", token=token)
    assert [m["id"] for m in unheard.body["items"]] == [old]
    heard = await api.get(box_path("acme", number) + "?heard=true", token=token)
    assert [m["id"] for m in heard.body["items"]] == [new]
    back = await api.patch(f"{box_path('acme', number)}/{new}", {"heard": False}, token=token)
    assert back.body["heard"] is False

    gone = await api.delete(f"{box_path('acme', number)}/{new}", token=token)
    assert gone.status == 204
    assert await repo(api).audio("acme", new) is None
    again = await api.delete(f"{box_path('acme', number)}/{new}", token=token)
    assert (again.status, again.error_id) == (404, "not-found")
    left = await api.get(box_path("acme", number), token=token)
    assert [m["id"] for m in left.body["items"]] == [old]


async def test_byte_ranges_of_the_audio(api: Api) -> None:
    number, token = await with_voicemail(api, "acme")
    mid, pcm = await deposit(api, "acme", number, minutes=1)
    path = f"{box_path('acme', number)}/{mid}/audio"
    _, whole = await download(api, path, token)
    size = len(whole)
    resp, part = await download(api, path, token, Range="bytes=0-43")
    assert resp.status == 206 and part == whole[:44] and part[:4] == b"RIFF"
    assert resp.headers["Content-Range"] == f"bytes 0-43/{size}"
    resp, part = await download(api, path, token, Range="bytes=-100")
    assert resp.status == 206 and part == pcm[-100:]
    resp, part = await download(api, path, token, Range=f"bytes=100-{size + 50}")
    assert resp.status == 206 and part == whole[100:]
    assert resp.headers["Content-Range"] == f"bytes 100-{size - 1}/{size}"
    resp, body = await download(api, path, token, Range=f"bytes={size}-")
    assert resp.status == 416 and resp.headers["Content-Range"] == f"bytes */{size}"
    assert b"range-not-satisfiable" in body
    for ignored in ("bytes=5-1", "items=0-1", "bytes=0-1,5-9", "garbage"):
        resp, body = await download(api, path, token, Range=ignored)
        assert (resp.status, body) == (200, whole), ignored
    etag = resp.headers["ETag"]
    resp, part = await download(api, path, token, Range="bytes=0-3", **{"If-Range": etag})
    assert (resp.status, part) == (206, b"RIFF")
    resp, body = await download(api, path, token, Range="bytes=0-3", **{"If-Range": '"other"'})
    assert (resp.status, body) == (200, whole)


async def test_another_tenant_gets_404_for_everything(api: Api) -> None:
    number, _ = await with_voicemail(api, "acme")
    mid, _ = await deposit(api, "acme", number, minutes=1)
    _, intruder = await with_voicemail(api, "evil")
    before = await snapshot(api, "acme", number)
    base = box_path("acme", number)
    own_tenant_base = box_path("evil", number)  # its own tenant, acme's number
    for b in (base, own_tenant_base):
        calls = [
            api.get(b, token=intruder),
            api.get(f"{b}/{mid}", token=intruder),
            api.get(f"{b}/{mid}/audio", token=intruder),
            api.patch(f"{b}/{mid}", {"heard": True}, token=intruder),
            api.delete(f"{b}/{mid}", token=intruder),
            api.post(f"{b}/delete", {"ids": [mid]}, token=intruder),
        ]
        for call in calls:
            r = await call
            assert (r.status, r.error_id) == (404, "not-found"), r.body
    assert await snapshot(api, "acme", number) == before


async def test_delete_many_with_mixed_ids(api: Api) -> None:
    number, token = await with_voicemail(api, "acme", ids=2)
    other = api.number()
    added = await api.post("/v1/tenants/acme/numbers", {"number": other})
    assert added.status == 201, added.body
    other = added.body["number"]
    await api.patch(f"/v1/tenants/acme/numbers/{nq(other)}/options", {"voicemail": True})
    mine = [(await deposit(api, "acme", number, minutes=m))[0] for m in (1, 2, 3)]
    other_box, _ = await deposit(api, "acme", other, minutes=4)
    evil_number, _ = await with_voicemail(api, "evil")
    evil_msg, _ = await deposit(api, "evil", evil_number, minutes=5)
    other_before = await snapshot(api, "acme", other)
    evil_before = await snapshot(api, "evil", evil_number)

    ids = [mine[0], other_box, "vm_0000000000000000", evil_msg, mine[2], mine[0]]
    r = await api.post(f"{box_path('acme', number)}/delete", {"ids": ids}, token=token)
    assert r.status == 200, r.body
    assert [m["id"] for m in r.body["deleted"]] == [mine[0], mine[2]]
    assert r.body["deleted"][0]["mailbox"] == number
    assert r.body["not_found"] == [other_box, "vm_0000000000000000", evil_msg]
    left = await api.get(box_path("acme", number), token=token)
    assert [m["id"] for m in left.body["items"]] == [mine[1]]
    assert await snapshot(api, "acme", other) == other_before
    assert await snapshot(api, "evil", evil_number) == evil_before

    again = await api.post(f"{box_path('acme', number)}/delete", {"ids": [mine[0]]}, token=token)
    assert again.body == {"deleted": [], "not_found": [mine[0]]}


async def test_refusals_change_nothing(api: Api) -> None:
    number, token = await with_voicemail(api, "acme", ids=2)
    mid, _ = await deposit(api, "acme", number, minutes=1)
    plain = (await api.post("/v1/tenants/acme/numbers", {"number": api.number()})).body["number"]
    before = await snapshot(api, "acme", number)
    base = box_path("acme", number)
    cases: list[tuple[Any, int, str]] = [
        (api.get(box_path("acme", plain), token=token), 409, "option-required"),
        (api.get(f"{base}/vm_0000000000000000", token=token), 404, "not-found"),
        (api.get(f"{base}/bad..id/audio", token=token), 404, "not-found"),
        (api.get("/v1/tenants/acme/numbers/0399999999/voicemail/messages"), 404, "not-found"),
        (api.get("/v1/tenants/acme/numbers/not-a-number/voicemail/messages"), 404, "not-found"),
        (api.get(base + "?heard=maybe", token=token), 400, "invalid-query"),
        (api.patch(f"{base}/{mid}", {}, token=token), 422, "invalid-payload"),
        (api.patch(f"{base}/{mid}", {"heard": "yes"}, token=token), 422, "invalid-payload"),
        (api.patch(f"{base}/{mid}", {"heard": True, "x": 1}, token=token), 422, "invalid-payload"),
        (api.post(f"{base}/delete", {"ids": []}, token=token), 422, "invalid-payload"),
        (api.post(f"{base}/delete", {"ids": [mid, "../x"]}, token=token), 422, "invalid-payload"),
        (
            api.post(f"{base}/delete", {"ids": [mid] * (VOICEMAIL_DELETE_MAX + 1)}, token=token),
            422,
            "invalid-payload",
        ),
        (api.post(f"{base}/{mid}", {"heard": True}, token=token), 405, "method-not-allowed"),
        (api.delete(base, token=token), 405, "method-not-allowed"),
    ]
    for call, status, error_id in cases:
        r = await call
        assert (r.status, r.error_id) == (status, error_id), r.body
    # the option dropped: the messages stay (until retention) but the API refuses the number
    await api.patch(f"/v1/tenants/acme/numbers/{nq(number)}/options", {"voicemail": False})
    for call in (
        api.get(base, token=token),
        api.patch(f"{base}/{mid}", {"heard": True}, token=token),
        api.delete(f"{base}/{mid}", token=token),
        api.post(f"{base}/delete", {"ids": [mid]}, token=token),
    ):
        r = await call
        assert (r.status, r.error_id) == (409, "option-required"), r.body
    await api.patch(f"/v1/tenants/acme/numbers/{nq(number)}/options", {"voicemail": True})
    assert await snapshot(api, "acme", number) == before


async def test_api_changes_reach_the_injected_repositorys_listeners(
    service: Services, aiohttp_client: Any
) -> None:
    """switch/node.py passes its own repository, whose listeners drive MWI: marking and
    deleting through the API must be heard there."""
    node_repo = VoicemailRepo(service.store)
    heard: list[tuple[str, str]] = []
    node_repo.on_change(lambda tenant, box: heard.append((tenant, box)))
    root = web.Application()
    api_app = mount_api(root, service, registry=CollectorRegistry(), voicemail=node_repo)
    assert api_app[API_VOICEMAIL] is node_repo
    client = await aiohttp_client(root)
    op = await service.tokens.create_token(Principal.operator(), scope="operator")
    api = Api(client, service, op.token, api_app, CollectorRegistry())
    number, token = await with_voicemail(api, "acme")
    mid, _ = await deposit(api, "acme", number, minutes=1)
    assert heard == [("acme", number)]
    await api.patch(f"{box_path('acme', number)}/{mid}", {"heard": True}, token=token)
    await api.delete(f"{box_path('acme', number)}/{mid}", token=token)
    assert heard == [("acme", number)] * 3

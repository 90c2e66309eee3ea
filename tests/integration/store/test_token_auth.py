"""Bearer token checks on both backends: the secret is hashed before the lookup and compared
with `hmac.compare_digest` against the stored digest, or against a dummy one when the id is
unknown, so both paths do the same work; a token that cannot be ours (not printable ASCII,
too long) is refused before any lookup, never with an exception."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from provisioning.errors import Forbidden, Unauthenticated
from provisioning.services import Principal, Services, TenantUpdate
from provisioning.services import tokens as token_module

from .conftest import BACKENDS, OP, make_tenant


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def comparisons(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    seen: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def compare(a: Any, b: Any) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(token_module.hmac, "compare_digest", compare)
    return seen


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def test_unknown_id_and_wrong_secret_do_the_same_work(
    svc: Services, comparisons: list[tuple[Any, Any]]
) -> None:
    created = await svc.tokens.create_token(OP, scope="operator")
    token_id, secret = created.token.split(".", 1)
    with pytest.raises(Unauthenticated):
        await svc.tokens.authenticate("tok_0000000000000000.guess")
    with pytest.raises(Unauthenticated):
        await svc.tokens.authenticate(f"{token_id}.guess")
    principal = await svc.tokens.authenticate(created.token)
    assert principal == Principal(scope="operator", token_id=token_id)
    # one constant-time comparison each, of two SHA-256 hex digests
    assert [b for _, b in comparisons] == [sha("guess"), sha("guess"), sha(secret)]
    assert all(len(a) == len(b) == 64 for a, b in comparisons)
    assert comparisons[1][0] == comparisons[2][0] == sha(secret)  # the stored digest
    assert comparisons[0][0] != sha(secret)  # a dummy for the unknown id


@pytest.mark.parametrize(
    "token",
    [
        "tok_0000000000000000.\udcff",  # a header byte that is not UTF-8 (surrogateescape)
        "tok_0000000000000000.caf\u00e9",
        "tok_0000000000000000.a\x00b",
        "tok_0000000000000000." + "a" * 300,
        "tok_0000000000000000.",
        "nottok.abc",
        "",
    ],
)
async def test_tokens_that_cannot_be_ours_are_401(
    svc: Services, comparisons: list[tuple[Any, Any]], token: str
) -> None:
    with pytest.raises(Unauthenticated):
        await svc.tokens.authenticate(token)
    assert comparisons == []


async def test_suspension_is_checked_after_the_secret(svc: Services) -> None:
    tid, _, _ = await make_tenant(svc)
    created = await svc.tokens.create_token(OP, scope="tenant", tenant_id=tid)
    await svc.tenants.update_tenant(OP, tid, TenantUpdate(status="suspended"))  # type: ignore[arg-type]
    with pytest.raises(Forbidden) as refused:
        await svc.tokens.authenticate(created.token)
    assert refused.value.error_id == "tenant-suspended"
    assert refused.value.details == {"tenant_id": tid}
    with pytest.raises(Unauthenticated):
        await svc.tokens.authenticate(created.token.split(".")[0] + ".wrong")

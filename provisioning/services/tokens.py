"""API tokens: authentication and the tokens' life cycle (the `tokens` API resource).

A token is `<id>.<secret>`; only the SHA-256 of the secret is stored, and the plaintext is
returned once, at creation. Operator tokens are the operator's; a tenant principal may
create and revoke tokens of its own tenant (e.g. one per staff member).

Authentication is the split-token (selector/verifier) scheme: the id, which is not secret
(token lists show it), selects the row; the secret is verified by comparing SHA-256 digests
with `hmac.compare_digest`. The secret is hashed before the lookup and an unknown id is
compared against a dummy digest, so a request does the same work whether the id exists or
not, and the comparison time does not depend on how much of the secret is right.

A tenant token works only while its tenant is active: with the tenant suspended every request
is refused with 403 `tenant-suspended` (the operator's tokens keep working, so the operator
can still look at, change or reactivate the tenant).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from ..errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from ..model import TenantStatus
from ..records import Scope, TokenInfo
from ..store.audit import note_tenant
from ..store.base import utcnow_text
from ..store.queries import tokens
from ..store.queries.sql import ts
from .base import Principal, StoreService, require_tenant

__all__ = ["CreatedToken", "TokenService"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CreatedToken:
    """`token` is the plaintext, shown once: only its SHA-256 is stored."""

    info: TokenInfo
    token: str


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


_TOKEN_MAX = 200  # ours are ~60 characters
_NO_SUCH_TOKEN = _sha256("no such token")  # compared against when the id is unknown


def _split(token: str) -> tuple[str, str]:
    """(id, secret) of a well-formed token; `Unauthenticated` otherwise (a token is printable
    ASCII: anything else cannot be ours, and would not even hash)."""
    text = (token or "").strip()
    token_id, _, secret = text.partition(".")
    well_formed = text.isascii() and text.isprintable() and len(text) <= _TOKEN_MAX
    if not well_formed or not token_id.startswith("tok_") or not secret:
        raise Unauthenticated()
    return token_id, secret


class TokenService(StoreService):
    __slots__ = ()

    async def authenticate(self, token: str) -> Principal:
        """The principal of a bearer token; `Unauthenticated` (401 `invalid-token`) if the
        token is malformed, unknown or revoked, `Forbidden` (403 `tenant-suspended`) if it is
        a token of a suspended tenant."""
        token_id, secret = _split(token)
        digest = _sha256(secret)
        async with self.store.read() as tx:
            found = await tokens.get_token_for_auth(tx, token_id)
        stored = _NO_SUCH_TOKEN if found is None else found[1]
        if not hmac.compare_digest(stored, digest) or found is None:
            raise Unauthenticated()
        info, _, tenant_status = found
        if tenant_status == TenantStatus.SUSPENDED.value:
            raise Forbidden(
                "tenant-suspended",
                "the tenant of this token is suspended; its tokens work again once the"
                " operator reactivates it",
                {"tenant_id": info.tenant_id},
            )
        return Principal(scope=info.scope, tenant_id=info.tenant_id, token_id=token_id)

    async def create_token(
        self,
        principal: Principal,
        *,
        scope: Scope,
        tenant_id: str | None = None,
        label: str | None = None,
    ) -> CreatedToken:
        """A new API token (plaintext returned once). Operator tokens: operator only. Tenant
        tokens need `tenant_id`; a tenant principal may create tokens for itself."""
        if scope == "operator":
            principal.require_operator()
            tenant_id = None
        elif scope == "tenant" and tenant_id:
            principal.require_tenant(tenant_id)
        else:
            raise InvalidInput(
                "invalid-input", "scope is operator, or tenant with a tenant_id", {"field": "scope"}
            )
        token_id, secret = "tok_" + secrets.token_hex(8), secrets.token_urlsafe(32)
        info = TokenInfo(
            id=token_id, scope=scope, tenant_id=tenant_id, label=label, created_at=ts(utcnow_text())
        )
        async with self.store.write() as tx:
            if tenant_id is not None:
                await require_tenant(tx, tenant_id)
                note_tenant(tenant_id)  # the audit entry names the token's tenant
            await tokens.insert_token(tx, info, _sha256(secret))
        return CreatedToken(info=info, token=f"{token_id}.{secret}")

    async def list_tokens(
        self, principal: Principal, tenant_id: str | None = None
    ) -> list[TokenInfo]:
        """Operator: all tokens (or one tenant's); tenant: its own tokens."""
        if not principal.is_operator:
            tenant_id = principal.tenant_id
        async with self.store.read() as tx:
            return await tokens.list_tokens(tx, tenant_id)

    async def revoke_token(self, principal: Principal, token_id: str) -> None:
        async with self.store.write() as tx:
            found = await tokens.get_token(tx, token_id)
            if found is None:
                raise NotFound("token", token_id)
            info = found[0]
            if info.scope == "operator":
                principal.require_operator()
            else:
                principal.require_tenant(info.tenant_id or "")
                note_tenant(info.tenant_id or "")
            await tokens.delete_token(tx, token_id)

"""API tokens: authentication and the tokens' life cycle (the `tokens` API resource).

A token is `<id>.<secret>`; only the SHA-256 of the secret is stored, and the plaintext is
returned once, at creation. Operator tokens are the operator's; a tenant principal may
create and revoke tokens of its own tenant (e.g. one per staff member).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from ..errors import InvalidInput, NotFound, Unauthenticated
from ..records import Scope, TokenInfo
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


class TokenService(StoreService):
    __slots__ = ()

    async def authenticate(self, token: str) -> Principal:
        """The principal of a bearer token; `Unauthenticated` (401 `invalid-token`) if the
        token is malformed, unknown or revoked."""
        token_id, _, secret = (token or "").strip().partition(".")
        if not token_id.startswith("tok_") or not secret:
            raise Unauthenticated()
        async with self.store.read() as tx:
            found = await tokens.get_token(tx, token_id)
        if found is None or not hmac.compare_digest(found[1], _sha256(secret)):
            raise Unauthenticated()
        info = found[0]
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
            await tokens.delete_token(tx, token_id)

"""API tokens and the SIP realm.

Tokens: the operator creates operator and tenant tokens; a tenant token may create more
tokens for its own tenant (e.g. one per staff member) and revoke them. The plaintext token
is in the creation answer only; the store keeps its SHA-256.

The realm is the SIP digest realm every HA1 is computed with; it can change only while no
device exists (`realm-locked`).
"""

from __future__ import annotations

from typing import Any

from provisioning import rules
from provisioning.records import TokenInfo

from ..common import ID_PATTERN, TIMESTAMP, TOKEN_ID, ident
from ..core import Ctx, Operation, Reply
from ..schema import Array, Enum, Nullable, Object, Ref, String

SCOPE = Enum(["operator", "tenant"])
TOKEN_FIELDS = {
    "id": String(),
    "scope": SCOPE,
    "tenant_id": Nullable(String()),
    "label": Nullable(String()),
    "created_at": TIMESTAMP,
}
_REQUIRED = ("id", "scope", "tenant_id", "label", "created_at")
TOKEN = Ref("Token", Object(TOKEN_FIELDS, required=_REQUIRED))
TOKEN_LIST = Ref("TokenList", Object({"items": Array(TOKEN)}, required=("items",)))
CREATED_TOKEN = Ref(
    "CreatedToken",
    Object(
        {**TOKEN_FIELDS, "token": String(description="shown once")}, required=(*_REQUIRED, "token")
    ),
)
TOKEN_CREATE = Object(
    {
        "scope": SCOPE,
        "tenant_id": ident("required with scope tenant"),
        "label": String(min_length=1, max_length=rules.TOKEN_LABEL_MAX),
    },
    required=("scope",),
)
REALM = Ref(
    "Realm",
    Object(
        {"realm": String(min_length=1, max_length=rules.REALM_MAX, pattern=r"[A-Za-z0-9.\-]+")},
        required=("realm",),
    ),
)


def render_token(t: TokenInfo) -> dict[str, Any]:
    return {
        "id": t.id,
        "scope": t.scope,
        "tenant_id": t.tenant_id,
        "label": t.label,
        "created_at": t.created_at.isoformat(),
    }


async def create_token(ctx: Ctx) -> Reply:
    b = ctx.body
    created = await ctx.services.tokens.create_token(
        ctx.principal, scope=b["scope"], tenant_id=b.get("tenant_id"), label=b.get("label")
    )
    return Reply(201, {**render_token(created.info), "token": created.token})


async def list_tokens(ctx: Ctx) -> Reply:
    tokens = await ctx.services.tokens.list_tokens(ctx.principal, ctx.query.get("tenant_id"))
    return Reply(200, {"items": [render_token(t) for t in tokens]})


async def revoke_token(ctx: Ctx) -> Reply:
    await ctx.services.tokens.revoke_token(ctx.principal, ctx.path["token_id"])
    return Reply(204)


async def get_realm(ctx: Ctx) -> Reply:
    return Reply(200, {"realm": await ctx.services.realm.realm()})


async def set_realm(ctx: Ctx) -> Reply:
    await ctx.services.realm.set_realm(ctx.principal, ctx.body["realm"])
    return Reply(200, {"realm": await ctx.services.realm.realm()})


OPERATIONS = [
    Operation(
        method="POST",
        path="/tokens",
        handler=create_token,
        operation_id="createToken",
        summary="Create an API token (the plaintext is in this answer only)",
        tag="tokens",
        body=TOKEN_CREATE,
        responses={201: CREATED_TOKEN},
    ),
    Operation(
        method="GET",
        path="/tokens",
        handler=list_tokens,
        operation_id="listTokens",
        summary="List API tokens (a tenant token sees its tenant's)",
        tag="tokens",
        query={"tenant_id": String(pattern=ID_PATTERN)},
        responses={200: TOKEN_LIST},
    ),
    Operation(
        method="DELETE",
        path="/tokens/{token_id}",
        handler=revoke_token,
        operation_id="revokeToken",
        summary="Revoke an API token",
        tag="tokens",
        path_params={"token_id": TOKEN_ID},
        responses={204: None},
    ),
    Operation(
        method="GET",
        path="/realm",
        handler=get_realm,
        operation_id="getRealm",
        summary="The SIP digest realm",
        tag="realm",
        responses={200: REALM},
    ),
    Operation(
        method="PUT",
        path="/realm",
        handler=set_realm,
        operation_id="setRealm",
        summary="Set the SIP digest realm (operator; only while no device exists)",
        tag="realm",
        body=REALM,
        responses={200: REALM},
        operator_only=True,
    ),
]

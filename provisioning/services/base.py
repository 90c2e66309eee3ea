"""What every provisioning service shares: the caller (`Principal`), patch semantics
(`UNSET`), keyset pages and their opaque cursors, new ids, and loading a tenant's state.

No SQL here or in any service module: every statement is in `provisioning.store.queries`.
"""

from __future__ import annotations

import base64
import enum
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..errors import Forbidden, InvalidInput, NotFound
from ..model import Device, Number, NumberKind, normalize_number
from ..records import Scope
from ..rules import PAGE_MAX
from ..store.base import Store, Tx
from ..store.queries import state, tenants
from ..store.queries.state import TenantState

__all__ = [
    "UNSET",
    "Page",
    "Principal",
    "StoreService",
    "TenantState",
    "Unset",
    "contract_number",
    "decode_cursor",
    "encode_cursor",
    "find_device",
    "find_number",
    "new_id",
    "page_limit",
    "page_of",
    "require_tenant",
    "tenant_state",
]

T = TypeVar("T")


class Unset(enum.Enum):
    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET = Unset.UNSET
"""Default of every `*Update` field: "leave as it is"."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who is calling: the operator (everything) or one tenant (its own data only)."""

    scope: Scope
    tenant_id: str | None = None
    token_id: str | None = None

    @classmethod
    def operator(cls) -> Principal:
        return cls(scope="operator")

    @classmethod
    def for_tenant(cls, tenant_id: str) -> Principal:
        return cls(scope="tenant", tenant_id=tenant_id)

    @property
    def is_operator(self) -> bool:
        return self.scope == "operator"

    def require_operator(self) -> None:
        if not self.is_operator:
            raise Forbidden("operator-only", "this operation is for the operator only")

    def require_tenant(self, tenant_id: str) -> None:
        if not self.is_operator and self.tenant_id != tenant_id:
            raise Forbidden(
                "wrong-tenant",
                "this token does not give access to that tenant",
                {"tenant_id": tenant_id},
            )


class StoreService:
    """A service over one `Store` (see `provisioning.store.open_store`). Every method of a
    service may raise `StoreUnavailable` (503) besides the errors it documents."""

    __slots__ = ("store",)

    def __init__(self, store: Store) -> None:
        self.store = store


# --------------------------------------------------------------------------- pages


@dataclass(frozen=True, slots=True, kw_only=True)
class Page(Generic[T]):
    """One page of a keyset-paginated list. Pass `next_cursor` back as `cursor` for the next
    page; None means this was the last page. Cursors are opaque strings."""

    items: list[T]
    next_cursor: str | None = None


def page_limit(limit: int) -> int:
    """The page size asked for, within 1..PAGE_MAX."""
    return max(1, min(int(limit), PAGE_MAX))


def encode_cursor(keys: Sequence[object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(keys).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, size: int) -> list[str] | None:
    """The `size` keys of a cursor (None for no cursor); `invalid-cursor` if malformed."""
    if not cursor:
        return None
    try:
        keys = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError as exc:
        raise InvalidInput("invalid-cursor", "malformed cursor", {"cursor": cursor}) from exc
    if not isinstance(keys, list) or len(keys) != size or not all(isinstance(k, str) for k in keys):
        raise InvalidInput("invalid-cursor", "malformed cursor", {"cursor": cursor})
    return keys


def page_of(items: list[T], limit: int, key: Callable[[T], list[str]]) -> Page[T]:
    """`items`: up to `limit + 1` rows; one more than `limit` means there is a next page."""
    if len(items) > limit:
        return Page(items=items[:limit], next_cursor=encode_cursor(key(items[limit - 1])))
    return Page(items=items)


# --------------------------------------------------------------------------- helpers


def invalid_filter(name: str, reason: str) -> InvalidInput:
    """A list filter that cannot be applied (400 `invalid-filter`, naming it and why)."""
    return InvalidInput(
        "invalid-filter", f"filter {name}: {reason}", {"filter": name, "reason": reason}
    )


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


async def tenant_state(tx: Tx, tenant_id: str) -> TenantState:
    """The tenant's state for the rules; `NotFound` if there is no such tenant."""
    st = await state.load_state(tx, tenant_id)
    if st is None:
        raise NotFound("tenant", tenant_id)
    return st


async def require_tenant(tx: Tx, tenant_id: str) -> None:
    """`NotFound` unless the tenant exists (when its state is not needed)."""
    if not await tenants.exists(tx, tenant_id):
        raise NotFound("tenant", tenant_id)


def find_device(st: TenantState, device_id: str) -> Device:
    for d in st.devices:
        if d.id == device_id:
            return d
    raise NotFound("device", device_id)


def find_number(st: TenantState, text: str) -> Number:
    """The tenant's number given in any form; `NotFound` otherwise."""
    try:
        e164 = normalize_number(str(text))
    except ValueError:
        raise NotFound("number", text) from None
    for n in st.numbers:
        if n.e164 == e164:
            return n
    raise NotFound("number", text)


def contract_number(st: TenantState) -> Number:
    return next(n for n in st.numbers if n.kind is NumberKind.CONTRACT)

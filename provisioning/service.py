"""The provisioning service: every tenant-data operation, with the service rules enforced.

The REST API (`provisioning/api/`) and the CLI (`provisioning/cli.py`) call only this module.
Each write runs in ONE store transaction: the current state is read, the rules are checked
(`provisioning.rules`), the change is written, the store version is bumped and a change
notification is queued (PostgreSQL NOTIFY, delivered on commit; in-process for SQLite). Any
`ProvisioningError` rolls the transaction back: a refused request changes nothing.

Authorisation is enforced here too: every method takes the caller's `Principal` (from
`Service.authenticate(token)`; the CLI, being local and trusted, uses `Principal.operator()`).
Operator-only: tenant create/delete, `identity_verified`, `status`, gateways, tokens of other
scopes, realm, seed import. A tenant principal can only touch its own tenant.

Patch semantics: the `*Update` dataclasses default every field to `UNSET`; only the fields
given change. (The API maps an absent JSON key to UNSET and `null` to None.)

Numbers are accepted in any form `model.normalize_number` takes ("03-1234-5678",
"+81312345678", …) and always returned in E.164.

Passwords are never stored nor returned: only HA1 (MD5 and SHA-256, with the service realm);
`DeviceInfo` carries no hash at all. API tokens: only the SHA-256 of their secret is stored.

Decisions (for the README):
- Uploaded prompts keep their audio in the database (BYTEA / BLOB), at most 5 MiB each and 10
  per tenant: one transaction covers the row and the audio (no orphan files, no file left
  behind by a refused request), one backup covers everything; the media side reads it with
  `get_prompt_audio` and may cache it.
- Web phonebook CSV import is all-or-nothing: any bad row refuses the whole file, and the
  error lists every bad row (line number and reason), so the tenant fixes the file once.
- Deleting an ID that is the only member of a ring group is refused (`ring-group-empty`);
  other rule decisions are listed in `provisioning.rules`.
- Every committed write (including tokens, prompts and the phonebook) bumps the store version,
  so the switch's snapshot is rebuilt; a rebuild of thousands of tenants is well under a second.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from switch.sip.digest import ha1

from . import rules
from .errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PhonebookImportRejected,
    RuleViolation,
    TooLarge,
    Unauthenticated,
)
from .model import (
    ANNOUNCEMENT_TEMPLATES,
    DayKind,
    Device,
    DeviceKind,
    Gateway,
    Number,
    NumberKind,
    SlotAction,
    Tenant,
    TenantStatus,
    is_toll_free,
    normalize_number,
)
from .store import repo
from .store.base import Row, Tx, parse_ts, utcnow_text

if TYPE_CHECKING:
    from .seed import SeedData
    from .store.base import Store

__all__ = [
    "ANNOUNCEMENT_TEMPLATES",
    "MAX_ADDITIONAL_NUMBERS",
    "MAX_PHONEBOOK_ENTRIES",
    "MAX_PROMPTS",
    "MAX_PROMPT_BYTES",
    "UNSET",
    "AfterHoursUpdate",
    "CreatedToken",
    "DeviceCreate",
    "DeviceInfo",
    "DeviceUpdate",
    "ForwardingUpdate",
    "GatewayInput",
    "GatewayUpdate",
    "NumberCreate",
    "NumberUpdate",
    "OptionsUpdate",
    "Page",
    "PhonebookEntry",
    "PhonebookEntryInput",
    "PhonebookImportResult",
    "Principal",
    "PromptInfo",
    "SeedImportResult",
    "Service",
    "TenantCreate",
    "TenantUpdate",
    "TokenInfo",
    "import_seed",
]

MAX_ADDITIONAL_NUMBERS = 2
MAX_PHONEBOOK_ENTRIES = 1000
MAX_PROMPTS = 10
MAX_PROMPT_BYTES = 5 * 1024 * 1024  # audio kept in the database (prompts.audio)
MAX_PAGE = 500
DEFAULT_PAGE = 50

T = TypeVar("T")


class _Unset(enum.Enum):
    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset.UNSET
"""Default of every `*Update` field: "leave as it is"."""


# --------------------------------------------------------------------------- principals


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who is calling: the operator (everything) or one tenant (its own data only)."""

    scope: Literal["operator", "tenant"]
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


# --------------------------------------------------------------------------- pages


@dataclass(frozen=True, slots=True, kw_only=True)
class Page(Generic[T]):
    """One page of a keyset-paginated list. Pass `next_cursor` back as `cursor` for the next
    page; None means this was the last page. Cursors are opaque strings."""

    items: list[T]
    next_cursor: str | None = None


# --------------------------------------------------------------------------- tenants


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceCreate:
    """A new ID. `presented_number` defaults to the contract number. `ring_numbers`: the
    numbers (any form) whose ring groups the new ID joins; None = every number of the tenant
    (the service's "every number can ring on every ID" default)."""

    kind: DeviceKind
    username: str
    password: str
    presented_number: str | None = None
    display_name: str | None = None
    free_calls_10min: bool = False  # apps only
    web_phonebook: bool = False
    id: str | None = None  # generated when None
    ring_numbers: Sequence[str] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantCreate:
    """Sign-up: a tenant always has its contract number and its basic ID from the start (the
    contract number is created with a ring group of the basic ID)."""

    name: str
    contract_number: str
    basic_device: DeviceCreate
    timezone: str = "Asia/Tokyo"
    identity_verified: bool = False
    id: str | None = None  # generated when None


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantUpdate:
    name: str | _Unset = UNSET
    timezone: str | _Unset = UNSET
    identity_verified: bool | _Unset = UNSET  # operator only
    status: TenantStatus | _Unset = UNSET  # operator only


# --------------------------------------------------------------------------- devices


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceInfo:
    """An ID as the API shows it: never a password nor a hash.
    `release_seq` counts the "release the logged-in device" requests;
    `release_requested_at` is the last one (UTC)."""

    id: str
    tenant_id: str
    username: str
    kind: DeviceKind
    presented_number: str
    display_name: str | None
    free_calls_10min: bool
    web_phonebook: bool
    release_seq: int
    release_requested_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceUpdate:
    display_name: str | _Unset | None = UNSET
    presented_number: str | _Unset = UNSET
    free_calls_10min: bool | _Unset = UNSET
    web_phonebook: bool | _Unset = UNSET
    password: str | _Unset = UNSET  # re-hashed to HA1; never stored in clear


# --------------------------------------------------------------------------- numbers


@dataclass(frozen=True, slots=True, kw_only=True)
class NumberCreate:
    """A new additional or toll-free number (the contract number comes with the tenant)."""

    number: str
    kind: NumberKind = NumberKind.ADDITIONAL
    ring_group: Sequence[str] | None = None  # device ids; None = every ID of the tenant
    label: str | None = None
    label_in_display_name: bool = False
    app_ring_delay: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class NumberUpdate:
    ring_group: Sequence[str] | _Unset = UNSET  # non-empty subset of the tenant's IDs
    label: str | _Unset | None = UNSET
    label_in_display_name: bool | _Unset = UNSET
    app_ring_delay: float | _Unset = UNSET  # 0..30 s
    max_ring_time: float | _Unset = UNSET  # 5..300 s
    voicemail_ring_time: int | _Unset = UNSET  # one of model.VOICEMAIL_RING_TIMES
    recording_notice: bool | _Unset = UNSET


@dataclass(frozen=True, slots=True, kw_only=True)
class OptionsUpdate:
    """Subscribing after_hours or forwarding needs a verified identity. Unsubscribing an
    option switches its function OFF; unsubscribing forwarding is refused while the schedule
    still has forward slots (`forward-slot-needs-forwarding-option`)."""

    after_hours: bool | _Unset = UNSET
    voicemail: bool | _Unset = UNSET
    forwarding: bool | _Unset = UNSET
    recording: bool | _Unset = UNSET


@dataclass(frozen=True, slots=True, kw_only=True)
class AfterHoursUpdate:
    """`slots`: for each day kind given, exactly 48 actions (SlotAction or its value); day kinds
    not given keep their slots. `announcement`: a template name or "prompt:<prompt id>" of
    the tenant. `enabled` is the one-touch ON/OFF; turning it ON turns forwarding OFF."""

    enabled: bool | _Unset = UNSET
    slots: Mapping[DayKind, Sequence[SlotAction]] | _Unset = UNSET
    announcement: str | _Unset = UNSET


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardingUpdate:
    """Turning forwarding ON needs a target (given now or stored) and turns after-hours OFF."""

    enabled: bool | _Unset = UNSET
    target: str | _Unset | None = UNSET


# --------------------------------------------------------------------------- prompts, phonebook


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptInfo:
    """An uploaded announcement. Reference it as `announcement="prompt:<id>"`."""

    id: str
    tenant_id: str
    name: str
    content_type: str
    size: int
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class PhonebookEntryInput:
    name: str
    number: str  # digits with optional + - ( ) and spaces; kept as given, trimmed
    company: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PhonebookEntry:
    id: str
    tenant_id: str
    name: str
    number: str
    company: str | None
    note: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class PhonebookImportResult:
    imported: int
    total: int  # entries of the tenant after the import


# --------------------------------------------------------------------------- gateways, tokens


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayInput:
    name: str
    host: str
    port: int = 5060
    transport: Literal["udp", "tcp", "tls"] = "udp"
    allowed_sources: Sequence[str] = ()  # IP addresses; empty = (host,)
    id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayUpdate:
    name: str | _Unset = UNSET
    host: str | _Unset = UNSET
    port: int | _Unset = UNSET
    transport: Literal["udp", "tcp", "tls"] | _Unset = UNSET
    allowed_sources: Sequence[str] | _Unset = UNSET


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenInfo:
    id: str
    scope: Literal["operator", "tenant"]
    tenant_id: str | None
    label: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class CreatedToken:
    """`token` is the plaintext, shown once: only its SHA-256 is stored."""

    info: TokenInfo
    token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedImportResult:
    tenants: int
    devices: int
    numbers: int
    gateways: int
    replaced: list[str] = field(default_factory=list)  # tenant ids replaced (replace=True)


# --------------------------------------------------------------------------- the service


class Service:
    """The provisioning service over one `Store` (see `provisioning.store.open_store`).

    Every method may raise `StoreUnavailable` (503) besides the errors it documents.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    # ---- auth and tokens

    async def authenticate(self, token: str) -> Principal:
        """The principal of a bearer token; `Unauthenticated` (401 `invalid-token`) if the
        token is malformed, unknown or revoked."""
        token_id, _, secret = (token or "").strip().partition(".")
        if not token_id.startswith("tok_") or not secret:
            raise Unauthenticated()
        async with self.store.read() as tx:
            row = await tx.fetchrow("SELECT * FROM api_tokens WHERE id = $1", token_id)
        if row is None or not hmac.compare_digest(row["secret_sha256"], _sha256(secret)):
            raise Unauthenticated()
        return Principal(scope=row["scope"], tenant_id=row["tenant_id"], token_id=token_id)

    async def create_token(
        self,
        principal: Principal,
        *,
        scope: Literal["operator", "tenant"],
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
        now = utcnow_text()
        async with self.store.write() as tx:
            if tenant_id is not None:
                await self._state(tx, tenant_id)
            await tx.execute(
                "INSERT INTO api_tokens (id, secret_sha256, scope, tenant_id, label, created_at)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                token_id,
                _sha256(secret),
                scope,
                tenant_id,
                label,
                now,
            )
        info = TokenInfo(
            id=token_id, scope=scope, tenant_id=tenant_id, label=label, created_at=_ts(now)
        )
        return CreatedToken(info=info, token=f"{token_id}.{secret}")

    async def list_tokens(
        self, principal: Principal, tenant_id: str | None = None
    ) -> list[TokenInfo]:
        """Operator: all tokens (or one tenant's); tenant: its own tokens."""
        if not principal.is_operator:
            tenant_id = principal.tenant_id
        sql, args = "SELECT * FROM api_tokens", []
        if tenant_id is not None:
            sql, args = sql + " WHERE tenant_id = $1", [tenant_id]
        async with self.store.read() as tx:
            rows = await tx.fetch(sql + " ORDER BY created_at, id", *args)
        return [_token_info(r) for r in rows]

    async def revoke_token(self, principal: Principal, token_id: str) -> None:
        async with self.store.write() as tx:
            row = await tx.fetchrow("SELECT * FROM api_tokens WHERE id = $1", token_id)
            if row is None:
                raise NotFound("token", token_id)
            if row["scope"] == "operator":
                principal.require_operator()
            else:
                principal.require_tenant(row["tenant_id"])
            await tx.execute("DELETE FROM api_tokens WHERE id = $1", token_id)

    # ---- realm

    async def realm(self) -> str:
        """The SIP digest realm HA1 hashes are computed with (stored in the database)."""
        async with self.store.read() as tx:
            return str(await tx.fetchval("SELECT realm FROM meta WHERE id = 1"))

    async def set_realm(self, principal: Principal, realm: str) -> None:
        """Operator only; refused (`realm-locked`) once any device exists, since every HA1
        depends on it."""
        principal.require_operator()
        realm = rules.text_field(realm, "realm", 1, 200)
        async with self.store.write() as tx:
            await self._set_realm(tx, realm)

    async def _set_realm(self, tx: Tx, realm: str) -> None:
        if realm == await tx.fetchval("SELECT realm FROM meta WHERE id = 1"):
            return
        devices = int(await tx.fetchval("SELECT COUNT(*) FROM devices"))
        if devices:
            raise RuleViolation(
                "realm-locked",
                "the realm cannot change once devices exist (HA1 depends on it)",
                {"rule": "realm fixed once IDs exist", "devices": devices},
            )
        await tx.execute("UPDATE meta SET realm = $1 WHERE id = 1", realm)

    # ---- tenants

    async def create_tenant(self, principal: Principal, data: TenantCreate) -> Tenant:
        """Operator only. Creates the tenant, its contract number and its basic ID together.
        Errors: invalid-timezone, invalid-number, toll-free-not-presentable (a toll-free
        contract number), number-taken, username-taken, id-taken."""
        principal.require_operator()
        tenant = Tenant(
            id=data.id or _new_id("t"),
            name=rules.text_field(data.name, "name", 1, 200),
            timezone=rules.check_timezone(data.timezone),
            identity_verified=bool(data.identity_verified),
        )
        contract = rules.parse_number(data.contract_number, "contract_number")
        if is_toll_free(contract):
            raise RuleViolation(
                "toll-free-not-presentable",
                "a toll-free number cannot be the contract number",
                {"rule": "contract number is not toll-free", "number": contract},
            )
        now = utcnow_text()
        async with self.store.write() as tx:
            if await tx.fetchval("SELECT 1 FROM tenants WHERE id = $1", tenant.id):
                raise Conflict("id-taken", f"tenant id {tenant.id!r} exists", {"id": tenant.id})
            await _number_free(tx, contract)
            device = await self._new_device(tx, tenant.id, data.basic_device, contract)
            number = Number(
                e164=contract,
                tenant_id=tenant.id,
                kind=NumberKind.CONTRACT,
                ring_group=(device.id,),
            )
            rules.check_tenant(tenant, [device], [number])
            await repo.insert_tenant(tx, tenant, now)
            await repo.insert_device(tx, device, now)
            await repo.insert_number(tx, number, now)
        return tenant

    async def get_tenant(self, principal: Principal, tenant_id: str) -> Tenant:
        principal.require_tenant(tenant_id)
        async with self.store.read() as tx:
            tenant = await repo.load_tenant(tx, tenant_id)
        if tenant is None:
            raise NotFound("tenant", tenant_id)
        return tenant

    async def list_tenants(
        self,
        principal: Principal,
        *,
        name_contains: str | None = None,
        status: TenantStatus | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE,
    ) -> Page[Tenant]:
        """Ordered by (name, id). A tenant principal sees only itself."""
        q = _Query()
        if not principal.is_operator:
            q.where("id = {}", principal.tenant_id)
        if name_contains:
            q.where("LOWER(name) LIKE {} ESCAPE '\\'", _like(name_contains))
        if status is not None:
            q.where("status = {}", TenantStatus(status).value)
        after = _decode_cursor(cursor, 2)
        if after:
            q.where("(name, id) > ({}, {})", *after)
        n = _limit(limit)
        async with self.store.read() as tx:
            rows = await tx.fetch(q.sql("SELECT * FROM tenants", "name, id", n + 1), *q.args)
            page = rows[:n]
            holidays = await repo.load_holidays(tx, [r["id"] for r in page])
        items = [repo.tenant_of(r, holidays.get(r["id"], ())) for r in page]
        more = len(rows) > n
        return Page(
            items=items,
            next_cursor=_encode_cursor([page[-1]["name"], page[-1]["id"]]) if more else None,
        )

    async def update_tenant(
        self, principal: Principal, tenant_id: str, data: TenantUpdate
    ) -> Tenant:
        """`identity_verified` and `status` are operator only. Un-verifying does not switch
        anything off (the operator decides)."""
        principal.require_tenant(tenant_id)
        if data.identity_verified is not UNSET or data.status is not UNSET:
            principal.require_operator()
        changes: dict[str, Any] = {}
        if data.name is not UNSET:
            changes["name"] = rules.text_field(data.name, "name", 1, 200)
        if data.timezone is not UNSET:
            changes["timezone"] = rules.check_timezone(data.timezone)
        if data.identity_verified is not UNSET:
            changes["identity_verified"] = bool(data.identity_verified)
        if data.status is not UNSET:
            changes["status"] = rules.parse_enum(TenantStatus, data.status, "status")
        return await self._update_tenant(tenant_id, lambda t: replace(t, **changes))

    async def _update_tenant(self, tenant_id: str, change: Callable[[Tenant], Tenant]) -> Tenant:
        async with self.store.write() as tx:
            st = await self._state(tx, tenant_id)
            tenant = change(st.tenant)
            rules.check_timezone(tenant.timezone)
            await repo.update_tenant(tx, tenant, utcnow_text())
        return tenant

    async def delete_tenant(self, principal: Principal, tenant_id: str) -> None:
        """Operator only; removes everything of the tenant (devices lose their bindings)."""
        principal.require_operator()
        async with self.store.write() as tx:
            await self._state(tx, tenant_id)
            await tx.execute("DELETE FROM tenants WHERE id = $1", tenant_id)

    async def set_holidays(
        self, principal: Principal, tenant_id: str, days: Sequence[date]
    ) -> Tenant:
        """Replaces the tenant's holiday list (the "holiday" day kind of the schedule)."""
        principal.require_tenant(tenant_id)
        holidays = frozenset(rules.parse_date(d) for d in days)
        return await self._update_tenant(tenant_id, lambda t: replace(t, holidays=holidays))

    async def add_holiday(self, principal: Principal, tenant_id: str, day: date) -> Tenant:
        principal.require_tenant(tenant_id)
        d = rules.parse_date(day)
        return await self._update_tenant(tenant_id, lambda t: replace(t, holidays=t.holidays | {d}))

    async def remove_holiday(self, principal: Principal, tenant_id: str, day: date) -> Tenant:
        """Removing a day that is not a holiday is a no-op."""
        principal.require_tenant(tenant_id)
        d = rules.parse_date(day)
        return await self._update_tenant(tenant_id, lambda t: replace(t, holidays=t.holidays - {d}))

    # ---- devices (IDs)

    async def create_device(
        self, principal: Principal, tenant_id: str, data: DeviceCreate
    ) -> DeviceInfo:
        """Errors: username-taken, id-taken, presented-number-not-own, toll-free-not-presentable,
        free-calls-apps-only, not-found (a ring number)."""
        principal.require_tenant(tenant_id)
        now = utcnow_text()
        async with self.store.write() as tx:
            st = await self._state(tx, tenant_id)
            device = await self._new_device(tx, tenant_id, data, _contract(st).e164)
            joins = (
                {n.e164 for n in st.numbers}
                if data.ring_numbers is None
                else {_find_number(st, x).e164 for x in data.ring_numbers}
            )
            numbers = [
                replace(n, ring_group=(*n.ring_group, device.id)) if n.e164 in joins else n
                for n in st.numbers
            ]
            rules.check_tenant(st.tenant, [*st.devices, device], numbers, st.prompt_ids)
            await repo.insert_device(tx, device, now)
            for n in numbers:
                if n.e164 in joins:
                    await repo.save_ring_group(tx, n)
            return await _device_info(tx, device.id)

    async def _new_device(
        self, tx: Tx, tenant_id: str, data: DeviceCreate, default_number: str
    ) -> Device:
        username = rules.check_username(data.username)
        device_id = data.id or _new_id("d")
        if await tx.fetchval("SELECT 1 FROM devices WHERE username = $1", username):
            raise Conflict(
                "username-taken", f"SIP username {username!r} is taken", {"username": username}
            )
        if await tx.fetchval("SELECT 1 FROM devices WHERE id = $1", device_id):
            raise Conflict("id-taken", f"device id {device_id!r} exists", {"id": device_id})
        realm = str(await tx.fetchval("SELECT realm FROM meta WHERE id = 1"))
        password = rules.check_password(data.password)
        return Device(
            id=device_id,
            tenant_id=tenant_id,
            username=username,
            kind=rules.parse_enum(DeviceKind, data.kind, "kind"),
            ha1_md5=ha1(username, realm, password, "MD5"),
            ha1_sha256=ha1(username, realm, password, "SHA-256"),
            presented_number=(
                rules.parse_number(data.presented_number, "presented_number")
                if data.presented_number
                else default_number
            ),
            display_name=rules.optional_text(data.display_name, "display_name"),
            free_calls_10min=bool(data.free_calls_10min),
            web_phonebook=bool(data.web_phonebook),
        )

    async def get_device(self, principal: Principal, tenant_id: str, device_id: str) -> DeviceInfo:
        principal.require_tenant(tenant_id)
        async with self.store.read() as tx:
            row = await tx.fetchrow(
                "SELECT * FROM devices WHERE id = $1 AND tenant_id = $2", device_id, tenant_id
            )
        if row is None:
            raise NotFound("device", device_id)
        return _device_info_of(row)

    async def list_devices(
        self,
        principal: Principal,
        tenant_id: str,
        *,
        kind: DeviceKind | None = None,
        username_contains: str | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE,
    ) -> Page[DeviceInfo]:
        """Ordered by id."""
        principal.require_tenant(tenant_id)
        q = _Query()
        q.where("tenant_id = {}", tenant_id)
        if kind is not None:
            q.where("kind = {}", rules.parse_enum(DeviceKind, kind, "kind").value)
        if username_contains:
            q.where("LOWER(username) LIKE {} ESCAPE '\\'", _like(username_contains))
        after = _decode_cursor(cursor, 1)
        if after:
            q.where("id > {}", after[0])
        n = _limit(limit)
        async with self.store.read() as tx:
            await self._state_exists(tx, tenant_id)
            rows = await tx.fetch(q.sql("SELECT * FROM devices", "id", n + 1), *q.args)
        return _page([_device_info_of(r) for r in rows], n, lambda d: [d.id])

    async def update_device(
        self, principal: Principal, tenant_id: str, device_id: str, data: DeviceUpdate
    ) -> DeviceInfo:
        """Errors: presented-number-not-own, toll-free-not-presentable, free-calls-apps-only."""
        principal.require_tenant(tenant_id)
        async with self.store.write() as tx:
            st = await self._state(tx, tenant_id)
            device = _find_device(st, device_id)
            changes: dict[str, Any] = {}
            if data.display_name is not UNSET:
                changes["display_name"] = rules.optional_text(data.display_name, "display_name")
            if data.presented_number is not UNSET:
                changes["presented_number"] = rules.parse_number(
                    data.presented_number, "presented_number"
                )
            if data.free_calls_10min is not UNSET:
                changes["free_calls_10min"] = bool(data.free_calls_10min)
            if data.web_phonebook is not UNSET:
                changes["web_phonebook"] = bool(data.web_phonebook)
            if data.password is not UNSET:
                realm = str(await tx.fetchval("SELECT realm FROM meta WHERE id = 1"))
                password = rules.check_password(data.password)
                changes["ha1_md5"] = ha1(device.username, realm, password, "MD5")
                changes["ha1_sha256"] = ha1(device.username, realm, password, "SHA-256")
            new = replace(device, **changes)
            devices = [new if d.id == device_id else d for d in st.devices]
            rules.check_tenant(st.tenant, devices, st.numbers, st.prompt_ids)
            await repo.update_device(tx, new, utcnow_text())
            return await _device_info(tx, device_id)

    async def delete_device(self, principal: Principal, tenant_id: str, device_id: str) -> None:
        """Removes the ID from every ring group. Refused: last-id (a tenant keeps ≥ 1 ID),
        additional-numbers-exceed-additional-ids, toll-free-needs-several-ids, ring-group-empty
        (the ID is the only member of some number's ring group: change that group first)."""
        principal.require_tenant(tenant_id)
        async with self.store.write() as tx:
            st = await self._state(tx, tenant_id)
            _find_device(st, device_id)
            devices = [d for d in st.devices if d.id != device_id]
            numbers = [
                replace(n, ring_group=tuple(x for x in n.ring_group if x != device_id))
                for n in st.numbers
            ]
            rules.check_tenant(st.tenant, devices, numbers, st.prompt_ids)
            await tx.execute("DELETE FROM devices WHERE id = $1", device_id)

    async def release_device(
        self, principal: Principal, tenant_id: str, device_id: str
    ) -> DeviceInfo:
        """Release the logged-in device: bumps `release_seq` (Device.release_seq in the
        snapshot); the switch drops the ID's bindings and device lock when it sees the bump, so
        a new device can log in."""
        principal.require_tenant(tenant_id)
        async with self.store.write() as tx:
            st = await self._state(tx, tenant_id)
            device = _find_device(st, device_id)
            new = replace(device, release_seq=device.release_seq + 1)
            await repo.update_device(tx, new, utcnow_text(), released=True)
            return await _device_info(tx, device_id)

    # ---- numbers

    async def add_number(self, principal: Principal, tenant_id: str, data: NumberCreate) -> Number:
        """Additional or toll-free number. Errors: contract-number-exists (kind contract),
        too-many-additional-numbers, additional-numbers-exceed-additional-ids,
        toll-free-needs-several-ids, invalid-number (toll-free kind vs 0120/0800 prefix),
        number-taken, ring-group-empty, ring-group-not-own-ids, invalid-ring-delay."""
        principal.require_tenant(tenant_id)
        e164 = rules.parse_number(data.number)
        kind = rules.parse_enum(NumberKind, data.kind, "kind")
        if kind is NumberKind.CONTRACT:
            raise RuleViolation(
                "contract-number-exists",
                "a tenant has exactly one contract number; it comes with the tenant",
                {"rule": "contract numbers = 1", "limit": 1, "requested": 2},
            )
        rules.check_number_kind(e164, kind)
        async with self.store.write() as tx:
            st = await self._state(tx, tenant_id)
            await _number_free(tx, e164)
            group = (
                tuple(d.id for d in st.devices)
                if data.ring_group is None
                else tuple(str(x) for x in data.ring_group)
            )
            number = Number(
                e164=e164,
                tenant_id=tenant_id,
                kind=kind,
                ring_group=group,
                label=rules.optional_text(data.label, "label"),
                label_in_display_name=bool(data.label_in_display_name),
                app_ring_delay=rules.number_field(data.app_ring_delay, "app_ring_delay"),
            )
            rules.check_tenant(st.tenant, st.devices, [*st.numbers, number], st.prompt_ids)
            await repo.insert_number(tx, number, utcnow_text())
        return number

    async def get_number(self, principal: Principal, tenant_id: str, number: str) -> Number:
        principal.require_tenant(tenant_id)
        async with self.store.read() as tx:
            return _find_number(await self._state(tx, tenant_id), number)

    async def list_numbers(
        self,
        principal: Principal,
        tenant_id: str,
        *,
        kind: NumberKind | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE,
    ) -> Page[Number]:
        """Ordered by E.164."""
        principal.require_tenant(tenant_id)
        after = _decode_cursor(cursor, 1)
        want = None if kind is None else rules.parse_enum(NumberKind, kind, "kind")
        async with self.store.read() as tx:
            st = await self._state(tx, tenant_id)
        # A tenant has at most a handful of numbers: filter the loaded state.
        items = [
            n
            for n in st.numbers
            if (want is None or n.kind is want) and (not after or n.e164 > after[0])
        ]
        n = _limit(limit)
        return _page(items[: n + 1], n, lambda x: [x.e164])

    async def update_number(
        self, principal: Principal, tenant_id: str, number: str, data: NumberUpdate
    ) -> Number:
        """Errors: ring-group-empty, ring-group-not-own-ids, invalid-ring-time,
        invalid-ring-delay, invalid-input (max ring time)."""
        principal.require_tenant(tenant_id)
        changes: dict[str, Any] = {}
        if data.ring_group is not UNSET:
            changes["ring_group"] = tuple(str(x) for x in data.ring_group)
        if data.label is not UNSET:
            changes["label"] = rules.optional_text(data.label, "label")
        if data.label_in_display_name is not UNSET:
            changes["label_in_display_name"] = bool(data.label_in_display_name)
        if data.app_ring_delay is not UNSET:
            changes["app_ring_delay"] = rules.number_field(data.app_ring_delay, "app_ring_delay")
        if data.max_ring_time is not UNSET:
            changes["max_ring_time"] = rules.number_field(data.max_ring_time, "max_ring_time")
        if data.voicemail_ring_time is not UNSET:
            changes["voicemail_ring_time"] = rules.int_field(
                data.voicemail_ring_time, "voicemail_ring_time"
            )
        if data.recording_notice is not UNSET:
            changes["recording_notice"] = bool(data.recording_notice)
        return await self._change_number(tenant_id, number, lambda _t, n: replace(n, **changes))

    async def _change_number(
        self, tenant_id: str, number: str, change: Callable[[Tenant, Number], Number]
    ) -> Number:
        async with self.store.write() as tx:
            st = await self._state(tx, tenant_id)
            old = _find_number(st, number)
            new = change(st.tenant, old)
            numbers = [new if n.e164 == old.e164 else n for n in st.numbers]
            rules.check_tenant(st.tenant, st.devices, numbers, st.prompt_ids)
            await repo.update_number(tx, new, utcnow_text())
        return new

    async def delete_number(self, principal: Principal, tenant_id: str, number: str) -> None:
        """Errors: contract-number-required (the contract number stays),
        number-presented-by-device (an ID presents it: change that ID first)."""
        principal.require_tenant(tenant_id)
        async with self.store.write() as tx:
            st = await self._state(tx, tenant_id)
            n = _find_number(st, number)
            if n.kind is NumberKind.CONTRACT:
                raise RuleViolation(
                    "contract-number-required",
                    "the contract number cannot be removed",
                    {"rule": "contract numbers = 1", "number": n.e164},
                )
            users = [d.id for d in st.devices if d.presented_number == n.e164]
            if users:
                raise RuleViolation(
                    "number-presented-by-device",
                    "IDs present this number: change their caller ID first",
                    {"rule": "presented number ∈ tenant's numbers", "devices": users},
                )
            await tx.execute("DELETE FROM numbers WHERE e164 = $1", n.e164)

    async def set_options(
        self, principal: Principal, tenant_id: str, number: str, data: OptionsUpdate
    ) -> Number:
        """Errors: identity-not-verified, forward-slot-needs-forwarding-option."""
        principal.require_tenant(tenant_id)

        def change(tenant: Tenant, n: Number) -> Number:
            opts = {
                k: bool(v)
                for k, v in (
                    ("after_hours", data.after_hours),
                    ("voicemail", data.voicemail),
                    ("forwarding", data.forwarding),
                    ("recording", data.recording),
                )
                if v is not UNSET
            }
            for key in ("after_hours", "forwarding"):
                if opts.get(key) and not getattr(n.options, key):
                    rules.require_identity(tenant, key.replace("_", "-"))
            return rules.drop_options(replace(n, options=replace(n.options, **opts)))

        return await self._change_number(tenant_id, number, change)

    async def set_after_hours(
        self, principal: Principal, tenant_id: str, number: str, data: AfterHoursUpdate
    ) -> Number:
        """Errors: identity-not-verified, option-required (after_hours option not subscribed),
        invalid-schedule, forward-slot-needs-forwarding-option, invalid-announcement."""
        principal.require_tenant(tenant_id)
        slots = None if data.slots is UNSET else rules.parse_slots(data.slots)

        def change(tenant: Tenant, n: Number) -> Number:
            only_off = data.enabled is False and slots is None and data.announcement is UNSET
            if not only_off:
                rules.require_identity(tenant, "after-hours")
                _require_option(n, "after_hours")
            ah = n.after_hours
            if slots is not None:
                ah = replace(ah, slots=MappingProxyType({**ah.slots, **slots}))
            if data.announcement is not UNSET:
                ah = replace(ah, announcement=str(data.announcement))
            n = replace(n, after_hours=ah)
            if data.enabled is not UNSET:
                n = rules.set_after_hours_enabled(n, bool(data.enabled))
            return n

        return await self._change_number(tenant_id, number, change)

    async def set_forwarding(
        self, principal: Principal, tenant_id: str, number: str, data: ForwardingUpdate
    ) -> Number:
        """Errors: identity-not-verified, option-required, invalid-number (target),
        forwarding-needs-target."""
        principal.require_tenant(tenant_id)
        target: str | _Unset | None = UNSET
        if data.target is not UNSET:
            target = None if data.target is None else rules.parse_number(data.target, "target")

        def change(tenant: Tenant, n: Number) -> Number:
            if not (data.enabled is False and target is UNSET):
                rules.require_identity(tenant, "forwarding")
                _require_option(n, "forwarding")
            if target is not UNSET:
                n = replace(n, forwarding=replace(n.forwarding, target=target))
            if data.enabled is not UNSET:
                n = rules.set_forwarding_enabled(n, bool(data.enabled))
            return n

        return await self._change_number(tenant_id, number, change)

    # ---- prompts

    async def create_prompt(
        self,
        principal: Principal,
        tenant_id: str,
        *,
        name: str,
        audio: bytes,
        content_type: str = "audio/wav",
    ) -> PromptInfo:
        """Errors: too-many-prompts (10 per tenant), prompt-too-large (5 MiB),
        invalid-input (empty audio or name)."""
        principal.require_tenant(tenant_id)
        name = rules.text_field(name, "name", 1, 100)
        if not audio:
            raise InvalidInput("invalid-input", "the prompt audio is empty", {"field": "audio"})
        if len(audio) > MAX_PROMPT_BYTES:
            raise TooLarge(
                "prompt-too-large",
                "the prompt audio is too large",
                {"rule": "prompt ≤ 5 MiB", "limit": MAX_PROMPT_BYTES, "requested": len(audio)},
            )
        info = PromptInfo(
            id=_new_id("p"),
            tenant_id=tenant_id,
            name=name,
            content_type=rules.text_field(content_type, "content_type", 1, 100),
            size=len(audio),
            created_at=_ts(utcnow_text()),
        )
        async with self.store.write() as tx:
            await self._state_exists(tx, tenant_id)
            count = int(
                await tx.fetchval("SELECT COUNT(*) FROM prompts WHERE tenant_id = $1", tenant_id)
            )
            if count >= MAX_PROMPTS:
                raise RuleViolation(
                    "too-many-prompts",
                    f"at most {MAX_PROMPTS} prompts",
                    {
                        "rule": "prompts ≤ 10 per tenant",
                        "limit": MAX_PROMPTS,
                        "requested": count + 1,
                    },
                )
            await tx.execute(
                "INSERT INTO prompts (id, tenant_id, name, content_type, size, audio, created_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                info.id,
                tenant_id,
                info.name,
                info.content_type,
                info.size,
                bytes(audio),
                _ts_text(info.created_at),
            )
        return info

    async def list_prompts(self, principal: Principal, tenant_id: str) -> list[PromptInfo]:
        principal.require_tenant(tenant_id)
        async with self.store.read() as tx:
            await self._state_exists(tx, tenant_id)
            rows = await tx.fetch(
                f"SELECT {_PROMPT_COLS} FROM prompts WHERE tenant_id = $1 ORDER BY id", tenant_id
            )
        return [_prompt_info(r) for r in rows]

    async def get_prompt_audio(
        self, principal: Principal, tenant_id: str, prompt_id: str
    ) -> tuple[PromptInfo, bytes]:
        principal.require_tenant(tenant_id)
        async with self.store.read() as tx:
            row = await tx.fetchrow(
                f"SELECT {_PROMPT_COLS}, audio FROM prompts WHERE id = $1 AND tenant_id = $2",
                prompt_id,
                tenant_id,
            )
        if row is None:
            raise NotFound("prompt", prompt_id)
        return _prompt_info(row), bytes(row["audio"])

    async def delete_prompt(self, principal: Principal, tenant_id: str, prompt_id: str) -> None:
        """Refused (prompt-in-use) while a number's announcement names it."""
        principal.require_tenant(tenant_id)
        async with self.store.write() as tx:
            st = await self._state(tx, tenant_id)
            if prompt_id not in st.prompt_ids:
                raise NotFound("prompt", prompt_id)
            users = [
                n.e164
                for n in st.numbers
                if n.after_hours.announcement == rules.PROMPT_PREFIX + prompt_id
            ]
            if users:
                raise RuleViolation(
                    "prompt-in-use",
                    "numbers announce this prompt",
                    {"rule": "a prompt in use stays", "numbers": users},
                )
            await tx.execute("DELETE FROM prompts WHERE id = $1", prompt_id)

    # ---- web phonebook

    async def add_phonebook_entry(
        self, principal: Principal, tenant_id: str, data: PhonebookEntryInput
    ) -> PhonebookEntry:
        """Errors: phonebook-full (1,000 per tenant), invalid-input."""
        principal.require_tenant(tenant_id)
        row = rules.check_phonebook_entry(data.name, data.number, data.company, data.note)
        async with self.store.write() as tx:
            await self._state_exists(tx, tenant_id)
            await _phonebook_room(tx, tenant_id, 1, replace_all=False)
            (entry_id,) = await _insert_phonebook(tx, tenant_id, [row])
            return await _phonebook_entry(tx, tenant_id, entry_id)

    async def list_phonebook(
        self,
        principal: Principal,
        tenant_id: str,
        *,
        name_contains: str | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE,
    ) -> Page[PhonebookEntry]:
        """Ordered by (name, id)."""
        principal.require_tenant(tenant_id)
        q = _Query()
        q.where("tenant_id = {}", tenant_id)
        if name_contains:
            q.where("LOWER(name) LIKE {} ESCAPE '\\'", _like(name_contains))
        after = _decode_cursor(cursor, 2)
        if after:
            q.where("(name, id) > ({}, {})", *after)
        n = _limit(limit)
        async with self.store.read() as tx:
            await self._state_exists(tx, tenant_id)
            rows = await tx.fetch(
                q.sql("SELECT * FROM phonebook_entries", "name, id", n + 1), *q.args
            )
        return _page([_phonebook_of(r) for r in rows], n, lambda e: [e.name, e.id])

    async def update_phonebook_entry(
        self, principal: Principal, tenant_id: str, entry_id: str, data: PhonebookEntryInput
    ) -> PhonebookEntry:
        principal.require_tenant(tenant_id)
        row = rules.check_phonebook_entry(data.name, data.number, data.company, data.note)
        async with self.store.write() as tx:
            await _phonebook_entry(tx, tenant_id, entry_id)
            await tx.execute(
                "UPDATE phonebook_entries SET name = $2, number = $3, company = $4, note = $5,"
                " updated_at = $6 WHERE id = $1",
                entry_id,
                row.name,
                row.number,
                row.company,
                row.note,
                utcnow_text(),
            )
            return await _phonebook_entry(tx, tenant_id, entry_id)

    async def delete_phonebook_entry(
        self, principal: Principal, tenant_id: str, entry_id: str
    ) -> None:
        principal.require_tenant(tenant_id)
        async with self.store.write() as tx:
            await _phonebook_entry(tx, tenant_id, entry_id)
            await tx.execute("DELETE FROM phonebook_entries WHERE id = $1", entry_id)

    async def import_phonebook_csv(
        self, principal: Principal, tenant_id: str, csv_data: bytes | str, *, replace: bool = False
    ) -> PhonebookImportResult:
        """CSV rows `name,number[,company[,note]]`; an optional header row (first cell "name"
        or "名前") is skipped; bytes are decoded as UTF-8 (BOM allowed) or else CP932 (Excel).
        All-or-nothing: any bad row → `PhonebookImportRejected` (400
        `phonebook-import-invalid`, details.errors = [{row, reason}, …]) and nothing changes.
        `replace=True` replaces the whole phonebook. phonebook-full if the result would
        exceed 1,000 entries."""
        principal.require_tenant(tenant_id)
        entries, errors = rules.parse_phonebook_csv(csv_data)
        if errors:
            raise PhonebookImportRejected(errors)
        async with self.store.write() as tx:
            await self._state_exists(tx, tenant_id)
            await _phonebook_room(tx, tenant_id, len(entries), replace_all=replace)
            if replace:
                await tx.execute("DELETE FROM phonebook_entries WHERE tenant_id = $1", tenant_id)
            await _insert_phonebook(tx, tenant_id, entries)
            total = int(
                await tx.fetchval(
                    "SELECT COUNT(*) FROM phonebook_entries WHERE tenant_id = $1", tenant_id
                )
            )
        return PhonebookImportResult(imported=len(entries), total=total)

    # ---- carrier gateways (operator only)

    async def create_gateway(self, principal: Principal, data: GatewayInput) -> Gateway:
        principal.require_operator()
        gw = rules.check_gateway(
            data.id or _new_id("gw"),
            data.name,
            data.host,
            data.port,
            data.transport,
            data.allowed_sources,
        )
        async with self.store.write() as tx:
            if await tx.fetchval("SELECT 1 FROM gateways WHERE id = $1", gw.id):
                raise Conflict("id-taken", f"gateway id {gw.id!r} exists", {"id": gw.id})
            await repo.save_gateway(tx, gw, utcnow_text(), insert=True)
        return gw

    async def get_gateway(self, principal: Principal, gateway_id: str) -> Gateway:
        principal.require_operator()
        async with self.store.read() as tx:
            return await _find_gateway(tx, gateway_id)

    async def list_gateways(self, principal: Principal) -> list[Gateway]:
        principal.require_operator()
        async with self.store.read() as tx:
            rows = await tx.fetch("SELECT * FROM gateways ORDER BY id")
        return [repo.gateway_of(r) for r in rows]

    async def update_gateway(
        self, principal: Principal, gateway_id: str, data: GatewayUpdate
    ) -> Gateway:
        principal.require_operator()
        async with self.store.write() as tx:
            old = await _find_gateway(tx, gateway_id)

            def pick(value: Any, current: Any) -> Any:
                return current if value is UNSET else value

            gw = rules.check_gateway(
                old.id,
                pick(data.name, old.name),
                pick(data.host, old.host),
                pick(data.port, old.port),
                pick(data.transport, old.transport),
                pick(data.allowed_sources, old.allowed_sources),
            )
            await repo.save_gateway(tx, gw, utcnow_text(), insert=False)
        return gw

    async def delete_gateway(self, principal: Principal, gateway_id: str) -> None:
        principal.require_operator()
        async with self.store.write() as tx:
            await _find_gateway(tx, gateway_id)
            await tx.execute("DELETE FROM gateways WHERE id = $1", gateway_id)

    # ---- seed import

    async def import_seed(
        self, principal: Principal, seed: SeedData, *, replace: bool = False
    ) -> SeedImportResult:
        """Operator only. Writes a `SeedData` (from `provisioning.seed.load_seed`) in one
        transaction. A tenant id that already exists is refused (id-taken) unless
        `replace=True`, which replaces that tenant entirely; gateways are upserted by id.
        On an empty store (no device yet) the seed's realm becomes the store's realm;
        otherwise the realms must match (realm-mismatch), since HA1 hashes depend on it."""
        principal.require_operator()
        now = utcnow_text()
        replaced: list[str] = []
        async with self.store.write() as tx:
            realm = await tx.fetchval("SELECT realm FROM meta WHERE id = 1")
            if seed.realm != realm:
                if int(await tx.fetchval("SELECT COUNT(*) FROM devices")):
                    raise RuleViolation(
                        "realm-mismatch",
                        "the seed's realm differs from the store's (HA1 hashes would not match)",
                        {"store_realm": realm, "seed_realm": seed.realm},
                    )
                await self._set_realm(tx, seed.realm)
            existing = {r["id"] for r in await tx.fetch("SELECT id FROM tenants")}
            for t in seed.tenants:
                if t.id in existing:
                    if not replace:
                        raise Conflict("id-taken", f"tenant {t.id!r} exists", {"id": t.id})
                    await tx.execute("DELETE FROM tenants WHERE id = $1", t.id)
                    replaced.append(t.id)
            await _seed_unique(tx, seed)
            _check_seed_rules(seed)
            await repo.insert_many(tx, seed.tenants, seed.devices, seed.numbers, now)
            for g in seed.gateways:
                exists = bool(await tx.fetchval("SELECT 1 FROM gateways WHERE id = $1", g.id))
                await repo.save_gateway(tx, g, now, insert=not exists)
        return SeedImportResult(
            tenants=len(seed.tenants),
            devices=len(seed.devices),
            numbers=len(seed.numbers),
            gateways=len(seed.gateways),
            replaced=replaced,
        )

    # ---- helpers

    async def _state(self, tx: Tx, tenant_id: str) -> repo.TenantState:
        st = await repo.load_state(tx, tenant_id)
        if st is None:
            raise NotFound("tenant", tenant_id)
        return st

    async def _state_exists(self, tx: Tx, tenant_id: str) -> None:
        if not await tx.fetchval("SELECT 1 FROM tenants WHERE id = $1", tenant_id):
            raise NotFound("tenant", tenant_id)


async def import_seed(store: Store, seed: SeedData, *, replace: bool = False) -> SeedImportResult:
    """`Service(store).import_seed(Principal.operator(), seed, replace=replace)`: used by
    `softswitch tenant import FILE` and `serve --seed FILE` on an empty store."""
    return await Service(store).import_seed(Principal.operator(), seed, replace=replace)


# --------------------------------------------------------------------------- module helpers

_PROMPT_COLS = "id, tenant_id, name, content_type, size, created_at"


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _ts_text(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _limit(limit: int) -> int:
    return max(1, min(int(limit), MAX_PAGE))


def _encode_cursor(keys: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(keys).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None, size: int) -> list[Any] | None:
    if not cursor:
        return None
    try:
        keys = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError as exc:
        raise InvalidInput("invalid-cursor", "malformed cursor", {"cursor": cursor}) from exc
    if not isinstance(keys, list) or len(keys) != size or not all(isinstance(k, str) for k in keys):
        raise InvalidInput("invalid-cursor", "malformed cursor", {"cursor": cursor})
    return keys


def _page(items: list[T], limit: int, key: Callable[[T], list[Any]]) -> Page[T]:
    if len(items) > limit:
        return Page(items=items[:limit], next_cursor=_encode_cursor(key(items[limit - 1])))
    return Page(items=items)


class _Query:
    """WHERE clauses with `{}` placeholders numbered as $1, $2 … in order."""

    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.args: list[Any] = []

    def where(self, clause: str, *args: Any) -> None:
        marks = [f"${len(self.args) + i + 1}" for i in range(len(args))]
        self.clauses.append(clause.format(*marks))
        self.args.extend(args)

    def sql(self, select: str, order: str, limit: int) -> str:
        where = f" WHERE {' AND '.join(self.clauses)}" if self.clauses else ""
        return f"{select}{where} ORDER BY {order} LIMIT {int(limit)}"


def _contract(st: repo.TenantState) -> Number:
    return next(n for n in st.numbers if n.kind is NumberKind.CONTRACT)


def _find_number(st: repo.TenantState, text: str) -> Number:
    try:
        e164 = normalize_number(str(text))
    except ValueError:
        raise NotFound("number", text) from None
    for n in st.numbers:
        if n.e164 == e164:
            return n
    raise NotFound("number", text)


def _find_device(st: repo.TenantState, device_id: str) -> Device:
    for d in st.devices:
        if d.id == device_id:
            return d
    raise NotFound("device", device_id)


def _require_option(n: Number, option: str) -> None:
    if not getattr(n.options, option):
        raise RuleViolation(
            "option-required",
            f"the number has no {option} option",
            {"rule": f"{option} needs its option", "option": option, "number": n.e164},
        )


async def _number_free(tx: Tx, e164: str) -> None:
    if await tx.fetchval("SELECT 1 FROM numbers WHERE e164 = $1", e164):
        raise Conflict(
            "number-taken",
            f"{e164} belongs to a tenant already",
            {"rule": "a number belongs to one tenant", "number": e164},
        )


def _check_seed_rules(seed: SeedData) -> None:
    devices: dict[str, list[Device]] = {t.id: [] for t in seed.tenants}
    numbers: dict[str, list[Number]] = {t.id: [] for t in seed.tenants}
    for d in seed.devices:
        devices.setdefault(d.tenant_id, []).append(d)
    for n in seed.numbers:
        numbers.setdefault(n.tenant_id, []).append(n)
    for t in seed.tenants:
        rules.check_tenant(t, devices[t.id], numbers[t.id])


async def _seed_unique(tx: Tx, seed: SeedData) -> None:
    """Numbers, usernames and device ids of the seed are free (one query per table)."""
    taken = {r["e164"] for r in await tx.fetch("SELECT e164 FROM numbers")}
    for n in seed.numbers:
        if n.e164 in taken:
            raise Conflict(
                "number-taken",
                f"{n.e164} belongs to a tenant already",
                {"rule": "a number belongs to one tenant", "number": n.e164},
            )
    rows = await tx.fetch("SELECT id, username FROM devices")
    usernames, ids = {r["username"] for r in rows}, {r["id"] for r in rows}
    for d in seed.devices:
        if d.username in usernames:
            raise Conflict(
                "username-taken", f"SIP username {d.username!r} is taken", {"username": d.username}
            )
        if d.id in ids:
            raise Conflict("id-taken", f"device id {d.id!r} exists", {"id": d.id})


def _device_info_of(row: Row) -> DeviceInfo:
    return DeviceInfo(
        id=row["id"],
        tenant_id=row["tenant_id"],
        username=row["username"],
        kind=DeviceKind(row["kind"]),
        presented_number=row["presented_number"],
        display_name=row["display_name"],
        free_calls_10min=bool(row["free_calls_10min"]),
        web_phonebook=bool(row["web_phonebook"]),
        release_seq=int(row["release_seq"]),
        release_requested_at=parse_ts(row["release_requested_at"]),
        created_at=_ts(row["created_at"]),
        updated_at=_ts(row["updated_at"]),
    )


async def _device_info(tx: Tx, device_id: str) -> DeviceInfo:
    row = await tx.fetchrow("SELECT * FROM devices WHERE id = $1", device_id)
    assert row is not None
    return _device_info_of(row)


def _prompt_info(row: Row) -> PromptInfo:
    return PromptInfo(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        content_type=row["content_type"],
        size=int(row["size"]),
        created_at=_ts(row["created_at"]),
    )


def _token_info(row: Row) -> TokenInfo:
    return TokenInfo(
        id=row["id"],
        scope=row["scope"],
        tenant_id=row["tenant_id"],
        label=row["label"],
        created_at=_ts(row["created_at"]),
    )


def _phonebook_of(row: Row) -> PhonebookEntry:
    return PhonebookEntry(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        number=row["number"],
        company=row["company"],
        note=row["note"],
        created_at=_ts(row["created_at"]),
        updated_at=_ts(row["updated_at"]),
    )


async def _phonebook_entry(tx: Tx, tenant_id: str, entry_id: str) -> PhonebookEntry:
    row = await tx.fetchrow(
        "SELECT * FROM phonebook_entries WHERE id = $1 AND tenant_id = $2", entry_id, tenant_id
    )
    if row is None:
        raise NotFound("phonebook entry", entry_id)
    return _phonebook_of(row)


async def _phonebook_room(tx: Tx, tenant_id: str, adding: int, *, replace_all: bool) -> None:
    current = (
        0
        if replace_all
        else int(
            await tx.fetchval(
                "SELECT COUNT(*) FROM phonebook_entries WHERE tenant_id = $1", tenant_id
            )
        )
    )
    if current + adding > MAX_PHONEBOOK_ENTRIES:
        raise RuleViolation(
            "phonebook-full",
            f"at most {MAX_PHONEBOOK_ENTRIES} entries",
            {
                "rule": "web phonebook ≤ 1,000 entries per tenant",
                "limit": MAX_PHONEBOOK_ENTRIES,
                "requested": current + adding,
            },
        )


async def _insert_phonebook(
    tx: Tx, tenant_id: str, rows: Sequence[rules.PhonebookRow]
) -> list[str]:
    now = utcnow_text()
    ids = [_new_id("pb") for _ in rows]
    if rows:
        await tx.executemany(
            "INSERT INTO phonebook_entries (id, tenant_id, name, number, company, note,"
            " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
            [
                (i, tenant_id, r.name, r.number, r.company, r.note, now)
                for i, r in zip(ids, rows, strict=True)
            ],
        )
    return ids


async def _find_gateway(tx: Tx, gateway_id: str) -> Gateway:
    row = await tx.fetchrow("SELECT * FROM gateways WHERE id = $1", gateway_id)
    if row is None:
        raise NotFound("gateway", gateway_id)
    return repo.gateway_of(row)

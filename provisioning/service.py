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
`DeviceInfo` carries no hash at all.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

from .errors import Forbidden
from .model import (
    ANNOUNCEMENT_TEMPLATES,
    DayKind,
    DeviceKind,
    Gateway,
    Number,
    NumberKind,
    SlotAction,
    Tenant,
    TenantStatus,
)

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
        raise NotImplementedError

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
        raise NotImplementedError

    async def list_tokens(
        self, principal: Principal, tenant_id: str | None = None
    ) -> list[TokenInfo]:
        """Operator: all tokens (or one tenant's); tenant: its own tokens."""
        raise NotImplementedError

    async def revoke_token(self, principal: Principal, token_id: str) -> None:
        raise NotImplementedError

    # ---- realm

    async def realm(self) -> str:
        """The SIP digest realm HA1 hashes are computed with (stored in the database)."""
        raise NotImplementedError

    async def set_realm(self, principal: Principal, realm: str) -> None:
        """Operator only; refused (`realm-locked`) once any device exists, since every HA1
        depends on it."""
        raise NotImplementedError

    # ---- tenants

    async def create_tenant(self, principal: Principal, data: TenantCreate) -> Tenant:
        """Operator only. Creates the tenant, its contract number and its basic ID together.
        Errors: invalid-timezone, invalid-number, toll-free-not-presentable (a toll-free
        contract number), number-taken, username-taken, id-taken."""
        raise NotImplementedError

    async def get_tenant(self, principal: Principal, tenant_id: str) -> Tenant:
        raise NotImplementedError

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
        raise NotImplementedError

    async def update_tenant(
        self, principal: Principal, tenant_id: str, data: TenantUpdate
    ) -> Tenant:
        """`identity_verified` and `status` are operator only. Un-verifying does not switch
        anything off (the operator decides)."""
        raise NotImplementedError

    async def delete_tenant(self, principal: Principal, tenant_id: str) -> None:
        """Operator only; removes everything of the tenant (devices lose their bindings)."""
        raise NotImplementedError

    async def set_holidays(
        self, principal: Principal, tenant_id: str, days: Sequence[date]
    ) -> Tenant:
        """Replaces the tenant's holiday list (the "holiday" day kind of the schedule)."""
        raise NotImplementedError

    async def add_holiday(self, principal: Principal, tenant_id: str, day: date) -> Tenant:
        raise NotImplementedError

    async def remove_holiday(self, principal: Principal, tenant_id: str, day: date) -> Tenant:
        """Removing a day that is not a holiday is a no-op."""
        raise NotImplementedError

    # ---- devices (IDs)

    async def create_device(
        self, principal: Principal, tenant_id: str, data: DeviceCreate
    ) -> DeviceInfo:
        """Errors: username-taken, id-taken, presented-number-not-own, toll-free-not-presentable,
        free-calls-apps-only, not-found (a ring number)."""
        raise NotImplementedError

    async def get_device(self, principal: Principal, tenant_id: str, device_id: str) -> DeviceInfo:
        raise NotImplementedError

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
        raise NotImplementedError

    async def update_device(
        self, principal: Principal, tenant_id: str, device_id: str, data: DeviceUpdate
    ) -> DeviceInfo:
        """Errors: presented-number-not-own, toll-free-not-presentable, free-calls-apps-only."""
        raise NotImplementedError

    async def delete_device(self, principal: Principal, tenant_id: str, device_id: str) -> None:
        """Removes the ID from every ring group. Refused: last-id (a tenant keeps ≥ 1 ID),
        additional-numbers-exceed-additional-ids, toll-free-needs-several-ids, ring-group-empty
        (the ID is the only member of some number's ring group: change that group first)."""
        raise NotImplementedError

    async def release_device(
        self, principal: Principal, tenant_id: str, device_id: str
    ) -> DeviceInfo:
        """Release the logged-in device: bumps `release_seq` (Device.release_seq in the
        snapshot); the switch drops the ID's bindings and device lock when it sees the bump, so
        a new device can log in."""
        raise NotImplementedError

    # ---- numbers

    async def add_number(self, principal: Principal, tenant_id: str, data: NumberCreate) -> Number:
        """Additional or toll-free number. Errors: contract-number-exists (kind contract),
        too-many-additional-numbers, additional-numbers-exceed-additional-ids,
        toll-free-needs-several-ids, invalid-number (toll-free kind vs 0120/0800 prefix),
        number-taken, ring-group-empty, ring-group-not-own-ids, invalid-ring-delay."""
        raise NotImplementedError

    async def get_number(self, principal: Principal, tenant_id: str, number: str) -> Number:
        raise NotImplementedError

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
        raise NotImplementedError

    async def update_number(
        self, principal: Principal, tenant_id: str, number: str, data: NumberUpdate
    ) -> Number:
        """Errors: ring-group-empty, ring-group-not-own-ids, invalid-ring-time,
        invalid-ring-delay, invalid-input (max ring time)."""
        raise NotImplementedError

    async def delete_number(self, principal: Principal, tenant_id: str, number: str) -> None:
        """Errors: contract-number-required (the contract number stays),
        number-presented-by-device (an ID presents it: change that ID first)."""
        raise NotImplementedError

    async def set_options(
        self, principal: Principal, tenant_id: str, number: str, data: OptionsUpdate
    ) -> Number:
        """Errors: identity-not-verified, forward-slot-needs-forwarding-option."""
        raise NotImplementedError

    async def set_after_hours(
        self, principal: Principal, tenant_id: str, number: str, data: AfterHoursUpdate
    ) -> Number:
        """Errors: identity-not-verified, option-required (after_hours option not subscribed),
        invalid-schedule, forward-slot-needs-forwarding-option, invalid-announcement."""
        raise NotImplementedError

    async def set_forwarding(
        self, principal: Principal, tenant_id: str, number: str, data: ForwardingUpdate
    ) -> Number:
        """Errors: identity-not-verified, option-required, invalid-number (target),
        forwarding-needs-target."""
        raise NotImplementedError

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
        raise NotImplementedError

    async def list_prompts(self, principal: Principal, tenant_id: str) -> list[PromptInfo]:
        raise NotImplementedError

    async def get_prompt_audio(
        self, principal: Principal, tenant_id: str, prompt_id: str
    ) -> tuple[PromptInfo, bytes]:
        raise NotImplementedError

    async def delete_prompt(self, principal: Principal, tenant_id: str, prompt_id: str) -> None:
        """Refused (prompt-in-use) while a number's announcement names it."""
        raise NotImplementedError

    # ---- web phonebook

    async def add_phonebook_entry(
        self, principal: Principal, tenant_id: str, data: PhonebookEntryInput
    ) -> PhonebookEntry:
        """Errors: phonebook-full (1,000 per tenant), invalid-input."""
        raise NotImplementedError

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
        raise NotImplementedError

    async def update_phonebook_entry(
        self, principal: Principal, tenant_id: str, entry_id: str, data: PhonebookEntryInput
    ) -> PhonebookEntry:
        raise NotImplementedError

    async def delete_phonebook_entry(
        self, principal: Principal, tenant_id: str, entry_id: str
    ) -> None:
        raise NotImplementedError

    async def import_phonebook_csv(
        self, principal: Principal, tenant_id: str, csv_data: bytes | str, *, replace: bool = False
    ) -> PhonebookImportResult:
        """CSV rows `name,number[,company[,note]]`; an optional header row (first cell "name"
        or "名前") is skipped; bytes are decoded as UTF-8 (BOM allowed) or else CP932 (Excel).
        All-or-nothing: any bad row → `PhonebookImportRejected` (400
        `phonebook-import-invalid`, details.errors = [{row, reason}, …]) and nothing changes.
        `replace=True` replaces the whole phonebook. phonebook-full if the result would
        exceed 1,000 entries."""
        raise NotImplementedError

    # ---- carrier gateways (operator only)

    async def create_gateway(self, principal: Principal, data: GatewayInput) -> Gateway:
        raise NotImplementedError

    async def get_gateway(self, principal: Principal, gateway_id: str) -> Gateway:
        raise NotImplementedError

    async def list_gateways(self, principal: Principal) -> list[Gateway]:
        raise NotImplementedError

    async def update_gateway(
        self, principal: Principal, gateway_id: str, data: GatewayUpdate
    ) -> Gateway:
        raise NotImplementedError

    async def delete_gateway(self, principal: Principal, gateway_id: str) -> None:
        raise NotImplementedError

    # ---- seed import

    async def import_seed(
        self, principal: Principal, seed: SeedData, *, replace: bool = False
    ) -> SeedImportResult:
        """Operator only. Writes a `SeedData` (from `provisioning.seed.load_seed`) in one
        transaction. A tenant id that already exists is refused (id-taken) unless
        `replace=True`, which replaces that tenant entirely; gateways are upserted by id.
        On an empty store (no device yet) the seed's realm becomes the store's realm;
        otherwise the realms must match (realm-mismatch), since HA1 hashes depend on it."""
        raise NotImplementedError


async def import_seed(store: Store, seed: SeedData, *, replace: bool = False) -> SeedImportResult:
    """`Service(store).import_seed(Principal.operator(), seed, replace=replace)`: used by
    `softswitch tenant import FILE` and `serve --seed FILE` on an empty store."""
    return await Service(store).import_seed(Principal.operator(), seed, replace=replace)

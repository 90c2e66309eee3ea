"""The provisioning services: every tenant-data operation, with the service rules enforced.
One module per resource, matching `provisioning/api/resources/`:

    base.py             Principal, UNSET (patch semantics), pages and cursors, shared helpers
    tokens.py           API tokens, authentication                  (api/resources/tokens.py)
    realm.py            the SIP digest realm                        (api/resources/tokens.py)
    tenants.py          tenants and holidays                        (api/resources/tenants.py)
    devices.py          devices (IDs), passwords as HA1             (api/resources/devices.py)
    numbers.py          numbers, ring timings, ring group           (api/resources/numbers.py)
    number_settings.py  options, after-hours, forwarding, …   (api/resources/number_settings.py)
    prompts.py          uploaded announcements, converted at upload (api/resources/prompts.py)
    voicemail.py        voicemail messages: the media service's repository, retention
    mailboxes.py        a tenant number's messages over that repository (api/resources/voicemail.py)
    phonebook.py        the web phonebook and its CSV import        (api/resources/phonebook.py)
    gateways.py         carrier gateways                            (api/resources/gateways.py)
    audit.py            the API's audit log, its retention          (api/resources/audit.py)
    seeding.py          writing a seed file into a store            (CLI, `serve --seed`)

`Services(store)` holds one of each over one store; the REST API and the CLI are given it.

How every write works: ONE store transaction reads the current state, checks the rules
(`provisioning.rules`), writes (`provisioning.store.queries`: all the SQL lives there), and
the store bumps its version and queues a change notification (PostgreSQL NOTIFY, delivered
on commit; in-process for SQLite). Any `ProvisioningError` rolls the transaction back: a
refused request changes nothing. Every committed write (tokens, prompts and the phonebook
included) bumps the store version, so the switch's snapshot is rebuilt; a rebuild of
thousands of tenants is well under a second.

Authorisation is enforced here too: every method takes the caller's `Principal` (from
`services.tokens.authenticate(token)`; the CLI, being local and trusted, uses
`Principal.operator()`). Operator-only: tenant create/delete, `identity_verified`, `status`,
gateways, tokens of other scopes, realm, seed import. A tenant principal only touches its
own tenant.

Patch semantics: the `*Update` dataclasses default every field to `UNSET`; only the fields
given change. (The API maps an absent JSON key to UNSET and `null` to None.)

Decisions (for the README): prompts keep their audio in the database (`prompts.py`); the
phonebook CSV import is all-or-nothing (`phonebook.py`); deleting an ID that is the only
member of a ring group is refused (`ring-group-empty`); other rule decisions are listed in
`provisioning.rules`.
"""

from __future__ import annotations

from ..records import DeviceInfo, PhonebookEntry, PromptInfo, TokenInfo
from ..store.base import Store
from .audit import AuditQuery, AuditService, PendingAudit, auditing, note_tenant
from .base import UNSET, Page, Principal, Unset
from .devices import DeviceCreate, DeviceService, DeviceUpdate
from .gateways import GatewayInput, GatewayService, GatewayUpdate
from .mailboxes import DeletedMessages, MailboxService
from .number_settings import (
    SIDE_EFFECT_RULES,
    SWITCHES,
    AfterHoursUpdate,
    ForwardingUpdate,
    NumberSettingsService,
    OptionsUpdate,
    SettingsChange,
    SideEffect,
)
from .numbers import NumberCreate, NumberService, NumberUpdate
from .phonebook import PhonebookEntryInput, PhonebookImportResult, PhonebookService
from .prompts import (
    AUDIO_ERROR_IDS,
    STORED_CONTENT_TYPE,
    AudioConverter,
    PromptService,
    audio_refused,
)
from .realm import RealmService
from .seeding import SeedImportResult, SeedService, import_seed, seed_if_empty
from .tenants import TenantCreate, TenantService, TenantUpdate
from .tokens import CreatedToken, TokenService

__all__ = [
    "AUDIO_ERROR_IDS",
    "SIDE_EFFECT_RULES",
    "STORED_CONTENT_TYPE",
    "SWITCHES",
    "UNSET",
    "AfterHoursUpdate",
    "AudioConverter",
    "AuditQuery",
    "AuditService",
    "CreatedToken",
    "DeletedMessages",
    "DeviceCreate",
    "DeviceInfo",
    "DeviceService",
    "DeviceUpdate",
    "ForwardingUpdate",
    "GatewayInput",
    "GatewayService",
    "GatewayUpdate",
    "MailboxService",
    "NumberCreate",
    "NumberService",
    "NumberSettingsService",
    "NumberUpdate",
    "OptionsUpdate",
    "Page",
    "PendingAudit",
    "PhonebookEntry",
    "PhonebookEntryInput",
    "PhonebookImportResult",
    "PhonebookService",
    "Principal",
    "PromptInfo",
    "PromptService",
    "RealmService",
    "SeedImportResult",
    "SeedService",
    "Services",
    "SettingsChange",
    "SideEffect",
    "TenantCreate",
    "TenantService",
    "TenantUpdate",
    "TokenInfo",
    "TokenService",
    "Unset",
    "audio_refused",
    "auditing",
    "import_seed",
    "note_tenant",
    "seed_if_empty",
]


class Services:
    """One service per resource, all over one `Store` (services hold no other state)."""

    __slots__ = (
        "audit",
        "devices",
        "gateways",
        "number_settings",
        "numbers",
        "phonebook",
        "prompts",
        "realm",
        "seeding",
        "store",
        "tenants",
        "tokens",
    )

    def __init__(self, store: Store) -> None:
        self.store = store
        self.tokens = TokenService(store)
        self.realm = RealmService(store)
        self.tenants = TenantService(store)
        self.devices = DeviceService(store)
        self.numbers = NumberService(store)
        self.number_settings = NumberSettingsService(self.numbers)
        self.prompts = PromptService(store)
        self.phonebook = PhonebookService(store)
        self.gateways = GatewayService(store)
        self.seeding = SeedService(store)
        self.audit = AuditService(store)

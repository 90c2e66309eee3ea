"""The routing snapshot: an immutable, in-memory picture of every tenant, ID (device), number
and carrier gateway. The switch routes only from a Snapshot (never a database query on the call
path); the provisioning store builds a new one on every committed change, and until then the
TOML seed file fills it (`provisioning.seed`).

CONTRACT — the switch (`switch/proxy`), the routing policy (`routing/`) and the provisioning
store all use these types. Fields may be added (with defaults); none may be renamed.

Service rules (../shared/docs/service-rules.md) that shape this model:
- ID = one device login (app / desk phone / ATA); channels of a tenant = its number of IDs.
- One contract number, at most 2 additional numbers (never more than the additional IDs),
  toll-free 0120/0800 incoming only.
- Per number: a ring group (non-empty subset of the tenant's IDs), options (after-hours,
  voicemail, forwarding, recording), an after-hours schedule of 4 day kinds x 48 half-hour
  slots, forwarding target, voicemail ring time (5..30 s in steps of 5).
- Passwords exist only as HA1 hashes (RFC 7616: MD5 and SHA-256 of "user:realm:password").
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType

SLOTS_PER_DAY = 48  # 30-minute slots, slot i covers [i*30 min, (i+1)*30 min) local time
VOICEMAIL_RING_TIMES = (5, 10, 15, 20, 25, 30)
ANNOUNCEMENT_TEMPLATES = ("template-1", "template-2", "template-3")


class DeviceKind(enum.StrEnum):
    APP = "app"
    DESK = "desk"
    ATA = "ata"


class NumberKind(enum.StrEnum):
    CONTRACT = "contract"
    ADDITIONAL = "additional"
    TOLL_FREE = "toll-free"  # 0120 / 0800: incoming only


class DayKind(enum.StrEnum):
    WEEKDAY = "weekday"
    SATURDAY = "saturday"
    SUNDAY = "sunday"
    HOLIDAY = "holiday"


class SlotAction(enum.StrEnum):
    RING = "ring"
    ANNOUNCE = "announce"
    FORWARD = "forward"  # only valid when the number has the forwarding option


class TenantStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


_NATIONAL = re.compile(r"0[1-9][0-9]{8,9}")


@functools.lru_cache(maxsize=4096)  # pure; the same numbers recur on every call
def normalize_number(text: str) -> str:
    """Japanese national or E.164 forms -> E.164 "+81…".

    "03-1234-5678", "0312345678", "+81312345678", "81312345678", "tel:+81-3-1234-5678"
    all give "+81312345678"; "0120123456" gives "+81120123456". Raises ValueError otherwise.
    Short codes (110, 118, 119, 104 …) and international numbers are not tenant numbers and
    raise ValueError here; routing classifies dialled strings itself.
    """
    digits = re.sub(r"[\s\-().]", "", text.removeprefix("tel:"))
    if digits.startswith("+81"):
        digits = "0" + digits[3:]
    elif digits.startswith("81") and len(digits) in (11, 12):
        digits = "0" + digits[2:]
    if not _NATIONAL.fullmatch(digits):
        raise ValueError(f"not a Japanese telephone number: {text!r}")
    return "+81" + digits[1:]


def national_form(e164: str) -> str:
    """ "+81312345678" -> "0312345678"."""
    if not e164.startswith("+81"):
        raise ValueError(f"not a Japanese E.164 number: {e164!r}")
    return "0" + e164[3:]


def is_toll_free(e164: str) -> bool:
    nat = national_form(e164)
    return nat.startswith("0120") or nat.startswith("0800")


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    """An ID: one device login. `username` is the SIP digest username and is unique across
    the whole service."""

    id: str
    tenant_id: str
    username: str
    kind: DeviceKind
    ha1_md5: str
    ha1_sha256: str
    presented_number: str  # E.164, one of the tenant's numbers (not toll-free)
    display_name: str | None = None
    free_calls_10min: bool = False  # apps only
    web_phonebook: bool = False
    # Bumped by the store each time the tenant releases the "logged-in device": when it differs
    # from the previous snapshot's, the switch drops the ID's bindings and device lock.
    release_seq: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class NumberOptions:
    after_hours: bool = False
    voicemail: bool = False
    forwarding: bool = False
    recording: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class AfterHours:
    """The after-hours schedule: `enabled` is the one-touch ON/OFF; `slots[day_kind]` has
    exactly SLOTS_PER_DAY actions. `announcement` is a template name or "prompt:<id>"."""

    enabled: bool = False
    slots: Mapping[DayKind, tuple[SlotAction, ...]] = field(
        default_factory=lambda: MappingProxyType(
            {k: (SlotAction.RING,) * SLOTS_PER_DAY for k in DayKind}
        )
    )
    announcement: str = ANNOUNCEMENT_TEMPLATES[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class Forwarding:
    enabled: bool = False
    target: str | None = None  # E.164 or national number of any Japanese line (mobiles too)


@dataclass(frozen=True, slots=True, kw_only=True)
class Number:
    e164: str
    tenant_id: str
    kind: NumberKind
    ring_group: tuple[str, ...]  # Device.id values, non-empty
    label: str | None = None  # shown to the device as a display-name prefix when enabled
    label_in_display_name: bool = False
    app_ring_delay: float = 0.0  # seconds apps wait while a desk phone/ATA of the group rings
    max_ring_time: float = 60.0  # seconds before 480 when nobody answers and no voicemail
    options: NumberOptions = NumberOptions()
    after_hours: AfterHours = AfterHours()
    forwarding: Forwarding = Forwarding()
    voicemail_ring_time: int = 15  # one of VOICEMAIL_RING_TIMES
    recording_notice: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Tenant:
    id: str
    name: str
    timezone: str = "Asia/Tokyo"
    identity_verified: bool = False
    status: TenantStatus = TenantStatus.ACTIVE
    holidays: frozenset[date] = frozenset()

    @property
    def active(self) -> bool:
        return self.status is TenantStatus.ACTIVE


@dataclass(frozen=True, slots=True, kw_only=True)
class Gateway:
    """A carrier trunk. Calls from `allowed_sources` (IP addresses) are trusted as coming from
    the carrier; calls to numbers outside the service go to host:port over `transport`."""

    id: str
    name: str
    host: str
    port: int = 5060
    transport: str = "udp"  # udp / tcp / tls
    allowed_sources: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """Everything routing needs, indexed for O(1) lookups. Build with `Snapshot.build`."""

    version: int
    realm: str
    tenants: Mapping[str, Tenant]
    devices: Mapping[str, Device]  # by Device.id
    devices_by_username: Mapping[str, Device]
    numbers: Mapping[str, Number]  # by E.164
    gateways: tuple[Gateway, ...]
    tenant_devices: Mapping[str, tuple[Device, ...]]  # by tenant id
    tenant_numbers: Mapping[str, tuple[Number, ...]]  # by tenant id

    @classmethod
    def build(
        cls,
        *,
        version: int,
        realm: str,
        tenants: list[Tenant],
        devices: list[Device],
        numbers: list[Number],
        gateways: list[Gateway],
    ) -> Snapshot:
        by_tenant_dev: dict[str, list[Device]] = {t.id: [] for t in tenants}
        for d in devices:
            by_tenant_dev.setdefault(d.tenant_id, []).append(d)
        by_tenant_num: dict[str, list[Number]] = {t.id: [] for t in tenants}
        for n in numbers:
            by_tenant_num.setdefault(n.tenant_id, []).append(n)
        return cls(
            version=version,
            realm=realm,
            tenants=MappingProxyType({t.id: t for t in tenants}),
            devices=MappingProxyType({d.id: d for d in devices}),
            devices_by_username=MappingProxyType({d.username: d for d in devices}),
            numbers=MappingProxyType({n.e164: n for n in numbers}),
            gateways=tuple(gateways),
            tenant_devices=MappingProxyType({k: tuple(v) for k, v in by_tenant_dev.items()}),
            tenant_numbers=MappingProxyType({k: tuple(v) for k, v in by_tenant_num.items()}),
        )

    @classmethod
    def empty(cls, realm: str = "softswitch") -> Snapshot:
        return cls.build(version=0, realm=realm, tenants=[], devices=[], numbers=[], gateways=[])

    def channels(self, tenant_id: str) -> int:
        """Simultaneous calls the tenant may have: its number of IDs."""
        return len(self.tenant_devices.get(tenant_id, ()))

    def gateway_for_source(self, host: str) -> Gateway | None:
        for gw in self.gateways:
            if host in gw.allowed_sources:
                return gw
        return None

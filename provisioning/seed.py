"""The TOML seed file: tenants, IDs, numbers and gateways in one documented text file.

`softswitch serve --seed FILE` routes from it directly (embedded default and tests), and
`softswitch tenant import FILE` writes it into the provisioning store. The format is described
in README.md ("Seed file"); `deploy/demo-seed.toml` is a complete example.

Passwords may be given in clear (`password = "…"`, hashed here to HA1 with the seed's realm and
then forgotten, `provisioning.credentials`) or as `ha1_md5` + `ha1_sha256`. Nothing else keeps
a clear password.

This module only parses and checks the file (pure: a path or a TOML document in, `SeedData`
out). Writing it into a store is `provisioning.services.seeding`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .credentials import ha1_pair
from .model import (
    SLOTS_PER_DAY,
    VOICEMAIL_RING_TIMES,
    AfterHours,
    DayKind,
    Device,
    DeviceKind,
    Forwarding,
    Gateway,
    Number,
    NumberKind,
    NumberOptions,
    SlotAction,
    Snapshot,
    Tenant,
    TenantStatus,
    normalize_number,
)
from .rules import MAX_ADDITIONAL_NUMBERS, TRANSPORTS

DEFAULT_REALM = "softswitch.local"
_SLOT_LETTERS = {"R": SlotAction.RING, "A": SlotAction.ANNOUNCE, "F": SlotAction.FORWARD}


class SeedError(ValueError):
    """The seed file breaks its format or a service rule; the message names where."""


@dataclass(frozen=True, slots=True)
class SeedData:
    realm: str
    tenants: list[Tenant]
    devices: list[Device]
    numbers: list[Number]
    gateways: list[Gateway]

    def snapshot(self, version: int = 1) -> Snapshot:
        return Snapshot.build(
            version=version,
            realm=self.realm,
            tenants=self.tenants,
            devices=self.devices,
            numbers=self.numbers,
            gateways=self.gateways,
        )


def load_seed(path: str | Path) -> SeedData:
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SeedError(f"{path}: {exc}") from exc
    return parse_seed(doc)


def parse_seed(doc: Mapping[str, Any]) -> SeedData:
    realm = str(doc.get("realm", DEFAULT_REALM))
    gateways = [_gateway(g, f"gateways[{i}]") for i, g in enumerate(doc.get("gateways", []))]
    tenants: list[Tenant] = []
    devices: list[Device] = []
    numbers: list[Number] = []
    for i, t in enumerate(doc.get("tenants", [])):
        where = f"tenants[{i}]"
        tenant = _tenant(t, where)
        tdevs = [
            _device(d, tenant.id, realm, f"{where}.devices[{j}]")
            for j, d in enumerate(t.get("devices", []))
        ]
        all_ids = tuple(d.id for d in tdevs)
        tnums = [
            _number(n, tenant.id, all_ids, f"{where}.numbers[{j}]")
            for j, n in enumerate(t.get("numbers", []))
        ]
        _check_tenant_rules(tenant, tdevs, tnums, where)
        tenants.append(tenant)
        devices.extend(tdevs)
        numbers.extend(tnums)
    _check_unique([t.id for t in tenants], "tenant id")
    _check_unique([d.id for d in devices], "device id")
    _check_unique([d.username for d in devices], "device username")
    _check_unique([n.e164 for n in numbers], "number")
    _check_unique([g.id for g in gateways], "gateway id")
    return SeedData(realm, tenants, devices, numbers, gateways)


def _check_unique(values: list[str], what: str) -> None:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            raise SeedError(f"duplicate {what}: {v!r}")
        seen.add(v)


def _req(d: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise SeedError(f"{where}: missing {key!r}")
    return d[key]


def _number_of(text: object, where: str) -> str:
    try:
        return normalize_number(str(text))
    except ValueError as exc:
        raise SeedError(f"{where}: {exc}") from exc


def _gateway(g: Mapping[str, Any], where: str) -> Gateway:
    transport = str(g.get("transport", "udp")).lower()
    if transport not in TRANSPORTS:
        raise SeedError(f"{where}: transport must be udp, tcp or tls")
    host = str(_req(g, "host", where))
    return Gateway(
        id=str(_req(g, "id", where)),
        name=str(g.get("name", g.get("id"))),
        host=host,
        port=int(g.get("port", 5061 if transport == "tls" else 5060)),
        transport=transport,
        allowed_sources=tuple(str(s) for s in g.get("allowed_sources", [host])),
    )


def _tenant(t: Mapping[str, Any], where: str) -> Tenant:
    try:
        holidays = frozenset(
            h if isinstance(h, date) else date.fromisoformat(str(h)) for h in t.get("holidays", [])
        )
        status = TenantStatus(t.get("status", "active"))
    except ValueError as exc:
        raise SeedError(f"{where}: {exc}") from exc
    return Tenant(
        id=str(_req(t, "id", where)),
        name=str(t.get("name", t.get("id"))),
        timezone=str(t.get("timezone", "Asia/Tokyo")),
        identity_verified=bool(t.get("identity_verified", False)),
        status=status,
        holidays=holidays,
    )


def _device(d: Mapping[str, Any], tenant_id: str, realm: str, where: str) -> Device:
    dev_id = str(_req(d, "id", where))
    username = str(d.get("username", dev_id))
    try:
        kind = DeviceKind(_req(d, "kind", where))
    except ValueError as exc:
        raise SeedError(f"{where}: kind must be app, desk or ata") from exc
    if "password" in d:
        md5, sha = ha1_pair(username, realm, str(d["password"]))
    else:
        md5, sha = str(_req(d, "ha1_md5", where)), str(_req(d, "ha1_sha256", where))
    free10 = bool(d.get("free_calls_10min", False))
    if free10 and kind is not DeviceKind.APP:
        raise SeedError(f"{where}: 10-minute free calls are for apps only")
    return Device(
        id=dev_id,
        tenant_id=tenant_id,
        username=username,
        kind=kind,
        ha1_md5=md5,
        ha1_sha256=sha,
        presented_number=_number_of(_req(d, "presented_number", where), where),
        display_name=d.get("display_name"),
        free_calls_10min=free10,
        web_phonebook=bool(d.get("web_phonebook", False)),
    )


def _slots(spec: object, where: str) -> tuple[SlotAction, ...]:
    """A list of 48 action names ("ring", "announce", "forward"), as in the API; or the older
    compact form, a string of 48 letters R/A/F."""
    items = list(spec) if isinstance(spec, str | list) else []
    try:
        actions = tuple(_SLOT_LETTERS[s] if s in _SLOT_LETTERS else SlotAction(s) for s in items)
    except ValueError as exc:
        raise SeedError(f"{where}: {exc}") from exc
    if len(actions) != SLOTS_PER_DAY:
        raise SeedError(f"{where}: needs exactly {SLOTS_PER_DAY} slots, got {len(actions)}")
    return actions


_DAYS = tuple(k.value for k in DayKind)
_AFTER_HOURS_KEYS = {"enabled", "announcement", "slots", *_DAYS}


def _day_slots(a: Mapping[str, Any], where: str) -> dict[DayKind, tuple[SlotAction, ...]]:
    """`slots = { weekday = [...], … }` as in the API; the day kinds directly under
    `after_hours` (the older layout) are still read. Days not given ring all day."""
    nested = a.get("slots", {})
    if not isinstance(nested, Mapping) or set(nested) - set(_DAYS):
        raise SeedError(f"{where}.slots: a table of {', '.join(_DAYS)}")
    out = {}
    for day in DayKind:
        if day.value in nested and day.value in a:
            raise SeedError(f"{where}: {day.value} given twice (slots.{day.value} and {day.value})")
        if day.value in nested:
            out[day] = _slots(nested[day.value], f"{where}.slots.{day.value}")
        else:
            spec = a.get(day.value)
            ring_day = (SlotAction.RING,) * SLOTS_PER_DAY
            out[day] = ring_day if spec is None else _slots(spec, f"{where}.{day.value}")
    return out


def _after_hours(a: Mapping[str, Any], where: str) -> AfterHours:
    unknown = sorted(set(a) - _AFTER_HOURS_KEYS)
    if unknown:
        raise SeedError(f"{where}: unknown key(s) {', '.join(unknown)}")
    slots = _day_slots(a, where)
    return AfterHours(
        enabled=bool(a.get("enabled", False)),
        slots=MappingProxyType(slots),
        announcement=str(a.get("announcement", "template-1")),
    )


def _number(n: Mapping[str, Any], tenant_id: str, all_ids: tuple[str, ...], where: str) -> Number:
    e164 = _number_of(_req(n, "number", where), where)
    try:
        kind = NumberKind(n.get("kind", "additional"))
    except ValueError as exc:
        raise SeedError(f"{where}: kind must be contract, additional or toll-free") from exc
    group = tuple(str(x) for x in n.get("ring_group", all_ids))
    if not group or any(x not in all_ids for x in group):
        raise SeedError(f"{where}: ring_group must be a non-empty subset of the tenant's IDs")
    opts = n.get("options", {})
    options = NumberOptions(
        **{
            k: bool(opts.get(k, False))
            for k in ("after_hours", "voicemail", "forwarding", "recording")
        }
    )
    fwd = n.get("forwarding", {})
    ring_time = int(n.get("voicemail_ring_time", 15))
    if ring_time not in VOICEMAIL_RING_TIMES:
        raise SeedError(f"{where}: voicemail_ring_time must be one of {VOICEMAIL_RING_TIMES}")
    after = _after_hours(n.get("after_hours", {}), f"{where}.after_hours")
    if not options.forwarding and any(SlotAction.FORWARD in s for s in after.slots.values()):
        raise SeedError(f"{where}: forward slots need the forwarding option")
    return Number(
        e164=e164,
        tenant_id=tenant_id,
        kind=kind,
        ring_group=group,
        label=n.get("label"),
        label_in_display_name=bool(n.get("label_in_display_name", False)),
        app_ring_delay=float(n.get("app_ring_delay", 0.0)),
        max_ring_time=float(n.get("max_ring_time", 60.0)),
        options=options,
        after_hours=after,
        forwarding=Forwarding(
            enabled=bool(fwd.get("enabled", False)),
            target=_number_of(fwd["target"], where) if fwd.get("target") else None,
        ),
        voicemail_ring_time=ring_time,
        recording_notice=bool(n.get("recording_notice", False)),
    )


def _check_tenant_rules(
    tenant: Tenant, devices: list[Device], numbers: list[Number], where: str
) -> None:
    kinds = [n.kind for n in numbers]
    if kinds.count(NumberKind.CONTRACT) != 1:
        raise SeedError(f"{where}: a tenant has exactly one contract number")
    additional = kinds.count(NumberKind.ADDITIONAL)
    if additional > MAX_ADDITIONAL_NUMBERS or additional > max(len(devices) - 1, 0):
        raise SeedError(
            f"{where}: at most {MAX_ADDITIONAL_NUMBERS} additional numbers,"
            " and no more than the additional IDs"
        )
    if NumberKind.TOLL_FREE in kinds and len(devices) < 2:
        raise SeedError(f"{where}: toll-free numbers need more than one ID")
    own = {n.e164 for n in numbers if n.kind is not NumberKind.TOLL_FREE}
    for d in devices:
        if d.presented_number not in own:
            raise SeedError(f"{where}: device {d.id} presents a number the tenant does not own")
    if not tenant.identity_verified and any(
        n.forwarding.enabled or n.after_hours.enabled for n in numbers
    ):
        raise SeedError(f"{where}: after-hours and forwarding need a verified identity")

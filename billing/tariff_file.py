"""The tariff document: TOML (or the same shape as a JSON object), parsed into a `TariffTable`.

    format = 1                                   # this layout; anything else is refused

    [[versions]]                                 # one per price change, any order
    id = "2021-06-26"                            # [A-Za-z0-9][A-Za-z0-9._-]*, unique
    valid_from = 2021-06-26T00:00:00+09:00       # an instant: the UTC offset is required
    note = "free text"                           # optional
    statement_rounding = "down"                  # down | half-up | up (the statement total)

    [versions.outbound.app]                      # also .desk and .ata: every device kind
    landline = { yen = "20", per_seconds = 30 }  # price per started unit of seconds
    directory = { yen = "265", per_call = true } # price per answered call
    # … every destination class: landline, mobile, ip-phone, navi-dial, toll-free,
    #   directory, other

    [versions.forwarded]                         # every destination class but directory
    [versions.toll_free_inbound]                 # landline, mobile, payphone

    [versions.free_call_plan]
    free_seconds = 600
    devices = ["app"]
    not_covered = ["navi-dial", "directory", "other"]
    fair_use_calls_per_day = 30

Prices are strings (or integers) of yen with at most one decimal place: "17.5", never the
TOML float 17.5, so that no binary fraction ever reaches a bill. Unknown keys, missing keys,
wrong types and incomplete rate cards are refused with a `TariffError` naming the field
("versions[0].outbound.desk.mobile.yen: …"). The shipped default is `billing/tariffs.toml`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any, NoReturn, TypeVar

from provisioning.model import DeviceKind

from .classes import CallClass, CallerKind
from .errors import TariffError
from .money import Money, Rounding
from .tariff import FreeCallPlan, Rate, TariffTable, TariffVersion

FORMAT = 1
DEFAULT_FILE = "tariffs.toml"

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True, kw_only=True)
class _At:
    """Where in the document we are, for error messages."""

    path: str

    def key(self, name: str) -> _At:
        return _At(path=f"{self.path}.{name}" if self.path else name)

    def fail(self, error_id: str, message: str) -> NoReturn:
        raise TariffError(error_id, self.path, message)


def parse_tariffs_toml(text: str) -> TariffTable:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TariffError("tariff-syntax", "", f"not a TOML document: {exc}") from None
    return parse_tariffs(data)


def parse_tariffs(data: Mapping[str, Any]) -> TariffTable:
    """A parsed document (from TOML, or a JSON object of the same shape) -> a `TariffTable`."""
    root = _table(data, _At(path=""), required={"format", "versions"})
    if type(root["format"]) is not int or root["format"] != FORMAT:
        _At(path="format").fail("tariff-format", f"unsupported format {root['format']!r}")
    versions = root["versions"]
    if not isinstance(versions, list) or not versions:
        _At(path="versions").fail("tariff-no-versions", "an array of at least one version")
    parsed = [_version(v, _At(path=f"versions[{i}]")) for i, v in enumerate(versions)]
    try:
        return TariffTable.of(parsed)
    except TariffError as exc:
        raise _under(exc, _At(path="")) from None


@cache
def default_tariffs() -> TariffTable:
    """The tariff shipped with the package (`billing/tariffs.toml`), parsed once."""
    text = resources.files(__package__).joinpath(DEFAULT_FILE).read_text(encoding="utf-8")
    return parse_tariffs_toml(text)


_VERSION_KEYS = {
    "id",
    "valid_from",
    "statement_rounding",
    "outbound",
    "forwarded",
    "toll_free_inbound",
    "free_call_plan",
}


def _version(value: object, at: _At) -> TariffVersion:
    v = _table(value, at, required=_VERSION_KEYS, optional={"note"})
    devices = {k.value for k in DeviceKind}
    outbound = _table(v["outbound"], at.key("outbound"), required=devices)
    cards = {DeviceKind(k): _card(c, at.key("outbound").key(k)) for k, c in outbound.items()}
    forwarded = _card(v["forwarded"], at.key("forwarded"))
    toll_free = _keyed(CallerKind, v["toll_free_inbound"], at.key("toll_free_inbound"))
    plan = _plan(v["free_call_plan"], at.key("free_call_plan"))
    rounding = _enum(Rounding, v["statement_rounding"], at.key("statement_rounding"))
    version_id, note = _str(v["id"], at.key("id")), _str(v.get("note", ""), at.key("note"))
    valid_from = _instant(v["valid_from"], at.key("valid_from"))
    try:  # only the dataclass's own checks (relative paths) are caught here
        return TariffVersion(
            id=version_id,
            valid_from=valid_from,
            note=note,
            statement_rounding=rounding,
            outbound=_frozen(cards),
            forwarded=forwarded,
            toll_free_inbound=toll_free,
            plan=plan,
        )
    except TariffError as exc:
        raise _under(exc, at) from None


def _card(value: object, at: _At) -> Mapping[CallClass, Rate]:
    return _keyed(CallClass, value, at)


def _keyed(enum_type: Callable[[str], K], value: object, at: _At) -> Mapping[K, Rate]:
    """A table of rates keyed by an enum's values; unknown keys refused here, missing ones by
    `TariffVersion` (which knows which keys each table needs)."""
    table = _table(value, at)
    return _frozen({_key(enum_type, k, at.key(k)): _rate(r, at.key(k)) for k, r in table.items()})


def _key(enum_type: Callable[[str], K], name: str, at: _At) -> K:
    try:
        return enum_type(name)
    except ValueError:
        at.fail("tariff-unknown-key", "unknown key")


def _rate(value: object, at: _At) -> Rate:
    r = _table(value, at, required={"yen"}, optional={"per_seconds", "per_call"})
    if ("per_seconds" in r) == ("per_call" in r):
        at.fail("tariff-bad-value", "a rate has exactly one of per_seconds or per_call")
    if "per_call" in r and r["per_call"] is not True:
        at.key("per_call").fail("tariff-bad-value", "per_call must be true when present")
    unit = r.get("per_seconds")
    if unit is not None and type(unit) is not int:
        at.key("per_seconds").fail("tariff-wrong-type", f"an integer of seconds, not {unit!r}")
    price = _money(r["yen"], at.key("yen"))
    try:
        return Rate(price=price, unit_seconds=unit)
    except TariffError as exc:
        raise _under(exc, at) from None


def _plan(value: object, at: _At) -> FreeCallPlan:
    required = {"free_seconds", "devices", "not_covered", "fair_use_calls_per_day"}
    p = _table(value, at, required=required)
    free = _int(p["free_seconds"], at.key("free_seconds"))
    devices = _enum_list(DeviceKind, p["devices"], at.key("devices"))
    not_covered = _enum_list(CallClass, p["not_covered"], at.key("not_covered"))
    fair = _int(p["fair_use_calls_per_day"], at.key("fair_use_calls_per_day"))
    try:
        return FreeCallPlan(
            free_seconds=free,
            devices=frozenset(devices),
            not_covered=frozenset(not_covered),
            fair_use_calls_per_day=fair,
        )
    except TariffError as exc:
        raise _under(exc, at) from None


# --- leaves -------------------------------------------------------------------------------


def _table(
    value: object, at: _At, required: set[str] | None = None, optional: set[str] | None = None
) -> Mapping[str, Any]:
    """A table; with `required`, exactly the required keys plus any of `optional`."""
    if not isinstance(value, Mapping):
        at.fail("tariff-wrong-type", f"must be a table, not {type(value).__name__}")
    if required is None:
        return value
    unknown = sorted(set(value) - required - (optional or set()))
    if unknown:
        at.key(unknown[0]).fail("tariff-unknown-key", "unknown key")
    missing = sorted(required - set(value))
    if missing:
        also = f" (also missing: {', '.join(missing[1:])})" if missing[1:] else ""
        at.key(missing[0]).fail("tariff-missing-key", f"missing{also}")
    return value


def _str(value: object, at: _At) -> str:
    if not isinstance(value, str):
        at.fail("tariff-wrong-type", f"must be a string, not {value!r}")
    return value


def _int(value: object, at: _At) -> int:
    if type(value) is not int:  # bool is an int subclass: refused too
        at.fail("tariff-wrong-type", f"must be an integer, not {value!r}")
    return value


def _money(value: object, at: _At) -> Money:
    if type(value) is int:
        if value < 0:
            at.fail("tariff-bad-value", f"a price cannot be negative: {value}")
        return Money.yen(value)
    if not isinstance(value, str):
        at.fail("tariff-wrong-type", f'write yen as a string ("17.5") or an integer: {value!r}')
    try:
        return Money.parse(value)
    except ValueError as exc:
        at.fail("tariff-bad-value", str(exc))


def _instant(value: object, at: _At) -> datetime:
    if isinstance(value, str):  # JSON has no datetime type
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            at.fail("tariff-bad-value", f"not an ISO 8601 instant: {value!r}")
    if not isinstance(value, datetime):
        at.fail("tariff-wrong-type", f"must be an instant with a UTC offset, not {value!r}")
    if value.utcoffset() is None:
        at.fail("tariff-bad-value", "needs a UTC offset (e.g. 2021-06-26T00:00:00+09:00)")
    return value


def _enum(enum_type: Callable[[str], K], value: object, at: _At) -> K:
    try:
        return enum_type(_str(value, at))
    except ValueError:
        at.fail("tariff-bad-value", f"unknown value {value!r}")


def _enum_list(enum_type: Callable[[str], K], value: object, at: _At) -> list[K]:
    if not isinstance(value, list):
        at.fail("tariff-wrong-type", f"must be an array, not {value!r}")
    return [_enum(enum_type, v, at) for v in value]


def _frozen(mapping: dict[K, V]) -> Mapping[K, V]:
    return MappingProxyType(mapping)


def _under(exc: TariffError, at: _At) -> TariffError:
    """A dataclass's own validation error, re-rooted under the document path `at`."""
    path = f"{at.path}.{exc.path}" if at.path and exc.path else at.path or exc.path
    return TariffError(exc.error_id, path, exc.reason)

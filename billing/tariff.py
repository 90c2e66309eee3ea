"""Tariffs as data: versioned, validated, frozen.

A `TariffTable` is a sequence of `TariffVersion`s, each in force from its `valid_from` instant
until the next one's. A call is rated by the version in force when it *started*, and the
result names that version, so a statement can always say which prices it applied. An operator
changes prices by adding a version for the future (`TariffTable.with_version(…, now=…)`); the
past is never re-priced. The document format is in `billing.tariff_file`.

Every rate is either per *started* unit of `unit_seconds` (¥8 per 3 min: 3:01 is two units) or
per answered call (104 directory: ¥265 a call). Rates and their units are all data; the only
rules in code are how a unit is counted and how the 10-minute plan subtracts its free time.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from provisioning.model import DeviceKind

from .classes import DESTINATION_CLASSES, CallClass, CallerKind
from .errors import RatingError, TariffError
from .money import ZERO, Money, Rounding

MAX_UNIT_SECONDS = 3600
_VERSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Forwarded legs go to E.164 numbers (routing.Forward requires it): never to 104.
FORWARDED_CLASSES = tuple(c for c in DESTINATION_CLASSES if c is not CallClass.DIRECTORY)


def _check(ok: bool, error_id: str, path: str, message: str) -> None:
    if not ok:
        raise TariffError(error_id, path, message)


@dataclass(frozen=True, slots=True, kw_only=True)
class Rate:
    """`price` per started `unit_seconds`, or per answered call when `unit_seconds` is None.
    A call of 0 billable seconds (unanswered) is never charged."""

    price: Money
    unit_seconds: int | None

    def __post_init__(self) -> None:
        _check(self.price >= ZERO, "tariff-bad-value", "yen", "a price cannot be negative")
        unit = self.unit_seconds
        _check(
            unit is None or (type(unit) is int and 1 <= unit <= MAX_UNIT_SECONDS),
            "tariff-bad-value",
            "per_seconds",
            f"a unit is 1..{MAX_UNIT_SECONDS} seconds, not {unit!r}",
        )

    @property
    def per_call(self) -> bool:
        return self.unit_seconds is None

    def units(self, seconds: int) -> int:
        """Started units: ceil(seconds / unit); one per answered call for a per-call rate."""
        if seconds <= 0:
            return 0
        if self.unit_seconds is None:
            return 1
        return -(-seconds // self.unit_seconds)

    def charge(self, seconds: int) -> Money:
        return self.price * self.units(seconds)

    def __str__(self) -> str:
        per = "call" if self.unit_seconds is None else f"{self.unit_seconds} s"
        return f"{self.price}/{per}"


@dataclass(frozen=True, slots=True, kw_only=True)
class FreeCallPlan:
    """The 10-minute plan (10分かけ放題): the first `free_seconds` of every outgoing call of an
    ID on the plan are free, whichever number it presents; classes in `not_covered` are charged
    in full. Per-call rates are never covered (there is no time to make free). An ID placing
    `fair_use_calls_per_day` or more calls a day is flagged (see `billing.fair_use`)."""

    free_seconds: int
    devices: frozenset[DeviceKind]
    not_covered: frozenset[CallClass]
    fair_use_calls_per_day: int

    def __post_init__(self) -> None:
        free, fair = self.free_seconds, self.fair_use_calls_per_day
        _check(0 < free <= 86400, "tariff-bad-value", "free_seconds", f"1..86400, not {free}")
        _check(fair > 0, "tariff-bad-value", "fair_use_calls_per_day", f"> 0, not {fair}")
        unknown = sorted(self.not_covered - set(DESTINATION_CLASSES))
        _check(not unknown, "tariff-bad-value", "not_covered", f"not destinations: {unknown}")

    def covers(self, device: DeviceKind, call_class: CallClass, rate: Rate) -> bool:
        return device in self.devices and call_class not in self.not_covered and not rate.per_call


@dataclass(frozen=True, slots=True, kw_only=True)
class TariffVersion:
    """One complete price list. Every device kind has a rate for every destination class,
    forwarded legs for every class but directory, toll-free inbound for every caller kind:
    rating never meets a missing price."""

    id: str
    valid_from: datetime
    outbound: Mapping[DeviceKind, Mapping[CallClass, Rate]]
    forwarded: Mapping[CallClass, Rate]
    toll_free_inbound: Mapping[CallerKind, Rate]
    plan: FreeCallPlan
    statement_rounding: Rounding
    note: str = ""

    def __post_init__(self) -> None:
        _check(bool(_VERSION_ID.fullmatch(self.id)), "tariff-bad-value", "id", "bad version id")
        aware = self.valid_from.utcoffset() is not None
        _check(aware, "tariff-bad-value", "valid_from", "needs a UTC offset (e.g. +09:00)")
        _complete(self.outbound.keys(), tuple(DeviceKind), "outbound")
        for kind, card in self.outbound.items():
            _complete(card.keys(), DESTINATION_CLASSES, f"outbound.{kind}")
        _complete(self.forwarded.keys(), FORWARDED_CLASSES, "forwarded")
        _complete(self.toll_free_inbound.keys(), tuple(CallerKind), "toll_free_inbound")


def _complete(have: Iterable[str], need: Sequence[str], path: str) -> None:
    keys = set(have)
    missing = [k for k in need if k not in keys]
    _check(not missing, "tariff-incomplete", path, f"missing rates for {', '.join(missing)}")
    extra = sorted(str(k) for k in keys - set(need))
    _check(not extra, "tariff-unknown-key", path, f"not allowed here: {', '.join(extra)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class TariffTable:
    """Tariff versions ordered by `valid_from`; ids and instants unique."""

    versions: tuple[TariffVersion, ...]

    def __post_init__(self) -> None:
        _check(bool(self.versions), "tariff-no-versions", "versions", "at least one version")
        starts = [v.valid_from for v in self.versions]
        _check(starts == sorted(starts), "tariff-bad-value", "versions", "not in valid_from order")
        ids = [v.id for v in self.versions]
        _check(len(set(ids)) == len(ids), "tariff-duplicate-version", "versions", "ids repeat")
        same = len(set(starts)) != len(starts)
        _check(not same, "tariff-duplicate-version", "versions", "two versions start together")

    @classmethod
    def of(cls, versions: list[TariffVersion]) -> TariffTable:
        """A table from versions in any order."""
        return cls(versions=tuple(sorted(versions, key=lambda v: v.valid_from)))

    def version_at(self, instant: datetime) -> TariffVersion:
        """The version in force at `instant` (aware): the last one with valid_from <= instant."""
        if instant.utcoffset() is None:
            raise RatingError("naive-instant", f"instant needs a UTC offset: {instant!r}")
        i = bisect.bisect_right([v.valid_from for v in self.versions], instant)
        if i == 0:
            first = self.versions[0].valid_from.isoformat()
            raise RatingError(
                "no-tariff-in-force",
                f"no tariff in force at {instant.isoformat()} (the first starts {first})",
                {"instant": instant.isoformat(), "first_valid_from": first},
            )
        return self.versions[i - 1]

    def with_version(self, version: TariffVersion, *, now: datetime) -> TariffTable:
        """Add a price change for future calls only: a version starting at or before `now`
        would re-price calls already made (or being made) and is refused."""
        _check(
            version.valid_from > now,
            "tariff-not-in-future",
            "valid_from",
            f"{version.valid_from.isoformat()} is not after now ({now.isoformat()})",
        )
        return TariffTable.of([*self.versions, version])

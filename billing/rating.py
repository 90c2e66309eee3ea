"""Rating: one call in, its price out. Pure: the tariff table and the call's start instant are
arguments; nothing here reads a clock, a file or a socket.

The rules, by direction (prices are the tariff's data, see `billing/tariffs.toml`):
- outbound: the calling device kind's rate for the destination class. With the 10-minute
  plan, the first `free_seconds` of the call are free and the rest is charged per started
  unit from there (10:01 on an app is one 30-second unit), except classes the plan does not
  cover (0570, 104 …) and per-call rates, which are charged in full.
- forwarded: the carrier leg of a forwarded call, by its destination class. Never covered by
  the plan, whatever the ID that owns the number has.
- toll-free inbound: the tenant pays per started unit by the caller's kind.
- inbound (ordinary numbers) and internal: free.
- A refused destination (110/118/119, international, other barred codes) is rated 0 when it
  was not answered, which is the only way such a call can exist; answered, it is an error.
Billable seconds are the answered duration: 0 (unanswered) is never charged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import assert_never

from provisioning.model import DeviceKind

from .classes import REFUSED_CLASSES, CallClass, CallerKind, Direction, destination_class
from .errors import RatingError
from .money import ZERO, Money
from .tariff import FreeCallPlan, Rate, TariffTable, TariffVersion


def _require(ok: bool, error_id: str, message: str) -> None:
    if not ok:
        raise RatingError(error_id, message)


@dataclass(frozen=True, slots=True, kw_only=True)
class RatingInput:
    """One call to rate.

    `destination`: what was dialled (outbound: E.164, national or a short code such as
    "104"), the forward target (forwarded), or the tenant's number that was called
    (inbound, toll-free inbound; for internal calls, a number or an ID's username).
    `device_kind` is required for outbound calls. `has_plan` says whether the calling ID has
    the 10-minute plan; only outbound calls look at it. `caller_kind` is required for, and
    only allowed on, toll-free inbound calls (see `billing.classes.caller_kind_for`).
    """

    direction: Direction
    start: datetime
    billable_seconds: int
    destination: str
    device_kind: DeviceKind | None = None
    has_plan: bool = False
    caller_kind: CallerKind | None = None

    def __post_init__(self) -> None:
        seconds = self.billable_seconds
        ok = type(seconds) is int and seconds >= 0
        _require(ok, "bad-billable-seconds", f"billable seconds must be an int >= 0: {seconds!r}")
        _require(self.start.utcoffset() is not None, "naive-instant", "start needs a UTC offset")
        _require(bool(self.destination.strip()), "empty-destination", "destination is empty")
        outbound = self.direction is Direction.OUTBOUND
        has_device = self.device_kind is not None
        _require(has_device or not outbound, "missing-device-kind", "outbound needs device_kind")
        toll_free = self.direction is Direction.TOLL_FREE_INBOUND
        has_caller = self.caller_kind is not None
        _require(
            has_caller == toll_free,
            "caller-kind-mismatch",
            "caller_kind is required for, and only for, toll-free inbound calls",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RatedCall:
    """The price of one call. `units` are the started units charged (after the plan's free
    time), `free_seconds` the seconds the 10-minute plan made free, `plan_savings` what the
    call would have cost without the plan minus `charge`. `rate` is None for free classes."""

    direction: Direction
    call_class: CallClass
    start: datetime
    billable_seconds: int
    units: int
    charge: Money
    free_seconds: int
    plan_savings: Money
    tariff_version: str
    rate: Rate | None = None
    caller_kind: CallerKind | None = None

    def __post_init__(self) -> None:
        _require(self.units >= 0 and self.charge >= ZERO, "bad-result", "negative charge")
        _require(self.plan_savings >= ZERO, "bad-result", "negative plan savings")
        ok = 0 <= self.free_seconds <= self.billable_seconds
        _require(ok, "bad-result", "free seconds exceed the call")
        _require(self.rate is not None or self.charge == ZERO, "bad-result", "charge needs rate")

    @property
    def answered(self) -> bool:
        return self.billable_seconds > 0


def rate_call(call: RatingInput, table: TariffTable) -> RatedCall:
    """Rate `call` with the tariff version in force at `call.start`."""
    version = table.version_at(call.start)
    match call.direction:
        case Direction.OUTBOUND:
            return _outbound(call, version)
        case Direction.FORWARDED:
            return _forwarded(call, version)
        case Direction.TOLL_FREE_INBOUND:
            return _toll_free_inbound(call, version)
        case Direction.INBOUND:
            return _free(call, version, CallClass.INBOUND)
        case Direction.INTERNAL:
            return _free(call, version, CallClass.INTERNAL)
        case _:
            assert_never(call.direction)


def _outbound(call: RatingInput, version: TariffVersion) -> RatedCall:
    device = call.device_kind
    if device is None:  # RatingInput refuses this; narrowed for the type checker
        raise RatingError("missing-device-kind", "outbound needs device_kind")
    call_class = destination_class(call.destination)
    if call_class in REFUSED_CLASSES:
        return _refused(call, version, call_class)
    rate = version.outbound[device][call_class]
    free = _plan_free_seconds(call, device, call_class, rate, version.plan)
    return _charged(call, version, call_class, rate, free)


def _plan_free_seconds(
    call: RatingInput, device: DeviceKind, call_class: CallClass, rate: Rate, plan: FreeCallPlan
) -> int:
    if not call.has_plan:
        return 0
    if device not in plan.devices:
        raise RatingError(
            "plan-not-for-device",
            f"the 10-minute plan is not available on a {device} ID",
            {"device_kind": str(device)},
        )
    if not plan.covers(device, call_class, rate):
        return 0
    return min(call.billable_seconds, plan.free_seconds)


def _forwarded(call: RatingInput, version: TariffVersion) -> RatedCall:
    call_class = destination_class(call.destination)
    if call_class in REFUSED_CLASSES:
        return _refused(call, version, call_class)
    rate = version.forwarded.get(call_class)
    if rate is None:
        raise RatingError(
            "no-forwarded-rate",
            f"a call cannot be forwarded to {call.destination!r} ({call_class})",
            {"destination": call.destination, "class": str(call_class)},
        )
    return _charged(call, version, call_class, rate, free_seconds=0)


def _toll_free_inbound(call: RatingInput, version: TariffVersion) -> RatedCall:
    call_class = destination_class(call.destination)
    if call_class is not CallClass.TOLL_FREE:
        raise RatingError(
            "not-a-toll-free-number",
            f"toll-free inbound to {call.destination!r}, which is {call_class}",
            {"destination": call.destination},
        )
    caller = call.caller_kind
    if caller is None:  # RatingInput refuses this; narrowed for the type checker
        raise RatingError("caller-kind-mismatch", "toll-free inbound needs caller_kind")
    rate = version.toll_free_inbound[caller]
    return _charged(call, version, call_class, rate, free_seconds=0, caller_kind=caller)


def _charged(
    call: RatingInput,
    version: TariffVersion,
    call_class: CallClass,
    rate: Rate,
    free_seconds: int,
    caller_kind: CallerKind | None = None,
) -> RatedCall:
    units = rate.units(call.billable_seconds - free_seconds)
    charge = rate.price * units
    return RatedCall(
        direction=call.direction,
        call_class=call_class,
        start=call.start,
        billable_seconds=call.billable_seconds,
        units=units,
        charge=charge,
        free_seconds=free_seconds,
        plan_savings=rate.charge(call.billable_seconds) - charge,
        tariff_version=version.id,
        rate=rate,
        caller_kind=caller_kind,
    )


def _free(call: RatingInput, version: TariffVersion, call_class: CallClass) -> RatedCall:
    return RatedCall(
        direction=call.direction,
        call_class=call_class,
        start=call.start,
        billable_seconds=call.billable_seconds,
        units=0,
        charge=ZERO,
        free_seconds=0,
        plan_savings=ZERO,
        tariff_version=version.id,
    )


def _refused(call: RatingInput, version: TariffVersion, call_class: CallClass) -> RatedCall:
    if call.billable_seconds > 0:
        raise RatingError(
            "refused-destination-answered",
            f"{call.destination!r} ({call_class}) cannot be called, yet the call was answered",
            {"destination": call.destination, "class": str(call_class)},
        )
    return _free(call, version, call_class)

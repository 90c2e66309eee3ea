"""A number's settings, one sub-resource each (the `number_settings` API resource): ring
group, subscribed options, the after-hours schedule and its one-touch switch, forwarding,
voicemail ring time and the recording notice.

Transition rules (`provisioning.rules`): after-hours and forwarding need the tenant's
identity check to be configured; unsubscribing an option switches its function OFF;
after-hours ON turns forwarding OFF and vice versa. Every change goes through
`NumberService.change`, so the tenant invariants are checked on the result before it is
written.

A change that switches another setting than the one asked for says so: `change_options`,
`change_after_hours` and `change_forwarding` return the number with its `side_effects`
(which setting went from what to what, by which rule), computed from the state read in the
write transaction; `set_*` return the number only.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from .. import rules
from ..errors import RuleViolation
from ..model import DayKind, Number, SlotAction, Tenant
from .base import UNSET, Principal, Unset
from .numbers import NumberChange, NumberService, NumberUpdate

__all__ = [
    "SIDE_EFFECT_RULES",
    "SWITCHES",
    "AfterHoursUpdate",
    "ForwardingUpdate",
    "NumberSettingsService",
    "OptionsUpdate",
    "SettingsChange",
    "SideEffect",
]

_OPTIONS = ("after_hours", "voicemail", "forwarding", "recording")

# The ON/OFF settings a change can switch as a side effect, and the rules that do it.
SWITCHES: Mapping[str, Callable[[Number], bool]] = {
    "after_hours.enabled": lambda n: n.after_hours.enabled,
    "forwarding.enabled": lambda n: n.forwarding.enabled,
}
SIDE_EFFECT_RULES: Mapping[str, str] = {
    "forwarding-excludes-after-hours": "turning forwarding ON turns the after-hours"
    " announcement OFF",
    "after-hours-excludes-forwarding": "turning the after-hours announcement ON turns"
    " forwarding OFF",
    "unsubscribed-option-is-off": "unsubscribing an option turns its function OFF",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SideEffect:
    """A setting the change switched although the request did not name it."""

    setting: str  # a key of SWITCHES
    before: bool
    after: bool
    rule: str  # a key of SIDE_EFFECT_RULES

    def __post_init__(self) -> None:
        if self.setting not in SWITCHES or self.rule not in SIDE_EFFECT_RULES:
            raise ValueError(f"unknown side effect {self.setting!r} / {self.rule!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class SettingsChange:
    number: Number
    side_effects: tuple[SideEffect, ...] = ()


def side_effects(
    before: Number, after: Number, asked: Collection[str], rule: str
) -> tuple[SideEffect, ...]:
    """The switches that changed from `before` to `after` without being `asked` for."""
    return tuple(
        SideEffect(setting=name, before=get(before), after=get(after), rule=rule)
        for name, get in SWITCHES.items()
        if name not in asked and get(before) != get(after)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class OptionsUpdate:
    """Subscribing after_hours or forwarding needs a verified identity. Unsubscribing an
    option switches its function OFF; unsubscribing forwarding is refused while the schedule
    still has forward slots (`forward-slot-needs-forwarding-option`)."""

    after_hours: bool | Unset = UNSET
    voicemail: bool | Unset = UNSET
    forwarding: bool | Unset = UNSET
    recording: bool | Unset = UNSET


@dataclass(frozen=True, slots=True, kw_only=True)
class AfterHoursUpdate:
    """`slots`: for each day kind given, exactly 48 actions (SlotAction or its value); day kinds
    not given keep their slots. `announcement`: a template name or "prompt:<prompt id>" of
    the tenant. `enabled` is the one-touch ON/OFF; turning it ON turns forwarding OFF."""

    enabled: bool | Unset = UNSET
    slots: Mapping[DayKind, Sequence[SlotAction]] | Unset = UNSET
    announcement: str | Unset = UNSET


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardingUpdate:
    """Turning forwarding ON needs a target (given now or stored) and turns after-hours OFF."""

    enabled: bool | Unset = UNSET
    target: str | Unset | None = UNSET


class NumberSettingsService:
    """The settings of a number, over the `NumberService` that reads and changes it."""

    __slots__ = ("numbers",)

    def __init__(self, numbers: NumberService) -> None:
        self.numbers = numbers

    async def get_number(self, principal: Principal, tenant_id: str, number: str) -> Number:
        """The number with all its settings."""
        return await self.numbers.get_number(principal, tenant_id, number)

    async def set_ring_group(
        self, principal: Principal, tenant_id: str, number: str, ring_group: Sequence[str]
    ) -> Number:
        """Errors: ring-group-empty, ring-group-not-own-ids."""
        update = NumberUpdate(ring_group=ring_group)
        return await self.numbers.update_number(principal, tenant_id, number, update)

    async def set_voicemail_ring_time(
        self, principal: Principal, tenant_id: str, number: str, seconds: int
    ) -> Number:
        """Errors: invalid-ring-time."""
        update = NumberUpdate(voicemail_ring_time=seconds)
        return await self.numbers.update_number(principal, tenant_id, number, update)

    async def set_recording_notice(
        self, principal: Principal, tenant_id: str, number: str, notice: bool
    ) -> Number:
        update = NumberUpdate(recording_notice=notice)
        return await self.numbers.update_number(principal, tenant_id, number, update)

    async def set_options(
        self, principal: Principal, tenant_id: str, number: str, data: OptionsUpdate
    ) -> Number:
        """Errors: identity-not-verified, forward-slot-needs-forwarding-option."""
        return (await self.change_options(principal, tenant_id, number, data)).number

    async def change_options(
        self, principal: Principal, tenant_id: str, number: str, data: OptionsUpdate
    ) -> SettingsChange:
        """`set_options`, with the functions it switched OFF (`unsubscribed-option-is-off`)."""
        principal.require_tenant(tenant_id)
        given = {k: getattr(data, k) for k in _OPTIONS}
        opts = {k: bool(v) for k, v in given.items() if not isinstance(v, Unset)}

        def change(tenant: Tenant, n: Number) -> Number:
            for key in ("after_hours", "forwarding"):
                if opts.get(key) and not getattr(n.options, key):
                    rules.require_identity(tenant, key.replace("_", "-"))
            return rules.drop_options(replace(n, options=replace(n.options, **opts)))

        return await self._traced(tenant_id, number, change, (), "unsubscribed-option-is-off")

    async def _traced(
        self,
        tenant_id: str,
        number: str,
        change: NumberChange,
        asked: Collection[str],
        rule: str,
    ) -> SettingsChange:
        """`NumberService.change`, remembering what the number was inside the transaction."""
        seen: list[Number] = []

        def traced(tenant: Tenant, n: Number) -> Number:
            seen.append(n)
            return change(tenant, n)

        new = await self.numbers.change(tenant_id, number, traced)
        return SettingsChange(number=new, side_effects=side_effects(seen[-1], new, asked, rule))

    async def set_after_hours(
        self, principal: Principal, tenant_id: str, number: str, data: AfterHoursUpdate
    ) -> Number:
        """Errors: identity-not-verified, option-required (after_hours option not subscribed),
        invalid-schedule, forward-slot-needs-forwarding-option, invalid-announcement."""
        return (await self.change_after_hours(principal, tenant_id, number, data)).number

    async def change_after_hours(
        self, principal: Principal, tenant_id: str, number: str, data: AfterHoursUpdate
    ) -> SettingsChange:
        """`set_after_hours`, with forwarding switched OFF by the after-hours announcement
        going ON (`after-hours-excludes-forwarding`)."""
        principal.require_tenant(tenant_id)
        slots = None if isinstance(data.slots, Unset) else rules.parse_slots(data.slots)

        def change(tenant: Tenant, n: Number) -> Number:
            only_off = data.enabled is False and slots is None and data.announcement is UNSET
            if not only_off:
                rules.require_identity(tenant, "after-hours")
                _require_option(n, "after_hours")
            ah = n.after_hours
            if slots is not None:
                ah = replace(ah, slots=MappingProxyType({**ah.slots, **slots}))
            if not isinstance(data.announcement, Unset):
                ah = replace(ah, announcement=str(data.announcement))
            n = replace(n, after_hours=ah)
            if not isinstance(data.enabled, Unset):
                n = rules.set_after_hours_enabled(n, bool(data.enabled))
            return n

        asked = ("after_hours.enabled",)
        return await self._traced(
            tenant_id, number, change, asked, "after-hours-excludes-forwarding"
        )

    async def set_forwarding(
        self, principal: Principal, tenant_id: str, number: str, data: ForwardingUpdate
    ) -> Number:
        """Errors: identity-not-verified, option-required, invalid-number (target),
        forwarding-needs-target."""
        return (await self.change_forwarding(principal, tenant_id, number, data)).number

    async def change_forwarding(
        self, principal: Principal, tenant_id: str, number: str, data: ForwardingUpdate
    ) -> SettingsChange:
        """`set_forwarding`, with the after-hours announcement switched OFF by forwarding
        going ON (`forwarding-excludes-after-hours`)."""
        principal.require_tenant(tenant_id)
        target: str | Unset | None = UNSET
        if not isinstance(data.target, Unset):
            target = None if data.target is None else rules.parse_number(data.target, "target")

        def change(tenant: Tenant, n: Number) -> Number:
            if not (data.enabled is False and isinstance(target, Unset)):
                rules.require_identity(tenant, "forwarding")
                _require_option(n, "forwarding")
            if not isinstance(target, Unset):
                n = replace(n, forwarding=replace(n.forwarding, target=target))
            if not isinstance(data.enabled, Unset):
                n = rules.set_forwarding_enabled(n, bool(data.enabled))
            return n

        asked = ("forwarding.enabled",)
        return await self._traced(
            tenant_id, number, change, asked, "forwarding-excludes-after-hours"
        )


def _require_option(n: Number, option: str) -> None:
    if not getattr(n.options, option):
        raise RuleViolation(
            "option-required",
            f"the number has no {option} option",
            {"rule": f"{option} needs its option", "option": option, "number": n.e164},
        )

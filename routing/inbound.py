"""Calls from the carrier to one of the service's numbers. The precedence is documented in
`routing.policy`; each step here is one function and names its rule."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from provisioning.model import (
    VOICEMAIL_RING_TIMES,
    Device,
    DeviceKind,
    Number,
    SlotAction,
    Snapshot,
    Tenant,
    normalize_number,
)

from .call import Call, LiveView
from .decisions import (
    Announce,
    Busy,
    Decision,
    Forward,
    NoAnswer,
    NoAnswerAction,
    Reject,
    Ring,
    RingStage,
    Voicemail,
)
from .dialled import classify_called
from .schedule import local_slot, slot_action

DEFAULT_MAX_RING_TIME = 60.0


@dataclass(slots=True)
class _Ctx:
    call: Call
    snapshot: Snapshot
    live: LiveView
    tenant: Tenant
    number: Number
    anomalies: list[str]

    def flags(self) -> tuple[str, ...]:
        return tuple(self.anomalies)

    def channels_full(self) -> bool:
        limit = self.snapshot.channels(self.tenant.id)
        return self.live.channels_in_use(self.tenant.id) >= limit


def decide_inbound(call: Call, snapshot: Snapshot, live: LiveView, now: datetime) -> Decision:
    number = snapshot.numbers.get(call.classified.e164 or "")
    if number is None:
        return Reject(status=404, reason="Not Found", rule="inbound-unknown-number")
    tenant = snapshot.tenants.get(number.tenant_id)
    if tenant is None:
        anomaly = (f"number-without-tenant:{number.tenant_id}",)
        return Reject(
            status=404, reason="Not Found", rule="inbound-unknown-number", anomalies=anomaly
        )
    if not tenant.active:
        return Reject(
            status=480,
            reason="Temporarily Unavailable",
            rule="inbound-tenant-suspended",
            tenant_id=tenant.id,
        )
    ctx = _Ctx(call, snapshot, live, tenant, number, [])
    return _forwarding(ctx) or _after_hours(ctx, now) or _channels(ctx) or _ring_group(ctx)


def lookup_number(dialled: str, snapshot: Snapshot) -> Number | None:
    """The service's number a carrier's dialled string names (routing.dialled)."""
    return snapshot.numbers.get(classify_called(dialled).e164 or "")


def forwarding_on(number: Number) -> bool:
    return number.options.forwarding and number.forwarding.enabled


def after_hours_on(number: Number) -> bool:
    return number.options.after_hours and number.after_hours.enabled


def _forwarding(ctx: _Ctx) -> Decision | None:
    number = ctx.number
    if number.forwarding.enabled and not number.options.forwarding:
        ctx.anomalies.append("forwarding-on-without-option")
    if not forwarding_on(number):
        return None
    if after_hours_on(number):
        ctx.anomalies.append("forwarding-and-after-hours-both-on")
    target = _forward_target(ctx)
    if target is None:
        return None
    if ctx.call.fax:
        fax = _fax_to_ata(ctx)
        if fax is not None:
            return fax
    return _forward(ctx, target, rule="inbound-forwarding", voicemail=False)


def _forward_target(ctx: _Ctx) -> str | None:
    raw = ctx.number.forwarding.target
    if not raw:
        ctx.anomalies.append("forwarding-without-target")
        return None
    try:
        target = normalize_number(raw)
    except ValueError:
        ctx.anomalies.append("forwarding-target-invalid")
        return None
    if target == ctx.number.e164:
        ctx.anomalies.append("forwarding-to-itself")
        return None
    return target


def _forward(ctx: _Ctx, target: str, *, rule: str, voicemail: bool) -> Decision:
    """A forwarded leg is a charged call through the carrier: it needs a free channel. When
    none is free the caller gets the busy treatment (voicemail only when `voicemail`)."""
    if ctx.channels_full():
        return _busy(ctx, rule=f"{rule}-channels-full", voicemail=voicemail)
    return Forward(
        tenant_id=ctx.tenant.id,
        number=ctx.number.e164,
        target=target,
        presented_identity=ctx.number.e164,
        original_caller=ctx.call.caller_number,
        original_display=ctx.call.caller_display,
        rule=rule,
        anomalies=ctx.flags(),
    )


def _fax_to_ata(ctx: _Ctx) -> Decision | None:
    """FAX is still received while forwarding is ON: ring the group's registered ATAs."""
    atas = tuple(d.id for d in _registered_members(ctx) if d.kind is DeviceKind.ATA)
    if not atas:
        return None
    if ctx.channels_full():
        return _busy(ctx, rule="fax-while-forwarding-channels-full", voicemail=False)
    no_answer = NoAnswer(after_s=_max_ring_time(ctx), action=NoAnswerAction.REJECT)
    return _ring(
        ctx, (RingStage(delay_s=0, device_ids=atas),), no_answer, rule="fax-while-forwarding"
    )


def _after_hours(ctx: _Ctx, now: datetime) -> Decision | None:
    if not after_hours_on(ctx.number):
        return None
    slot = local_slot(ctx.tenant, now, ctx.anomalies)
    action = slot_action(ctx.number.after_hours, slot, ctx.anomalies)
    if action is SlotAction.ANNOUNCE:
        return _announce(ctx)
    if action is SlotAction.FORWARD:
        if not ctx.number.options.forwarding:
            ctx.anomalies.append("forward-slot-without-forwarding-option")
            return None
        target = _forward_target(ctx)
        if target is None:
            return None
        return _forward(
            ctx, target, rule="after-hours-forward", voicemail=ctx.number.options.voicemail
        )
    return None


def _announce(ctx: _Ctx) -> Decision:
    voicemail = ctx.number.options.voicemail
    return Announce(
        tenant_id=ctx.tenant.id,
        number=ctx.number.e164,
        prompt=ctx.number.after_hours.announcement,
        then_voicemail=voicemail,
        mailbox=ctx.number.e164 if voicemail else None,
        rule="after-hours-announce",
        anomalies=ctx.flags(),
    )


def _channels(ctx: _Ctx) -> Decision | None:
    if not ctx.channels_full():
        return None
    return _busy(ctx, rule="inbound-channels-full", voicemail=ctx.number.options.voicemail)


def _busy(ctx: _Ctx, *, rule: str, voicemail: bool) -> Busy:
    return Busy(
        tenant_id=ctx.tenant.id,
        number=ctx.number.e164,
        then_voicemail=voicemail,
        mailbox=ctx.number.e164 if voicemail else None,
        channels_in_use=ctx.live.channels_in_use(ctx.tenant.id),
        channels=ctx.snapshot.channels(ctx.tenant.id),
        rule=rule,
        anomalies=ctx.flags(),
    )


def _ring_group(ctx: _Ctx) -> Decision:
    members = _registered_members(ctx)
    if not members:
        return _nobody_registered(ctx)
    fixed = tuple(d.id for d in members if d.kind is not DeviceKind.APP)
    apps = tuple(d.id for d in members if d.kind is DeviceKind.APP)
    if not fixed:
        stages: tuple[RingStage, ...] = (RingStage(delay_s=0, device_ids=apps),)
    else:
        stages = (RingStage(delay_s=0, device_ids=fixed),)
        if apps:
            app_stage = RingStage(
                delay_s=_app_delay(ctx), device_ids=apps, only_if_earlier_stage_ringing=True
            )
            stages += (app_stage,)
    no_answer = _no_answer(ctx)
    if stages[-1].delay_s >= no_answer.after_s:
        ctx.anomalies.append("apps-never-ring:app-ring-delay-exceeds-ring-time")
    return _ring(ctx, stages, no_answer, rule="inbound-ring")


def _ring(ctx: _Ctx, stages: tuple[RingStage, ...], no_answer: NoAnswer, *, rule: str) -> Ring:
    number = ctx.number
    record = number.options.recording
    prefix = number.label if number.label_in_display_name and number.label else None
    return Ring(
        tenant_id=ctx.tenant.id,
        number=number.e164,
        called_number=number.e164,
        stages=stages,
        no_answer=no_answer,
        caller_number=ctx.call.caller_number,
        caller_display=ctx.call.caller_display,
        display_prefix=prefix,
        record=record,
        recording_notice=record and number.recording_notice,
        rule=rule,
        anomalies=ctx.flags(),
    )


def _nobody_registered(ctx: _Ctx) -> Decision:
    if ctx.number.options.voicemail:
        return Voicemail(
            tenant_id=ctx.tenant.id,
            number=ctx.number.e164,
            mailbox=ctx.number.e164,
            caller_number=ctx.call.caller_number,
            rule="no-registered-device-voicemail",
            anomalies=ctx.flags(),
        )
    return Reject(
        status=480,
        reason="Temporarily Unavailable",
        rule="no-registered-device",
        tenant_id=ctx.tenant.id,
        anomalies=ctx.flags(),
    )


def _registered_members(ctx: _Ctx) -> list[Device]:
    """The ring group's devices that exist, belong to the tenant and are registered, in the
    group's order, each once."""
    members: list[Device] = []
    for device_id in dict.fromkeys(ctx.number.ring_group):
        device = ctx.snapshot.devices.get(device_id)
        if device is None or device.tenant_id != ctx.tenant.id:
            ctx.anomalies.append(f"ring-group-foreign-device:{device_id}")
        elif ctx.live.is_registered(device_id):
            members.append(device)
    return members


def _no_answer(ctx: _Ctx) -> NoAnswer:
    number = ctx.number
    if not number.options.voicemail:
        return NoAnswer(after_s=_max_ring_time(ctx), action=NoAnswerAction.REJECT)
    ring_time: float = number.voicemail_ring_time
    if ring_time not in VOICEMAIL_RING_TIMES:
        ctx.anomalies.append(f"voicemail-ring-time-invalid:{ring_time}")
        ring_time = min(VOICEMAIL_RING_TIMES, key=lambda t: abs(t - number.voicemail_ring_time))
    return NoAnswer(after_s=ring_time, action=NoAnswerAction.VOICEMAIL, mailbox=number.e164)


def _max_ring_time(ctx: _Ctx) -> float:
    value = ctx.number.max_ring_time
    if math.isfinite(value) and value > 0:
        return value
    ctx.anomalies.append("max-ring-time-invalid")
    return DEFAULT_MAX_RING_TIME


def _app_delay(ctx: _Ctx) -> float:
    value = ctx.number.app_ring_delay
    if math.isfinite(value) and value >= 0:
        return value
    ctx.anomalies.append("app-ring-delay-invalid")
    return 0.0

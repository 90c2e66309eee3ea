"""Calls from a registered device. The precedence is documented in `routing.policy`."""

from __future__ import annotations

from provisioning.model import Device, DeviceKind, NumberKind, Snapshot, Tenant

from .call import Call, LiveView
from .caps import DEFAULT_LIMITS, OutboundLimits, cap_refusal
from .decisions import Decision, DestinationKind, Internal, Outbound, Reject, VoicemailMenu
from .dialled import DialKind, Dialled, destination_kind
from .settings import DEFAULT_SETTINGS, RoutingSettings

EMERGENCY_WARNING = (
    "emergency calls (110/118/119) are not available on this service; "
    "use a mobile or landline phone"
)
_REFUSALS: dict[DialKind, tuple[int, str, str, str]] = {
    DialKind.INTERNATIONAL: (
        403,
        "Forbidden",
        "international calls are not available on this service",
        "outbound-international",
    ),
    DialKind.BARRED_SHORT_CODE: (
        403,
        "Forbidden",
        "this number cannot be called from this service",
        "outbound-barred-short-code",
    ),
    DialKind.INCOMPLETE: (
        484,
        "Address Incomplete",
        "the number is too short",
        "outbound-incomplete",
    ),
    DialKind.INVALID: (
        404,
        "Not Found",
        "not a telephone number or an ID of your company",
        "outbound-invalid",
    ),
}


def decide_from_device(
    call: Call,
    snapshot: Snapshot,
    live: LiveView,
    settings: RoutingSettings = DEFAULT_SETTINGS,
    limits: OutboundLimits = DEFAULT_LIMITS,
) -> Decision:
    dialled = call.classified
    if dialled.kind is DialKind.EMERGENCY:
        # Before anything else: whoever calls, whatever the tenant's state, never to the trunk.
        return Reject(
            status=403, reason="Forbidden", warning=EMERGENCY_WARNING, rule="outbound-emergency"
        )
    device = snapshot.devices.get(call.device_id or "")
    tenant = snapshot.tenants.get(device.tenant_id) if device else None
    if device is None or tenant is None:
        return Reject(
            status=403, reason="Forbidden", warning="unknown ID", rule="outbound-unknown-device"
        )
    if not tenant.active:
        return Reject(
            status=403,
            reason="Forbidden",
            warning="the service is suspended",
            rule="outbound-tenant-suspended",
            tenant_id=tenant.id,
        )
    if call.dialled.strip() == settings.voicemail_access_code:
        return _voicemail_menu(device, snapshot)
    internal = _internal(call, device, snapshot, live, dialled)
    if internal is not None:
        return internal
    refusal = _REFUSALS.get(dialled.kind)
    if refusal is not None:
        status, reason, warning, rule = refusal
        return Reject(status=status, reason=reason, warning=warning, rule=rule, tenant_id=tenant.id)
    return _outbound(device, tenant, snapshot, live, dialled, limits)


def _voicemail_menu(device: Device, snapshot: Snapshot) -> Decision:
    """The mailboxes the device may listen to: every number of its tenant with voicemail
    whose ring group includes it (service rule: desk phones can listen to voicemail too)."""
    mailboxes = tuple(
        sorted(
            n.e164
            for n in snapshot.numbers.values()
            if n.tenant_id == device.tenant_id and n.options.voicemail and device.id in n.ring_group
        )
    )
    if not mailboxes:
        return Reject(
            status=404, reason="Not Found", warning="no voicemail for this ID",
            rule="voicemail-menu-no-mailbox", tenant_id=device.tenant_id,
        )  # fmt: skip
    return VoicemailMenu(
        rule="voicemail-menu", tenant_id=device.tenant_id, device_id=device.id,
        mailboxes=mailboxes,
    )  # fmt: skip


def _internal(
    call: Call, device: Device, snapshot: Snapshot, live: LiveView, dialled: Dialled
) -> Decision | None:
    """The tenant's own IDs by username, and the tenant's own numbers: internal calls."""
    target = snapshot.devices_by_username.get(call.dialled.strip())
    if target is not None and target.tenant_id == device.tenant_id:
        if target.id == device.id:
            return _reject_internal(
                device, 486, "Busy Here", "you dialled your own ID", "internal-self"
            )
        if not live.is_registered(target.id):
            return _reject_internal(
                device,
                480,
                "Temporarily Unavailable",
                f"{target.username} is not logged in",
                "internal-unregistered",
            )
        return Internal(
            tenant_id=device.tenant_id,
            device_id=device.id,
            device_ids=(target.id,),
            rule="internal-device",
        )
    number = snapshot.numbers.get(dialled.e164 or "")
    if number is None or number.tenant_id != device.tenant_id:
        return None
    return _internal_number(device, snapshot, live, number.e164, number.ring_group)


def _internal_number(
    device: Device, snapshot: Snapshot, live: LiveView, e164: str, group: tuple[str, ...]
) -> Decision:
    """Dialling one of the tenant's own numbers from inside rings that number's group
    internally (desk phones/ATAs first): no channel, no carrier, no after-hours, no
    forwarding. It is the office's own extension call, and it is free."""
    members = [
        d
        for d in (snapshot.devices.get(i) for i in dict.fromkeys(group))
        if d is not None
        and d.tenant_id == device.tenant_id
        and d.id != device.id
        and live.is_registered(d.id)
    ]
    if not members:
        return _reject_internal(
            device,
            480,
            "Temporarily Unavailable",
            "nobody who answers this number is logged in",
            "internal-number-unregistered",
        )
    members.sort(key=lambda d: d.kind is DeviceKind.APP)
    return Internal(
        tenant_id=device.tenant_id,
        device_id=device.id,
        device_ids=tuple(d.id for d in members),
        via_number=e164,
        rule="internal-number",
    )


def _reject_internal(device: Device, status: int, reason: str, warning: str, rule: str) -> Reject:
    return Reject(
        status=status, reason=reason, warning=warning, rule=rule, tenant_id=device.tenant_id
    )


def _outbound(
    device: Device,
    tenant: Tenant,
    snapshot: Snapshot,
    live: LiveView,
    dialled: Dialled,
    limits: OutboundLimits,
) -> Decision:
    anomalies: list[str] = []
    presented = _presented_number(device, snapshot, anomalies)
    if presented is None:
        return Reject(
            status=403,
            reason="Forbidden",
            warning="no number to present",
            rule="outbound-no-presentable-number",
            tenant_id=tenant.id,
            anomalies=tuple(anomalies),
        )
    channels = snapshot.channels(tenant.id)
    if live.channels_in_use(tenant.id) >= channels:
        # 486, not 503: a 503 would make the phone fail over or retry; the tenant is busy.
        return Reject(
            status=486,
            reason="Busy Here",
            tenant_id=tenant.id,
            warning=f"all {channels} lines of your company are in use",
            rule="outbound-channels-full",
            anomalies=tuple(anomalies),
        )
    if dialled.e164 is None:  # DIRECTORY (104); every other kind left is NATIONAL
        destination, kind = dialled.digits, DestinationKind.DIRECTORY
    else:
        destination, kind = dialled.e164, destination_kind(dialled.e164)
    capped = cap_refusal(limits, live.outbound_usage(device.id), kind, tenant.id)
    if capped is not None:  # toll-fraud caps (routing.caps)
        return capped
    number = snapshot.numbers[presented]
    record = number.options.recording
    return Outbound(
        tenant_id=tenant.id,
        device_id=device.id,
        destination=destination,
        destination_kind=kind,
        presented_number=presented,
        withhold_identity=dialled.withhold,
        record=record,
        recording_notice=record and number.recording_notice,
        rule="outbound",
        anomalies=tuple(anomalies),
    )


def _presented_number(device: Device, snapshot: Snapshot, anomalies: list[str]) -> str | None:
    """The device's chosen number when it is one of the tenant's non-toll-free numbers
    (toll-free numbers are incoming only); else the contract number, flagged."""
    if _presentable(device.presented_number, device.tenant_id, snapshot):
        return device.presented_number
    anomalies.append("presented-number-invalid")
    for number in snapshot.tenant_numbers.get(device.tenant_id, ()):
        if number.kind is NumberKind.CONTRACT and _presentable(
            number.e164, device.tenant_id, snapshot
        ):
            return number.e164
    return None


def _presentable(e164: str, tenant_id: str, snapshot: Snapshot) -> bool:
    number = snapshot.numbers.get(e164)
    if number is None or number.tenant_id != tenant_id or not e164.startswith("+81"):
        return False
    national = "0" + e164[3:]
    return number.kind is not NumberKind.TOLL_FREE and not national.startswith(("0120", "0800"))

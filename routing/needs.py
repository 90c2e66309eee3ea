"""What the proxy must load before routing a call: `needs(call, snapshot) -> Needs`.

`decide` reads the live state (registrations, channel leases) through a `LiveView`; the proxy
builds that view from its state backend, which may be a network away (Redis), so it reads
only what routing can look at for this call. Routing says what that is, from the same
classification of the dialled string `decide` uses (`Call.classified`), so the two can never
disagree about which number or ID a call is about:

- an inbound carrier call to one of the service's numbers (its tenant active): that number's
  ring group and the tenant's channels;
- a device calling one of its tenant's IDs by username: that ID; one of its tenant's numbers:
  that number's ring group (internal calls take no channel);
- a device calling anything else (the carrier, short codes): the tenant's channels and the
  calling ID's outbound usage (the toll-fraud caps, routing.caps);
- an emergency number, an unknown number or device, a suspended tenant: nothing.

Pure, like the rest of routing: data in, data out.
"""

from __future__ import annotations

from dataclasses import dataclass

from provisioning.model import Snapshot

from .call import Call, Direction
from .dialled import DialKind

__all__ = ["Needs", "needs"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Needs:
    """The live state `decide` may read for one call: the registrations of `device_ids`;
    when `channels`, the channel leases in use of `tenant_id`; when `usage_of` is an ID, its
    outbound usage (routing.caps)."""

    tenant_id: str | None = None
    device_ids: tuple[str, ...] = ()
    channels: bool = False
    usage_of: str | None = None

    def __post_init__(self) -> None:
        if self.channels and not self.tenant_id:
            raise ValueError("channels are counted per tenant: tenant_id required")
        if self.usage_of is not None and not self.tenant_id:
            raise ValueError("outbound usage is counted per tenant too: tenant_id required")


_NOTHING = Needs()


def needs(call: Call, snapshot: Snapshot) -> Needs:
    """See the module docstring."""
    if call.direction is Direction.INBOUND:
        return _inbound(call, snapshot)
    return _from_device(call, snapshot)


def _inbound(call: Call, snapshot: Snapshot) -> Needs:
    number = snapshot.numbers.get(call.classified.e164 or "")
    if number is None:
        return _NOTHING
    tenant = snapshot.tenants.get(number.tenant_id)
    if tenant is None or not tenant.active:
        return _NOTHING
    return Needs(tenant_id=tenant.id, device_ids=number.ring_group, channels=True)


def _from_device(call: Call, snapshot: Snapshot) -> Needs:
    device = snapshot.devices.get(call.device_id or "")
    tenant = snapshot.tenants.get(device.tenant_id) if device is not None else None
    if tenant is None or not tenant.active or call.classified.kind is DialKind.EMERGENCY:
        return _NOTHING
    callee = snapshot.devices_by_username.get(call.dialled.strip())
    if callee is not None and callee.tenant_id == tenant.id:
        return Needs(tenant_id=tenant.id, device_ids=(callee.id,))
    number = snapshot.numbers.get(call.classified.e164 or "")
    if number is not None and number.tenant_id == tenant.id:
        return Needs(tenant_id=tenant.id, device_ids=number.ring_group)
    return Needs(tenant_id=tenant.id, channels=True, usage_of=call.device_id)

"""Pure comparisons between two routing snapshots (model layer: no I/O).

`dropped_devices(old, new)` names the IDs whose registrations and device lock the switch must
drop when it moves from `old` to `new`: deleted IDs, released IDs (`Device.release_seq`
changed), IDs whose username or HA1 changed (their current credentials are void), and IDs of
tenants that were deleted or are no longer active. `provisioning.live` re-exports it.
"""

from __future__ import annotations

from .model import Device, Snapshot, TenantStatus

__all__ = ["dropped_devices"]


def dropped_devices(old: Snapshot, new: Snapshot) -> set[str]:
    """Device ids whose bindings (and device lock) the switch must drop going old -> new."""
    return {dev_id for dev_id, before in old.devices.items() if _dropped(before, new)}


def _dropped(before: Device, new: Snapshot) -> bool:
    after = new.devices.get(before.id)
    tenant = new.tenants.get(before.tenant_id)
    return (
        after is None
        or after.release_seq != before.release_seq
        or after.username != before.username
        or after.ha1_md5 != before.ha1_md5
        or after.ha1_sha256 != before.ha1_sha256
        or tenant is None
        or tenant.status is not TenantStatus.ACTIVE
    )

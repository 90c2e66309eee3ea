"""routing.needs: what the proxy loads before `decide`, from the one classification of the
dialled string the Call carries. The property: `decide` reads nothing of the live state that
`needs` did not name, so a LiveView holding only that gives the same decision."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings

from provisioning.model import DeviceKind, Snapshot, TenantStatus
from routing import Call, LiveState, Needs, OutboundUsage, decide, needs
from routing.dialled import DialKind
from routing.testing import ADDITIONAL, CONTRACT, TENANT, office

from .test_properties import scenarios

NOW = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)


class NeedOnly:
    """A LiveView that answers only what `need` names and records anything else asked."""

    def __init__(self, full: LiveState, need: Needs) -> None:
        self.full = full
        self.need = need
        self.outside: list[str] = []

    def channels_in_use(self, tenant_id: str) -> int:
        if not (self.need.channels and tenant_id == self.need.tenant_id):
            self.outside.append(f"channels:{tenant_id}")
        return self.full.channels_in_use(tenant_id)

    def is_registered(self, device_id: str) -> bool:
        if device_id not in self.need.device_ids:
            self.outside.append(f"registered:{device_id}")
        return self.full.is_registered(device_id)

    def outbound_usage(self, device_id: str) -> OutboundUsage:
        if device_id != self.need.usage_of:
            self.outside.append(f"usage:{device_id}")
        return self.full.outbound_usage(device_id)


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_decide_reads_only_what_needs_names(
    scenario: tuple[Call, Snapshot, LiveState, datetime],
) -> None:
    call, snap, live, now = scenario
    view = NeedOnly(live, needs(call, snap))
    assert decide(call, snap, view, now) == decide(call, snap, live, now)
    assert view.outside == []


def test_inbound_call_needs_the_ring_group_and_the_channels() -> None:
    snap = office()
    for dialled in (CONTRACT, "0312345678", "81312345678", "tel:+81-3-1234-5678;x=y"):
        call = Call.inbound(call_id="c", dialled=dialled)
        assert call.classified.e164 == CONTRACT
        assert needs(call, snap) == Needs(
            tenant_id=TENANT, device_ids=tuple("ABCDE"), channels=True
        )


@pytest.mark.parametrize("dialled", ["0399999999", "110", "", "1840312345678"])
def test_inbound_call_to_no_number_of_ours_needs_nothing(dialled: str) -> None:
    assert needs(Call.inbound(call_id="c", dialled=dialled), office()) == Needs()


def test_suspended_tenant_needs_nothing() -> None:
    snap = office(tenant_fields={"status": TenantStatus.SUSPENDED})
    assert needs(Call.inbound(call_id="c", dialled=CONTRACT), snap) == Needs()
    assert needs(Call.from_device(call_id="c", device_id="A", dialled="0355550000"), snap) == (
        Needs()
    )


def test_device_calls() -> None:
    snap = office()

    def need(dialled: str, device: str = "A") -> Needs:
        return needs(Call.from_device(call_id="c", device_id=device, dialled=dialled), snap)

    assert need("user-C") == Needs(tenant_id=TENANT, device_ids=("C",))  # a colleague
    assert need("0312345679") == Needs(tenant_id=TENANT, device_ids=("A", "B", "C"))
    # the carrier: the channels, and the caller's usage for the toll-fraud caps
    assert need("0355550000") == Needs(tenant_id=TENANT, channels=True, usage_of="A")
    assert need("104") == Needs(tenant_id=TENANT, channels=True, usage_of="A")
    assert need("184110") == Needs()  # emergency: refused before anything is read
    assert need("0355550000", device="ghost") == Needs()
    assert snap.devices["A"].kind is DeviceKind.DESK and ADDITIONAL.endswith("79")


def test_the_call_is_classified_once_by_direction() -> None:
    """A carrier delivers numbers; a device dials prefixes and short codes."""
    inbound = Call.inbound(call_id="c", dialled="1840312345678")
    device = Call.from_device(call_id="c", device_id="A", dialled="1840312345678")
    assert inbound.classified.kind is DialKind.INVALID and inbound.classified.e164 is None
    assert device.classified.kind is DialKind.NATIONAL and device.classified.withhold
    assert device.classified.e164 == CONTRACT


def test_needs_validates_itself() -> None:
    with pytest.raises(ValueError, match="tenant_id"):
        Needs(channels=True)

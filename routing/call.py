"""What `decide` is asked about: the call as the proxy saw it, and the live state it holds.

Both are plain data. The proxy builds a `Call` from the INVITE (Request-URI user, the caller's
identity, the authenticated device or the trusted carrier gateway) and hands over a `LiveView`
of its runtime state (channel leases, registrations); routing never asks anything else.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from .caps import NO_USAGE, OutboundUsage
from .dialled import Dialled, classify, classify_called


class Direction(enum.StrEnum):
    INBOUND = "inbound"  # from a trusted carrier gateway, to one of the service's numbers
    FROM_DEVICE = "from-device"  # from a registered, authenticated device (an ID)


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """One new INVITE.

    `dialled` is the Request-URI user part as received ("0312345678", "+81312345678", "110",
    "tel:+1…", another device's username …). `classified` is its classification
    (routing.dialled: `classify_called` for a carrier's call, `classify` for a device's),
    computed once, here, and read by `routing.needs` and `routing.decide`. `caller_number` and
    `caller_display` are the caller's identity as received (P-Asserted-Identity or From), kept
    for the ring, the CDR and the app's call history; they are never trusted for routing.
    `fax` is the proxy's hint that the offer is a FAX (an image/t38 media line): a FAX still
    reaches the number's ATA while forwarding is ON (service rule).
    """

    call_id: str
    direction: Direction
    dialled: str
    caller_number: str | None = None
    caller_display: str | None = None
    device_id: str | None = None  # the calling ID when direction is FROM_DEVICE
    gateway_id: str | None = None  # the carrier gateway when direction is INBOUND
    fax: bool = False
    classified: Dialled = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        inbound = self.direction is Direction.INBOUND
        reading = classify_called if inbound else classify
        object.__setattr__(self, "classified", reading(self.dialled))  # frozen: set once here
        if not self.call_id:
            raise ValueError("call_id must not be empty")
        if self.direction is Direction.FROM_DEVICE and not self.device_id:
            raise ValueError("a call from a device needs device_id")
        if self.direction is Direction.INBOUND and self.device_id is not None:
            raise ValueError("an inbound carrier call has no device_id")

    @classmethod
    def inbound(
        cls,
        *,
        call_id: str,
        dialled: str,
        caller_number: str | None = None,
        caller_display: str | None = None,
        gateway_id: str | None = None,
        fax: bool = False,
    ) -> Call:
        return cls(
            call_id=call_id,
            direction=Direction.INBOUND,
            dialled=dialled,
            caller_number=caller_number,
            caller_display=caller_display,
            gateway_id=gateway_id,
            fax=fax,
        )

    @classmethod
    def from_device(
        cls, *, call_id: str, device_id: str, dialled: str, caller_display: str | None = None
    ) -> Call:
        return cls(
            call_id=call_id,
            direction=Direction.FROM_DEVICE,
            dialled=dialled,
            device_id=device_id,
            caller_display=caller_display,
        )


class LiveView(Protocol):
    """The part of the switch's runtime state routing reads. The proxy's state backend
    (memory or Redis) implements it; `LiveState` is a frozen, in-memory implementation."""

    def channels_in_use(self, tenant_id: str) -> int:
        """Channel leases the tenant holds now (calls in and out, forwarded legs included)."""
        ...

    def is_registered(self, device_id: str) -> bool:
        """Whether the ID has a live registered contact (one device per ID)."""
        ...

    def outbound_usage(self, device_id: str) -> OutboundUsage:
        """The ID's (and its tenant's) outbound calls for the toll-fraud caps (routing.caps)."""
        ...


def _frozen_counts() -> Mapping[str, int]:
    return MappingProxyType({})


def _frozen_usage() -> Mapping[str, OutboundUsage]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveState:
    """A frozen picture of the live state: channel leases per tenant, registered device IDs,
    outbound usage per calling ID."""

    channels: Mapping[str, int] = field(default_factory=_frozen_counts)
    registered: frozenset[str] = frozenset()
    usage: Mapping[str, OutboundUsage] = field(default_factory=_frozen_usage)

    def __post_init__(self) -> None:
        if any(n < 0 for n in self.channels.values()):
            raise ValueError("channels in use cannot be negative")

    def channels_in_use(self, tenant_id: str) -> int:
        return self.channels.get(tenant_id, 0)

    def is_registered(self, device_id: str) -> bool:
        return device_id in self.registered

    def outbound_usage(self, device_id: str) -> OutboundUsage:
        return self.usage.get(device_id, NO_USAGE)

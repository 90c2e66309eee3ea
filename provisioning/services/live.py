"""What the switch holds right now, for operators (issue: "operators can see and clear what
the switch holds"): a tenant's active calls (the calls holding a channel lease), ending one,
and its registrations per device.

Provisioning is a leaf package: it never reaches the switch's runtime state itself. The
composition root (switch/node.py) gives the API a `LiveSwitch` over the switch's state backend
(shared by every node on Redis, so the lists are the whole cluster's) and its proxy (which ends
a call: BYE both ways when this process holds the dialog, the lease released in any case).
Without one (an API served apart from any switch) every operation is 503
`live-state-unavailable`, as it is while the state backend is unreachable.

Tenant isolation as everywhere: the operator sees every tenant, a tenant token its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ..errors import NotFound, ProvisioningError
from .base import Principal

__all__ = [
    "ActiveCall",
    "CallEnded",
    "LiveService",
    "LiveSwitch",
    "LiveUnavailable",
    "Registration",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ActiveCall:
    call_id: str
    caller: str | None  # the calling number (or the calling ID) as routing saw it
    called: str | None  # the number dialled
    started: datetime
    answered: datetime | None
    node: str  # the switch node that took the channel


@dataclass(frozen=True, slots=True, kw_only=True)
class Registration:
    device_id: str
    contact: str
    transport: str  # the flow the REGISTER came on: udp, tcp, tls
    source: str  # its address, host:port
    user_agent: str | None
    expires: datetime
    node: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded:
    call_id: str
    signalled: bool  # BYE both ways / CANCEL; False: no process here held it, lease released
    node: str


class LiveUnavailable(ProvisioningError):
    status = 503

    def __init__(self, message: str = "the switch's live state is unavailable") -> None:
        super().__init__("live-state-unavailable", message)


class LiveSwitch(Protocol):
    """The switch side (switch/node.py). The coroutines raise LiveUnavailable when the state
    backend cannot be reached."""

    def has_tenant(self, tenant_id: str) -> bool: ...

    async def active_calls(self, tenant_id: str) -> list[ActiveCall]: ...

    async def end_call(self, tenant_id: str, call_id: str) -> CallEnded | None:
        """None when the tenant has no such active call."""
        ...

    async def registrations(self, tenant_id: str) -> list[Registration]: ...


class LiveService:
    def __init__(self, switch: LiveSwitch | None) -> None:
        self._switch = switch

    def _live(self, principal: Principal, tenant_id: str) -> LiveSwitch:
        principal.require_tenant(tenant_id)
        if self._switch is None:
            raise LiveUnavailable("no switch is attached to this API")
        if not self._switch.has_tenant(tenant_id):
            raise NotFound("tenant", tenant_id)
        return self._switch

    async def active_calls(self, principal: Principal, tenant_id: str) -> list[ActiveCall]:
        return await self._live(principal, tenant_id).active_calls(tenant_id)

    async def end_call(self, principal: Principal, tenant_id: str, call_id: str) -> CallEnded:
        done = await self._live(principal, tenant_id).end_call(tenant_id, call_id)
        if done is None:
            raise NotFound("call", call_id)
        return done

    async def registrations(
        self, principal: Principal, tenant_id: str, device_id: str | None = None
    ) -> list[Registration]:
        found = await self._live(principal, tenant_id).registrations(tenant_id)
        return [r for r in found if device_id is None or r.device_id == device_id]

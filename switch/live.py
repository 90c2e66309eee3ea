"""The switch's live state for the provisioning API (provisioning.services.live.LiveSwitch):
a tenant's active calls and registrations from the state backend (every node's, on Redis),
and ending a call through the proxy.

Active calls are the calls holding one of the tenant's channels: their `CallRecord`s
(switch/proxy/leases.py), listed only while the lease is live. Ending one: the proxy sends
BYE to both ends when this process holds the dialog (switch/proxy/dialogs.py), cancels a
call still ringing here (487 to the caller), and releases the lease in every case. A call
of another node: that node is asked, through the state backend, to end it (its
housekeeping, within a second, sends the BYEs - if it is alive), and `signalled` is false
(this node cannot tell whether the ends were told); the channel is freed at once.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from provisioning.services.live import (
    ActiveCall,
    CallEnded,
    LiveUnavailable,
    Registration,
)
from switch.proxy.proxy import Proxy
from switch.state.base import Binding, CallRecord, StateUnavailable

if TYPE_CHECKING:
    from provisioning.model import Snapshot
    from switch.state.base import StateBackend
    from switch.tu import TransactionUser

__all__ = ["SwitchLive"]


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class SwitchLive:
    """Over the switch's state backend, its live snapshot and its proxy (read when a call is
    ended: the switch app builds it at start; None ends nothing but the lease)."""

    def __init__(
        self,
        state: StateBackend,
        snapshot: Callable[[], Snapshot],
        proxy: Callable[[], TransactionUser | None],
        node: str | None = None,
    ) -> None:
        self._state = state
        self._snapshot = snapshot
        self._proxy = proxy
        # the node name of this process's call records (SwitchApp.call_owner)
        node = node or getattr(state, "node_id", None)
        self.node = node if isinstance(node, str) else f"{socket.gethostname()}-{os.getpid()}"

    def has_tenant(self, tenant_id: str) -> bool:
        return tenant_id in self._snapshot().tenants

    async def active_calls(self, tenant_id: str) -> list[ActiveCall]:
        try:
            records = await self._state.calls(tenant_id, time.time())
        except StateUnavailable as exc:
            raise LiveUnavailable(str(exc)) from exc
        return [self._call(r) for r in records]

    def _call(self, r: CallRecord) -> ActiveCall:
        return ActiveCall(
            call_id=r.call_id, caller=r.caller, called=r.called, started=_at(r.started),
            answered=None if r.answered is None else _at(r.answered), node=r.node or self.node,
        )  # fmt: skip

    async def end_call(self, tenant_id: str, call_id: str) -> CallEnded | None:
        try:
            found = await self._state.calls(tenant_id, time.time())
        except StateUnavailable as exc:
            raise LiveUnavailable(str(exc)) from exc
        record = next((r for r in found if r.call_id == call_id), None)
        if record is None:
            return None
        proxy = self._proxy()
        elsewhere = record.node is not None and record.node != self.node
        if isinstance(proxy, Proxy) and not elsewhere:
            signalled = proxy.end_call(call_id)
        else:  # another node's call: it is asked to send the BYEs; the lease goes now
            signalled = False
            try:
                if elsewhere:
                    assert record.node is not None
                    await self._state.request_end(record.node, call_id)
                await self._state.release_call(record.tenant_id, call_id, record.also)
            except StateUnavailable as exc:
                raise LiveUnavailable(str(exc)) from exc
        return CallEnded(call_id=call_id, signalled=signalled, node=record.node or self.node)

    async def registrations(self, tenant_id: str) -> list[Registration]:
        now = time.time()
        found = []
        try:
            for device in self._snapshot().tenant_devices.get(tenant_id, ()):
                for b in await self._state.bindings(device.id, now):
                    found.append(self._registration(b))
        except StateUnavailable as exc:
            raise LiveUnavailable(str(exc)) from exc
        return found

    def _registration(self, b: Binding) -> Registration:
        return Registration(
            device_id=b.device_id, contact=b.contact, transport=b.source.transport,
            source=f"{b.source.host}:{b.source.port}", user_agent=b.user_agent,
            expires=_at(b.expires_at), node=b.node or self.node,
        )  # fmt: skip

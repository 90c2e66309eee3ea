"""The runtime-state seam: registrations (bindings), the one-device-per-ID lock and channel
leases, behind one async Protocol. `memory.py` implements it for a single node; `redis.py`
for several nodes sharing one tenant base.

CONTRACT — the registrar, the proxy and the app use these names. Methods may be added; none
may be renamed.

Time
----
Every `now`, `expires_at` and lease deadline in this module is **wall-clock epoch seconds**
(`time.time()`), never `loop.time()`. A monotonic loop clock means nothing on another node or
after a restart, and a Redis backend must be able to compare a deadline written by node A
with the clock of node B (NTP-synchronised clocks are the usual assumption for SIP
registrars anyway). Protocol timers (transactions, Timer C) stay on the loop clock; only
state that could be shared uses the wall clock. The caller passes `now` explicitly so that
tests drive the backend with a fake clock.

Flows
-----
`Binding.source` is the `Target` the REGISTER came from; its `conn_id` names a TCP/TLS
connection *of the node that received the REGISTER*. It is meaningful only on that node.
`Binding.node` records which node holds the flow: None means "this process" (the memory
backend, single node); a shared backend stamps its own node id on `put_binding` when the
binding has none. A proxy on another node must not use a `conn_id` owned by a different
node (conn_ids are per-process counters: on another node the same number names an unrelated
connection, or none); it falls back to the address (transport, host, port). `RedisState`
enforces this on read: bindings held by another node come back with `source.conn_id=None`
and `node` set to the holder.

Failures
--------
A network backend raises `StateUnavailable` (and nothing else) when it cannot reach its
server or the server refuses an operation; callers answer with a temporary failure
(`status_hint`, 503 — 500 where RFC 3261 offers nothing better) instead of crashing. An
operation that raised may or may not have been applied.

Atomicity
---------
`claim_device` and `acquire_channel` are the two check-and-set operations; a shared backend
must implement each atomically (Lua script / transaction). Everything else is a plain
read or write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from switch.tu import Unavailable

if TYPE_CHECKING:
    from switch.sip.target import Target

__all__ = ["Binding", "StateBackend", "StateUnavailable"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Binding:
    """One registered contact of an ID (RFC 3261 §10.3 location service entry)."""

    device_id: str  # provisioning Device.id (the ID), not the digest username
    contact: str  # the Contact URI as registered (text, without header params)
    instance_id: str | None  # +sip.instance (RFC 5626), e.g. "<urn:uuid:…>", or None
    expires_at: float  # wall-clock epoch seconds
    source: Target  # the flow the REGISTER arrived on (transport, host, port, conn_id)
    call_id: str
    cseq: int
    user_agent: str | None = None
    q: float | None = None  # Contact ;q= (0.0 to 1.0), None when absent
    node: str | None = None  # node holding source.conn_id; None = this process (see Flows)

    def __post_init__(self) -> None:
        if not self.device_id or not self.contact:
            raise ValueError("Binding needs a device_id and a contact")
        if self.q is not None and not 0.0 <= self.q <= 1.0:
            raise ValueError(f"q out of range: {self.q}")
        if not 0 <= self.cseq < 2**31:
            raise ValueError(f"cseq out of range: {self.cseq}")

    def remaining(self, now: float) -> int:
        """Seconds left, rounded down, never negative (for the 200 OK's expires=)."""
        return max(0, int(self.expires_at - now))


class StateUnavailable(Unavailable):
    """The state backend cannot be reached or refused the operation (see Failures)."""

    status_hint = 503


class StateBackend(Protocol):
    """Shared runtime state. All methods are coroutines so that a network backend fits."""

    # ------------------------------------------------------------------ registrations
    async def bindings(self, device_id: str, now: float) -> list[Binding]:
        """Live (expires_at > now) bindings of the ID, in registration order."""
        ...

    async def put_binding(self, binding: Binding) -> None:
        """Insert or replace the binding with the same (device_id, contact)."""
        ...

    async def remove_binding(self, device_id: str, contact: str) -> bool:
        """Remove one binding; True if it existed."""
        ...

    async def remove_all(self, device_id: str) -> int:
        """Remove every binding of the ID (not the device lock); return how many."""
        ...

    async def expire(self, now: float) -> int:
        """Drop bindings and device locks whose deadline is ≤ now; return bindings dropped."""
        ...

    async def count(self) -> int:
        """Bindings stored (call `expire` first for an exact live count)."""
        ...

    # ------------------------------------------------------------------ one device per ID
    async def claim_device(self, device_id: str, owner: str, until: float, now: float) -> bool:
        """Atomically: when the ID has no live lock (deadline > now) or it is held by `owner`,
        set the lock to (owner, until) and return True; else return False (another device
        holds the ID). `until` replaces the old deadline (it may shrink)."""
        ...

    async def device_owner(self, device_id: str, now: float) -> str | None:
        """The owner of the live lock, or None when the ID is free."""
        ...

    async def unclaim_device(self, device_id: str, owner: str) -> bool:
        """Drop the lock if `owner` holds it (the device removed its last binding)."""
        ...

    async def release_device(self, device_id: str) -> int:
        """Operator release ("logged-in device" release in the customer page): drop every
        binding of the ID and its lock, whoever holds it; return bindings dropped."""
        ...

    # ------------------------------------------------------------------ channel leases
    async def acquire_channel(
        self, tenant_id: str, call_id: str, limit: int, ttl: float, now: float
    ) -> bool:
        """Atomically take one of the tenant's `limit` channels for `call_id` until now+ttl.
        False when live leases ≥ limit. Re-acquiring a lease the call already holds refreshes
        it and succeeds."""
        ...

    async def refresh_channel(self, tenant_id: str, call_id: str, ttl: float, now: float) -> bool:
        """Extend a live lease to now+ttl; False if the call holds none (expired/released)."""
        ...

    async def release_channel(self, tenant_id: str, call_id: str) -> bool:
        """Give the channel back; True if a lease existed."""
        ...

    async def channels_in_use(self, tenant_id: str, now: float) -> int:
        """Live leases of the tenant."""
        ...

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

`Binding.path` (RFC 3327 in spirit) is how another node reaches the flow: a SIP URI of the
process that received the REGISTER, whose user part is a token naming the flow (with its
conn_id) that only the nodes' shared secret makes and reads (switch/proxy/targets.py,
NodePaths). A node that rings a binding held by another node sends the request there with
that URI as its Route, and the holder delivers it over the flow: a TCP/TLS connection it
holds, or a NAT pinhole opened towards its own address. A shared backend returns `path` only
for bindings held by another node (None for its own: they are reached directly); the memory
backend has none.

Failures
--------
A network backend raises `StateUnavailable` (and nothing else) when it cannot reach its
server or the server refuses an operation; callers answer with a temporary failure
(`status_hint`, 503 — 500 where RFC 3261 offers nothing better) instead of crashing. An
operation that raised may or may not have been applied.

Atomicity
---------
`claim_device`, `acquire_channel` and `auth_failure` are the check-and-set operations; a
shared backend must implement each atomically (Lua script / transaction). `add_daily`
increments every key it is given (atomic per key). Everything else is a plain read or write.

Authentication guard (switch/proxy/bans.py)
--------------------------------------------
Digest failures are counted per (kind, key) in a sliding window - kind "source" (an IP
address) or "id" (a digest username) - and past a threshold the pair is banned until a
deadline (`Ban`). Bans and counts are shared by the nodes so that an attacker spreading
guesses over them is counted once. `remember_source` keeps the addresses an ID registered
from (the per-ID guard lets those through). Kinds are lower-case words (no ":").

Calls (the channel leases' dialogs: switch/proxy/leases.py)
------------------------------------------------------------
`CallRecord` is what any process needs to release a call's leases from its Call-ID alone (the
tenant, the second lease key) and what operators see of it (caller, number, since when,
answered, node). It lives as long as the lease (`until`, refreshed with it); `calls(tenant)`
lists a tenant's live ones from every node. `put_call` stamps the backend's node id on a
record without one, like `put_binding`. A call's lease and record change together, so three
methods do both at once (one round trip and atomic on a shared backend, the same effect as
the calls they name): `acquire_call` (the lease, then the record), `refresh_call` (the
leases and the record, only while the lease is live: a refresh never takes a lease again) and
`release_call` (both leases and the record). `refresh_call_later` is a refresh nobody waits
on, which a shared backend sends along with other round trips: an answered call then costs
three (the routing read, the acquire, the release), not four. `request_end`/`ends_requested`
carry an operator's "end this call" to the node holding its dialog.

Processes
---------
`announce(process, address, until, now)`: this process (a node id, with `/w<i>` per worker)
is alive until `until` and reachable from the other nodes at `address` ("host:port", the
address its Record-Route and paths name); the answer is every process alive at `now`, itself
included, with its address. Each process announces itself every second or so (switch/app.py),
so a node killed with SIGKILL drops out of the others' view within seconds: they then stop
sending calls through its paths and take over in-dialog requests addressed to it
(proxy.py, step 5d).

Outbound usage (toll-fraud caps, routing.caps)
-----------------------------------------------
`add_daily` / `daily` are plain counters per (day, key) — the proxy counts the outbound
calls it starts per ID, per tenant, and the expensive ones per ID; routing reads them,
with the ID's calls in progress (its `also` leases), by `usage_lookup`. A device's call
reads them with what routing reads anyway (`outbound_lookup`, one round trip), and
`acquire_call(..., daily=)` counts the call in the write that takes its channel: an
outbound call costs a network backend three round trips (read, acquire, release).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from switch.tu import Unavailable

if TYPE_CHECKING:
    from switch.sip.target import Target

__all__ = ["LATE_WRITE_BOUND", "Ban", "Binding", "CallRecord", "StateBackend", "StateUnavailable"]

_KIND = re.compile(r"[a-z][a-z-]*")

# Seconds after its `now` past which a shared backend refuses an `acquire_channel` that
# reaches it late (a command held by the network during an outage; redis.py, Late writes).
# A lease write the caller saw fail is certain to have no effect once this has passed.
LATE_WRITE_BOUND = 10.0


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
    path: str | None = None  # how another node reaches the flow: the holder's URI (see Flows)

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


@dataclass(frozen=True, slots=True, kw_only=True)
class Ban:
    """A live ban of the authentication guard: `kind` "source" (`key` an IP address) or
    "id" (`key` a digest username), refused until `until` (wall-clock epoch seconds)."""

    kind: str
    key: str
    until: float

    def __post_init__(self) -> None:
        if not _KIND.fullmatch(self.kind):
            raise ValueError(f"ban kind must be a lower-case word: {self.kind!r}")
        if not self.key:
            raise ValueError("a ban needs a key")


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecord:
    """A call holding a channel lease (see Calls). Times are wall-clock epoch seconds."""

    call_id: str
    tenant_id: str
    until: float  # the lease's deadline: the record is gone with it
    started: float
    caller: str | None = None  # the calling number or ID as routing saw it
    called: str | None = None  # the number dialled
    answered: float | None = None
    also: str | None = None  # the second lease key counting the call (leases.also_count)
    node: str | None = None  # the node that took the lease; None = this process

    def __post_init__(self) -> None:
        if not self.call_id or not self.tenant_id:
            raise ValueError("CallRecord needs a call_id and a tenant_id")


@dataclass(frozen=True, slots=True)
class DailyCount:
    """Counters to add one to (`add_daily(day, keys, expires_at)`) with a write that may
    refuse (`acquire_call`): only when it took the lease."""

    day: str
    keys: tuple[str, ...]
    expires_at: float


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """`usage_lookup(day, keys, lease_key, now)`'s arguments but `now`, read along with a
    routing read (`outbound_lookup`)."""

    day: str
    keys: tuple[str, ...]
    lease_key: str


def check_kind(kind: str) -> None:
    """ValueError unless `kind` is a ban kind as `Ban` accepts it (backends check their
    arguments with it: a kind is a part of their keys)."""
    if not _KIND.fullmatch(kind):
        raise ValueError(f"ban kind must be a lower-case word: {kind!r}")


class StateUnavailable(Unavailable):
    """The state backend cannot be reached or refused the operation (see Failures)."""

    status_hint = 503


class StateBackend(Protocol):
    """Shared runtime state. All methods are coroutines so that a network backend fits."""

    # ------------------------------------------------------------------ registrations
    async def bindings(self, device_id: str, now: float) -> list[Binding]:
        """Live (expires_at > now) bindings of the ID, in registration order."""
        ...

    async def routing_lookup(
        self, device_ids: Sequence[str], tenant_id: str | None, now: float
    ) -> tuple[dict[str, list[Binding]], int | None]:
        """What routing reads for a new request, at once: `bindings()` of each ID and, when
        `tenant_id` is given, `channels_in_use(tenant_id)` (else None), with the same
        results as those calls. A network backend reads it in one round trip."""
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
        """Drop bindings and device locks whose deadline is ≤ now; return bindings dropped.
        (A backend may also forget other state past its deadline here: bans, failure
        windows, remembered sources, daily counters.)"""
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

    # ------------------------------------------------------------------ calls
    async def put_call(self, record: CallRecord) -> None:
        """Insert or replace the record of `record.call_id` (live until `record.until`)."""
        ...

    async def acquire_call(
        self,
        record: CallRecord,
        limit: int,
        ttl: float,
        now: float,
        daily: DailyCount | None = None,
    ) -> bool:
        """`acquire_channel(record.tenant_id, record.call_id, limit, ttl, now)` and, when it
        took the lease, the lease of `record.also` when set (to the same deadline; it never
        refuses), `put_call(record)` and, with `daily`, `add_daily(daily.day, daily.keys,
        daily.expires_at)`; nothing is written when it refuses (or raises StateUnavailable
        before reaching the backend, or is refused as a late write)."""
        ...

    async def refresh_call(self, record: CallRecord, ttl: float, now: float) -> bool:
        """When the call's lease (`record.tenant_id`) is live: extend it to now+ttl, take or
        extend the lease of `record.also` (when set; it never refuses) to the same deadline,
        and `put_call(record)` (its `until` is the caller's: now+ttl); return True. When the
        lease is gone (expired, released): write nothing, return False."""
        ...

    async def refresh_call_later(self, record: CallRecord, ttl: float, now: float) -> bool:
        """`refresh_call`, for a caller that does not wait on it (the answer's and in-dialog
        traffic's refreshes, leases.py): a shared backend may hold it up to a couple of
        seconds and send it with other round trips (redis_batch.py), then returns the same
        result. Applied as given (`now`, the record's `until`), only while the lease is live:
        like `refresh_call` it never takes a lease again. A `release_call` of the call
        before it was sent cancels it (result False). The memory backend applies it at once."""
        ...

    async def release_call(self, tenant_id: str, call_id: str, also: str | None) -> bool:
        """`release_channel(tenant_id, call_id)`, `release_channel(also, call_id)` when given,
        and `remove_call(call_id)` (idempotent); True if the tenant's lease existed."""
        ...

    async def call(self, call_id: str, now: float) -> CallRecord | None:
        """The live record of the Call-ID, or None."""
        ...

    async def calls(self, tenant_id: str, now: float) -> list[CallRecord]:
        """The tenant's live records, oldest first."""
        ...

    async def remove_call(self, call_id: str) -> bool:
        """Forget the record (idempotent); True if one was stored."""
        ...

    async def request_end(self, node: str, call_id: str) -> None:
        """Ask `node` (a record's node) to end the call: an operator's action taken through
        another node; kept a minute at most (a node that is gone never takes it)."""
        ...

    async def ends_requested(self, node: str) -> list[str]:
        """Take the Call-IDs other nodes asked `node` to end (each is returned once)."""
        ...

    # ------------------------------------------------------------------ authentication guard
    async def auth_failure(
        self, kind: str, key: str, *, threshold: int, window: float, ban_for: float, now: float
    ) -> Ban | None:
        """Atomically count one failure of (kind, key) at `now`, forgetting failures at or
        before now - window. When `threshold` failures are in the window: ban the pair until
        now + ban_for (a live ban is extended, never shortened), clear its failures and
        return the Ban; else None."""
        ...

    async def bans(self, now: float) -> list[Ban]:
        """Every live ban (until > now), sorted by (kind, key)."""
        ...

    async def lift_ban(self, kind: str, key: str) -> bool:
        """Drop the ban and the failures of (kind, key); True if a ban was stored (a live
        one, or one expired and not yet swept)."""
        ...

    async def remember_source(self, device_id: str, host: str, until: float, now: float) -> None:
        """The ID authenticated a REGISTER from `host`: remember it until `until`."""
        ...

    async def known_source(self, device_id: str, host: str, now: float) -> bool:
        """Whether the ID registered from `host` and that is remembered past `now`."""
        ...

    # ------------------------------------------------------------------ outbound usage
    async def add_daily(self, day: str, keys: Sequence[str], expires_at: float) -> list[int]:
        """Add one to each counter (day, key) and return the new values, in order. The
        counters of `day` may be forgotten after `expires_at` (wall clock)."""
        ...

    async def daily(self, day: str, keys: Sequence[str]) -> list[int]:
        """The counters (day, key), 0 for one never added to, in order."""
        ...

    async def usage_lookup(
        self, day: str, keys: Sequence[str], lease_key: str, now: float
    ) -> tuple[list[int], int]:
        """What routing.caps reads for a device's outbound call, at once: `daily(day, keys)`
        and `channels_in_use(lease_key, now)`, with the same results as those calls. A
        network backend reads it in one round trip."""
        ...

    async def outbound_lookup(
        self, device_ids: Sequence[str], tenant_id: str | None, now: float, usage: UsageQuery
    ) -> tuple[dict[str, list[Binding]], int | None, tuple[list[int], int]]:
        """`routing_lookup(device_ids, tenant_id, now)` and `usage_lookup(usage.day,
        usage.keys, usage.lease_key, now)` at once (a device's outbound call), with the same
        results as those calls. A network backend reads it in one round trip."""
        ...

    # ------------------------------------------------------------------ processes
    async def announce(
        self, process: str, address: str, until: float, now: float
    ) -> dict[str, str]:
        """See Processes: this process is alive until `until` at `address`; returns every
        live process -> its address."""
        ...

"""The authentication guard: digest brute force is refused cheaply (README "Operating",
"Password guessing").

What is counted
---------------
Every request whose credentials for our realm fail verification (a wrong password, a forged
or replayed nonce, an unknown username, a malformed header — not a stale nonce, not a
request without credentials) is one failure of its *source address* and one of the digest
*username* it names, each in a sliding window (`window`), in the shared state backend
(`StateBackend.auth_failure`: atomic, so nodes sharing Redis count an attack once).

Two bans, two strengths
-----------------------
* **source** — `source_max_failures` failures from one address within the window ban the
  address for `ban_time`: every request from it that would be authenticated is refused
  unverified (403, counted in `sip_auth_refused_total{kind="source"}`), whatever ID it names.
  This is fail2ban's answer (Asterisk's security log + fail2ban: maxretry 5 in findtime 10
  min, bantime 10 min), and the defaults are the same. With `action = "drop"`, requests from
  the address are dropped before the transaction layer (`BanFilter`): no response at all.
* **id** — `id_max_failures` failures naming one username within the window (from any
  number of addresses: one address per guess defeats the source ban) put the ID *under
  guard* for `ban_time`. An ID under guard is not locked: requests for it from an address
  the ID registered from recently (`remember_source`, `known_source_ttl`) are verified as
  usual; requests from any other address are refused unverified (403, kind "id"). Banning
  the ID outright would hand attackers a lever to lock any customer out by guessing on
  purpose; refusing only new addresses stops the distributed guessing while the ID's own
  phone, on its usual address, keeps registering and calling. The price: a phone that moves
  to a new address during an attack is refused until the guard lapses (or an operator lifts
  it: `DELETE /admin/bans/id/<username>`).

Unknown usernames are counted like known ones: the answers must not tell which IDs exist.

Nodes
-----
Each node keeps the live bans in a local table, refreshed from the backend by `sync(now)`
(the app's housekeeping, every second) and updated at once by the bans it makes and lifts,
so checking a request costs no round trip; a ban made or lifted on another node is seen
here within one sync. Only the per-ID exception (`known_source`) reads the backend, and only
while that ID is under guard.

Time is the caller's wall clock (`now`), as everywhere in the state seam.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from switch.sip.message import Request, Response

if TYPE_CHECKING:
    from provisioning.model import Snapshot
    from switch.metrics import Metrics
    from switch.sip.target import Target
    from switch.state.base import Ban, StateBackend

__all__ = [
    "AuthGuard",
    "BanAction",
    "BanFilter",
    "BanKind",
    "GuardSettings",
    "Receiver",
    "Refused",
]

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class BanKind(enum.StrEnum):
    SOURCE = "source"  # an IP address
    ID = "id"  # a digest username


class BanAction(enum.StrEnum):
    REJECT = "reject"  # 403 to every request of a banned source
    DROP = "drop"  # requests of a banned source dropped unanswered (BanFilter)


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardSettings:
    """`[security]` auth_* keys. A max of 0 turns that ban off."""

    source_max_failures: int = 5
    id_max_failures: int = 10
    window: float = 600.0
    ban_time: float = 600.0
    known_source_ttl: float = 7 * 86400.0
    action: BanAction = BanAction.REJECT
    exempt: tuple[Network, ...] = ()  # never banned (`[security] exempt`, parsed)

    def __post_init__(self) -> None:
        if self.source_max_failures < 0 or self.id_max_failures < 0:
            raise ValueError("auth max failures must be >= 0 (0: off)")
        if not (self.window > 0 and self.ban_time > 0 and self.known_source_ttl > 0):
            raise ValueError("auth window, ban time and known-source TTL must be > 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    """The guard refused a request unverified: answer 403 (README "Password guessing")."""

    kind: BanKind
    until: float


class AuthGuard:
    """See the module docstring. One per node, shared by the registrar and the proxy."""

    def __init__(
        self, state: StateBackend, settings: GuardSettings, metrics: Metrics | None = None
    ) -> None:
        self.state = state
        self.settings = settings
        self.metrics = metrics
        self._bans: dict[tuple[str, str], float] = {}  # (kind, key) -> until: this node's view
        self._exempt = settings.exempt

    # ------------------------------------------------------------------ per request
    async def admit(
        self, host: str, username: str | None, snapshot: Snapshot, now: float
    ) -> Refused | None:
        """None: verify the request's credentials; else refuse it unverified."""
        until = self._live(BanKind.SOURCE, host, now)
        if until is not None:
            return self._refused(BanKind.SOURCE, until)
        until = self._live(BanKind.ID, username, now) if username else None
        if until is None or username is None:
            return None
        device = snapshot.devices_by_username.get(username)
        if device is not None and await self.state.known_source(device.id, host, now):
            return None
        return self._refused(BanKind.ID, until)

    async def failed(self, host: str, username: str | None, now: float) -> None:
        """A request from `host` failed verification (naming `username`, if it did)."""
        s = self.settings
        if s.source_max_failures and not self.is_exempt(host):
            await self._count(BanKind.SOURCE, host, s.source_max_failures, now)
        if s.id_max_failures and username:
            await self._count(BanKind.ID, username, s.id_max_failures, now)

    async def registered(self, device_id: str, host: str, now: float) -> None:
        """The ID authenticated a REGISTER from `host`: its usual address from now on."""
        await self.state.remember_source(device_id, host, now + self.settings.known_source_ttl, now)

    def drops(self, host: str, now: float) -> bool:
        """Drop mode: whether requests from `host` are dropped before any processing."""
        if self.settings.action is not BanAction.DROP:
            return False
        return self._live(BanKind.SOURCE, host, now) is not None

    def is_exempt(self, host: str) -> bool:
        if not self._exempt:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self._exempt)

    # ------------------------------------------------------------------ operators, nodes
    async def sync(self, now: float) -> list[Ban]:
        """Take the backend's live bans as this node's view (see Nodes); return them."""
        bans = await self.state.bans(now)
        self._bans = {(b.kind, b.key): b.until for b in bans}
        self._gauge(now)
        return bans

    async def lift(self, kind: BanKind, key: str, now: float) -> bool:
        """Operator: lift a ban (and forget its failures); True if there was one."""
        lifted = await self.state.lift_ban(kind.value, key)
        lifted = self._bans.pop((kind.value, key), None) is not None or lifted
        if lifted:
            log.warning("auth ban lifted by operator: %s %s", kind.value, key)
        self._gauge(now)
        return lifted

    def active(self, now: float) -> dict[BanKind, int]:
        counts = dict.fromkeys(BanKind, 0)
        for (kind, _), until in self._bans.items():
            if until > now and kind in BanKind.__members__.values():
                counts[BanKind(kind)] += 1
        return counts

    # ------------------------------------------------------------------ internals
    def _live(self, kind: BanKind, key: str | None, now: float) -> float | None:
        until = self._bans.get((kind.value, key or ""))
        return until if until is not None and until > now else None

    async def _count(self, kind: BanKind, key: str, threshold: int, now: float) -> None:
        s = self.settings
        ban = await self.state.auth_failure(
            kind.value, key, threshold=threshold, window=s.window, ban_for=s.ban_time, now=now
        )
        if ban is None:
            return
        self._bans[(ban.kind, ban.key)] = ban.until
        log.warning(
            "auth %s ban: %s after %d failures within %g s, until %.0f (%g s)",
            kind.value, key, threshold, s.window, ban.until, ban.until - now,
        )  # fmt: skip
        if self.metrics is not None:
            self.metrics.auth_bans_total.labels(kind.value).inc()
        self._gauge(now)

    def _refused(self, kind: BanKind, until: float) -> Refused:
        if self.metrics is not None:
            self.metrics.auth_refused_total.labels(kind.value).inc()
        return Refused(kind=kind, until=until)

    def _gauge(self, now: float) -> None:
        if self.metrics is not None:
            for kind, n in self.active(now).items():
                self.metrics.auth_bans_active.labels(kind.value).set(n)


class Receiver(Protocol):
    """What the transports deliver to (switch.transport.manager.Receiver)."""

    def on_message(self, message: Request | Response, source: Target) -> None: ...

    def on_send_error(self, target: Target) -> None: ...


class BanFilter:
    """Sits between the transports and the SIP endpoint. In drop mode, requests from a
    banned source are dropped here, before a transaction exists (no response, no retransmit
    state); counted in `sip_messages_dropped_total{reason="auth_banned"}`. Responses pass."""

    def __init__(
        self, inner: Receiver, guard: AuthGuard, metrics: Metrics, clock: Callable[[], float]
    ) -> None:
        self._inner = inner
        self._guard = guard
        self._dropped = metrics.messages_dropped_total.labels(reason="auth_banned")
        self._clock = clock

    def on_message(self, message: Request | Response, source: Target) -> None:
        if isinstance(message, Request) and self._guard.drops(source.host, self._clock()):
            self._dropped.inc()
            return
        self._inner.on_message(message, source)

    def on_send_error(self, target: Target) -> None:
        self._inner.on_send_error(target)

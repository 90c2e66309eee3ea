"""Registrar (RFC 3261 §10.3) with digest authentication and one logged-in device per ID.

Theory of operation
-------------------
`Registrar.handle(request, source)` is the whole logic: it reads the snapshot and the state
backend and returns the final response; it never touches a socket. `on_request` is the
TransactionUser glue that sends that response.

Steps, in the order of §10.3 (numbers are the RFC's):
 1. Request-URI domain: not checked. Every device of every tenant registers here; the realm
    is service-wide, and ATAs often put our IP address in the Request-URI.
 2. Require: we support no extension that changes REGISTER processing -> 420 + Unsupported.
 3. Digest authentication (RFC 7616; auth.py, the check the proxy uses too). A source
    banned for password guessing, or an ID under guard asked from an address it never
    registered from, -> 403 unverified (bans.py; the address of every authenticated
    REGISTER is remembered for that). No credentials for our realm -> 401 with a fresh
    challenge. Unknown usernames get exactly
    the same 401 as wrong passwords (the digest module checks them against a dummy HA1), so
    IDs cannot be enumerated. A correct answer to an expired nonce -> 401 with stale=true
    (not counted as a failure: the phone retries at once).
 4. Authorisation: the user part of the To URI (the AoR) must be the authenticated username,
    else 403. A suspended tenant -> 403.
 5-6. Contacts: `*` must be alone and come with Expires: 0 (else 400). Expiry per contact:
    its expires param, else the Expires header, else `default_expires`; a non-zero value
    below `min_expires` -> 423 with Min-Expires; above `max_expires` -> clamped.
 7. For each contact: an existing binding with the same Call-ID and a CSeq not lower than
    the request's means the request is out of order: "the update MUST be aborted and the
    request fails" -> we answer 400 (a client error: it re-used or reordered a CSeq; 500
    would invite a retry of the same broken request). Nothing is changed in that case.
    A contact with +sip.instance replaces an earlier binding of the same instance (the
    device's contact changed, e.g. after a NAT rebind); expires=0 removes the binding.
 8. 200 OK lists every current binding with its remaining expires.

One device per ID (service rules)
---------------------------------
While an ID has live bindings, it belongs to one device; a REGISTER that would add or
change bindings from another device gets 403 with
`Warning: 399 <host> "ID in use by another device"`. The ID is free again when every
binding has expired or been removed, or after an operator release (`release_device`).

A device is recognised by, in this order (`device_identity`):
  * its +sip.instance (RFC 5626 §4.1): stable across reboots, IP changes and NAT rebinds;
  * else the host of its Contact URI (not the port: one device may register several
    contacts, e.g. one per transport, on different ports): a device behind NAT usually
    writes its LAN address there, which survives a NAT rebind (the source port changes, the
    contact does not). A device that writes its public (rport-learnt) address into
    Contact, or that gets a new DHCP address, looks like a new device after a rebind and is
    locked out until its old bindings expire or the ID is released: the price of never
    letting two devices share an ID;
  * never the source address alone: NAT rebinding changes it every few minutes.
A `*` unregister carries no contact: it is accepted from a request whose Call-ID is the
Call-ID of one of the current bindings (§10.2.4: a UA uses one Call-ID for its
registrations), or when the ID has no owner.

Time: `clock()` is wall-clock epoch seconds, shared by the state backend and the digest
nonces (both may be shared between nodes; see switch/state/base.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from provisioning.model import Device, Snapshot
from switch.metrics import Metrics
from switch.sip.digest import DigestAuthenticator
from switch.sip.message import NameAddr, ParseError, Request, Response, SipURI, make_response
from switch.sip.target import Target
from switch.sip.transaction import ClientTransaction, ServerTransaction
from switch.state.base import Binding, StateBackend
from switch.tu import Sender

from .auth import Authenticated, Refused, check
from .bans import AuthGuard

__all__ = ["Registrar", "RegistrarPolicy", "device_identity"]

log = logging.getLogger(__name__)

IN_USE_TEXT = "ID in use by another device"
REFUSED_TEXT = "too many failed authentications; try again later"


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrarPolicy:
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    warn_agent: str = "softswitch"  # host in our Warning headers


@dataclass(frozen=True, slots=True)
class _Contact:
    uri: str  # the contact URI, normalised text
    expires: int  # after policy (0 = remove)
    instance: str | None
    q: float | None
    host: str


class _Reject(Exception):
    def __init__(self, status: int, headers: list[tuple[str, str]] | None = None) -> None:
        self.status = status
        self.headers = headers or []


class Registrar:
    def __init__(
        self,
        *,
        state: StateBackend,
        snapshot: Callable[[], Snapshot],
        authenticator: DigestAuthenticator,
        policy: RegistrarPolicy = RegistrarPolicy(),
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        sender: Sender | None = None,
        on_registered: Callable[[Device, list[Binding]], None] | None = None,
        guard: AuthGuard | None = None,
        paths: Callable[[Target, str], str | None] | None = None,
    ) -> None:
        self.state = state
        self.guard = guard
        self.snapshot = snapshot
        self.auth = authenticator
        self.policy = policy
        self.metrics = metrics
        self.clock = clock
        self.sender = sender
        # called after a REGISTER that added or refreshed contacts (e.g. MWI's unsolicited
        # NOTIFY); it must not raise (failures are logged)
        self.on_registered = on_registered
        # with several nodes: the Path URI stored with a binding, how the other nodes reach
        # its flow through this one (targets.NodePaths; state/base.py, Flows)
        self.paths = paths

    # ------------------------------------------------------------------ TU glue
    async def on_request(
        self,
        txn: ServerTransaction,
        request: Request,
        source: Target,
        cancelled: ServerTransaction | None,
    ) -> None:
        response = await self.handle(request, source)
        assert self.sender is not None, "Registrar.sender must be set to act as a TU"
        self.sender.send_response(txn, response)

    # The registrar never sends requests and never sees an ACK: the rest of the
    # TransactionUser protocol is empty.
    async def on_ack(self, request: Request, source: Target) -> None:
        return None

    def on_response(self, txn: ClientTransaction, response: Response, source: Target) -> None:
        return None

    def on_timeout(self, txn: ClientTransaction) -> None:
        return None

    def on_stray_response(
        self, response: Response, source: Target, txn: ClientTransaction | None
    ) -> None:
        return None

    async def lookup(self, device_id: str) -> list[Binding]:
        """Current bindings of an ID (for the proxy)."""
        return await self.state.bindings(device_id, self.clock())

    async def release_device(self, device_id: str) -> int:
        """Operator release: the ID's bindings and device lock are dropped."""
        dropped = await self.state.release_device(device_id)
        log.info("device %s released by operator (%d bindings dropped)", device_id, dropped)
        return dropped

    # ------------------------------------------------------------------ the logic
    async def handle(self, request: Request, source: Target) -> Response:
        try:
            response = await self._handle(request, source)
        except _Reject as r:
            response = make_response(request, r.status, to_tag=_tag(request), headers=r.headers)
        except ParseError as exc:
            response = make_response(
                request, exc.status_hint, to_tag=_tag(request), headers=[self._warning(str(exc))]
            )
        if self.metrics is not None:
            self.metrics.registrations_total.labels(str(response.status)).inc()
        return response

    async def _handle(self, request: Request, source: Target) -> Response:
        now = self.clock()
        if request.headers.get_all("Require"):  # step 2
            unsupported = ", ".join(request.headers.get_all("Require"))
            raise _Reject(420, [("Unsupported", unsupported)])
        device = await self._authenticate(request, source, now)  # step 3
        self._authorise(request, device)  # step 4
        if self.guard is not None:
            await self.guard.registered(device.id, source.host, now)
        contacts, wildcard = self._contacts(request)  # steps 5-6
        current = await self.state.bindings(device.id, now)
        if wildcard:
            await self._unbind_all(request, device, current, now)
            return self._ok(request, [], now)
        if contacts:
            await self._update(request, source, device, contacts, current, now)
        bindings = await self.state.bindings(device.id, now)
        if contacts and self.on_registered is not None and bindings:
            try:
                self.on_registered(device, bindings)
            except Exception:
                log.exception("registration hook failed")
        return self._ok(request, bindings, now)

    # ------------------------------------------------------------------ step 3-4
    async def _authenticate(self, request: Request, source: Target, now: float) -> Device:
        """Authorization for our realm (auth.py: the check the proxy uses too)."""
        values = request.headers.get_all("Authorization")
        outcome = await check(
            values, request.method, self.snapshot(), self.auth, now,
            guard=self.guard, host=source.host,
        )  # fmt: skip
        if isinstance(outcome, Authenticated):
            return outcome.device
        if isinstance(outcome, Refused):
            raise _Reject(403, [self._warning(REFUSED_TEXT)])
        for reason in outcome.failures:
            self._count_failure(reason)
        raise _Reject(401, [("WWW-Authenticate", v) for v in outcome.values])

    def _authorise(self, request: Request, device: Device) -> None:
        to = request.headers.name_addr("To")
        user = to.uri.user if to is not None and isinstance(to.uri, SipURI) else None
        if user != device.username:
            self._count_failure("aor_mismatch")
            raise _Reject(403, [self._warning("To user is not the authenticated user")])
        tenant = self.snapshot().tenants.get(device.tenant_id)
        if tenant is None or not tenant.active:
            self._count_failure("tenant_inactive")
            raise _Reject(403, [self._warning("Account suspended")])

    # ------------------------------------------------------------------ step 5-6
    def _contacts(self, request: Request) -> tuple[list[_Contact], bool]:
        values = request.headers.name_addrs("Contact")
        header_expires = _int_or_none(request.headers.get("Expires"))
        if any(v.wildcard for v in values):
            if len(values) != 1 or header_expires != 0:
                raise _Reject(400, [self._warning("'*' needs to be alone and Expires: 0")])
            return [], True
        contacts = [self._contact(v, header_expires) for v in values]
        brief = [c for c in contacts if 0 < c.expires < self.policy.min_expires]
        if brief:
            raise _Reject(423, [("Min-Expires", str(self.policy.min_expires))])
        return contacts, False

    def _contact(self, value: NameAddr, header_expires: int | None) -> _Contact:
        uri = value.uri
        if not isinstance(uri, SipURI):
            raise _Reject(400, [self._warning("Contact must be a sip/sips URI")])
        param = value.params.get("expires")
        expires = _int_or_none(param) if param is not None else header_expires
        if param is not None and expires is None:
            raise _Reject(400, [self._warning("bad expires parameter")])
        if expires is None:
            expires = self.policy.default_expires
        expires = min(expires, self.policy.max_expires)
        q = _q(value.params.get("q"))
        instance = value.params.get("+sip.instance")
        return _Contact(str(uri), expires, instance, q, uri.host)

    # ------------------------------------------------------------------ step 7
    async def _update(
        self,
        request: Request,
        source: Target,
        device: Device,
        contacts: list[_Contact],
        current: list[Binding],
        now: float,
    ) -> None:
        call_id, cseq = request.call_id, request.cseq.seq
        by_contact = {b.contact: b for b in current}
        for c in contacts:
            old = by_contact.get(c.uri)
            if old is not None and old.call_id == call_id and old.cseq >= cseq:
                raise _Reject(400, [self._warning("CSeq out of order for this Call-ID")])
        owner = device_identity(contacts)
        holder = await self.state.device_owner(device.id, now)
        if holder is not None and holder != owner:
            self._refuse_in_use(device, owner, holder)
        removes, puts = self._plan(request, source, device, contacts, current, now)
        remaining = {b.contact: b for b in current if b.contact not in removes}
        remaining.update({b.contact: b for b in puts})
        if remaining:
            until = max(b.expires_at for b in remaining.values())
            if not await self.state.claim_device(device.id, owner, until, now):
                self._refuse_in_use(device, owner, await self.state.device_owner(device.id, now))
        for contact in removes:
            await self.state.remove_binding(device.id, contact)
        for binding in puts:
            await self.state.put_binding(binding)
        if not remaining:
            await self.state.unclaim_device(device.id, owner)

    def _plan(
        self,
        request: Request,
        source: Target,
        device: Device,
        contacts: list[_Contact],
        current: list[Binding],
        now: float,
    ) -> tuple[set[str], list[Binding]]:
        """Which existing contacts go, which bindings are written."""
        removes: set[str] = set()
        puts: list[Binding] = []
        ua = request.headers.get("User-Agent")
        for c in contacts:
            if c.instance is not None:  # same instance, new contact: the old one is stale
                removes |= {b.contact for b in current if b.instance_id == c.instance}
            if c.expires == 0:
                removes.add(c.uri)
                continue
            removes.discard(c.uri)
            puts.append(
                Binding(
                    device_id=device.id, contact=c.uri, instance_id=c.instance,
                    expires_at=now + c.expires, source=source, call_id=request.call_id,
                    cseq=request.cseq.seq, user_agent=ua, q=c.q,
                    path=self.paths(source, c.uri) if self.paths is not None else None,
                )
            )  # fmt: skip
        return removes, puts

    async def _unbind_all(
        self, request: Request, device: Device, current: list[Binding], now: float
    ) -> None:
        holder = await self.state.device_owner(device.id, now)
        same_ua = any(b.call_id == request.call_id for b in current)
        if holder is not None and not same_ua:
            self._refuse_in_use(device, "unknown (* unregister)", holder)
        for b in current:
            if b.call_id == request.call_id and b.cseq >= request.cseq.seq:
                raise _Reject(400, [self._warning("CSeq out of order for this Call-ID")])
        await self.state.remove_all(device.id)
        if holder is not None:
            await self.state.unclaim_device(device.id, holder)

    def _refuse_in_use(self, device: Device, owner: str, holder: str | None) -> None:
        log.info("REGISTER for %s from %s refused: held by %s", device.id, owner, holder)
        self._count_failure("id_in_use")
        raise _Reject(403, [self._warning(IN_USE_TEXT)])

    # ------------------------------------------------------------------ step 8
    def _ok(self, request: Request, bindings: list[Binding], now: float) -> Response:
        headers = [("Contact", _contact_value(b, now)) for b in bindings]
        headers.append(("Date", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())))
        return make_response(request, 200, to_tag=_tag(request), headers=headers)

    # ------------------------------------------------------------------ helpers
    def _warning(self, text: str) -> tuple[str, str]:
        return ("Warning", f'399 {self.policy.warn_agent} "{text}"')

    def _count_failure(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.auth_failures_total.labels(reason).inc()


def device_identity(contacts: list[_Contact]) -> str:
    """Who is registering (see the module docstring): +sip.instance, else the Contact
    host of the first contact."""
    for c in contacts:
        if c.instance is not None:
            return "instance:" + c.instance.strip().strip('"').lower()
    return "contact:" + contacts[0].host.lower()


def _contact_value(b: Binding, now: float) -> str:
    value = f"<{b.contact}>;expires={b.remaining(now)}"
    if b.q is not None:
        value += f";q={b.q:g}"
    if b.instance_id is not None:
        value += f";+sip.instance={b.instance_id}"
    return value


def _tag(request: Request) -> str:
    # A stable To tag per request (no dialog is created; §8.2.6.2 only asks for a tag).
    return format(abs(hash((request.call_id, request.cseq.seq))) & 0xFFFFFFFF, "08x")


def _int_or_none(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = int(text.strip())
    except ValueError:
        return None
    return value if 0 <= value < 2**32 else None


def _q(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        q = float(text)
    except ValueError:
        raise _Reject(400, [("Warning", '399 softswitch "bad q parameter"')]) from None
    if not 0.0 <= q <= 1.0:
        raise _Reject(400, [("Warning", '399 softswitch "bad q parameter"')])
    return q

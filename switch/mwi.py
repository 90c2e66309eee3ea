"""Message-waiting indication (RFC 3842) for the devices' voicemail: the transaction user for
SUBSCRIBE with `Event: message-summary` (the switch is the notifier, RFC 6665), and
unsolicited NOTIFYs for devices that never subscribe (desk phones often don't by default).

What a device is told about: the mailboxes it may listen to (the voicemail menu's: every
number with voicemail whose ring group includes it), summed - `Voice-Message: new/old`.

Subscriptions (RFC 6665):
- SUBSCRIBE outside a dialog, authenticated like a REGISTER (401 + WWW-Authenticate, the
  shared digest check of switch/proxy/auth.py), for a device's own address (the Request-URI
  user is its username; another's: 403). `Expires` absent: 3600 (RFC 3842 §4.1); above
  `max_expires`: lowered; 1..59: 423 Interval Too Brief with Min-Expires (§4.1.2.1 uses 423).
  200 OK with our To tag, Contact and the granted Expires, then at once a NOTIFY with the
  current state (`Subscription-State: active;expires=N`, §4.2.2).
- SUBSCRIBE inside the dialog: a refresh (new expiry, NOTIFY), or with `Expires: 0` an
  unsubscribe (NOTIFY `terminated;reason=timeout`, the subscription ends).
- Every change of one of its mailboxes (a deposit, a message heard or deleted, an expiry)
  sends a NOTIFY. A NOTIFY answered 481 (or timing out) ends the subscription; an expired
  one is swept with a final `terminated;reason=timeout` NOTIFY.
NOTIFYs go on the flow the SUBSCRIBE came from (a phone behind NAT keeps its pinhole open for
its own requests), with the SUBSCRIBE's Contact as Request-URI.

Unsolicited NOTIFY (`unsolicited = true`, the default): a device without a subscription gets
an out-of-dialog NOTIFY (`Subscription-State: active`, what Asterisk sends) when it registers
from a new contact and whenever its mailboxes change, on its registration flow.

Counted in `mwi_notifications_total{kind}` (subscribed / unsolicited) and
`mwi_subscriptions_active`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from provisioning.model import Device, Snapshot
from switch.proxy.auth import Authenticated, Refused, check
from switch.proxy.bans import AuthGuard
from switch.proxy.targets import plans_for
from switch.sip.digest import DigestAuthenticator
from switch.sip.message import Headers, Request, Response, SipURI, make_response
from switch.sip.target import Target, new_branch
from switch.sip.transaction import ClientTransaction, ServerTransaction
from switch.state.base import Binding, StateBackend
from switch.tu import Sender

__all__ = ["MailboxCounts", "MwiNotifier", "mailboxes_of", "summary_body"]

log = logging.getLogger(__name__)

EVENT = "message-summary"
CONTENT_TYPE = "application/simple-message-summary"
DEFAULT_EXPIRES = 3600
MIN_EXPIRES = 60


class MailboxCounts(Protocol):
    async def counts(self, tenant_id: str, mailboxes: tuple[str, ...]) -> tuple[int, int]:
        """(new, old) messages in these mailboxes."""
        ...


def mailboxes_of(device: Device, snapshot: Snapshot) -> tuple[str, ...]:
    """The numbers with voicemail whose ring group includes the device."""
    return tuple(
        sorted(
            n.e164
            for n in snapshot.numbers.values()
            if n.tenant_id == device.tenant_id and n.options.voicemail and device.id in n.ring_group
        )
    )


def summary_body(account: str, new: int, old: int) -> bytes:
    """RFC 3842 §5.2 message-summary."""
    waiting = "yes" if new else "no"
    return (
        f"Messages-Waiting: {waiting}\r\nMessage-Account: {account}\r\n"
        f"Voice-Message: {new}/{old} (0/0)\r\n"
    ).encode()


@dataclass(slots=True)
class _Subscription:
    device_id: str
    call_id: str
    local_tag: str
    remote_tag: str
    remote_contact: str
    subscriber: str  # the SUBSCRIBE's From value (our To), tag included
    notifier: str  # the SUBSCRIBE's To value with our tag (our From)
    flow: Target
    expires_at: float
    cseq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


class MwiNotifier:
    """The TransactionUser for SUBSCRIBE message-summary (see the module docstring)."""

    def __init__(
        self,
        *,
        sender: Sender,
        snapshot: Callable[[], Snapshot],
        state: StateBackend,
        authenticator: DigestAuthenticator,
        counts: MailboxCounts,
        registry: CollectorRegistry,
        guard: AuthGuard | None = None,
        unsolicited: bool = True,
        max_expires: int = DEFAULT_EXPIRES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sender = sender
        self.snapshot = snapshot
        self.state = state
        self.auth = authenticator
        self.counts = counts
        self.guard = guard  # password-guessing bans apply to SUBSCRIBE as to REGISTER
        self.unsolicited = unsolicited
        self.max_expires = max_expires
        self.clock = clock
        self._subs: dict[tuple[str, str], _Subscription] = {}
        self._notified: dict[str, tuple[str, Target]] = {}  # device -> (contact, flow) told
        self._tasks: set[asyncio.Task[None]] = set()
        self.notifications = Counter(
            "mwi_notifications_total", "MWI NOTIFYs sent", ["kind"], registry=registry
        )
        self.active = Gauge("mwi_subscriptions_active", "MWI subscriptions", registry=registry)

    # ================================================================ TransactionUser
    async def on_request(
        self,
        txn: ServerTransaction,
        request: Request,
        source: Target,
        cancelled: ServerTransaction | None,
    ) -> None:
        if request.method != "SUBSCRIBE":
            self._reply(txn, 405, [("Allow", "SUBSCRIBE")])
        elif request.to_tag is None:
            await self._subscribe(txn, request, source)
        else:
            await self._resubscribe(txn, request)

    async def on_ack(self, request: Request, source: Target) -> None:
        return None

    def on_response(self, txn: ClientTransaction, response: Response, source: Target) -> None:
        if response.status in (481, 489) or response.status >= 500:
            self._drop(txn.user_data)

    def on_timeout(self, txn: ClientTransaction) -> None:
        self._drop(txn.user_data)

    def on_stray_response(
        self, response: Response, source: Target, txn: ClientTransaction | None
    ) -> None:
        return None

    # ================================================================ subscriptions
    async def _subscribe(self, txn: ServerTransaction, request: Request, source: Target) -> None:
        device = await self._device(txn, request, source)
        if device is None:
            return
        expires = self._expires(txn, request)
        if expires is None:
            return
        contact = request.headers.name_addr("Contact")
        if contact is None:
            self._reply(txn, 400, [("Warning", '399 - "SUBSCRIBE without Contact"')])
            return
        local_tag = secrets.token_hex(6)
        sub = _Subscription(
            device_id=device.id, call_id=request.call_id, local_tag=local_tag,
            remote_tag=request.from_tag or "", remote_contact=str(contact.uri),
            subscriber=request.headers.get("From") or "",
            notifier=f"{request.headers.get('To') or ''};tag={local_tag}",
            flow=source, expires_at=self.clock() + expires,
        )  # fmt: skip
        response = make_response(request, 200, to_tag=local_tag, headers=self._ok_headers(expires))
        self.sender.send_response(txn, response)
        if expires == 0:  # a fetch (RFC 6665 §4.4.3): one NOTIFY, no subscription
            await self._notify(sub, device, terminated=True)
            return
        self._subs[(sub.call_id, local_tag)] = sub
        self.active.set(len(self._subs))
        await self._notify(sub, device)

    async def _resubscribe(self, txn: ServerTransaction, request: Request) -> None:
        sub = self._subs.get((request.call_id, request.to_tag or ""))
        if sub is None:
            self._reply(txn, 481)
            return
        expires = self._expires(txn, request)
        if expires is None:
            return
        self.sender.send_response(
            txn, make_response(request, 200, headers=self._ok_headers(expires))
        )
        device = self.snapshot().devices.get(sub.device_id)
        if expires == 0 or device is None:
            self._drop(sub)
            if device is not None:
                await self._notify(sub, device, terminated=True)
            return
        sub.expires_at = self.clock() + expires
        await self._notify(sub, device)

    async def _device(
        self, txn: ServerTransaction, request: Request, source: Target
    ) -> Device | None:
        snap = self.snapshot()
        values = request.headers.get_all("Authorization")
        outcome = await check(
            values, request.method, snap, self.auth, self.clock(),
            guard=self.guard, host=source.host,
        )  # fmt: skip
        if isinstance(outcome, Refused):
            self._reply(txn, 403)
            return None
        if not isinstance(outcome, Authenticated):
            self._reply(txn, 401, [("WWW-Authenticate", v) for v in outcome.values])
            return None
        uri = request.parsed_uri
        user = uri.user if isinstance(uri, SipURI) else None
        if user is not None and user not in (outcome.device.username, outcome.device.id):
            self._reply(txn, 403, [("Warning", '399 - "only your own mailbox"')])
            return None
        return outcome.device

    def _expires(self, txn: ServerTransaction, request: Request) -> int | None:
        text = request.headers.get("Expires")
        try:
            asked = DEFAULT_EXPIRES if text is None else int(text.strip())
        except ValueError:
            self._reply(txn, 400, [("Warning", '399 - "bad Expires"')])
            return None
        if 0 < asked < MIN_EXPIRES:
            self._reply(txn, 423, [("Min-Expires", str(MIN_EXPIRES))])
            return None
        return max(0, min(asked, self.max_expires))

    def _ok_headers(self, expires: int) -> list[tuple[str, str]]:
        return [("Expires", str(expires)), ("Contact", self._contact())]

    def _contact(self) -> str:
        host, port = self.sender.local_via("udp")
        return f"<sip:{f'[{host}]' if ':' in host else host}:{port}>"

    def _drop(self, sub: object) -> None:
        if not isinstance(sub, _Subscription):
            return
        if self._subs.pop((sub.call_id, sub.local_tag), None) is not None:
            self.active.set(len(self._subs))

    # ================================================================ notifications
    def mailbox_changed(self, tenant_id: str, mailbox: str) -> None:
        """A mailbox changed (the voicemail repository's listener): tell every device that
        may listen to it, subscribed or (when enabled) not."""
        snap = self.snapshot()
        number = snap.numbers.get(mailbox)
        if number is None or number.tenant_id != tenant_id:
            return
        for device_id in number.ring_group:
            device = snap.devices.get(device_id)
            if device is not None:
                self._spawn(self._tell(device))

    def registered(self, device: Device, bindings: list[Binding]) -> None:
        """The registrar's hook after a successful REGISTER: an unsolicited NOTIFY when the
        device registered from a contact it was not told on yet."""
        if not self.unsolicited or not bindings:
            return
        latest = bindings[-1]
        if self._notified.get(device.id) == (latest.contact, latest.source):
            return
        self._spawn(self._tell(device))

    async def _tell(self, device: Device) -> None:
        subs = [s for s in self._subs.values() if s.device_id == device.id]
        for sub in subs:
            await self._notify(sub, device)
        if subs or not self.unsolicited:
            return
        for binding in await self.state.bindings(device.id, self.clock()):
            await self._notify_unsolicited(device, binding)

    async def _notify(self, sub: _Subscription, device: Device, terminated: bool = False) -> None:
        body = await self._body(device)
        if body is None:
            return
        left = max(0, int(sub.expires_at - self.clock()))
        state = "terminated;reason=timeout" if terminated else f"active;expires={left}"
        fields = [
            ("Max-Forwards", "70"), ("From", sub.notifier), ("To", sub.subscriber),
            ("Call-ID", sub.call_id), ("CSeq", f"{next(sub.cseq)} NOTIFY"),
            ("Contact", self._contact()), ("Event", EVENT),
            ("Subscription-State", state), ("Content-Type", CONTENT_TYPE),
        ]  # fmt: skip
        request = Request(
            method="NOTIFY", uri=sub.remote_contact, headers=Headers(fields), body=body
        )
        self._send(request, sub.flow, sub)
        self.notifications.labels("subscribed").inc()

    async def _notify_unsolicited(self, device: Device, binding: Binding) -> None:
        body = await self._body(device)
        if body is None:
            return
        realm = self.snapshot().realm
        fields = [
            ("Max-Forwards", "70"), ("From", f"<sip:{realm}>;tag={secrets.token_hex(6)}"),
            ("To", f"<sip:{device.username}@{realm}>"),
            ("Call-ID", f"mwi-{secrets.token_hex(10)}"), ("CSeq", "1 NOTIFY"),
            ("Event", EVENT), ("Subscription-State", "active"),
            ("Content-Type", CONTENT_TYPE),
        ]  # fmt: skip
        request = Request(method="NOTIFY", uri=binding.contact, headers=Headers(fields), body=body)
        # a binding another node holds: through that node, as calls go (its path)
        (plan,) = plans_for((device.id,), {device.id: [binding]})
        if plan.route is not None:
            request.headers.prepend("Route", plan.route)
        self._send(request, plan.target, None)
        self._notified[device.id] = (binding.contact, binding.source)
        self.notifications.labels("unsolicited").inc()

    async def _body(self, device: Device) -> bytes | None:
        snap = self.snapshot()
        mailboxes = mailboxes_of(device, snap)
        if not mailboxes:
            return None
        new, old = await self.counts.counts(device.tenant_id, mailboxes)
        return summary_body(f"sip:{device.username}@{snap.realm}", new, old)

    def _send(self, request: Request, flow: Target, sub: _Subscription | None) -> None:
        host, port = self.sender.local_via(flow.transport)
        request.headers.prepend_own_via(flow.transport, host, port, new_branch())
        try:
            self.sender.send_request(request, flow, sub)
        except Exception:
            log.exception("MWI NOTIFY to %s could not be sent", flow)

    # ================================================================ upkeep
    async def sweep(self) -> int:
        """End the subscriptions whose expiry passed (a final NOTIFY each); returns how many."""
        now = self.clock()
        gone = [s for s in self._subs.values() if s.expires_at <= now]
        snap = self.snapshot()
        for sub in gone:
            self._drop(sub)
            device = snap.devices.get(sub.device_id)
            if device is not None:
                await self._notify(sub, device, terminated=True)
        return len(gone)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("MWI notification failed", exc_info=task.exception())

    def _reply(
        self, txn: ServerTransaction, status: int, headers: list[tuple[str, str]] | None = None
    ) -> None:
        tag = secrets.token_hex(4) if status > 100 else None
        self.sender.send_response(
            txn, make_response(txn.request, status, to_tag=tag, headers=headers)
        )

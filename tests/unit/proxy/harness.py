"""Sans-IO harness for the proxy: a fake Sender (records what is sent; fake clock and
scheduler), the real memory state backend, a small two-tenant snapshot."""

from __future__ import annotations

import itertools
from typing import Any

from provisioning.model import (
    Device,
    DeviceKind,
    Gateway,
    Number,
    NumberKind,
    Snapshot,
    Tenant,
)
from routing.caps import DEFAULT_LIMITS, OutboundLimits
from switch.metrics import Metrics
from switch.proxy.bans import AuthGuard
from switch.proxy.proxy import Proxy, ProxyConfig
from switch.sip.digest import DigestAuthenticator, digest_response, ha1
from switch.sip.message import Headers, Request, Response, SipURI, make_response
from switch.sip.parser import parse_message
from switch.sip.target import Target
from switch.sip.transaction import ClientTransaction, ServerTransaction
from switch.state.base import Binding
from switch.state.memory import MemoryState

from .fakes import FakeHandle, FakeScheduler

REALM = "softswitch.test"
US = "10.0.0.1"
GW_IP = "192.0.2.10"
WALL = 1_800_000_000.0
CALLER_SRC = Target("udp", "198.51.100.7", 40000)
DESK_FLOW = Target("udp", "203.0.113.5", 12345)
APP_FLOW = Target("tcp", "203.0.113.6", 5555, conn_id=7)
GW_SRC = Target("udp", GW_IP, 5060)
PASSWORDS = {"desk1": "pw-desk", "app1": "pw-app", "other1": "pw-other"}


def _device(id_: str, tenant: str, kind: DeviceKind, presented: str) -> Device:
    pw = PASSWORDS[id_]
    return Device(
        id=id_,
        tenant_id=tenant,
        username=id_,
        kind=kind,
        ha1_md5=ha1(id_, REALM, pw, "MD5"),
        ha1_sha256=ha1(id_, REALM, pw, "SHA-256"),
        presented_number=presented,
        display_name=id_.upper(),
    )


def snapshot() -> Snapshot:
    return Snapshot.build(
        version=1,
        realm=REALM,
        tenants=[Tenant(id="t1", name="One"), Tenant(id="t2", name="Two")],
        devices=[
            _device("desk1", "t1", DeviceKind.DESK, "+81355500100"),
            _device("app1", "t1", DeviceKind.APP, "+81355500100"),
            _device("other1", "t2", DeviceKind.APP, "+81366600100"),
        ],
        numbers=[
            Number(
                e164="+81355500100",
                tenant_id="t1",
                kind=NumberKind.CONTRACT,
                ring_group=("desk1", "app1"),
            ),
            Number(
                e164="+81355500101",
                tenant_id="t1",
                kind=NumberKind.ADDITIONAL,
                ring_group=("app1",),
            ),
            Number(
                e164="+81366600100",
                tenant_id="t2",
                kind=NumberKind.CONTRACT,
                ring_group=("other1",),
            ),
        ],
        gateways=[
            Gateway(id="gw", name="Carrier", host=GW_IP, port=5060, allowed_sources=(GW_IP,))
        ],
    )


class FakeSender:
    def __init__(self, sched: FakeScheduler) -> None:
        self.sched = sched
        self.responses: list[tuple[ServerTransaction, Response]] = []
        self.requests: list[ClientTransaction] = []
        self.stateless: list[tuple[Request | Response, Target]] = []

    def now(self) -> float:
        return self.sched.now()

    def send_response(self, txn: ServerTransaction, response: Response) -> None:
        self.responses.append((txn, _roundtrip(response)))
        txn.last_response = response

    def send_request(
        self, request: Request, target: Target, user_data: object = None
    ) -> ClientTransaction:
        wire = _roundtrip(request)
        assert isinstance(wire, Request)
        ctxn = ClientTransaction((wire.top_via.branch or "", wire.method), wire, target, user_data)
        self.requests.append(ctxn)
        return ctxn

    def send_stateless(self, message: Request | Response, target: Target) -> None:
        self.stateless.append((_roundtrip(message), target))

    def call_later(self, delay: float, callback: Any) -> FakeHandle:
        return self.sched.call_later(delay, callback)

    def local_via(self, transport: str) -> tuple[str, int]:
        return US, 5061 if transport == "tls" else 5060

    def local_uri(self, transport: str) -> SipURI:
        params: dict[str, str | None] = {"lr": None}
        if transport != "udp":
            params = {"transport": transport, "lr": None}
        return SipURI(host=US, port=5061 if transport == "tls" else 5060, params=params)

    def is_local(self, host: str, port: int | None) -> bool:
        return host == US and port in (None, 5060, 5061)


def _roundtrip(msg: Any) -> Any:
    return parse_message(msg.to_bytes())


class Env:
    def __init__(
        self,
        *,
        timer_c: float = 185.0,
        decide: Any = None,
        config: ProxyConfig | None = None,
        state: MemoryState | None = None,
        guard: AuthGuard | None = None,
        limits: OutboundLimits = DEFAULT_LIMITS,
    ) -> None:
        self.sched = FakeScheduler()
        self.sender = FakeSender(self.sched)
        self.state = state or MemoryState()
        self.metrics = Metrics()
        self.snap = snapshot()
        self.auth = DigestAuthenticator(realm=REALM, secret=b"s" * 32)
        self.proxy = Proxy(
            sender=self.sender,
            snapshot=lambda: self.snap,
            state=self.state,
            authenticator=self.auth,
            metrics=self.metrics,
            config=config or ProxyConfig(timer_c=timer_c),
            decide=decide,
            wall_clock=lambda: WALL,
            guard=guard,
            limits=limits,
        )
        self._seq = itertools.count(1)
        self.nc = itertools.count(1)

    # ------------------------------------------------------------------ setup
    async def register(self, device_id: str, contact: str, source: Target) -> None:
        await self.state.put_binding(
            Binding(
                device_id=device_id,
                contact=contact,
                instance_id=None,
                expires_at=WALL + 3600,
                source=source,
                call_id=f"reg-{device_id}-{contact}",
                cseq=1,
            )
        )

    async def register_both(self) -> None:
        await self.register("desk1", "sip:desk1@192.168.1.20:5060", DESK_FLOW)
        await self.register("app1", "sip:app1@10.8.0.3:5080;transport=tcp", APP_FLOW)

    # ------------------------------------------------------------------ requests
    def request(
        self,
        method: str,
        uri: str,
        *,
        from_uri: str = f"<sip:0312345678@{GW_IP}>",
        to_uri: str | None = None,
        to_tag: str | None = None,
        call_id: str = "call-1",
        cseq: int = 1,
        extra: list[tuple[str, str]] | None = None,
        via: str | None = None,
        max_forwards: str | None = "70",
    ) -> Request:
        n = next(self._seq)
        to = to_uri or f"<{uri}>"
        fields = [
            ("Via", via or f"SIP/2.0/UDP 198.51.100.7:40000;branch=z9hG4bKc{n};rport"),
            ("From", f"{from_uri};tag=from-{call_id}"),
            ("To", to + (f";tag={to_tag}" if to_tag else "")),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", "<sip:caller@198.51.100.7:40000>"),
        ]
        if max_forwards is not None:
            fields.append(("Max-Forwards", max_forwards))
        fields += extra or []
        req = _roundtrip(Request(method=method, uri=uri, headers=Headers(fields)))
        assert isinstance(req, Request)
        return req

    async def send(
        self,
        req: Request,
        source: Target = GW_SRC,
        cancelled: ServerTransaction | None = None,
    ) -> ServerTransaction:
        txn = ServerTransaction(("k", next(self._seq)), req, source, req.top_via)
        await self.proxy.on_request(txn, req, source, cancelled)
        return txn

    async def cancel(
        self, invite_txn: ServerTransaction, source: Target = GW_SRC
    ) -> ServerTransaction:
        inv = invite_txn.request
        h = inv.headers
        fields = [
            ("Via", h.get_all("Via")[0]),
            ("From", h.get("From") or ""),
            ("To", h.get("To") or ""),
            ("Call-ID", inv.call_id),
            ("CSeq", f"{inv.cseq.seq} CANCEL"),
            ("Max-Forwards", "70"),
        ]
        req = Request(method="CANCEL", uri=inv.uri, headers=Headers(fields))
        return await self.send(req, source, cancelled=invite_txn)

    def credentials(self, challenge: Response, req: Request, user: str, password: str) -> str:
        value = next(
            v for v in challenge.headers.get_fields("Proxy-Authenticate") if "algorithm=MD5" in v
        )
        nonce = value.split('nonce="')[1].split('"')[0]
        opaque = value.split('opaque="')[1].split('"')[0]
        nc = f"{next(self.nc):08x}"
        resp = digest_response(
            ha1(user, REALM, password, "MD5"),
            nonce=nonce,
            nc=nc,
            cnonce="cn",
            qop="auth",
            method=req.method,
            uri=req.uri,
            algorithm="MD5",
        )
        return (
            f'Digest username="{user}", realm="{REALM}", nonce="{nonce}", uri="{req.uri}", '
            f'response="{resp}", algorithm=MD5, qop=auth, nc={nc}, cnonce="cn", '
            f'opaque="{opaque}"'
        )

    async def send_authenticated(
        self, req: Request, user: str, source: Target = CALLER_SRC, password: str | None = None
    ) -> ServerTransaction:
        """Send, expect 407, resend with Proxy-Authorization (CSeq + 1)."""
        first = await self.send(req, source)
        challenge = self.final(first)
        assert challenge.status == 407, challenge.status
        again = req.copy()
        cseq = req.cseq.seq + 1
        again.headers.set("CSeq", f"{cseq} {req.method}")
        again.headers.set(
            "Via", f"SIP/2.0/UDP 198.51.100.7:40000;branch=z9hG4bKa{next(self._seq)};rport"
        )
        again.headers.add(
            "Proxy-Authorization",
            self.credentials(challenge, again, user, password or PASSWORDS[user]),
        )
        return await self.send(_roundtrip(again), source)

    # ------------------------------------------------------------------ responses
    def respond(
        self,
        ctxn: ClientTransaction,
        status: int,
        *,
        to_tag: str = "callee",
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        resp = make_response(ctxn.request, status, to_tag=to_tag if status > 100 else None)
        if 200 <= status < 300 and ctxn.request.method == "INVITE":
            resp.headers.add("Contact", "<sip:callee@192.168.1.20:5060>")
        for name, value in extra or ():
            resp.headers.add(name, value)
        self.proxy.on_response(ctxn, _roundtrip(resp), ctxn.target)

    def sent_to(self, txn: ServerTransaction) -> list[Response]:
        return [r for t, r in self.sender.responses if t is txn]

    def final(self, txn: ServerTransaction) -> Response:
        finals = [r for r in self.sent_to(txn) if r.status >= 200]
        assert finals, f"no final response; sent: {[r.status for r in self.sent_to(txn)]}"
        return finals[-1]

    def caller_route(self, ctxn: ClientTransaction) -> list[tuple[str, str]]:
        """The Route of the caller's in-dialog requests once `ctxn`'s INVITE is answered:
        its Record-Route values in reverse order (RFC 3261 §12.1.2)."""
        return [("Route", v) for v in reversed(ctxn.request.headers.get_all("Record-Route"))]

    def branches(self, method: str = "INVITE") -> list[ClientTransaction]:
        return [c for c in self.sender.requests if c.request.method == method]

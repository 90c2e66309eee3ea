"""Property tests for the transaction layer: random interleavings of network input, TU
actions, timer ticks and transport errors never raise, keep the layer's invariants, and every
transaction terminates once the TU has answered and the longest timer has run out."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from switch.sip.events import (
    AckReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    SendMessage,
    StrayResponse,
    TransactionTerminated,
    TransactionTimeout,
)
from switch.sip.headers import Headers
from switch.sip.message import Request, Response, make_response
from switch.sip.target import Target
from switch.sip.transaction import ClientTransaction, ServerTransaction, TransactionLayer
from switch.sip.transitions import State, Timers

T = Timers(t1=0.25, t2=2.0, t4=3.0)
PEERS = [
    Target("udp", "192.0.2.1", 5060),
    Target("tcp", "192.0.2.2", 5060, conn_id=1),
    Target("udp", "192.0.2.3", 5062),
    Target("tls", "192.0.2.4", 5061, conn_id=2),
]
BRANCHES = ["z9hG4bKa", "z9hG4bKb", "z9hG4bKc", "legacy-1", None]
METHODS = ["INVITE", "OPTIONS", "CANCEL", "ACK", "BYE"]
STATUSES = [100, 180, 183, 200, 202, 302, 404, 486, 487, 500, 603]


def make_request(method: str, branch: str | None, peer: Target, cseq: int = 1) -> Request:
    b = "" if branch is None else f";branch={branch}"
    proto = peer.transport.upper()
    return Request(
        method=method,
        uri="sip:bob@example.com",
        headers=Headers(
            [
                ("Via", f"SIP/2.0/{proto} {peer.host}:{peer.port}{b}"),
                ("From", "<sip:alice@example.com>;tag=f"),
                ("To", "<sip:bob@example.com>"),
                ("Call-ID", "prop-call"),
                ("CSeq", f"{cseq} {method}"),
                ("Max-Forwards", "70"),
            ]
        ),
    )


@dataclass
class World:
    layer: TransactionLayer = field(default_factory=lambda: TransactionLayer(T))
    now: float = 0.0
    servers: list[ServerTransaction] = field(default_factory=list)
    clients: list[ClientTransaction] = field(default_factory=list)
    client_requests: list[tuple[Request, Target]] = field(default_factory=list)
    finals: dict[int, int] = field(default_factory=dict)  # id(client txn) -> finals passed up
    terminated: dict[int, int] = field(default_factory=dict)  # id(txn) -> terminations
    next_branch: int = 0

    def absorb(self, events: list[Event]) -> None:
        for e in events:
            match e:
                case RequestReceived(txn=txn, request=req):
                    assert req.method != "ACK"
                    assert txn.request is req and txn not in self.servers
                    self.servers.append(txn)
                case ResponseReceived(txn=txn, response=resp):
                    if resp.status >= 200:
                        self.finals[id(txn)] = self.finals.get(id(txn), 0) + 1
                        assert self.finals[id(txn)] == 1, "final response passed up twice"
                case TransactionTerminated(txn=txn):
                    assert txn.state is State.TERMINATED
                    self.terminated[id(txn)] = self.terminated.get(id(txn), 0) + 1
                    assert self.terminated[id(txn)] == 1, "terminated twice"
                case TransactionTimeout(txn=txn):
                    assert id(txn) not in self.finals
                case SendMessage() | AckReceived() | StrayResponse():
                    pass
                case _:
                    raise AssertionError(f"unexpected event {e!r}")

    def new_branch(self) -> str:
        self.next_branch += 1
        return f"z9hG4bKcli{self.next_branch}"


# --------------------------------------------------------------------------- operations
ops = st.one_of(
    st.tuples(
        st.just("net_request"),
        st.sampled_from(METHODS),
        st.sampled_from(BRANCHES),
        st.sampled_from(PEERS),
        st.integers(1, 2),
    ),
    st.tuples(st.just("tu_response"), st.integers(0, 50), st.sampled_from(STATUSES)),
    st.tuples(
        st.just("tu_request"),
        st.sampled_from(["INVITE", "OPTIONS", "REGISTER"]),
        st.sampled_from(PEERS),
    ),
    st.tuples(st.just("tu_cancel"), st.integers(0, 50)),
    st.tuples(
        st.just("net_response"),
        st.integers(0, 50),
        st.sampled_from(STATUSES),
        st.sampled_from(["t1", "t2"]),
    ),
    # Mostly small steps (retransmissions interleave with input), sometimes past every timer.
    st.tuples(
        st.just("advance"),
        st.one_of(st.floats(0.0, 0.6), st.floats(0.0, 2.0), st.floats(0.0, 40.0)),
    ),
    st.tuples(st.just("transport_error"), st.sampled_from(PEERS)),
    st.tuples(st.just("net_retransmit"), st.integers(0, 50)),
    st.tuples(st.just("net_ack"), st.integers(0, 50)),
)


def apply(w: World, op: tuple[object, ...]) -> None:
    layer = w.layer
    match op:
        case ("net_request", str(method), branch, Target() as peer, int(cseq)):
            assert branch is None or isinstance(branch, str)
            w.absorb(layer.receive(make_request(method, branch, peer, cseq), peer, w.now))
        case ("tu_response", int(i), int(status)) if w.servers:
            txn = w.servers[i % len(w.servers)]
            resp = make_response(txn.request, status, to_tag=None if status == 100 else "uas")
            w.absorb(layer.send_response(txn, resp, w.now))
        case ("tu_request", str(method), Target() as peer):
            req = make_request(method, w.new_branch(), Target("udp", "proxy.example", 5060))
            ctxn, events = layer.send_request(req, peer, w.now)
            w.clients.append(ctxn)
            w.client_requests.append((req, peer))
            w.absorb(events)
        case ("tu_cancel", int(i)) if w.clients:
            cancel_invite(w, w.clients[i % len(w.clients)])
        case ("net_response", int(i), int(status), str(tag)) if w.client_requests:
            req, peer = w.client_requests[i % len(w.client_requests)]
            resp = make_response(req, status, to_tag=None if status == 100 else tag)
            w.absorb(layer.receive(resp, peer, w.now))
        case ("advance", float(dt)):
            w.now += dt
            w.absorb(layer.handle_timer(w.now))
        case ("transport_error", Target() as peer):
            w.absorb(layer.transport_error(peer, w.now))
        case ("net_retransmit", int(i)) if w.servers:
            txn = w.servers[i % len(w.servers)]
            w.absorb(layer.receive(txn.request, txn.source, w.now))
        case ("net_ack", int(i)) if w.servers:
            txn = w.servers[i % len(w.servers)]
            req = txn.request
            ack = make_request("ACK", req.top_via.branch, txn.source, req.cseq.seq)
            w.absorb(layer.receive(ack, txn.source, w.now))
        case _:
            pass


def cancel_invite(w: World, txn: ClientTransaction) -> None:
    """The TU's CANCEL for an INVITE client transaction (once per INVITE)."""
    branch = txn.request.top_via.branch
    assert branch is not None
    if not txn.is_invite or w.layer.find_client(branch, "CANCEL") is not None:
        return
    if txn.state not in (State.CALLING, State.PROCEEDING):
        return
    cancel = make_request("CANCEL", branch, Target("udp", "proxy.example", 5060))
    ctxn, events = w.layer.send_request(cancel, txn.target, w.now)
    w.clients.append(ctxn)
    w.absorb(events)


def wind_down(w: World) -> float:
    """The TU answers everything still open and cancels pending INVITEs; then the timers run
    out. Returns the time of the last timer."""
    for s in w.servers:
        if s.state in (State.TRYING, State.PROCEEDING):
            resp = make_response(s.request, 487 if s.is_invite else 500, to_tag="uas")
            w.absorb(w.layer.send_response(s, resp, w.now))
    for c in list(w.clients):
        cancel_invite(w, c)
    last = w.now
    for _ in range(100_000):
        when = w.layer.get_timer()
        if when is None:
            break
        assert when >= last - 1e-9, "timers must not go back in time"
        last = max(last, when)
        w.absorb(w.layer.handle_timer(when))
    return last


@settings(max_examples=300, deadline=None)
@given(st.lists(ops, min_size=10, max_size=80))
def test_random_interleavings_never_raise_and_everything_terminates(
    script: list[tuple[object, ...]],
) -> None:
    w = World()
    for op in script:
        apply(w, op)
        counts = w.layer.counts()
        assert all(v >= 0 for v in counts.values())
        live = [t for t in w.servers + w.clients if t.state is not State.TERMINATED]
        assert sum(counts.values()) == len(live)
    end = w.now
    last = wind_down(w)
    assert w.layer.counts() == dict.fromkeys(w.layer.counts(), 0)
    assert w.layer.get_timer() is None
    for txn in w.servers + w.clients:
        assert txn.state is State.TERMINATED
        assert w.terminated.get(id(txn)) == 1
    # Nothing outlives the longest chain: 64*T1 (CANCEL guard / H / L / M / F) + 32 s (D).
    assert last <= end + 64 * T.t1 + 32.0 + 1e-6


@settings(max_examples=200, deadline=None)
@given(st.lists(ops, max_size=40), st.randoms(use_true_random=False))
def test_lossy_link_between_two_layers(script: list[tuple[object, ...]], rnd: object) -> None:
    """A client layer and a server layer joined by a link that drops a share of messages:
    whatever is lost, both sides terminate every transaction."""
    import random

    assert isinstance(rnd, random.Random)
    client, server = TransactionLayer(T), TransactionLayer(T)
    link_c = Target("udp", "192.0.2.50", 5060)  # the server as the client sees it
    link_s = Target("udp", "192.0.2.60", 5060)  # the client as the server sees it
    now = 0.0
    pending_server: list[ServerTransaction] = []

    def deliver(events: list[Event], to_server: bool) -> None:
        for e in events:
            if isinstance(e, RequestReceived):
                pending_server.append(e.txn)
            if not isinstance(e, SendMessage) or rnd.random() < 0.3:
                continue
            dest, src = (server, link_s) if to_server else (client, link_c)
            deliver(dest.receive(e.message, src, now), not to_server)

    n = 0
    invites: list[ClientTransaction] = []

    def answer_all() -> None:
        while pending_server:
            txn = pending_server.pop(0)
            resp = make_response(txn.request, 486, to_tag="x")
            deliver(server.send_response(txn, resp, now), False)

    for op in script:
        kind = op[0]
        if kind == "tu_request":
            n += 1
            method = str(op[1])
            req = make_request(method, f"z9hG4bKlink{n}", Target("udp", "192.0.2.60", 5060))
            ctxn, events = client.send_request(req, link_c, now)
            if ctxn.is_invite:
                invites.append(ctxn)
            deliver(events, True)
        elif kind == "tu_response" and pending_server:
            txn = pending_server.pop(0)
            status = int(str(op[2]))
            resp = make_response(txn.request, status, to_tag=None if status == 100 else "x")
            if status < 200:
                pending_server.append(txn)
            deliver(server.send_response(txn, resp, now), False)
        elif kind == "advance":
            now += float(str(op[1]))
            deliver(client.handle_timer(now), True)
            deliver(server.handle_timer(now), False)
    answer_all()
    for inv in invites:  # the TU's Timer C: give up on INVITEs still waiting
        if inv.state is State.PROCEEDING:
            branch = inv.request.top_via.branch
            cancel = make_request("CANCEL", branch, Target("udp", "192.0.2.60", 5060))
            deliver(client.send_request(cancel, link_c, now)[1], True)
    for _ in range(100_000):
        answer_all()
        times = [t for t in (client.get_timer(), server.get_timer()) if t is not None]
        if not times:
            break
        now = min(times)
        deliver(client.handle_timer(now), True)
        deliver(server.handle_timer(now), False)
    assert sum(client.counts().values()) == 0
    assert sum(server.counts().values()) == 0


def test_response_to_unknown_transaction_is_stray() -> None:
    layer = TransactionLayer(T)
    req = make_request("OPTIONS", "z9hG4bKnone", PEERS[0])
    resp: Response = make_response(req, 200)
    assert layer.receive(resp, PEERS[0], 0.0) == [StrayResponse(response=resp, source=PEERS[0])]

"""Next-hop resolution and flow tokens (RFC 3261 §16.6 steps 6-7, RFC 3263 in part, RFC 5626
§5.3 in spirit).

- `uri_hop(uri)`: where a SIP URI points: transport from `;transport=` (sips: -> tls), default
  port 5060 (5061 for tls), the host as written.
- `Resolver`: host names to addresses through the loop's `getaddrinfo`, cached for
  `ttl` seconds (IP literals pass straight through). No NAPTR/SRV yet: carriers and devices
  are reached by address, and RFC 3263 falls back to A records for an explicit port anyway.
- `FlowTokens`: a device behind NAT is only reachable over the flow its REGISTER arrived on
  (`Binding.source`). When the proxy forwards an initial request to such a flow, it puts a
  token naming the flow into the user part of its Record-Route URI; in-dialog requests come
  back with that Route and are sent down the same flow (unless they come *from* that flow,
  in which case they go on by their Request-URI). Tokens are authenticated with an HMAC
  bound to the Call-ID (nobody can make the proxy send to an address of their choosing)
  and enciphered (the carrier does not learn the devices' addresses).
- `NodePaths`: with several nodes, a device is reachable only through the node its REGISTER
  reached (its TCP/TLS connection, its NAT pinhole). That node stores with the binding a
  Path URI (RFC 3327 in spirit): its own address, and a flow token bound to the contact
  instead of a Call-ID. Another node ringing the binding sends the request there with that
  URI as Route (`plans_for`), and the holder, finding its own Route with a path token,
  forwards it down the flow (proxy.py, `_for_peer`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import logging
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from switch.sip.message import ParseError, SipURI, Via, parse_uri
from switch.sip.target import Target

if TYPE_CHECKING:
    from switch.state.base import Binding

__all__ = [
    "BranchPlan",
    "FlowTokens",
    "NodePaths",
    "Peers",
    "ResolveError",
    "Resolver",
    "plans_for",
    "uri_hop",
    "via_target",
]

log = logging.getLogger(__name__)

_DEFAULT_PORT = {"udp": 5060, "tcp": 5060, "tls": 5061}
_KNOWN = frozenset(_DEFAULT_PORT)


class ResolveError(Exception):
    """The next hop cannot be reached. `status_hint`: 503 (DNS failure) or 416/488 style."""

    def __init__(self, message: str, status_hint: int = 503) -> None:
        super().__init__(message)
        self.status_hint = status_hint


def uri_hop(uri: SipURI) -> tuple[str, str, int]:
    """(transport, host, port) of a SIP URI, before any name resolution."""
    transport = (uri.params.get("transport") or "").lower()
    if uri.scheme == "sips":
        transport = "tls"
    elif not transport:
        transport = "udp"
    if transport not in _KNOWN:
        raise ResolveError(f"unsupported transport {transport!r}", 503)
    port = uri.port or _DEFAULT_PORT[transport]
    return transport, uri.host, port


def via_target(via: Via) -> Target:
    """Where a response goes back to for this Via (§18.2.2, RFC 3581): received/rport when
    present, else sent-by. Used to forward stray 2xx statelessly."""
    host = via.params.get("received") or via.host
    rport = via.params.get("rport")
    port = int(rport) if rport and rport.isdigit() else (via.port or 5060)
    return Target(via.transport.lower(), _unbracket(host), port)


def _unbracket(host: str) -> str:
    return host[1:-1] if host.startswith("[") else host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Resolver:
    """Host name -> address, cached. `clock` is the loop's monotonic clock."""

    def __init__(self, clock: Callable[[], float], ttl: float = 300.0) -> None:
        self._clock = clock
        self._ttl = ttl
        self._cache: dict[str, tuple[float, str]] = {}

    def seed(self, host: str, address: str) -> None:
        """Pin a name (tests, static configuration)."""
        self._cache[host] = (float("inf"), address)

    async def address(self, host: str) -> str:
        host = _unbracket(host)
        if _is_ip(host):
            return host
        hit = self._cache.get(host)
        now = self._clock()
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise ResolveError(f"cannot resolve {host!r}: {exc}") from exc
        if not infos:
            raise ResolveError(f"no address for {host!r}")
        v4 = [i for i in infos if i[0] == socket.AF_INET]
        addr = str((v4 or infos)[0][4][0])
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[host] = (now + self._ttl, addr)
        return addr

    async def target(self, uri: SipURI) -> Target:
        transport, host, port = uri_hop(uri)
        return Target(transport, await self.address(host), port)


# What path tokens are bound to, before the contact: a Call-ID has no space (RFC 3261 §25.1
# `word`), so no dialog's token can pass for a path token, nor the other way round.
_PATH = "path "


class FlowTokens:
    """Encode the flows of a dialog's two ends (each a `Target` or None) into a URI user part
    and back. `a` is the caller's flow, `b` the callee's.

    The token is `mac ‖ body XOR keystream(mac)`: the MAC (HMAC-SHA256 over body and
    Call-ID, truncated to 8 octets) authenticates it and binds it to the dialog, and doubles
    as the IV of the keystream, so that the devices' addresses are not shown to the carrier
    in our Record-Route (topology hiding)."""

    _CACHE_LIMIT = 4096

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or os.urandom(16)
        self._stream_key = hashlib.sha256(self._secret + b"flow-key")  # copied per block
        # decode() is pure (same secret, same user part and Call-ID -> same answer) and runs
        # for every in-dialog request and ACK of a dialog: remember recent answers.
        self._decoded: dict[tuple[str, str], tuple[Target | None, Target | None] | None] = {}

    def _mac(self, body: bytes) -> bytes:
        return hmac.digest(self._secret, body, "sha256")[:8]

    def _xor(self, mac: bytes, data: bytes) -> bytes:
        n = len(data)
        blocks = []
        for counter in range((n + 31) // 32):
            h = self._stream_key.copy()
            h.update(mac + counter.to_bytes(4, "big"))
            blocks.append(h.digest())
        stream = b"".join(blocks)[:n]
        x = int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")
        return x.to_bytes(n, "big")

    def encode(self, a: Target | None, b: Target | None, call_id: str) -> str:
        """The token is bound to the dialog's Call-ID: it cannot be replayed in another."""
        body = f"{_flow_text(a)}/{_flow_text(b)}".encode()
        mac = self._mac(body + call_id.encode())
        raw = mac + self._xor(mac, body)
        token = "f-" + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
        if _plain(a) and _plain(b):  # what decode() will answer for it: known already
            self._remember((token, call_id), (a, b))
        return token

    def encode_path(self, flow: Target, contact: str) -> str:
        """A path token (NodePaths): the flow, bound to the registered contact."""
        return self.encode(None, flow, _PATH + contact)

    def decode_path(self, user: str | None, request_uri: str) -> Target | None:
        """The flow a path token names for a request to `request_uri` (the contact)."""
        decoded = self.decode(user, _PATH + request_uri)
        return decoded[1] if decoded is not None else None

    def decode(self, user: str | None, call_id: str) -> tuple[Target | None, Target | None] | None:
        """The flows named by a token, None for anything that is not a valid token."""
        if not user or not user.startswith("f-"):
            return None
        key = (user, call_id)
        cache = self._decoded
        if key in cache:
            return cache[key]
        result = self._decode(user[2:], call_id)
        self._remember(key, result)
        return result

    def _remember(
        self, key: tuple[str, str], result: tuple[Target | None, Target | None] | None
    ) -> None:
        cache = self._decoded
        if len(cache) >= self._CACHE_LIMIT:
            cache.clear()
        cache[key] = result

    def _decode(self, text: str, call_id: str) -> tuple[Target | None, Target | None] | None:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except ValueError:
            return None
        if len(raw) <= 8:
            return None
        mac = raw[:8]
        body = self._xor(mac, raw[8:])
        if not hmac.compare_digest(mac, self._mac(body + call_id.encode())):
            return None
        try:
            a, _, b = body.decode().partition("/")
            return _flow_parse(a), _flow_parse(b)
        except (UnicodeDecodeError, ValueError):
            return None


def _flow_text(t: Target | None) -> str:
    if t is None:
        return ""
    conn = "" if t.conn_id is None else str(t.conn_id)
    return f"{t.transport}|{t.host}|{t.port}|{conn}"


def _plain(t: Target | None) -> bool:
    """_flow_parse(_flow_text(t)) == t: no separator inside the fields."""
    return t is None or not any(c in t.host or c in t.transport for c in "|/")


def _flow_parse(text: str) -> Target | None:
    if not text:
        return None
    transport, host, port, conn = text.split("|")
    return Target(transport, host, int(port), int(conn) if conn else None)


@dataclass(frozen=True, slots=True)
class BranchPlan:
    """One branch: the Request-URI to send, where to, and the flow to remember in our
    Record-Route (set when the target is a registered device's flow). `route`: a Route
    value to put first (the Path of a binding another node holds)."""

    uri: str
    target: Target
    flow: Target | None = None
    device_id: str | None = None
    route: str | None = None


def plans_for(
    device_ids: tuple[str, ...],
    bindings: Mapping[str, list[Binding]],
    peers: Peers | None = None,
) -> tuple[BranchPlan, ...]:
    """One branch per live binding: the Request-URI is the registered Contact, the target
    is the flow the REGISTER came on (reachable behind NAT), or the node holding that flow
    when the binding has a path (another node's: state/base.py, Flows) and that node is
    alive as far as `peers` knows (else the flow's address is tried directly)."""
    return tuple(_plan(d, b, peers) for d in device_ids for b in bindings.get(d, ()))


class Peers:
    """The addresses ("host:port") of the processes of every node that announced itself
    alive lately (state/base.py, Processes; updated by switch/app.py). Before the first
    announcement, and without several nodes, every address counts as alive."""

    def __init__(self) -> None:
        self._alive: frozenset[tuple[str, int]] | None = None

    def update(self, addresses: Iterable[str]) -> None:
        """`addresses`: what each live process announced, "host:port[,host:port…]"."""
        alive = set()
        for announced in addresses:
            for a in announced.split(","):
                host, _, port = a.rpartition(":")
                if port.isdigit():
                    alive.add((_unbracket(host), int(port)))
        self._alive = frozenset(alive)

    def alive(self, host: str, port: int) -> bool:
        return self._alive is None or (_unbracket(host), port) in self._alive

    def flows(self) -> frozenset[tuple[str, int]]:
        """The live processes' (host, port) pairs: where they send from, exempt from the
        per-source flood guard (one node relays many calls through another)."""
        return self._alive or frozenset()

    def gone(self, uri: SipURI) -> bool:
        """Is `uri` (another node's Record-Route or path) one of a process known dead?"""
        try:
            _, host, port = uri_hop(uri)
        except ResolveError:
            return False
        return not self.alive(host, port)


def _plan(device_id: str, b: Binding, peers: Peers | None) -> BranchPlan:
    if b.path is not None:
        try:
            hop = _path_hop(b.path)
        except ValueError:
            log.warning("binding of %s: unusable path %.200r", device_id, b.path)
            hop = None
        if hop is not None and peers is not None and not peers.alive(hop.host, hop.port):
            hop = None  # the holder is gone: its flow's address is all there is
        if hop is not None:
            # the holder is the flow remembered in our Record-Route: in-dialog requests
            # towards the device go through it too
            return BranchPlan(
                uri=b.contact, target=hop, flow=hop, device_id=device_id, route=f"<{b.path}>"
            )
    return BranchPlan(uri=b.contact, target=b.source, flow=b.source, device_id=device_id)


def _path_hop(path: str) -> Target:
    """Where a path URI points (an IP literal: NodePaths writes no names)."""
    try:
        uri = parse_uri(path)
        if not isinstance(uri, SipURI):
            raise ValueError("not a SIP URI")
        transport, host, port = uri_hop(uri)
    except (ParseError, ResolveError) as exc:
        raise ValueError(str(exc)) from exc
    host = _unbracket(host)
    if not _is_ip(host):
        raise ValueError("not an IP address")
    return Target(transport, host, port)


class NodePaths:
    """The Path URI a node stores with a binding it receives (module docstring): where it
    can be reached from the other nodes (its UDP address as in its Record-Route: a worker's
    private port) with a token naming the flow.

    Only a flow that another node cannot reach by itself gets one: a TCP/TLS connection, or
    a UDP device behind NAT (its Contact is not the address the REGISTER came from, as
    Kamailio's nathelper tests it: the pinhole is open towards this node only). A UDP device
    on its own address is rung directly by any node, which also keeps it reachable when the
    node it registered through is gone. None as well when our address is a name (another
    node would have to resolve it per call)."""

    def __init__(self, flows: FlowTokens, local_uri: Callable[[str], SipURI]) -> None:
        self._flows = flows
        self._local_uri = local_uri

    def __call__(self, flow: Target, contact: str) -> str | None:
        if flow.transport == "udp" and _reaches(contact, flow):
            return None
        uri = self._local_uri("udp")
        if not _is_ip(_unbracket(uri.host)):
            return None
        return str(uri.with_(user=self._flows.encode_path(flow, contact)))


def _reaches(contact: str, flow: Target) -> bool:
    """Is `contact` the flow's own address (no NAT between the device and us)?"""
    try:
        uri = parse_uri(contact)
        if not isinstance(uri, SipURI):
            return False
        transport, host, port = uri_hop(uri)
    except (ParseError, ResolveError):
        return False
    return transport == "udp" and _unbracket(host) == flow.host and port == flow.port

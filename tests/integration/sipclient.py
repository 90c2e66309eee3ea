"""A tiny blocking SIP client over UDP/TCP/TLS for the cases SIPp cannot drive: TLS (the
Debian SIPp 3.6.1 is built without OpenSSL), SHA-256 digest (SIPp 3.6.1 only does MD5), and
malformed input. Standard library only; loopback only.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    raw: str = ""

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def get(self, name: str) -> str | None:
        found = self.all(name)
        return found[0] if found else None


def parse_response(data: bytes) -> Response:
    text = data.decode("utf-8", "replace")
    head = text.split("\r\n\r\n", 1)[0]
    lines = head.split("\r\n")
    m = re.match(r"SIP/2\.0 (\d{3}) ?(.*)", lines[0])
    if not m:
        raise ValueError(f"not a SIP response: {lines[0]!r}")
    headers = []
    for ln in lines[1:]:
        if ":" in ln:
            k, v = ln.split(":", 1)
            headers.append((k.strip(), v.strip()))
    return Response(int(m.group(1)), m.group(2), headers, text)


class SipClient:
    """One socket (UDP datagram socket, or one TCP/TLS connection) to the switch."""

    def __init__(
        self,
        transport: str,
        remote: tuple[str, int],
        *,
        local_ip: str = "127.0.0.1",
        cafile: Path | None = None,
        timeout: float = 3.0,
    ) -> None:
        self.transport = transport
        self.remote = remote
        self.timeout = timeout
        self._buf = b""
        if transport == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((local_ip, 0))
        else:
            raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            raw.bind((local_ip, 0))
            raw.settimeout(timeout)
            raw.connect(remote)
            if transport == "tls":
                ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
                if cafile is None:
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                raw = ctx.wrap_socket(raw, server_hostname=remote[0])
            self.sock = raw
        self.sock.settimeout(timeout)
        self.local = self.sock.getsockname()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> SipClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        if self.transport == "udp":
            self.sock.sendto(data, self.remote)
        else:
            self.sock.sendall(data)

    def recv(self, timeout: float | None = None) -> Response | None:
        """The next response (skipping requests and keep-alives), or None on timeout."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if self.transport == "udp":
                    data, _ = self.sock.recvfrom(65535)
                    msg = data
                else:
                    msg = self._next_stream_message()
                    if msg is None:
                        continue
            except TimeoutError:
                return None
            if msg.startswith(b"SIP/2.0 "):
                return parse_response(msg)
        return None

    def _next_stream_message(self) -> bytes | None:
        while True:
            self._buf = self._buf.lstrip(b"\r\n")
            end = self._buf.find(b"\r\n\r\n")
            if end >= 0:
                head = self._buf[:end].decode("latin-1")
                m = re.search(r"(?im)^(?:content-length|l)\s*:\s*(\d+)", head)
                length = int(m.group(1)) if m else 0
                total = end + 4 + length
                if len(self._buf) >= total:
                    msg, self._buf = self._buf[:total], self._buf[total:]
                    return msg
            chunk = self.sock.recv(65535)
            if not chunk:
                raise ConnectionError("connection closed by the switch")
            self._buf += chunk

    def request(
        self, data: bytes, *, final_only: bool = True, timeout: float | None = None
    ) -> Response | None:
        """Send (retransmitting over UDP at T1 doubling) until a (final) response arrives."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        interval = 0.5
        self.send(data)
        next_retx = time.monotonic() + interval
        while time.monotonic() < deadline:
            wait = min(deadline, next_retx if self.transport == "udp" else deadline)
            r = self.recv(max(0.01, wait - time.monotonic()))
            if r is not None and (r.status >= 200 or not final_only):
                return r
            if self.transport == "udp" and time.monotonic() >= next_retx:
                self.send(data)
                interval = min(interval * 2, 4.0)
                next_retx = time.monotonic() + interval
        return None


# --------------------------------------------------------------------------- messages


def branch() -> str:
    return "z9hG4bK-" + secrets.token_hex(8)


def build_request(
    method: str,
    uri: str,
    *,
    transport: str,
    local: tuple[str, int],
    from_user: str,
    to_user: str | None = None,
    host: str,
    call_id: str,
    cseq: int,
    extra: list[str] | None = None,
    body: str = "",
    via_branch: str | None = None,
    from_tag: str = "t1",
) -> bytes:
    via = f"{local[0]}:{local[1]};branch={via_branch or branch()};rport"
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{transport.upper()} {via}",
        "Max-Forwards: 70",
        f"From: <sip:{from_user}@{host}>;tag={from_tag}",
        f"To: <sip:{to_user or from_user}@{host}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        *(extra or []),
        f"Content-Length: {len(body.encode())}",
        "",
        body,
    ]
    return "\r\n".join(lines).encode()


def parse_challenge(value: str) -> dict[str, str]:
    scheme, _, rest = value.partition(" ")
    assert scheme.lower() == "digest", value
    return {
        k.lower(): v1 or v2
        for k, v1, v2 in re.findall(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))', rest)
    }


def digest_authorization(
    challenge: dict[str, str], *, method: str, uri: str, username: str, password: str, nc: int = 1
) -> str:
    alg = challenge.get("algorithm", "MD5")
    h = (
        (lambda s: hashlib.sha256(s.encode()).hexdigest())
        if alg.upper() == "SHA-256"
        else (lambda s: hashlib.md5(s.encode()).hexdigest())
    )
    realm, nonce = challenge["realm"], challenge["nonce"]
    ha1 = h(f"{username}:{realm}:{password}")
    ha2 = h(f"{method}:{uri}")
    cnonce = secrets.token_hex(8)
    ncs = f"{nc:08x}"
    parts = [
        f'username="{username}"',
        f'realm="{realm}"',
        f'nonce="{nonce}"',
        f'uri="{uri}"',
        f"algorithm={alg}",
    ]
    if "qop" in challenge:
        resp = h(f"{ha1}:{nonce}:{ncs}:{cnonce}:auth:{ha2}")
        parts += ["qop=auth", f"nc={ncs}", f'cnonce="{cnonce}"']
    else:
        resp = h(f"{ha1}:{nonce}:{ha2}")
    parts.append(f'response="{resp}"')
    if "opaque" in challenge:
        parts.append(f'opaque="{challenge["opaque"]}"')
    return "Digest " + ", ".join(parts)


def register(
    client: SipClient, *, user: str, password: str, expires: int = 300, algorithm: str = "SHA-256"
) -> tuple[Response | None, Response | None]:
    """REGISTER, answer the challenge for `algorithm`; returns (challenge, final)."""
    host = f"{client.remote[0]}:{client.remote[1]}"
    uri = f"sip:{host}"
    call_id = secrets.token_hex(8)
    tp = client.transport
    contact = f"Contact: <sip:{user}@{client.local[0]}:{client.local[1]};transport={tp}>"
    common = dict(
        transport="tls" if tp == "tls" else tp,
        local=client.local,
        from_user=user,
        host=host,
        call_id=call_id,
        from_tag=secrets.token_hex(4),
    )
    first = client.request(
        build_request("REGISTER", uri, cseq=1, extra=[contact, f"Expires: {expires}"], **common)
    )
    if first is None or first.status != 401:
        return first, None
    chosen = None
    for value in first.all("WWW-Authenticate"):
        ch = parse_challenge(value)
        if ch.get("algorithm", "MD5").upper() == algorithm.upper():
            chosen = ch
            break
    if chosen is None:
        return first, None
    auth = digest_authorization(
        chosen, method="REGISTER", uri=uri, username=user, password=password
    )
    second = client.request(
        build_request(
            "REGISTER",
            uri,
            cseq=2,
            extra=[contact, f"Expires: {expires}", f"Authorization: {auth}"],
            **common,
        )
    )
    return first, second


def options(client: SipClient, timeout: float = 3.0) -> Response | None:
    host = f"{client.remote[0]}:{client.remote[1]}"
    return client.request(
        build_request(
            "OPTIONS",
            f"sip:{host}",
            transport=client.transport,
            local=client.local,
            from_user="probe",
            host=host,
            call_id=secrets.token_hex(8),
            cseq=1,
            extra=["Accept: application/sdp"],
        ),
        timeout=timeout,
    )

"""When the shared runtime state (Redis) is unreachable, a REGISTER gets 503 with Retry-After
over a real socket — a temporary failure the phone retries — and the switch keeps serving."""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
from pathlib import Path

import pytest

from provisioning.seed import load_seed
from switch.app import SwitchApp, static_source
from switch.config import Config, HostPort

DEMO = Path(__file__).resolve().parents[3] / "deploy" / "demo-seed.toml"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nobody listens there once the socket is closed


def register(local: int, branch: str, cseq: int, auth: str = "") -> bytes:
    return (
        f"REGISTER sip:softswitch.local SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{branch}{cseq};rport\r\n"
        f"From: <sip:demo-app@softswitch.local>;tag=f{branch}\r\n"
        f"To: <sip:demo-app@softswitch.local>\r\nCall-ID: outage-{branch}\r\n"
        f"CSeq: {cseq} REGISTER\r\nContact: <sip:demo-app@127.0.0.1:{local}>\r\n"
        f"{auth}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def authorization(challenge: str) -> str:
    """RFC 7616 MD5 qop=auth credentials for demo-app (password from the demo seed)."""
    m = re.search(r'WWW-Authenticate: Digest [^\r]*nonce="([^"]+)"[^\r]*algorithm=MD5', challenge)
    assert m, challenge
    nonce, uri, cnonce = m.group(1), "sip:softswitch.local", "0a4f113b"
    ha1 = md5("demo-app:softswitch.local:app-secret-0100")
    resp = md5(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{md5('REGISTER:' + uri)}")
    return (
        f'Authorization: Digest username="demo-app", realm="softswitch.local", nonce="{nonce}", '
        f'uri="{uri}", response="{resp}", algorithm=MD5, qop=auth, nc=00000001, '
        f'cnonce="{cnonce}"\r\n'
    )


async def exchange(sock: socket.socket, data: bytes, dest: tuple[str, int]) -> str:
    loop = asyncio.get_running_loop()
    sock.sendto(data, dest)
    while True:
        reply = (await asyncio.wait_for(loop.sock_recv(sock, 65535), 5)).decode()
        if not reply.startswith("SIP/2.0 100"):
            return reply


@pytest.mark.integration
async def test_register_gets_503_retry_after_while_redis_is_unreachable(tmp_path: Path) -> None:
    cfg = Config(
        sip=HostPort("127.0.0.1", 0),
        http=None,
        data_dir=tmp_path,
        state_url=f"redis://127.0.0.1:{closed_port()}/0",
    )
    sw = SwitchApp(cfg, snapshot_source=static_source(load_seed(DEMO).snapshot()))
    await sw.start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("127.0.0.1", 0))
    try:
        dest = sw.sip_addresses["udp"]
        local = sock.getsockname()[1]
        for attempt in ("a1", "a2"):  # twice: the first failure must not wedge anything
            challenge = await exchange(sock, register(local, attempt, 1), dest)
            assert challenge.startswith("SIP/2.0 401 "), challenge
            auth = authorization(challenge)
            reply = await exchange(sock, register(local, attempt, 2, auth), dest)
            assert reply.startswith("SIP/2.0 503 "), reply
            assert "\r\nRetry-After: 5\r\n" in reply, reply
        assert sw.metrics.value("sip_messages_dropped_total", {"reason": "state-unavailable"}) == 2
    finally:
        sock.close()
        await sw.stop()

"""One real-socket smoke test of the whole app, in process, on 127.0.0.1 ephemeral ports:
OPTIONS over UDP, TCP and TLS, garbage -> 400, /metrics, a digest REGISTER, one device per
ID, and the admin release endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from switch.app import SwitchApp
from switch.config import Config, HostPort
from switch.sip.digest import digest_response, ha1
from switch.sip.message import Response
from switch.sip.parser import parse_message

SEED = Path(__file__).parents[3] / "deploy" / "demo-seed.toml"
WAIT = 3.0


def make_cert(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[SwitchApp]:
    cert, key = make_cert(tmp_path)
    config = Config(
        sip=HostPort("127.0.0.1", 0), tls=HostPort("127.0.0.1", 0), tls_cert=cert,
        tls_key=key, http=HostPort("127.0.0.1", 0), data_dir=tmp_path / "data", seed=SEED,
        admin_token="test-token",
    )  # fmt: skip
    sw = SwitchApp(config)
    await sw.start()
    yield sw
    await sw.stop()


class Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)


async def udp_client(port: int) -> tuple[asyncio.DatagramTransport, Udp]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Udp, remote_addr=("127.0.0.1", port))
    return transport, proto


def options(port: int, transport: str, branch: str) -> bytes:
    return (
        f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:9;branch=z9hG4bK{branch};rport\r\n"
        f"From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1:{port}>\r\n"
        f"Call-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def response(data: bytes) -> Response:
    msg = parse_message(data)
    assert isinstance(msg, Response)
    return msg


async def stream_roundtrip(port: int, payload: bytes, tls: bool = False) -> Response:
    ctx = None
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=ctx), WAIT
    )
    try:
        writer.write(payload)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        return response(head)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), WAIT)


async def metrics_text(app: SwitchApp) -> str:
    assert app.http_address is not None
    host, port = app.http_address
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://{host}:{port}/metrics") as resp,
    ):
        assert resp.status == 200
        return await resp.text()


async def test_options_over_udp_tcp_tls_and_garbage(app: SwitchApp) -> None:
    port = app.sip_addresses["udp"][1]
    assert app.sip_addresses["tcp"][1] == port
    transport, client = await udp_client(port)
    try:
        transport.sendto(options(port, "UDP", "u1"))
        got = response(await asyncio.wait_for(client.queue.get(), WAIT))
        assert got.status == 200 and got.call_id == "u1"
        assert got.top_via.params["received"] == "127.0.0.1"
        assert got.top_via.params["rport"] != ""  # filled in (RFC 3581)

        transport.sendto(b"\r\n\r\n")  # keep-alive: ignored, no answer
        transport.sendto(b"NOT SIP AT ALL\r\n\r\n")  # unanswerable: dropped, counted
        garbled = options(port, "UDP", "g1").replace(b"Max-Forwards: 70", b"Max-Forwards: many")
        transport.sendto(garbled)
        bad = response(await asyncio.wait_for(client.queue.get(), WAIT))
        assert bad.status == 400 and bad.call_id == "g1"
    finally:
        transport.close()

    tcp = await stream_roundtrip(port, options(port, "TCP", "t1"))
    assert tcp.status == 200 and tcp.call_id == "t1"
    tls = await stream_roundtrip(app.sip_addresses["tls"][1], options(port, "TLS", "s1"), True)
    assert tls.status == 200 and tls.call_id == "s1"

    text = await metrics_text(app)
    assert 'sip_parse_errors_total{status="400",transport="udp"} 2.0' in text
    assert 'sip_messages_dropped_total{reason="unparseable_request"} 1.0' in text
    assert 'sip_requests_total{method="OPTIONS"} 3.0' in text
    assert 'sip_responses_total{code="400",direction="sent"} 1.0' in text
    assert "sip_transactions_active" in text


# --------------------------------------------------------------------------- REGISTER end to end
REALM = "softswitch.local"


def register(port: int, branch: str, cseq: int, contact: str, auth: str | None = None) -> bytes:
    lines = [
        f"REGISTER sip:{REALM} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{branch};rport",
        f"From: <sip:demo-app@{REALM}>;tag=r{branch}",
        f"To: <sip:demo-app@{REALM}>",
        f"Call-ID: reg-{contact}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:demo-app@{contact}>",
        "Expires: 600",
        "Max-Forwards: 70",
    ]
    if auth:
        lines.append(f"Authorization: {auth}")
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


def answer(challenge: Response) -> str:
    www = next(v for v in challenge.headers.get_all("WWW-Authenticate") if "MD5" in v)
    nonce = www.split('nonce="')[1].split('"')[0]
    digest = digest_response(
        ha1("demo-app", REALM, "app-secret-0100"), nonce=nonce, nc="00000001", cnonce="x",
        qop="auth", method="REGISTER", uri=f"sip:{REALM}",
    )  # fmt: skip
    return (
        f'Digest username="demo-app", realm="{REALM}", nonce="{nonce}", uri="sip:{REALM}", '
        f'response="{digest}", algorithm=MD5, qop=auth, nc=00000001, cnonce="x"'
    )


async def do_register(port: int, tag: str, contact: str) -> Response:
    transport, client = await udp_client(port)
    try:
        transport.sendto(register(port, tag + "a", 1, contact))
        challenge = response(await asyncio.wait_for(client.queue.get(), WAIT))
        assert challenge.status == 401
        transport.sendto(register(port, tag + "b", 2, contact, answer(challenge)))
        return response(await asyncio.wait_for(client.queue.get(), WAIT))
    finally:
        transport.close()


async def test_register_one_device_per_id_and_admin_release(app: SwitchApp) -> None:
    port = app.sip_addresses["udp"][1]
    first = await do_register(port, "one", "192.168.1.10:5060")
    assert first.status == 200
    assert first.headers.get_all("Contact") == ["<sip:demo-app@192.168.1.10:5060>;expires=600"]

    second = await do_register(port, "two", "192.168.1.20:5060")
    assert second.status == 403
    assert "ID in use by another device" in (second.headers.get("Warning") or "")

    assert app.http_address is not None
    base = f"http://{app.http_address[0]}:{app.http_address[1]}"
    async with aiohttp.ClientSession() as http:
        url = f"{base}/admin/devices/demo-app/release"
        async with http.post(url) as resp:
            assert resp.status == 401  # no token
        async with http.post(url, headers={"Authorization": "Bearer wrong"}) as resp:
            assert resp.status == 401
        bad = f"{base}/admin/devices/nope/release"
        async with http.post(bad, headers={"Authorization": "Bearer test-token"}) as resp:
            assert resp.status == 404
        async with http.post(url, headers={"Authorization": "Bearer test-token"}) as resp:
            assert resp.status == 200
            assert (await resp.json())["bindings"] == 1

    third = await do_register(port, "three", "192.168.1.20:5060")
    assert third.status == 200
    await app.refresh_registrations()
    assert "sip_registrations_active 1.0" in await metrics_text(app)


async def test_release_seq_in_a_new_snapshot_releases_the_device(tmp_path: Path) -> None:
    """The customer page's "release the logged-in device" arrives as a bumped
    Device.release_seq in the next snapshot from the live source."""
    import dataclasses

    from provisioning.model import Snapshot
    from provisioning.seed import load_seed
    from switch.sip.target import Target
    from switch.state.base import Binding

    seed = load_seed(SEED)
    queue: asyncio.Queue[Snapshot] = asyncio.Queue()
    queue.put_nowait(seed.snapshot(version=1))

    async def live() -> AsyncIterator[Snapshot]:
        for _ in range(2):  # bounded: the initial snapshot and one change
            yield await queue.get()

    config = Config(sip=HostPort("127.0.0.1", 0), http=None, data_dir=tmp_path, admin_token="t")
    sw = SwitchApp(config, snapshot_source=live)
    await sw.start()
    try:
        binding = Binding(
            device_id="demo-app", contact="sip:demo-app@192.168.1.10", instance_id=None,
            expires_at=time.time() + 600, source=Target("udp", "127.0.0.1", 5999),
            call_id="c", cseq=1,
        )  # fmt: skip
        await sw.state.put_binding(binding)
        await sw.state.claim_device("demo-app", "contact:192.168.1.10", time.time() + 600, 0)
        devices = [
            dataclasses.replace(d, release_seq=1) if d.id == "demo-app" else d for d in seed.devices
        ]
        bumped = Snapshot.build(
            version=2, realm=seed.realm, tenants=seed.tenants, devices=devices,
            numbers=seed.numbers, gateways=seed.gateways,
        )  # fmt: skip
        queue.put_nowait(bumped)
        for _ in range(300):  # bounded wait: 3 s
            if sw.snapshot.version == 2 and not await sw.state.bindings("demo-app", time.time()):
                break
            await asyncio.sleep(0.01)
        assert sw.snapshot.version == 2
        assert await sw.state.bindings("demo-app", time.time()) == []
        assert await sw.state.device_owner("demo-app", time.time()) is None
    finally:
        await sw.stop()

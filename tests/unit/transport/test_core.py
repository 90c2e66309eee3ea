"""SipEndpoint glue: eager stepping of TU coroutines, and the single loop timer driving the
transaction layer (a finished UDP transaction disappears after Timer J = 64*T1)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from switch.app import SwitchApp
from switch.config import Config, HostPort
from switch.eager import run_eager

WAIT = 3.0


async def test_run_eager_finishes_synchronous_coroutines_without_a_task() -> None:
    steps: list[str] = []

    async def quick() -> None:
        steps.append("quick")

    assert run_eager(quick()) is None
    assert steps == ["quick"]  # ran before run_eager returned


async def test_run_eager_hands_a_suspended_coroutine_to_a_task() -> None:
    loop = asyncio.get_running_loop()
    steps: list[object] = []
    fut: asyncio.Future[int] = loop.create_future()

    async def slow() -> None:
        steps.append("start")
        await asyncio.sleep(0)
        steps.append(await fut)
        failing: asyncio.Future[int] = loop.create_future()
        loop.call_soon(failing.set_exception, ValueError("boom"))
        try:
            await failing
        except ValueError as exc:
            steps.append(str(exc))

    task = run_eager(slow())
    assert task is not None and steps == ["start"]
    loop.call_later(0.01, fut.set_result, 42)
    await asyncio.wait_for(task, WAIT)
    assert steps == ["start", 42, "boom"]


async def test_run_eager_logs_failures(caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise RuntimeError("tu bug")

    assert run_eager(broken()) is None
    assert "transaction user failed" in caplog.text


@pytest.fixture
async def fast_timers_app(tmp_path: Path) -> AsyncIterator[SwitchApp]:
    config = Config(
        sip=HostPort("127.0.0.1", 0), http=None, data_dir=tmp_path,
        t1=0.01, t2=0.04, t4=0.05,
    )  # fmt: skip
    app = SwitchApp(config)
    await app.start()
    yield app
    await app.stop()


async def test_the_loop_timer_terminates_transactions(fast_timers_app: SwitchApp) -> None:
    app = fast_timers_app
    port = app.sip_addresses["udp"][1]
    loop = asyncio.get_running_loop()
    answered: asyncio.Queue[bytes] = asyncio.Queue()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            answered.put_nowait(data)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", port))
    try:
        transport.sendto(
            f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKtimer;rport\r\n"
            "From: <sip:p@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1>\r\nCall-ID: timer\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n".encode()
        )
        assert (await asyncio.wait_for(answered.get(), WAIT)).startswith(b"SIP/2.0 200")
        assert app.layer.counts()["server_non_invite"] == 1  # Completed, Timer J armed
        for _ in range(300):  # bounded: 3 s; Timer J is 64*T1 = 0.64 s
            if app.layer.counts()["server_non_invite"] == 0:
                break
            await asyncio.sleep(0.01)
        assert app.layer.counts()["server_non_invite"] == 0
        assert app.layer.get_timer() is None
    finally:
        transport.close()

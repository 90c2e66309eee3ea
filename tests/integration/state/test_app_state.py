"""SwitchApp builds the state backend `state.url` names, and closes only the one it built."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from switch import wiring
from switch.app import SwitchApp
from switch.config import Config, HostPort
from switch.sip.target import Target
from switch.state.base import Binding
from switch.state.memory import MemoryState
from switch.state.redis import RedisState

REDIS_URL = "redis://127.0.0.1:6379/0"


def config(tmp_path: Path, state_url: str) -> Config:
    return Config(
        sip=HostPort("127.0.0.1", 0), http=None, data_dir=tmp_path / "data", state_url=state_url
    )


async def test_memory_is_the_default(tmp_path: Path) -> None:
    sw = SwitchApp(config(tmp_path, "memory"))
    assert isinstance(sw.state, MemoryState)
    await sw.stop()


@pytest.mark.integration
@pytest.mark.redis
async def test_redis_url_builds_redis_state_closed_on_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"softswitch-test:{secrets.token_hex(8)}:"
    closed: list[RedisState] = []

    class Tracked(RedisState):  # the app's RedisState, on a prefix of this test's own
        def __init__(self, url: str, **kw: Any) -> None:
            super().__init__(url, prefix=prefix, **kw)

        async def close(self) -> None:
            closed.append(self)
            await super().close()

    monkeypatch.setattr(wiring, "RedisState", Tracked)  # what make_state builds
    other_node = RedisState(REDIS_URL, prefix=prefix, node_id="other")
    raw = Redis.from_url(REDIS_URL, decode_responses=True)
    sw = SwitchApp(config(tmp_path, REDIS_URL))
    try:
        assert isinstance(sw.state, Tracked)
        await sw.start()
        assert sw.registrar.state is sw.state
        await other_node.put_binding(
            Binding(
                device_id="d1", contact="sip:a@h", instance_id=None, expires_at=4e9,
                source=Target("udp", "192.0.2.1", 5060), call_id="c", cseq=1,
            )
        )  # fmt: skip
        await sw.refresh_registrations()
        assert sw.metrics.value("sip_registrations_active") == 1  # another node's binding
        await sw.stop()
        assert closed == [sw.state]
    finally:
        await sw.stop()
        keys = [k async for k in raw.scan_iter(match=prefix + "*")]
        if keys:
            await raw.delete(*keys)
        await raw.aclose()
        await other_node.close()


class CloseCounting(RedisState):
    closes = 0

    async def close(self) -> None:
        self.closes += 1
        await super().close()


@pytest.mark.integration
@pytest.mark.redis
async def test_a_state_passed_in_is_not_closed(tmp_path: Path) -> None:
    state = CloseCounting(REDIS_URL, prefix=f"softswitch-test:{secrets.token_hex(8)}:")
    sw = SwitchApp(config(tmp_path, "memory"), state=state)
    await sw.stop()
    assert state.closes == 0  # it belongs to the caller
    assert await state.count() == 0
    await state.close()

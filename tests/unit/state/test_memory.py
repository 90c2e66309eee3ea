"""MemoryState: bindings, expiry, the device lock, channel leases (fake clock)."""

from __future__ import annotations

import pytest

from switch.sip.target import Target
from switch.state.base import Binding
from switch.state.memory import MemoryState

SRC = Target("udp", "192.0.2.1", 5060)


def b(contact: str, expires_at: float, device: str = "d1", cseq: int = 1) -> Binding:
    return Binding(
        device_id=device,
        contact=contact,
        instance_id=None,
        expires_at=expires_at,
        source=SRC,
        call_id="c",
        cseq=cseq,
    )


async def test_put_replace_remove_and_count() -> None:
    s = MemoryState()
    await s.put_binding(b("sip:a@h", 100))
    await s.put_binding(b("sip:b@h", 100))
    await s.put_binding(b("sip:a@h", 200, cseq=2))  # replaces, same contact
    assert await s.count() == 2
    got = await s.bindings("d1", now=0)
    assert [(x.contact, x.cseq) for x in got] == [("sip:a@h", 2), ("sip:b@h", 1)]
    assert await s.remove_binding("d1", "sip:b@h") is True
    assert await s.remove_binding("d1", "sip:b@h") is False
    assert await s.count() == 1
    assert await s.remove_all("d1") == 1
    assert await s.count() == 0
    assert await s.bindings("d1", now=0) == []


async def test_expire_skips_refreshed_bindings() -> None:
    s = MemoryState()
    await s.put_binding(b("sip:a@h", 100))
    await s.put_binding(b("sip:b@h", 100))
    await s.put_binding(b("sip:a@h", 300))  # refreshed: its old heap entry is stale
    assert [x.contact for x in await s.bindings("d1", now=150)] == ["sip:a@h"]
    assert await s.expire(150) == 1
    assert await s.count() == 1
    assert await s.expire(299) == 0
    assert await s.expire(300) == 1
    assert await s.count() == 0


async def test_device_lock_one_owner_until_deadline() -> None:
    s = MemoryState()
    assert await s.claim_device("d1", "phone-A", until=100, now=0)
    assert not await s.claim_device("d1", "phone-B", until=100, now=50)
    assert await s.device_owner("d1", now=50) == "phone-A"
    assert await s.claim_device("d1", "phone-A", until=80, now=50)  # may shrink
    assert await s.device_owner("d1", now=80) is None  # deadline passed: free
    assert await s.claim_device("d1", "phone-B", until=200, now=80)
    assert not await s.unclaim_device("d1", "phone-A")
    assert await s.unclaim_device("d1", "phone-B")
    assert await s.device_owner("d1", now=90) is None


async def test_release_device_drops_bindings_and_lock() -> None:
    s = MemoryState()
    await s.claim_device("d1", "phone-A", until=100, now=0)
    await s.put_binding(b("sip:a@h", 100))
    await s.put_binding(b("sip:x@h", 100, device="d2"))
    assert await s.release_device("d1") == 1
    assert await s.device_owner("d1", now=1) is None
    assert await s.bindings("d1", now=1) == []
    assert await s.count() == 1
    assert await s.claim_device("d1", "phone-B", until=100, now=1)


async def test_channel_leases_limit_refresh_release_expiry() -> None:
    s = MemoryState()
    assert await s.acquire_channel("t", "c1", limit=2, ttl=10, now=0)
    assert await s.acquire_channel("t", "c2", limit=2, ttl=10, now=0)
    assert not await s.acquire_channel("t", "c3", limit=2, ttl=10, now=1)
    assert await s.acquire_channel("t", "c1", limit=2, ttl=10, now=1)  # re-acquire = refresh
    assert await s.channels_in_use("t", now=1) == 2
    assert await s.channels_in_use("other", now=1) == 0
    assert await s.refresh_channel("t", "c2", ttl=100, now=5)
    assert await s.channels_in_use("t", now=11) == 1  # c1 expired at 11
    assert not await s.refresh_channel("t", "c1", ttl=10, now=11)
    assert await s.acquire_channel("t", "c3", limit=2, ttl=10, now=11)
    assert await s.release_channel("t", "c3")
    assert not await s.release_channel("t", "c3")
    assert await s.channels_in_use("t", now=12) == 1


def test_binding_validates() -> None:
    with pytest.raises(ValueError):
        b("", 1)
    with pytest.raises(ValueError):
        Binding(
            device_id="d",
            contact="sip:a@h",
            instance_id=None,
            expires_at=1,
            source=SRC,
            call_id="c",
            cseq=1,
            q=1.5,
        )
    assert b("sip:a@h", 10.9).remaining(0) == 10
    assert b("sip:a@h", 10).remaining(20) == 0


async def test_channel_leases_many_refreshes_keep_the_heap_bounded_and_exact() -> None:
    s = MemoryState()
    for i in range(50):
        assert await s.acquire_channel("t", f"c{i}", limit=100, ttl=10, now=0)
    for step in range(1, 200):  # every lease refreshed again and again: stale heap entries
        for i in range(50):
            assert await s.refresh_channel("t", f"c{i}", ttl=10, now=step * 0.01)
    assert len(s._lease_heaps["t"]) <= 2 * 50 + 64 + 1
    assert await s.channels_in_use("t", now=11.98) == 50  # refreshed at 1.99: until 11.99
    assert await s.release_channel("t", "c0")
    assert await s.acquire_channel("t", "c0", limit=100, ttl=1, now=11.98)  # new deadline 12.98
    assert await s.channels_in_use("t", now=11.99) == 1  # the others expired at 11.99
    assert await s.channels_in_use("t", now=12.98) == 0
    assert "t" not in s._lease_heaps

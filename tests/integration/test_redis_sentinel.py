"""Redis Sentinel (issue 11 §2): the switch finds its state's master through real sentinels
(`[state] url = "redis+sentinel://…"`), and a fail-over - the master killed with SIGKILL, its
replica promoted by the sentinel - loses no registration and calls recover by themselves.

This file's Redis servers are its own: a master and a replica on free ports (no persistence)
and one sentinel (quorum 1, the master judged down after 1 s), all on 127.0.0.1, started and
stopped by the test. The switch runs on its defaults otherwise (one worker per core).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from .harness import DeviceSpec, SeedSpec, free_port
from .test_multinode import NONCE, bound, wait_for
from .test_sip_calls import carrier_call, register_device

pytestmark = [pytest.mark.integration, pytest.mark.redis]

DESK = DeviceSpec("desk1", "desk1-secret-x")
SERVICE = "softswitch-state"


@dataclass
class Servers:
    master: subprocess.Popen[bytes]
    master_port: int
    replica_port: int
    sentinel_port: int

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=2)

    def master_now(self) -> int:
        with self.client(self.sentinel_port) as s:
            _, port = s.execute_command("SENTINEL", "get-master-addr-by-name", SERVICE)
        return int(port)


def _server(tmp: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    with open(tmp / f"redis-{port}.log", "wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp), *extra],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1) as c:
        wait_for(lambda: _pings(c), 10, f"redis on {port}")
    return proc


def _pings(c: redis.Redis) -> bool:
    try:
        return bool(c.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (scripts/ensure-test-deps.sh)")
    m, r, s = free_port(), free_port(), free_port()
    procs = [_server(tmp_path, m)]
    procs.append(_server(tmp_path, r, "--replicaof", "127.0.0.1", str(m)))
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {s}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor {SERVICE} 127.0.0.1 {m} 1\n"
        f"sentinel down-after-milliseconds {SERVICE} 1000\n"
        f"sentinel failover-timeout {SERVICE} 5000\n"
    )
    procs.append(_sentinel(tmp_path, conf, s))
    servers = Servers(procs[0], m, r, s)
    try:
        with servers.client(r) as replica:
            wait_for(lambda: replica.info("replication").get("master_link_status") == "up", 10,
                     "the replica in sync")  # fmt: skip
        wait_for(lambda: servers.master_now() == m, 10, "the sentinel to know the master")
        yield servers
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(5)


def _sentinel(tmp: Path, conf: Path, port: int) -> subprocess.Popen[bytes]:
    with open(tmp / "sentinel.log", "wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(["redis-server", str(conf), "--sentinel"], stdout=log,
                                stderr=subprocess.STDOUT)  # fmt: skip
    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1) as c:
        wait_for(lambda: _pings(c), 10, "the sentinel")
    return proc


def test_sentinel_url_fail_over_keeps_registrations_and_calls_recover(
    switch_proc, sipp, servers: Servers
):
    url = f"redis+sentinel://127.0.0.1:{servers.sentinel_port}/{SERVICE}/0"
    sw = switch_proc(SeedSpec(devices=[DESK], spare_ids=2), f'[state]\nurl = "{url}"\n{NONCE}',
                     tls=False)  # fmt: skip
    port = free_port()
    register_device(sipp, sw, DESK, port)
    with servers.client(servers.master_port) as master:
        assert bound(master, "desk1"), "the binding is not on the master"
    with servers.client(servers.replica_port) as replica:
        wait_for(lambda: bound(replica, "desk1"), 5, "the binding replicated")
    desk = sipp("uas", local_port=port, calls=100, timeout_s=60, name="desk").start()
    ur = carrier_call(sipp, sw, "uac_call", calls=2, timeout_s=15).run()
    assert ur.successful == 2 and ur.failed == 0, ur.report() + sw.logs()

    servers.master.send_signal(signal.SIGKILL)
    servers.master.wait(5)
    killed = time.monotonic()
    wait_for(lambda: servers.master_now() == servers.replica_port, 20, "the fail-over")
    promoted = time.monotonic() - killed

    def a_call_completes() -> bool:
        r = carrier_call(sipp, sw, "uac_call", calls=1, timeout_s=5).run()
        return r.successful == 1

    recovered = wait_for(a_call_completes, 30, "a call through the new master") + promoted
    ur = carrier_call(sipp, sw, "uac_call", calls=5, rate=5, timeout_s=15).run()
    assert ur.successful == 5 and ur.failed == 0, ur.report() + sw.logs()
    with servers.client(servers.replica_port) as new_master:
        assert bound(new_master, "desk1"), "the registration was lost in the fail-over"
        assert new_master.zcard("softswitch:ch:t1") == 0, "a channel lease left behind"
    desk.stop()
    print(
        f"fail-over after {promoted:.1f} s; calls completed again {recovered:.1f} s after the kill"
    )

"""`softswitch serve --workers N` on Redis state, against real peers (switch/workers.py,
switch/transport/siblings.py).

Two workers share the SIP port (SO_REUSEPORT). SIPp callers use one socket per call
(`-t un`) so the kernel's hash spreads them over both workers; the metrics (labelled
worker="i" in one scrape) show which worker handled what. Every test uses a tenant and IDs of
its own: the Redis server is shared with other tests.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from typing import Any

import pytest

from .baresip_helpers import Baresip
from .harness import CARRIER_IP, REPO, DeviceSpec, SeedSpec, free_port
from .sipclient import SipClient, register

pytestmark = [pytest.mark.integration, pytest.mark.redis]

REDIS = '[state]\nurl = "redis://127.0.0.1:6379/0"\n'
CONTRACT = "0355500100"
ONE_SOCKET_PER_CALL = ["-t", "un", "-max_socket", "200"]


def spec(**kw: Any) -> tuple[SeedSpec, DeviceSpec]:
    unique = uuid.uuid4().hex[:8]
    desk = DeviceSpec(f"desk-{unique}", f"secret-{unique}")
    return SeedSpec(devices=[desk], tenant=f"t-{unique}", **kw), desk


def two_workers(switch_proc: Any, seed: SeedSpec, config: str = REDIS, tls: bool = False) -> Any:
    sw = switch_proc(seed, config_toml=config, tls=tls, extra_args=["--workers", "2"])
    wait_for(lambda: scraped(sw) == 2, 10, "both workers in the metrics")
    return sw


def scraped(sw: Any) -> float:
    try:
        return float(sw.metrics().get_value("softswitch_workers_scraped"))
    except OSError:
        return 0.0


def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def sipp_register(sipp: Any, sw: Any, desk: DeviceSpec, port: int) -> None:
    res = sipp(
        "register", remote=sw.udp, local_port=port, credentials=[(desk.id, desk.password)],
        keys={"expires": "300"}, timeout_s=8, name=f"register-{desk.id}",
    ).run()  # fmt: skip
    assert res.returncode == 0 and res.successful == 1, res.report() + sw.logs()


def carrier_calls(sipp: Any, sw: Any, n: int, *, name: str, **kw: Any) -> Any:
    extra = [*ONE_SOCKET_PER_CALL, *kw.pop("extra", [])]
    return sipp(
        "uac_call", remote=sw.udp, local_ip=CARRIER_IP, calls=n, rate=kw.pop("rate", 10),
        service=CONTRACT, keys={"caller": "0312345678"}, timeout_s=kw.pop("timeout_s", 30),
        name=name, extra=extra, **kw,
    )  # fmt: skip


def invites_by_worker(sw: Any) -> dict[str, float]:
    m = sw.metrics()
    return {w: m.get_value("sip_requests_total", method="INVITE", worker=w) for w in ("0", "1")}


def calls_through(sipp: Any, sw: Any, desk: DeviceSpec, n: int, name: str) -> tuple[Any, Any]:
    port = free_port()
    sipp_register(sipp, sw, desk, port)
    uas = sipp("uas", local_port=port, calls=n, timeout_s=40, name=f"uas-{name}").start()
    ur = carrier_calls(sipp, sw, n, name=f"carrier-{name}").run()
    return ur, uas.wait()


# --------------------------------------------------------------------------- the option
def test_workers_refused_on_memory_state(tmp_path: Any) -> None:
    """Memory state cannot be shared between processes: --workers 2 is refused, clearly."""
    python = str(REPO / ".venv" / "bin" / "python")
    proc = subprocess.run(
        [python, "-m", "switch", "serve", "--workers", "2", "--sip", "127.0.0.1:0",
         "--http", "off", "--data", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "--workers 2 needs shared state" in proc.stderr
    assert "SIP listening" not in proc.stdout


def test_workers_that_cannot_start_end_the_supervisor(tmp_path: Any) -> None:
    """A configuration no worker can serve (a TLS key that does not exist) ends `serve` with
    the workers' error instead of restarting them forever."""
    python = str(REPO / ".venv" / "bin" / "python")
    (tmp_path / "switch.toml").write_text(REDIS)
    proc = subprocess.run(
        [python, "-m", "switch", "serve", "--workers", "2", "--sip", "127.0.0.1:0",
         "--tls", "127.0.0.1:0", "--tls-cert", str(tmp_path / "none.pem"),
         "--tls-key", str(tmp_path / "none.key"), "--http", "off",
         "--config", str(tmp_path / "switch.toml"), "--data", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "exited while starting" in proc.stderr
    assert "SIP listening" not in proc.stdout


def test_default_is_one_worker_per_core_on_redis(switch_proc: Any, tls_cert: Any) -> None:
    """On the defaults otherwise, TLS included: REGISTERs over six TLS connections (spread
    over the workers' TLS sockets by the kernel) all succeed and stay counted."""
    seed, desk = spec()
    sw = switch_proc(seed, config_toml=REDIS)
    cores = len(os.sched_getaffinity(0))
    stdout = sw.proc.stdout_path.read_text()
    if cores > 1:
        assert f"Workers: {cores}" in stdout, sw.logs()
        assert len(sw.proc.worker_pids()) == cores
    else:
        assert "Workers:" not in stdout
    clients = [SipClient("tls", sw.tls, cafile=tls_cert[0], timeout=4) for _ in range(6)]
    try:
        for c in clients:
            _, final = register(c, user=desk.id, password=desk.password, algorithm="MD5")
            assert final is not None and final.status == 200, (final, sw.logs())
        m = sw.metrics()
        assert m.total("sip_connections_active", transport="tls") == 6, m
    finally:
        for c in clients:
            c.close()


# --------------------------------------------------------------------------- calls
def test_calls_through_the_shared_port_use_both_workers(switch_proc: Any, sipp: Any) -> None:
    seed, desk = spec(spare_ids=30)
    sw = two_workers(switch_proc, seed)
    n = 30
    ur, sr = calls_through(sipp, sw, desk, n, "both")
    detail = ur.report() + "\n" + sr.report() + "\n" + sw.logs()
    assert ur.successful == n and ur.failed == 0, detail
    assert sr.successful == n and sr.failed == 0, detail
    invites = invites_by_worker(sw)
    assert sum(invites.values()) >= n, invites  # received: the caller's (and retransmissions)
    assert min(invites.values()) > 0, invites
    m = sw.metrics()
    answered = m.total("sip_calls_total", outcome="answered")
    assert answered == n, m
    assert m.get_value("softswitch_workers") == 2
    secret = sw.proc.data_dir / "flow-secret"  # one key for every worker's flow tokens
    assert secret.read_text().strip() and secret.stat().st_mode & 0o077 == 0
    wait_for(lambda: sw.metrics().total("sip_calls_active") == 0, 5, "every call ended")
    # the device sees a worker's private port as Via sent-by and Record-Route (not the shared
    # port): its answers and its in-dialog requests go to the worker holding the call
    invite = sr.messages()[sr.messages().find("INVITE sip:") :]
    via = re.search(r"(?im)^Via:\s*SIP/2\.0/UDP 127\.0\.0\.1:(\d+);branch", invite)
    rr = re.search(r"(?im)^Record-Route:\s*<sip:(?:[^@>]+@)?127\.0\.0\.1:(\d+);lr>", invite)
    assert via and rr, invite[:1500]
    assert via[1] == rr[1] != str(sw.sip_port), invite[:1500]


def test_ten_percent_loss_with_two_workers(switch_proc: Any, sipp: Any) -> None:
    """Retransmissions, ACKs and the device's retransmitted responses must reach the worker
    that holds the transaction: SIPp drops 10% on both sides."""
    seed, desk = spec(spare_ids=40)
    sw = two_workers(switch_proc, seed)
    port = free_port()
    sipp_register(sipp, sw, desk, port)
    n = 20
    uas = sipp("uas_200only", local_port=port, calls=n, timeout_s=60, lost=10).start()
    uac = carrier_calls(
        sipp, sw, n, name="lossy", timeout_s=55, lost=10, extra=["-d", "500"]
    ).start()
    ur, sr = uac.wait(), uas.wait()
    detail = ur.report() + "\n" + sr.report() + "\n" + sw.logs()
    assert ur.successful == n and ur.failed == 0, detail
    assert sr.successful == n and sr.failed == 0, detail
    assert ur.counter("Retransmissions") > 0, "no loss happened? " + detail
    assert min(invites_by_worker(sw).values()) > 0


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_stream_device_reached_from_the_other_worker(
    switch_proc: Any, sipp: Any, tmp_path: Any, tls_cert: Any, transport: str
) -> None:
    """A phone registered over TCP/TLS holds its connection on one worker; calls landing on
    the other worker reach it over that connection (relayed through the owning worker), and
    its answers come back to the worker holding the transaction."""
    seed, desk = spec(spare_ids=10)
    sw = two_workers(switch_proc, seed, tls=transport == "tls")
    port = sw.tls_port if transport == "tls" else sw.sip_port
    phone = Baresip(
        tmp_path, desk, port, auto_answer=True, transport=transport,
        cafile=tls_cert[0] if transport == "tls" else None,
    )  # fmt: skip
    try:
        phone.connect()
        wait_for(
            lambda: sw.metrics().total("sip_registrations_total", code="200") >= 1,
            10, "the phone's registration",
        )  # fmt: skip
        m = sw.metrics()
        conns = {w: m.get_value("sip_connections_active", transport=transport, worker=w)
                 for w in "01"}  # fmt: skip
        assert sorted(conns.values()) == [0.0, 1.0], conns
        owner = "0" if conns["0"] else "1"
        other = "1" if owner == "0" else "0"
        calls = 0
        for round_ in range(8):  # one call per round, each from a new source port
            ur = carrier_calls(
                sipp, sw, 2, name=f"{transport}-{round_}", rate=1, limit=1, extra=["-d", "300"]
            ).run()
            assert ur.successful == 2 and ur.failed == 0, ur.report() + "\n" + sw.logs()
            calls += 2
            if invites_by_worker(sw)[other] >= 1:
                break
        invites = invites_by_worker(sw)
        assert invites[other] >= 1, f"no call landed on worker {other} in {calls} calls"
        m = sw.metrics()
        assert m.get_value("sip_connections_active", transport=transport, worker=other) == 0
        assert m.total("sip_calls_total", outcome="answered") == calls
        handed = {k: m.total("sip_worker_handovers_total", kind=k) for k in
                  ("relay_sent", "relay_written", "relay_failed", "response")}  # fmt: skip
        assert handed["relay_sent"] == handed["relay_written"] >= 3, handed  # INVITE, ACK, BYE
        assert handed["relay_failed"] == 0 and handed["response"] >= 2, handed  # 180, 200
        # every request reached the phone on the one connection it registered on
        trace = phone.trace()
        into_phone = [t for t in trace if t.method and t.dst[1] != port]
        assert {t.method for t in into_phone} >= {"INVITE", "ACK", "BYE"}, trace
        assert {(t.transport, t.src, t.dst) for t in into_phone} == {
            (transport.upper(), ("127.0.0.1", port), into_phone[0].dst)
        }, trace
        # the phone's side of the Record-Route names a worker's private port, not the shared
        answered = ur.messages()[ur.messages().find("SIP/2.0 200 OK") :]
        rr = re.search(rf"<sip:[^>]*127\.0\.0\.1:(\d+);transport={transport};lr>", answered)
        assert rr and int(rr[1]) != port, answered[:1500]
    finally:
        phone.stop()


# --------------------------------------------------------------------------- supervision
def test_killed_worker_is_restarted_and_calls_work_again(switch_proc: Any, sipp: Any) -> None:
    seed, desk = spec(spare_ids=30)
    sw = two_workers(switch_proc, seed)
    before = sw.proc.worker_pids()
    assert len(before) == 2
    os.kill(before[0], signal.SIGKILL)
    wait_for(lambda: len(set(sw.proc.worker_pids()) - set(before)) == 1, 10, "a new worker")
    wait_for(lambda: scraped(sw) == 2, 10, "the new worker in the metrics")
    assert "restarting in" in sw.logs()
    n = 20
    ur, sr = calls_through(sipp, sw, desk, n, "after-kill")
    assert ur.successful == n and ur.failed == 0, ur.report() + "\n" + sw.logs()
    assert sr.successful == n, sr.report()
    assert min(invites_by_worker(sw).values()) > 0
    workers = sw.proc.worker_pids()
    assert sw.proc.stop() == 0  # SIGTERM: the supervisor stops every worker, cleanly
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}") or _zombie(pid), pid


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


# --------------------------------------------------------------------------- alerting
WORKER_ALERT_TESTS = """
rule_files:
  - {rules}
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # one of two workers stops answering the scrape from minute 2 on
      - series: 'softswitch_workers{{instance="sw1",job="softswitch",worker="0"}}'
        values: '2x10'
      - series: 'softswitch_workers_scraped{{instance="sw1",job="softswitch",worker="0"}}'
        values: '2 2 1x8'
    alert_rule_test:
      - eval_time: 3m
        alertname: SoftswitchWorkerDown
        exp_alerts: []
      - eval_time: 5m
        alertname: SoftswitchWorkerDown
        exp_alerts:
          - exp_labels: {{severity: critical, instance: sw1}}
            exp_annotations:
              summary: "1 worker(s) of sw1 not serving for 2 minutes"
"""


def test_worker_down_alert_fires_when_a_worker_stays_out_of_the_scrape(tmp_path: Any) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed (Debian package prometheus)")
    rules = REPO / "deploy" / "prometheus" / "softswitch-alerts.yml"
    tests = tmp_path / "worker-alerts-test.yml"
    tests.write_text(WORKER_ALERT_TESTS.format(rules=rules))
    out = subprocess.run(
        [promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr

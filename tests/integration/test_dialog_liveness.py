"""Dialog liveness against real peers: the switch keeps answered calls alive with in-dialog
OPTIONS towards both ends (switch/proxy/dialogs.py) and ends a call whose end vanished - the
survivor gets a BYE, the channel lease is released - within keepalive_interval +
keepalive_timeout.

The defaults (60 s + 10 s) would make these tests minutes long: each test here runs the
switch with a short `[proxy] keepalive_interval` / `keepalive_timeout` and is named as a test
of that option. SIPp answers in-dialog OPTIONS with `-aa` (automatic 200 OK).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from .harness import DeviceSpec, SeedSpec, free_port
from .test_sip_calls import carrier_call, register_device

pytestmark = pytest.mark.integration

DESK = DeviceSpec("desk1", "desk1-secret-x")
INTERVAL, TIMEOUT = 2.0, 2.0
SHORT_KEEPALIVE = f"[proxy]\nkeepalive_interval = {INTERVAL}\nkeepalive_timeout = {TIMEOUT}\n"
LONG_CALL = ["-d", "600000", "-aa"]  # the UAC holds the call 10 min unless killed


def wait_for(check: Callable[[], bool], timeout: float, step: float = 0.1) -> float:
    """Seconds until `check()` held; fails the test after `timeout`."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(step)
    return time.monotonic() - start


def kill(sipp_run) -> None:  # type: ignore[no-untyped-def]
    os.killpg(sipp_run.proc.pid, signal.SIGKILL)
    sipp_run.proc.wait(5)


def active(sw) -> float:  # type: ignore[no-untyped-def]
    return float(sw.metrics().get_value("sip_calls_active"))


def test_keepalive_interval_option_keeps_live_calls_and_ends_one_whose_caller_vanished(
    switch_proc, sipp
):
    sw = switch_proc(SeedSpec(devices=[DESK]), config_toml=SHORT_KEEPALIVE)
    port = free_port()
    register_device(sipp, sw, DESK, port)
    uas = sipp("uas", local_port=port, calls=1, timeout_s=60, extra=["-aa"]).start()
    uac = carrier_call(sipp, sw, "uac_call", timeout_s=60, extra=LONG_CALL).start()
    wait_for(lambda: active(sw) == 1, 10)

    # alive ends answer: the call stays up over several intervals
    time.sleep(3 * INTERVAL)
    m = sw.metrics()
    assert active(sw) == 1 and uas.running and uac.running, sw.logs()
    assert m.get_value("sip_dialog_keepalives_total", result="ok") >= 4, sw.logs()
    assert m.get_value("sip_dialog_keepalives_total", result="failed") == 0

    kill(uac)  # the caller vanishes without a BYE
    gone = time.monotonic()
    sr = uas.wait(grace=INTERVAL + TIMEOUT + 10)
    released = wait_for(lambda: active(sw) == 0, INTERVAL + TIMEOUT + 5)
    elapsed = time.monotonic() - gone
    # the survivor got the switch's BYE (its scenario ends on BYE/200: a successful call)
    assert sr.successful == 1 and sr.failed == 0, sr.report() + sw.logs()
    assert "Reason: SIP;cause=408" in sr.messages()
    assert elapsed <= INTERVAL + TIMEOUT + 2.5, (elapsed, released)
    m = sw.metrics()
    assert m.get_value("sip_dialogs_ended_total", reason="keepalive") == 1
    assert m.get_value("sip_dialog_keepalives_total", result="failed") >= 1
    print(f"keep-alive release after the caller vanished: {elapsed:.1f} s")


def test_keepalive_interval_option_ends_a_call_whose_callee_vanished(switch_proc, sipp):
    sw = switch_proc(SeedSpec(devices=[DESK]), config_toml=SHORT_KEEPALIVE)
    port = free_port()
    register_device(sipp, sw, DESK, port)
    uas = sipp("uas", local_port=port, calls=1, timeout_s=60, extra=["-aa"]).start()
    uac = carrier_call(sipp, sw, "uac_call_until_bye", timeout_s=60, extra=["-aa"]).start()
    wait_for(lambda: active(sw) == 1, 10)
    kill(uas)  # the phone is gone
    gone = time.monotonic()
    ur = uac.wait(grace=INTERVAL + TIMEOUT + 10)
    wait_for(lambda: active(sw) == 0, INTERVAL + TIMEOUT + 5)
    elapsed = time.monotonic() - gone
    assert ur.successful == 1 and ur.failed == 0, ur.report() + sw.logs()
    assert elapsed <= INTERVAL + TIMEOUT + 2.5, elapsed


def test_keepalive_interval_option_ends_a_call_whose_media_process_was_killed(
    switch_proc, sipp, tmp_path
):
    """Issue 8: `softswitch media` as a process of its own takes a call diverted to
    voicemail (the device did not answer; the call holds the tenant's channel), then is
    killed mid-call. The caller gets the switch's BYE and the channel is released."""
    from .e2e_helpers import Api, operator_token
    from .test_media_calls import NUMBER, MediaProcess, media_seed

    secret, media_port = "shared-media-secret", free_port()
    config = (
        SHORT_KEEPALIVE + f'[media]\nuri = "sip:media@127.0.0.1:{media_port}"\n'
        f'secret = "{secret}"\n'
    )
    sw = switch_proc(media_seed(voicemail=True, after_hours=False), config_toml=config)
    media = MediaProcess(tmp_path / "media", sw, secret, media_port)
    api = Api(f"http://{sw.ip}:{sw.http_port}/v1", operator_token(data_dir=sw.proc.data_dir))
    try:
        phone = free_port()
        register_device(sipp, sw, DeviceSpec("dev0", "dev-password-0"), phone)
        desk = sipp("uas_noanswer", local_port=phone, calls=1, timeout_s=30).start()
        caller = carrier_call(
            sipp, sw, "uac_call_until_bye", service=NUMBER, timeout_s=60, extra=["-aa"]
        ).start()
        wait_for(lambda: active(sw) == 1, 15)  # voicemail answered after its ring time
        (call,) = api.get("/tenants/t1/active-calls").body["items"]
        assert call["answered"], call
        time.sleep(INTERVAL + 1)  # the media service answers the keep-alives while alive
        assert active(sw) == 1, sw.logs()
        os.killpg(media.proc.pid, signal.SIGKILL)
        gone = time.monotonic()
        cr = caller.wait(grace=INTERVAL + TIMEOUT + 10)
        wait_for(lambda: active(sw) == 0, INTERVAL + TIMEOUT + 5)
        elapsed = time.monotonic() - gone
        desk.stop()
    finally:
        media.stop()
    assert cr.successful == 1 and cr.failed == 0, cr.report() + sw.logs()
    assert api.get("/tenants/t1/active-calls").body["items"] == []  # channel released
    assert elapsed <= INTERVAL + TIMEOUT + 2.5, elapsed
    assert sw.metrics().get_value("sip_dialogs_ended_total", reason="keepalive") == 1
    print(f"media process killed: caller's BYE and channel released after {elapsed:.1f} s")

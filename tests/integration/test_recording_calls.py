"""Call recording end to end, against both relays: the switch (`softswitch serve`) with its own
embedded relay process, and with a real rtpengine (Debian's, userspace, pcap recording).
baresip phones play distinct tones (the caller 440 Hz, the callee 1000 Hz) and keep what they
hear; the recording is downloaded through the API and checked by ear (Goertzel per channel)
and by clock; the relays are asked what they still hold (ng `list`).

Measured and printed (pytest -s): the relay's CPU over each call, per call-minute.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers import need

from .recording_helpers import (
    CALLEE_TONE,
    CALLER_TONE,
    E164,
    NUMBER,
    OUTSIDE,
    Phones,
    Recordings,
    RelayUnderTest,
    channels,
    dump,
    heard,
    metric,
    notice_score,
    recording_seed,
    tone_of,
)
from .relay.harness import dominant, rtpengine_available

pytestmark = pytest.mark.integration

TALK = 6.0  # seconds of conversation


@pytest.fixture(autouse=True, scope="module")
def _peers() -> None:
    need(shutil.which("baresip") is not None, "baresip")


@pytest.fixture(params=["embedded", "rtpengine"])
def relay_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "rtpengine":
        need(rtpengine_available(), "rtpengine (Debian rtpengine-daemon)")
    return str(request.param)


@pytest.fixture
def phones(tmp_path: Path) -> Iterator[Phones]:
    made = Phones(tmp_path)
    yield made
    made.stop()


@pytest.fixture
def relay(relay_kind: str, tmp_path: Path) -> Iterator[RelayUnderTest]:
    started = RelayUnderTest.start(relay_kind, tmp_path)
    yield started
    started.stop()


def start_switch(switch_proc, relay: RelayUnderTest, seed: str, extra: str = ""):  # type: ignore[no-untyped-def]
    sw = switch_proc(seed, relay.config + extra)
    relay.switch_log = sw.proc.stderr_path
    return sw


def wait_registered(sw, count: int) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 15
    while sw.metrics().get_value("sip_registrations_total", code="200") < count:
        assert time.monotonic() < deadline, sw.logs()
        time.sleep(0.2)


def talk(caller, seconds: float = TALK) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Wait for the answer, talk, hang up: (answered, hung up) as time.time()."""
    caller.wait_event("CALL_ESTABLISHED", 15)
    answered = time.time()
    time.sleep(seconds)
    caller.command("hangup")
    hung_up = time.time()
    caller.wait_event("CALL_CLOSED", 10)
    return answered, hung_up


def check_recording(rec: Recordings, item: dict, lasted: float, *, left: float, right: float):  # type: ignore[no-untyped-def]
    wav = rec.audio(item["id"])
    assert len(wav) == item["size_bytes"]
    lpcm, rpcm, seconds = channels(wav)
    assert tone_of(lpcm) == left, f"left channel: {dump(item)}"
    assert tone_of(rpcm) == right, f"right channel: {dump(item)}"
    assert abs(seconds - lasted) <= 0.3, f"recording {seconds:.2f} s, call {lasted:.2f} s"
    assert abs(item["duration"] - seconds) < 0.05
    return seconds


# --------------------------------------------------------------------------- inbound
def test_inbound_call_is_recorded_and_the_caller_hears_the_notice(
    switch_proc, relay: RelayUnderTest, phones: Phones
) -> None:
    """Carrier -> recording number -> a desk phone. The WAV: the caller's tone left, the
    callee's right, as long as the call (±0.3 s). The notice: heard by the caller before the
    callee's audio, never by the callee."""
    outside = phones.outside(5060)
    sw = start_switch(switch_proc, relay, recording_seed(gw_port=outside.sip_port, notice=True))
    rec = Recordings(sw.http_port, sw.proc.data_dir)
    desk = phones.desk(0, sw.sip_port)
    wait_registered(sw, 1)
    caller = phones.caller(sw.sip_port)
    time.sleep(1.0)  # the relay process has started (a recording number exists)
    cpu0 = relay.cpu()
    caller.command("dial", f"sip:{NUMBER}@127.0.0.1:{sw.sip_port}")
    answered, hung_up = talk(caller, TALK)
    cpu = relay.cpu() - cpu0
    [item] = rec.wait(1, since=time.monotonic())
    assert (item["number"], item["direction"], item["other_party"]) == (E164, "inbound",
                                                                       "+81312345678")  # fmt: skip
    assert item["device_id"] == "dev0" and item["answered_at"] is not None
    seconds = check_recording(rec, item, hung_up - answered, left=CALLER_TONE, right=CALLEE_TONE)
    # what the caller heard: the notice first, then the callee
    caller_heard = heard(caller)
    assert notice_score(caller_heard[: 8000 * 5]) > 0.8, notice_score(caller_heard[: 8000 * 5])
    after = caller_heard[8000 * 5 :]
    assert dominant((after * 32767).astype("<i2").tobytes(), (600.0, CALLEE_TONE)) == CALLEE_TONE
    # the callee never heard the notice, and heard the caller
    callee_heard = heard(desk)
    assert notice_score(callee_heard) < 0.5, notice_score(callee_heard)
    tone = (callee_heard * 32767).astype("<i2").tobytes()
    assert dominant(tone, (CALLER_TONE, CALLEE_TONE)) == CALLER_TONE
    assert relay.list_calls() == []  # nothing left at the relay
    assert metric(sw, "recordings_written_total") == 1
    assert metric(sw, "relay_sessions_active") == 0
    # both parties' 6 s of 20 ms packets went through the relay (counted at the delete)
    assert metric(sw, "relay_packets_total") >= 2 * TALK * 50 * 0.9, sw.metrics()
    assert metric(sw, "relay_ng_request_seconds_count", command="offer") == 1
    print(f"\n{relay.kind}: {seconds:.2f} s recorded for a {hung_up - answered:.2f} s call; "
          f"relay CPU {cpu:.3f} s ({cpu / (seconds / 60):.3f} CPU-s per call-minute)")  # fmt: skip


# --------------------------------------------------------------------------- outbound
def test_outbound_call_presenting_the_number_is_recorded(
    switch_proc, relay: RelayUnderTest, phones: Phones
) -> None:
    outside = phones.outside(5060)
    sw = start_switch(switch_proc, relay, recording_seed(gw_port=outside.sip_port))
    rec = Recordings(sw.http_port, sw.proc.data_dir)
    desk = phones.desk(0, sw.sip_port, freq=CALLER_TONE, answer=False)
    wait_registered(sw, 1)
    desk.command("dial", f"sip:{OUTSIDE}@127.0.0.1:{sw.sip_port}")
    answered, hung_up = talk(desk, TALK)
    [item] = rec.wait(1, since=time.monotonic())
    assert (item["direction"], item["other_party"], item["device_id"]) == (
        "outbound", "+81311112222", "dev0",
    )  # fmt: skip
    check_recording(rec, item, hung_up - answered, left=CALLER_TONE, right=CALLEE_TONE)
    assert notice_score(heard(desk)) < 0.5  # no notice on outbound calls
    assert relay.list_calls() == []


# --------------------------------------------------------------------------- not recorded
def test_a_forwarded_call_is_neither_recorded_nor_relayed(
    switch_proc, relay: RelayUnderTest, phones: Phones
) -> None:
    outside = phones.outside(5060)
    seed = recording_seed(gw_port=outside.sip_port, forwarding=True)
    sw = start_switch(switch_proc, relay, seed)
    rec = Recordings(sw.http_port, sw.proc.data_dir)
    caller = phones.caller(sw.sip_port)
    caller.command("dial", f"sip:{NUMBER}@127.0.0.1:{sw.sip_port}")
    caller.wait_event("CALL_ESTABLISHED", 15)
    time.sleep(2.0)
    if relay.kind == "rtpengine":
        assert relay.list_calls() == []  # no relay session while the call runs
    caller.command("hangup")
    caller.wait_event("CALL_CLOSED", 10)
    time.sleep(6.0)  # a scan of the keeper
    assert rec.list() == []
    assert metric(sw, "relay_ng_requests_total") == 0
    assert metric(sw, "routing_decisions_total", rule="inbound-forwarding") == 1, sw.logs()
    # media went end to end: the outside phone heard the caller
    tone = (heard(outside) * 32767).astype("<i2").tobytes()
    assert dominant(tone, (CALLER_TONE, CALLEE_TONE)) == CALLER_TONE


# --------------------------------------------------------------------------- forking
def test_forked_call_one_recording_and_no_leaked_branch(
    switch_proc, relay: RelayUnderTest, phones: Phones
) -> None:
    """Two desk phones ring; one answers, the other (which never answers) is cancelled:
    one recording, the cancelled branch's relay side deleted, nothing left at the end."""
    outside = phones.outside(5060)
    sw = start_switch(switch_proc, relay, recording_seed(gw_port=outside.sip_port, devices=2))
    rec = Recordings(sw.http_port, sw.proc.data_dir)
    phones.desk(0, sw.sip_port, answer=False)  # rings, never answers
    phones.desk(1, sw.sip_port, freq=CALLEE_TONE)
    wait_registered(sw, 2)
    caller = phones.caller(sw.sip_port)
    caller.command("dial", f"sip:{NUMBER}@127.0.0.1:{sw.sip_port}")
    answered, hung_up = talk(caller, 4.0)
    [item] = rec.wait(1, since=time.monotonic())
    assert item["device_id"] == "dev1"
    check_recording(rec, item, hung_up - answered, left=CALLER_TONE, right=CALLEE_TONE)
    deletes = metric(sw, "relay_ng_requests_total", command="delete")
    assert deletes == 2, sw.metrics()  # the cancelled branch, then the call
    assert metric(sw, "relay_ng_requests_total", command="offer") == 2
    assert relay.list_calls() == []
    time.sleep(2.0)
    assert len(rec.list()) == 1


# --------------------------------------------------------------------------- faults
@pytest.mark.parametrize("fault", ["closed", "silent"])
def test_unreachable_relay_the_call_connects_unrecorded(
    switch_proc, phones: Phones, tmp_path: Path, fault: str
) -> None:
    """Nothing listens on the relay's port (ICMP port unreachable: the call goes on at
    once), or something does and never answers (the ng timeout, 1 s, delays the call)."""
    import socket

    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))
    dead = holder.getsockname()[1]
    if fault == "closed":
        holder.close()  # nothing listens there
    config = f'[media]\nrelay = "udp:127.0.0.1:{dead}"\n'
    relay = RelayUnderTest("rtpengine", tmp_path, None, config)
    outside = phones.outside(5060)
    sw = start_switch(switch_proc, relay, recording_seed(gw_port=outside.sip_port))
    rec = Recordings(sw.http_port, sw.proc.data_dir)
    phones.desk(0, sw.sip_port)
    wait_registered(sw, 1)
    caller = phones.caller(sw.sip_port)
    started = time.monotonic()
    caller.command("dial", f"sip:{NUMBER}@127.0.0.1:{sw.sip_port}")
    caller.wait_event("CALL_ESTABLISHED", 15)
    setup = time.monotonic() - started
    time.sleep(2.0)
    caller.command("hangup")
    caller.wait_event("CALL_CLOSED", 10)
    tone = (heard(caller) * 32767).astype("<i2").tobytes()
    assert dominant(tone, (CALLER_TONE, CALLEE_TONE)) == CALLEE_TONE  # media end to end
    holder.close()
    assert metric(sw, "relay_fallbacks_total", step="offer") == 1
    kind = "unreachable" if fault == "closed" else "timeout"
    assert metric(sw, "relay_errors_total", kind=kind) >= 1
    assert "relay offer failed" in sw.logs()
    assert rec.list() == []
    assert setup < (1.0 if fault == "closed" else 3.0)
    print(f"\nrelay {fault}: call set up in {setup:.2f} s, connected unrecorded")


def test_the_relay_process_is_restarted_when_it_dies(
    switch_proc, phones: Phones, tmp_path: Path
) -> None:
    """kill -9 of the switch's relay process: the switch starts it again on the same ng port
    and the next recorded call is recorded."""
    import os
    import signal

    relay = RelayUnderTest.start("embedded", tmp_path)
    outside = phones.outside(5060)
    sw = start_switch(switch_proc, relay, recording_seed(gw_port=outside.sip_port))
    rec = Recordings(sw.http_port, sw.proc.data_dir)
    phones.desk(0, sw.sip_port)
    wait_registered(sw, 1)
    old_pid, ng = relay.pid(), relay.ng()
    os.kill(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while relay.pid() == old_pid:
        assert time.monotonic() < deadline, sw.logs()
        time.sleep(0.2)
    assert relay.ng() == ng
    caller = phones.caller(sw.sip_port)
    caller.command("dial", f"sip:{NUMBER}@127.0.0.1:{sw.sip_port}")
    answered, hung_up = talk(caller, 3.0)
    [item] = rec.wait(1, since=time.monotonic())
    check_recording(rec, item, hung_up - answered, left=CALLER_TONE, right=CALLEE_TONE)
    assert "relay process exited" in sw.logs()


def test_a_callee_killed_mid_call_ends_at_lease_expiry(
    switch_proc, relay: RelayUnderTest, phones: Phones
) -> None:
    """The callee's phone dies without a BYE; the caller keeps talking. The channel lease
    (TTL 8 s here) expires, which deletes the relay session: the recording is closed and
    registered, about 8 s long."""
    outside = phones.outside(5060)
    proxy = "\n[proxy]\nchannel_ttl = 8.0\nlease_sweep = 1.0\n"
    sw = start_switch(switch_proc, relay, recording_seed(gw_port=outside.sip_port), proxy)
    rec = Recordings(sw.http_port, sw.proc.data_dir)
    desk = phones.desk(0, sw.sip_port)
    wait_registered(sw, 1)
    caller = phones.caller(sw.sip_port)
    caller.command("dial", f"sip:{NUMBER}@127.0.0.1:{sw.sip_port}")
    caller.wait_event("CALL_ESTABLISHED", 15)
    time.sleep(3.0)
    desk.proc.kill()
    [item] = rec.wait(1, since=time.monotonic(), deadline=40)
    assert 7.0 < item["duration"] < 10.5, dump(item)
    left, right, _ = channels(rec.audio(item["id"]))
    assert tone_of(left) == CALLER_TONE
    assert tone_of(right[: 8000 * 2]) == CALLEE_TONE  # the callee, while it lived
    assert relay.list_calls() == []
    caller.command("hangup")


def test_rtpengine_restarted_between_calls(switch_proc, phones: Phones, tmp_path: Path) -> None:
    """rtpengine restarts (its calls die with it: it keeps them in memory); the switch goes
    on: the call in progress ends normally (its audio stopped with rtpengine), the next call
    is anchored and recorded."""
    need(rtpengine_available(), "rtpengine (Debian rtpengine-daemon)")
    relay = RelayUnderTest.start("rtpengine", tmp_path)
    try:
        outside = phones.outside(5060)
        sw = start_switch(switch_proc, relay, recording_seed(gw_port=outside.sip_port))
        rec = Recordings(sw.http_port, sw.proc.data_dir)
        phones.desk(0, sw.sip_port)
        wait_registered(sw, 1)
        first = phones.caller(sw.sip_port)
        first.command("dial", f"sip:{NUMBER}@127.0.0.1:{sw.sip_port}")
        first.wait_event("CALL_ESTABLISHED", 15)
        time.sleep(1.5)
        assert relay.rtpengine is not None
        relay.rtpengine.restart()
        time.sleep(1.0)
        first.command("hangup")
        first.wait_event("CALL_CLOSED", 10)
        first.events.clear()  # the same phone calls again
        first.command("dial", f"sip:{NUMBER}@127.0.0.1:{sw.sip_port}")
        answered, hung_up = talk(first, 3.0)
        items = rec.wait(1, since=time.monotonic())
        newest = items[0]
        check_recording(rec, newest, hung_up - answered, left=CALLER_TONE, right=CALLEE_TONE)
        assert relay.list_calls() == []
        assert sw.alive() and "Traceback" not in sw.logs()
        # the call rtpengine lost is not converted yet: its pcap is an orphan (converted
        # 4 h 10 min after its last packet, media/relay/pcap.py), never a wrong recording
        time.sleep(6.0)
        assert [i["id"] for i in rec.list()] == [newest["id"]]
        assert list((relay.rtpengine.spool / "pcaps").glob("*.pcap"))
    finally:
        relay.stop()

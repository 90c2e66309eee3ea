"""What callers hear, end to end on the switch's defaults (the embedded media service, the
SQLite store): a carrier call reaches an after-hours slot, every channel in use, or
voicemail, through the real proxy, answered by the real media user agent, with real audio
checked in what the phone recorded.

Peers: baresip (records what it hears with the sndfile module) and SIPp (plays sip-tester's
g711a.pcap and RFC 4733 digits). The carrier is whoever sends from CARRIER_IP."""

from __future__ import annotations

import shutil
import time
import wave

import numpy as np
import pytest

from media.prompts import default_library
from tests.peers import need

from .audio import best_match, read_wav, resample, rms, tone_wav
from .baresip_helpers import Baresip
from .harness import CARRIER_IP, REALM, DeviceSpec, tail

pytestmark = pytest.mark.integration

NUMBER = "0355500100"
E164 = "+81355500100"
CALLER = "0312345678"
ALL_DAY = "A" * 48


def media_seed(*, voicemail: bool, after_hours: bool, announcement: str = "template-2",
               devices: int = 1) -> str:  # fmt: skip
    """One tenant, one number; after-hours (when on) announces in every slot of every day."""
    options = f"voicemail = {str(voicemail).lower()}, after_hours = {str(after_hours).lower()}"
    lines = [
        f'realm = "{REALM}"',
        "[[gateways]]",
        'id = "carrier"',
        'host = "127.0.0.3"',
        "port = 5060",
        'transport = "udp"',
        f'allowed_sources = ["{CARRIER_IP}"]',
        "[[tenants]]",
        'id = "t1"',
        'timezone = "Asia/Tokyo"',
        "identity_verified = true",
    ]
    for i in range(devices):
        lines += [
            "  [[tenants.devices]]",
            f'  id = "dev{i}"',
            '  kind = "desk"',
            f'  password = "dev-password-{i}"',
            f'  presented_number = "{NUMBER}"',
        ]
    lines += [
        "  [[tenants.numbers]]",
        f'  number = "{NUMBER}"',
        '  kind = "contract"',
        f"  options = {{ {options} }}",
    ]
    if voicemail:
        lines.append("  voicemail_ring_time = 5")
    if after_hours:
        lines += [
            "  [tenants.numbers.after_hours]",
            "  enabled = true",
            f'  announcement = "{announcement}"',
            *(f'  {day} = "{ALL_DAY}"' for day in ("weekday", "saturday", "sunday", "holiday")),
        ]
    return "\n".join(lines) + "\n"


@pytest.fixture(autouse=True, scope="module")
def _peers() -> None:
    need(shutil.which("baresip") is not None, "baresip")
    need(shutil.which("sipp") is not None, "sipp")


@pytest.fixture
def phones(tmp_path):
    made: list[Baresip] = []

    def make(*a, **kw) -> Baresip:
        b = Baresip(tmp_path, *a, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


def carrier_phone(phones, sw, tmp_path, caller: str = CALLER) -> Baresip:
    """A baresip on the carrier's address that records what it hears (no registration: the
    carrier is trusted by address). Its microphone is 40 s of a quiet 300 Hz tone: baresip
    hangs up when its audio file ends."""
    mic = tone_wav(tmp_path / f"mic-{caller}.wav", 300, 40, level=0.01)
    return phones(
        DeviceSpec(caller, "unused-password"), sw.sip_port, auto_answer=False,
        local_ip=CARRIER_IP, register=False, record=True, source_wav=mic,
    )  # fmt: skip


def heard_audio(phone: Baresip) -> np.ndarray:
    files = phone.heard()
    assert files, f"baresip recorded nothing\n{tail(phone.log, 3000)}"
    data, rate, _ = read_wav(files[-1])
    return resample(data[:, 0], rate, 8000)


def prompt_audio(name: str, seconds: float = 5.0) -> np.ndarray:
    """`seconds` of a prompt from 0.5 s in: the excerpt looked for in what a phone heard
    (the phone's recording may start a packet late or end a packet early)."""
    pcm = default_library().pcm(name)
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0
    return x[4000 : 4000 + int(seconds * 8000)]


def test_after_hours_caller_hears_the_announcement_then_the_call_ends(
    switch_proc, phones, tmp_path
):
    sw = switch_proc(media_seed(voicemail=False, after_hours=True, announcement="template-2"))
    phone = carrier_phone(phones, sw, tmp_path)
    phone.connect()
    phone.command("dial", f"sip:{NUMBER}@127.0.0.1:{sw.sip_port}")
    phone.wait_event("CALL_ESTABLISHED", 10)
    phone.wait_event("CALL_CLOSED", 20)  # the media service hangs up after the prompt
    heard = heard_audio(phone)
    prompt = prompt_audio("template-2")
    score, offset = best_match(heard, prompt)
    assert score > 0.8, f"the announcement is not in what the caller heard (score {score:.2f})"
    assert rms(heard[offset : offset + len(prompt)]) > 0.01
    m = sw.metrics()
    assert m.get_value("routing_decisions_total", rule="after-hours-announce") == 1
    assert m.get_value("media_sessions_total", service="announce") == 1
    assert m.get_value("media_prompt_plays_total", prompt="template-2") == 1


def test_voicemail_deposit_from_a_sipp_caller_is_stored_whole(switch_proc, sipp):
    """SIPp plays sip-tester's g711a.pcap after the greeting and the beep, then presses #:
    the media service stores the message and hangs up."""
    sw = switch_proc(media_seed(voicemail=True, after_hours=False, devices=1))
    lib = default_library()
    wait_ms = int((lib.seconds("voicemail-greeting") + lib.seconds("beep") + 0.4) * 1000)
    res = sipp(
        "media/uac_voicemail.xml", remote=sw.udp, local_ip=CARRIER_IP, service=NUMBER,
        keys={"caller": CALLER}, extra=["-d", str(wait_ms)], timeout_s=40,
    ).run()  # fmt: skip
    assert res.returncode == 0 and res.successful == 1, res.report() + sw.logs()
    m = sw.metrics()
    assert m.get_value("voicemail_messages_total", event="stored") == 1, sw.logs()
    assert m.get_value("media_sessions_total", service="voicemail") == 1


def _wav_seconds(path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def test_busy_message_is_early_media_and_the_call_is_never_answered(switch_proc, phones, tmp_path):
    """Every channel in use and no voicemail: 183 with SDP, the fixed busy message, then 486.
    One ID = one channel; a first call holds it (an answered internal leg is not enough:
    routing counts leases), so the test fills the channel with a call to a device that
    answers and then calls in again."""
    sw = switch_proc(media_seed(voicemail=False, after_hours=False, devices=1))
    desk = phones(DeviceSpec("dev0", "dev-password-0"), sw.sip_port, auto_answer=True)
    desk.connect()
    deadline = time.monotonic() + 10
    while sw.metrics().get_value("sip_registrations_total", code="200") < 1:
        assert time.monotonic() < deadline, sw.logs()
        time.sleep(0.2)
    first = carrier_phone(phones, sw, tmp_path)
    first.connect()
    first.command("dial", f"sip:{NUMBER}@127.0.0.1:{sw.sip_port}")
    first.wait_event("CALL_ESTABLISHED", 10)  # the tenant's only channel is now in use
    second = carrier_phone(phones, sw, tmp_path, caller="0399999999")
    second.connect()
    second.command("dial", f"sip:{NUMBER}@127.0.0.1:{sw.sip_port}")
    closed = second.wait_event("CALL_CLOSED", 20)
    assert not any(e.get("type") == "CALL_ESTABLISHED" for e in second.events), second.events
    assert "486" in str(closed.get("param", "")) or "Busy" in str(closed), closed
    score, _ = best_match(heard_audio(second), prompt_audio("busy"))
    assert score > 0.8, f"the busy message is not in what the caller heard ({score:.2f})"
    m = sw.metrics()
    assert m.get_value("media_sessions_total", service="busy") == 1
    first.command("hangup")

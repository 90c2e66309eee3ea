"""What callers hear, end to end on the switch's defaults (the embedded media service, the
SQLite store): a carrier call reaches an after-hours slot, every channel in use, or
voicemail, through the real proxy, answered by the real media user agent, with real audio
checked in what the phone recorded.

Peers: baresip (records what it hears with the sndfile module) and SIPp (plays sip-tester's
g711a.pcap and RFC 4733 digits). The carrier is whoever sends from CARRIER_IP."""

from __future__ import annotations

import io
import shutil
import time
import urllib.request
import wave
from pathlib import Path

import numpy as np
import pytest

from media.g711 import Codec, decode
from media.prompts import default_library
from tests.peers import need

from .audio import best_match, goertzel, pcap_rtp_payloads, read_wav, resample, rms, tone_wav
from .baresip_helpers import Baresip
from .e2e_helpers import Api, operator_token
from .harness import CARRIER_IP, REALM, DeviceSpec, tail

pytestmark = pytest.mark.integration

NUMBER = "0355500100"
E164 = "+81355500100"
CALLER = "0312345678"
ALL_DAY = "A" * 48
G711A_PCAP = "/usr/share/sip-tester/g711a.pcap"


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
    # The message, downloaded through the API, is the pcap's audio: its length (±0.2 s) and
    # its samples (the A-law payloads decoded).
    api = Api(f"http://127.0.0.1:{sw.http_port}/v1", operator_token(data_dir=sw.proc.data_dir))
    base = f"/tenants/t1/numbers/{NUMBER}/voicemail/messages"
    listed = api.get(base)
    assert listed.status == 200, listed
    (item,) = listed.body["items"]
    assert item["caller"] == CALLER and item["heard"] is False
    wav = urllib.request.urlopen(
        urllib.request.Request(
            f"{api.base}{base}/{item['id']}/audio",
            headers={"Authorization": f"Bearer {api.token}"},
        ),
        timeout=10,
    ).read()
    with wave.open(io.BytesIO(wav)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        got = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    sent = np.frombuffer(
        decode(Codec.PCMA, b"".join(pcap_rtp_payloads(Path(G711A_PCAP)))), dtype="<i2"
    )
    assert abs(len(got) - len(sent)) / 8000 <= 0.2, (len(got) / 8000, len(sent) / 8000)
    # align on the first loud 20 ms of speech (the pcap starts with silence, which would
    # match anywhere), then compare everything from the start of the pcap
    loud = int(np.argmax(np.abs(sent.astype(np.int32)) > 2000))
    found = _find(got, sent[loud : loud + 160])
    assert found is not None, "the pcap's speech is not in the message"
    start = found - loud
    assert abs(start) <= 1600, f"the message starts {start / 8000:.2f} s away from the pcap"
    lo = max(0, -start)
    n = min(len(sent) - lo, len(got) - (start + lo))
    same = np.count_nonzero(got[start + lo : start + lo + n] == sent[lo : lo + n]) / n
    assert same > 0.99, f"only {same:.1%} of the samples match the pcap"


def _find(haystack: np.ndarray, needle: np.ndarray) -> int | None:
    for i in range(len(haystack) - len(needle) + 1):
        if haystack[i] == needle[0] and np.array_equal(haystack[i : i + len(needle)], needle):
            return i
    return None


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


def _sipp_caller(sipp, sw, scenario: str, wait_s: float, **kw):
    return sipp(
        f"media/{scenario}.xml", remote=sw.udp, local_ip=CARRIER_IP, service=NUMBER,
        keys={"caller": CALLER}, extra=["-d", str(int(wait_s * 1000))], timeout_s=45, **kw,
    ).run()  # fmt: skip


def _stored_messages(sw) -> list[object]:
    """The messages in the switch's store, read with the store's own repository (the switch
    keeps its SQLite file under its data directory; WAL lets two processes share it)."""
    import asyncio

    from provisioning.services.voicemail import VoicemailRepo
    from provisioning.store import open_store

    async def read() -> list[object]:
        store = await open_store(f"sqlite:///{sw.proc.data_dir / 'softswitch.db'}")
        try:
            return list(await VoicemailRepo(store).messages("t1", (E164,)))
        finally:
            await store.close()

    return asyncio.run(read())


def test_announcement_then_voicemail_records_after_the_announcement(switch_proc, sipp):
    """After-hours with voicemail: the announcement is the greeting, then the beep and the
    recording (service rule)."""
    sw = switch_proc(media_seed(voicemail=True, after_hours=True, announcement="template-3"))
    lib = default_library()
    res = _sipp_caller(
        sipp, sw, "uac_voicemail", lib.seconds("template-3") + lib.seconds("beep") + 0.4
    )
    assert res.returncode == 0 and res.successful == 1, res.report() + sw.logs()
    (msg,) = _stored_messages(sw)
    assert 6.85 < msg.duration < 7.3, msg  # g711a.pcap is 7.05 s
    assert msg.caller == CALLER and msg.dialled == E164
    m = sw.metrics()
    assert m.get_value("media_sessions_total", service="announce") == 1
    assert m.get_value("media_prompt_plays_total", prompt="voicemail-greeting") == 0


def test_the_sixteenth_caller_hears_mailbox_full_and_nothing_is_stored(switch_proc, sipp):
    import asyncio
    from datetime import UTC, datetime

    from provisioning.records import NewMessage
    from provisioning.services.voicemail import VoicemailRepo
    from provisioning.store import open_store

    sw = switch_proc(media_seed(voicemail=True, after_hours=False))

    async def fill() -> None:
        store = await open_store(f"sqlite:///{sw.proc.data_dir / 'softswitch.db'}")
        repo = VoicemailRepo(store)
        for i in range(15):
            msg = NewMessage(
                tenant_id="t1", mailbox=E164, caller=f"03000000{i:02d}", dialled=E164,
                received_at=datetime.now(UTC), pcm=bytes(16000 * 2),
            )  # fmt: skip
            assert await repo.save(msg, 15)
        await store.close()

    asyncio.run(fill())
    res = _sipp_caller(sipp, sw, "uac_listen", 0)  # the media service hangs up after the message
    assert res.returncode == 0 and res.successful == 1, res.report() + sw.logs()
    assert len(_stored_messages(sw)) == 15
    m = sw.metrics()
    assert m.get_value("voicemail_messages_total", event="mailbox_full") == 1
    assert m.get_value("media_prompt_plays_total", prompt="mailbox-full") == 1
    assert m.get_value("voicemail_messages_total", event="stored") == 0


def test_a_message_shorter_than_one_second_is_not_kept(switch_proc, sipp):
    sw = switch_proc(media_seed(voicemail=True, after_hours=False))
    lib = default_library()
    # hang up 0.5 s into the recording
    wait = lib.seconds("voicemail-greeting") + lib.seconds("beep") + 0.5
    res = _sipp_caller(sipp, sw, "uac_hangup_early", wait)
    assert res.returncode == 0 and res.successful == 1, res.report() + sw.logs()
    time.sleep(0.5)
    assert _stored_messages(sw) == []
    m = sw.metrics()
    assert m.get_value("voicemail_messages_total", event="too_short") == 1


def test_caller_hanging_up_mid_greeting_ends_cleanly(switch_proc, sipp):
    sw = switch_proc(media_seed(voicemail=True, after_hours=False))
    res = _sipp_caller(sipp, sw, "uac_hangup_early", 2.0)
    assert res.returncode == 0 and res.successful == 1, res.report() + sw.logs()
    time.sleep(0.5)
    assert _stored_messages(sw) == []
    m = sw.metrics()
    assert m.get_value("media_sessions_active", service="voicemail") == 0
    assert m.total("sip_internal_errors_total") == 0
    assert "Traceback" not in sw.logs()


def test_an_offer_with_no_common_codec_gets_488(switch_proc, sipp):
    sw = switch_proc(media_seed(voicemail=True, after_hours=False))
    res = _sipp_caller(sipp, sw, "uac_no_common_codec", 0)
    assert res.returncode == 0 and res.successful == 1, res.report() + sw.logs()
    m = sw.metrics()
    assert m.get_value("media_handoffs_refused_total", status="488") == 1, sw.logs()


def test_a_forged_hand_off_straight_to_the_media_port_is_refused(switch_proc):
    """Only the proxy may hand calls over: a request to the media address with a made-up
    voicemail URI is refused (source check, then the signature) and nothing is recorded."""
    import re
    import socket

    sw = switch_proc(media_seed(voicemail=True, after_hours=False))
    m = re.search(r"Media listening on sip:media@([\d.]+):(\d+)", sw.logs())
    assert m, sw.logs()
    media = (m.group(1), int(m.group(2)))
    for source in ("127.0.0.1", CARRIER_IP):  # an allowed address without a signature too
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((source, 0))
            s.settimeout(3)
            port = s.getsockname()[1]
            s.sendto(
                (
                    f"INVITE sip:voicemail@{media[0]}:{media[1]};mailbox=%2B81355500100;"
                    f"tenant=t1;target=%2B81355500100;cause=408 SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP {source}:{port};branch=z9hG4bK-forged-{port}\r\n"
                    f"From: <sip:x@{source}>;tag=f\r\nTo: <sip:voicemail@{media[0]}>\r\n"
                    f"Call-ID: forged-{port}\r\nCSeq: 1 INVITE\r\n"
                    f"Contact: <sip:x@{source}:{port}>\r\nMax-Forwards: 70\r\n"
                    "Content-Length: 0\r\n\r\n"
                ).encode(),
                media,
            )
            statuses = []
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                try:
                    data = s.recv(65535)
                except TimeoutError:
                    break
                statuses.append(int(data.split(b" ", 2)[1]))
                if statuses[-1] >= 200:
                    break
            assert statuses and statuses[-1] == 403, statuses
    metrics = sw.metrics()
    assert metrics.get_value("media_sessions_total", service="voicemail") == 0


def _deposit(sw, *, pcm: bytes, caller: str = "0311112222") -> str:
    """A message put into the switch's store through the media side's own entry point."""
    import asyncio
    from datetime import UTC, datetime

    from provisioning.records import NewMessage
    from provisioning.services.voicemail import VoicemailRepo
    from provisioning.store import open_store

    async def save() -> str:
        store = await open_store(f"sqlite:///{sw.proc.data_dir / 'softswitch.db'}")
        try:
            msg = NewMessage(
                tenant_id="t1", mailbox=E164, caller=caller, dialled=E164,
                received_at=datetime.now(UTC), pcm=pcm,
            )  # fmt: skip
            saved = await VoicemailRepo(store).save(msg, 15)
            assert saved is not None
            return saved
        finally:
            await store.close()

    return asyncio.run(save())


def _tone_pcm(freq: float, seconds: float) -> bytes:
    t = np.arange(int(seconds * 8000)) / 8000
    return (0.4 * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def _registered(sw, count: int) -> None:
    deadline = time.monotonic() + 10
    while sw.metrics().get_value("sip_registrations_total", code="200") < count:
        assert time.monotonic() < deadline, sw.logs()
        time.sleep(0.2)


def test_a_desk_phone_listens_to_its_voicemail_with_rfc4733_digits(switch_proc, phones, tmp_path):
    """baresip registered as the number's desk phone dials 1417, presses 1 (RFC 4733), hears
    the message (a 1 kHz tone deposited before), and ends with #: the message is now heard."""
    sw = switch_proc(media_seed(voicemail=True, after_hours=False))
    message_id = _deposit(sw, pcm=_tone_pcm(1000, 2.0))
    mic = tone_wav(tmp_path / "desk-mic.wav", 300, 40, level=0.01)  # baresip ends at its EOF
    desk = phones(
        DeviceSpec("dev0", "dev-password-0"), sw.sip_port, auto_answer=False, record=True,
        source_wav=mic,
    )  # fmt: skip
    desk.connect()
    _registered(sw, 1)
    desk.command("dial", f"sip:1417@127.0.0.1:{sw.sip_port}")
    desk.wait_event("CALL_ESTABLISHED", 10)
    time.sleep(1.0)
    desk.command("sndcode", "1")  # listen
    lib = default_library()
    # the header (about 10 s of "1件目のメッセージです。受信日時は…") then the 2 s message
    time.sleep(16.0)
    desk.command("sndcode", "#")
    desk.wait_event("CALL_CLOSED", 20)
    heard = heard_audio(desk)
    window = 8000 // 5  # 200 ms
    tone_windows = [
        i for i in range(0, len(heard) - window, window)
        if goertzel(heard[i : i + window], 8000, 1000) > 0.3  # a pure tone gives 0.5
    ]  # fmt: skip
    assert len(tone_windows) >= 6, "the 2 s message (1 kHz) was not heard"
    api = Api(f"http://127.0.0.1:{sw.http_port}/v1", operator_token(data_dir=sw.proc.data_dir))
    got = api.get(f"/tenants/t1/numbers/{NUMBER}/voicemail/messages/{message_id}")
    assert got.status == 200 and got.body["heard"] is True, got
    m = sw.metrics()
    assert m.get_value("routing_decisions_total", rule="voicemail-menu") == 1
    assert m.get_value("media_dtmf_total", digit="1") >= 1
    assert lib.seconds("vm-main-menu") > 0


def test_a_phone_sending_sip_info_digits_deletes_a_message(switch_proc, sipp):
    sw = switch_proc(media_seed(voicemail=True, after_hours=False))
    _deposit(sw, pcm=_tone_pcm(440, 1.5))
    res = sipp(
        "media/uac_menu_info.xml", remote=sw.udp, service="1417",
        auth=("dev0", "dev-password-0"), keys={"caller": "dev0"}, extra=["-d", "4000"],
        timeout_s=60,
    ).run()  # fmt: skip
    assert res.returncode == 0 and res.successful == 1, res.report() + sw.logs()
    assert _stored_messages(sw) == []
    m = sw.metrics()
    assert m.get_value("voicemail_messages_total", event="deleted") == 1
    assert m.get_value("media_dtmf_total", digit="7") == 1


# --------------------------------------------------------------------------- MWI
def _leave_voicemail(sipp, sw) -> None:
    lib = default_library()
    wait = lib.seconds("voicemail-greeting") + lib.seconds("beep") + 0.4
    res = _sipp_caller(sipp, sw, "uac_voicemail", wait)
    assert res.returncode == 0 and res.successful == 1, res.report() + sw.logs()


def test_unsolicited_mwi_reaches_a_registered_sipp_phone(switch_proc, sipp):
    """A phone that never subscribes is told on registering (0/0) and when a message is left
    (1/0), by NOTIFYs on its registration flow: SIPp registers from a port, then a SIPp UAS
    on that port takes the NOTIFYs."""
    from .harness import free_port

    sw = switch_proc(media_seed(voicemail=True, after_hours=False))
    port = free_port()
    reg = sipp(
        "register", remote=sw.udp, local_port=port, credentials=[("dev0", "dev-password-0")],
        keys={"expires": "300"}, timeout_s=10,
    ).run()  # fmt: skip
    assert reg.returncode == 0 and reg.successful == 1, reg.report()
    # the NOTIFY sent on registering is retransmitted until answered: the UAS takes it;
    # the voicemail call rings the phone first, which refuses it (486: voicemail at once)
    phone = sipp("media/uas_mwi.xml", local_port=port, calls=3, timeout_s=60).start()
    deadline = time.monotonic() + 10
    while sw.metrics().get_value("mwi_notifications_total", kind="unsolicited") < 1:
        assert time.monotonic() < deadline, sw.logs()
        time.sleep(0.2)
    _leave_voicemail(sipp, sw)
    res = phone.wait(grace=20)
    assert res.returncode == 0 and res.successful == 3, res.report() + sw.logs()
    log = res.messages()
    assert "Voice-Message: 0/0" in log and "Messages-Waiting: yes" in log, log
    assert "Voice-Message: 1/0" in log, log
    assert sw.metrics().get_value("mwi_notifications_total", kind="unsolicited") >= 2


def test_a_subscribed_baresip_hears_message_waiting(switch_proc, phones, sipp, tmp_path):
    """baresip's mwi module SUBSCRIBEs to message-summary: the switch answers, NOTIFYs the
    current state at once, and again when a message is left."""
    sw = switch_proc(media_seed(voicemail=True, after_hours=False))
    mic = tone_wav(tmp_path / "mic.wav", 300, 40, level=0.01)
    desk = phones(
        DeviceSpec("dev0", "dev-password-0"), sw.sip_port, auto_answer=False,
        source_wav=mic, extra_modules=["mwi.so"],
    )  # fmt: skip
    desk.connect()
    deadline = time.monotonic() + 10
    while sw.metrics().get_value("mwi_subscriptions_active") < 1:
        assert time.monotonic() < deadline, sw.logs() + tail(desk.log, 4000)
        time.sleep(0.2)
    _leave_voicemail(sipp, sw)
    deadline = time.monotonic() + 10
    while "Voice-Message: 1/0" not in desk.log.read_text(errors="replace"):
        assert time.monotonic() < deadline, "no NOTIFY with 1/0\n" + tail(desk.log, 6000)
        time.sleep(0.2)
    trace = desk.log.read_text(errors="replace")
    assert "Voice-Message: 0/0" in trace  # the immediate NOTIFY after the SUBSCRIBE
    assert "Messages-Waiting: yes" in trace
    assert sw.metrics().get_value("mwi_notifications_total", kind="subscribed") >= 2


# --------------------------------------------------------------------------- media apart
class MediaProcess:
    """`softswitch media` on its own, on the switch's store, with the switch's secret."""

    def __init__(self, workdir, sw, secret: str, port: int) -> None:
        import subprocess

        from .harness import REPO

        self.port = port
        workdir.mkdir(parents=True, exist_ok=True)
        cfg = workdir / "media.toml"
        cfg.write_text(f'[media]\nsecret = "{secret}"\nrtp_ports = "31000-31999"\n')
        self.log = workdir / "media.log"
        python = str(REPO / ".venv" / "bin" / "python")
        db = f"sqlite:///{sw.proc.data_dir / 'softswitch.db'}"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [python, "-m", "switch", "media", "--config", str(cfg), "--listen",
                 f"127.0.0.1:{port}", "--http", "off", "--data", str(workdir / "data"),
                 "--database", db],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 15
        while "Media listening" not in self.log.read_text(errors="replace"):
            assert self.proc.poll() is None and time.monotonic() < deadline, tail(self.log)
            time.sleep(0.1)

    def stop(self) -> None:
        from .harness import stop_process

        stop_process(self.proc)


def test_calls_fail_over_from_a_dead_media_service_to_a_live_one(switch_proc, sipp, tmp_path):
    """Two media services configured, one of them dead (a socket that takes the hand-offs
    and never answers): the proxy gives a silent one up after 1 s and the other plays the
    announcement; every call is served."""
    import socket

    from .harness import free_port

    secret = "shared-media-secret"
    dead, live = free_port(), free_port()
    config = (
        f'[media]\nuri = ["sip:media@127.0.0.1:{dead}", "sip:media@127.0.0.1:{live}"]\n'
        f'secret = "{secret}"\n'
    )
    sw = switch_proc(
        media_seed(voicemail=False, after_hours=True, announcement="template-1"),
        config_toml=config,
    )
    media = MediaProcess(tmp_path / "media", sw, secret, live)
    black_hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    black_hole.bind(("127.0.0.1", dead))
    black_hole.settimeout(0.1)
    try:
        res = sipp(
            "media/uac_listen.xml", remote=sw.udp, local_ip=CARRIER_IP, service=NUMBER,
            keys={"caller": CALLER}, calls=12, rate=3, timeout_s=60,
        ).run()  # fmt: skip
        swallowed = 0
        while True:
            try:
                data = black_hole.recv(65535)
            except TimeoutError:
                break
            swallowed += data.startswith(b"INVITE ")
    finally:
        black_hole.close()
        media.stop()
    assert res.returncode == 0 and res.successful == 12, res.report() + sw.logs()
    # each call's share is a hash of its Call-ID: with 12 calls, the chance that none starts
    # on the dead service is 1 in 4096
    assert swallowed >= 1, "no hand-off went to the dead media service: nothing failed over"

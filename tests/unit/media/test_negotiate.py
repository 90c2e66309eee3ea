"""RFC 3264 offer/answer for the media user agent."""

from __future__ import annotations

import random

import pytest

from media.errors import SdpError
from media.g711 import Codec
from media.negotiate import (
    Direction,
    LocalSdp,
    MediaPlan,
    accept_answer,
    answer_offer,
    make_offer,
)
from media.sdp import parse_sdp, rewrite_audio_address

from .sdp_samples import (
    BARESIP,
    DESK_AV,
    HOLD_SENDONLY,
    IPV6_DYNAMIC,
    OLD_HOLD,
    ONLY_G729,
    SAVP_THEN_AVP,
    SIPP,
)


def _local() -> LocalSdp:
    return LocalSdp(address="127.0.0.1", rng=random.Random(7))


def test_answer_to_baresip_picks_the_callers_first_g711_codec() -> None:
    answer, plan = answer_offer(parse_sdp(BARESIP), local=_local(), port=30000)
    assert plan == MediaPlan(
        codec=Codec.PCMA,
        payload_type=8,
        telephone_event=101,
        remote=("192.0.2.10", 10172),
        ptime=20,
        direction=Direction.SENDRECV,
    )
    (audio,) = answer.media
    assert (audio.port, audio.proto, audio.formats) == (30000, "RTP/AVP", ("8", "101"))
    assert audio.attribute("rtpmap") == "8 PCMA/8000"
    assert audio.fmtp(101) == "0-15"
    assert audio.attribute("ptime") == "20" and audio.attribute("sendrecv") == ""
    assert answer.connection is not None and answer.connection.address == "127.0.0.1"
    assert answer.timing == ("0 0",)


def test_answer_prefers_caller_order_not_ours() -> None:
    _, plan = answer_offer(
        parse_sdp(BARESIP), local=_local(), port=1, codecs=(Codec.PCMU, Codec.PCMA)
    )
    assert plan.codec is Codec.PCMA
    _, plan = answer_offer(parse_sdp(BARESIP), local=_local(), port=1, codecs=(Codec.PCMU,))
    assert plan.codec is Codec.PCMU and plan.payload_type == 0


def test_answer_rejects_video_with_port_zero_and_echoes_event_pt() -> None:
    answer, plan = answer_offer(parse_sdp(DESK_AV), local=_local(), port=30000)
    assert [(m.media, m.port) for m in answer.media] == [("audio", 30000), ("video", 0)]
    assert answer.media[1].formats == ("99",) and answer.media[1].proto == "RTP/AVP"
    assert plan.telephone_event == 98 and answer.media[0].formats == ("0", "98")
    assert plan.ptime == 30  # we send with the caller's packet time
    assert plan.remote == ("198.51.100.8", 5004)


def test_answer_static_type_without_rtpmap_and_lf_offer() -> None:
    answer, plan = answer_offer(parse_sdp(SIPP), local=_local(), port=30000)
    assert plan.codec is Codec.PCMU and plan.telephone_event is None
    assert answer.media[0].formats == ("0",)


def test_dynamic_payload_type_for_pcma_and_ipv6() -> None:
    answer, plan = answer_offer(parse_sdp(IPV6_DYNAMIC), local=_local(), port=30000)
    assert (plan.codec, plan.payload_type, plan.telephone_event) == (Codec.PCMA, 112, 100)
    assert plan.remote == ("2001:db8::1", 7078)
    assert answer.media[0].attribute("rtpmap") == "112 PCMA/8000"


def test_srtp_stream_is_declined_and_the_next_audio_taken() -> None:
    answer, plan = answer_offer(parse_sdp(SAVP_THEN_AVP), local=_local(), port=30000)
    assert [m.port for m in answer.media] == [0, 30000]
    assert plan.remote == ("192.0.2.1", 3002)


def test_second_audio_stream_is_declined() -> None:
    offer = parse_sdp(SIPP + "m=audio 6002 RTP/AVP 8\n")
    answer, _ = answer_offer(offer, local=_local(), port=30000)
    assert [m.port for m in answer.media] == [30000, 0]


def test_no_common_codec_is_488() -> None:
    with pytest.raises(SdpError) as info:
        answer_offer(parse_sdp(ONLY_G729), local=_local(), port=30000)
    assert info.value.status_hint == 488 and info.value.error_id == "sdp-no-common-codec"
    with pytest.raises(SdpError) as info:
        answer_offer(parse_sdp(SIPP.replace("m=audio 6000", "m=audio 0")), local=_local(), port=1)
    assert info.value.status_hint == 488


def test_pcmu_at_another_clock_rate_is_not_taken() -> None:
    body = SIPP.replace("RTP/AVP 0", "RTP/AVP 97").replace(
        "rtpmap:0 PCMU/8000", "rtpmap:97 PCMU/16000"
    )
    with pytest.raises(SdpError):
        answer_offer(parse_sdp(body), local=_local(), port=1)


# --------------------------------------------------------------------------- directions / hold
@pytest.mark.parametrize(
    ("offered", "wanted", "answered"),
    [
        ("sendrecv", Direction.SENDRECV, Direction.SENDRECV),
        ("sendonly", Direction.SENDRECV, Direction.RECVONLY),
        ("recvonly", Direction.SENDRECV, Direction.SENDONLY),
        ("inactive", Direction.SENDRECV, Direction.INACTIVE),
        ("sendrecv", Direction.SENDONLY, Direction.SENDONLY),  # announcement player
        ("sendrecv", Direction.RECVONLY, Direction.RECVONLY),  # recorder
        ("recvonly", Direction.RECVONLY, Direction.INACTIVE),
    ],
)
def test_direction_table(offered: str, wanted: Direction, answered: Direction) -> None:
    offer = parse_sdp(SIPP + f"a={offered}\n")
    answer, plan = answer_offer(offer, local=_local(), port=1, direction=wanted)
    assert plan.direction is answered
    assert answer.media[0].attribute(answered.value) == ""
    assert plan.sends == answered.sends


def test_session_level_direction_applies() -> None:
    offer = parse_sdp(SIPP.replace("t=0 0\n", "t=0 0\na=sendonly\n"))
    _, plan = answer_offer(offer, local=_local(), port=1)
    assert plan.direction is Direction.RECVONLY and plan.on_hold


def test_sendonly_hold() -> None:
    answer, plan = answer_offer(parse_sdp(HOLD_SENDONLY), local=_local(), port=1)
    assert plan.on_hold and plan.direction is Direction.RECVONLY
    assert plan.remote is None and not plan.sends and plan.receives
    assert answer.media[0].attribute("recvonly") == ""


def test_rfc2543_hold_with_zero_address() -> None:
    answer, plan = answer_offer(parse_sdp(OLD_HOLD), local=_local(), port=1)
    assert plan.on_hold and plan.remote is None and not plan.sends
    assert plan.direction is Direction.RECVONLY
    assert answer.media[0].attribute("recvonly") == ""


# --------------------------------------------------------------------------- our offers
def test_offer_then_answer_from_a_phone() -> None:
    local = _local()
    offer = make_offer(local=local, port=30000)
    audio = offer.media[0]
    assert audio.formats == ("0", "8", "101") and audio.fmtp(101) == "0-15"
    assert audio.attribute("ptime") == "20" and audio.attribute("sendrecv") == ""
    # a phone answers with PCMA only, its own event number and sendrecv
    answer = parse_sdp(
        "v=0\r\no=- 9 9 IN IP4 192.0.2.44\r\ns=-\r\nc=IN IP4 192.0.2.44\r\nt=0 0\r\n"
        "m=audio 5062 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:40\r\n"
    )
    plan = accept_answer(offer, answer)
    assert plan == MediaPlan(
        codec=Codec.PCMA,
        payload_type=8,
        telephone_event=101,
        remote=("192.0.2.44", 5062),
        ptime=40,
        direction=Direction.SENDRECV,
    )


def test_the_answer_of_answer_offer_is_accepted_by_accept_answer() -> None:
    offer = make_offer(local=_local(), port=30000, direction=Direction.SENDONLY)
    answer, theirs = answer_offer(offer, local=LocalSdp(address="10.9.9.9"), port=40000)
    ours = accept_answer(offer, answer)
    assert theirs.direction is Direction.RECVONLY and ours.direction is Direction.SENDONLY
    assert ours.remote == ("10.9.9.9", 40000) and theirs.remote is None
    assert ours.codec is theirs.codec is Codec.PCMU


_HEAD = "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nc=IN IP4 1.1.1.1\r\nt=0 0\r\n"


@pytest.mark.parametrize(
    "answer",
    [
        _HEAD + "m=audio 0 RTP/AVP 0\r\n",
        _HEAD + "m=audio 4 RTP/AVP 18\r\n",
        _HEAD,
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nt=0 0\r\nm=audio 4 RTP/AVP 0\r\n",
    ],
)
def test_bad_answers(answer: str) -> None:
    offer = make_offer(local=_local(), port=30000)
    with pytest.raises(SdpError) as info:
        accept_answer(offer, parse_sdp(answer))
    assert info.value.status_hint == 488


def test_origin_version_goes_up_only_when_the_description_changes() -> None:
    local = _local()
    first = make_offer(local=local, port=30000)
    same = make_offer(local=local, port=30000)
    held = make_offer(local=local, port=30000, direction=Direction.SENDONLY)
    assert first.origin.session_id == same.origin.session_id == held.origin.session_id
    assert same.origin.version == first.origin.version
    assert held.origin.version == first.origin.version + 1
    resumed = make_offer(local=local, port=30000)
    assert resumed.origin.version == first.origin.version + 2


def test_relay_rewrite_of_an_answer_still_negotiates() -> None:
    offer = make_offer(local=_local(), port=30000)
    answer, _ = answer_offer(offer, local=LocalSdp(address="10.9.9.9"), port=40000)
    relayed = rewrite_audio_address(answer.serialize(), address="10.0.0.2", port=50000)
    assert accept_answer(offer, parse_sdp(relayed)).remote == ("10.0.0.2", 50000)

"""SDP model, parser/serializer and the relay helpers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.errors import SdpError
from media.sdp import (
    Attribute,
    Connection,
    MediaDescription,
    Origin,
    RtpMap,
    SessionDescription,
    parse_sdp,
    rewrite_audio_address,
    rtp_destination,
)

from .sdp_samples import BARESIP, DESK_AV, IPV6_DYNAMIC, OLD_HOLD, SIPP


def test_parse_baresip_offer() -> None:
    sdp = parse_sdp(BARESIP.encode())
    assert sdp.origin == Origin(session_id=1431870546, version=3621418207, address="192.0.2.10")
    assert sdp.connection == Connection(address="192.0.2.10")
    (audio,) = sdp.media
    assert (audio.media, audio.port, audio.proto) == ("audio", 10172, "RTP/AVP")
    assert audio.formats == ("96", "8", "0", "101")
    assert audio.rtpmaps()[101] == RtpMap(
        payload_type=101, encoding="telephone-event", clock_rate=8000
    )
    assert audio.rtpmaps()[96].channels == 2
    assert audio.fmtp(101) == "0-15" and audio.fmtp(8) is None
    assert audio.attribute("rtcp-mux") == "" and audio.attribute("ptime") is None
    assert audio.other == (("b", "AS:64"),)


def test_serialize_round_trip_keeps_every_line() -> None:
    for sample in (BARESIP, DESK_AV, OLD_HOLD):
        sdp = parse_sdp(sample)
        assert sdp.serialize().decode() == sample
        assert parse_sdp(sdp.serialize()) == sdp


def test_lf_line_ends_are_accepted() -> None:
    sdp = parse_sdp(SIPP)
    assert sdp.media[0].port == 6000 and sdp.origin.username == "user1"


def test_build_from_values() -> None:
    sdp = SessionDescription(
        origin=Origin(session_id=1, version=2, address="127.0.0.1"),
        connection=Connection.of("127.0.0.1"),
        media=(
            MediaDescription(
                media="audio",
                port=4000,
                proto="RTP/AVP",
                formats=("0",),
                attributes=(Attribute(name="sendrecv"),),
            ),
        ),
    )
    assert sdp.serialize() == (
        b"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n"
    )
    assert Connection.of("::1").addrtype == "IP6"


@pytest.mark.parametrize(
    "body",
    [
        "",
        "o=- 1 1 IN IP4 1.2.3.4\r\n",
        "v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\n",
        "v=0\r\ns=-\r\n",
        "v=0\r\no=- x 1 IN IP4 1.2.3.4\r\n",
        "v=0\r\no=- 1 1 IN IP4\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 1/x RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 0\r\na=\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ngarbage\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n" + "m=audio 1 RTP/AVP 0\r\n" * 17,
        "v=0\r\n" + "a=x\r\n" * 5000,
    ],
)
def test_malformed_sdp(body: str) -> None:
    with pytest.raises(SdpError) as info:
        parse_sdp(body)
    assert info.value.status_hint == 400


def test_non_utf8_is_refused() -> None:
    with pytest.raises(SdpError):
        parse_sdp(b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=\xff\r\n")


@given(st.text(max_size=300))
def test_parser_raises_only_sdp_error(body: str) -> None:
    try:
        sdp = parse_sdp("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n" + body)
    except SdpError:
        return
    assert parse_sdp(sdp.serialize()) == sdp


# --------------------------------------------------------------------------- relay helpers
def test_rtp_destination() -> None:
    assert rtp_destination(BARESIP) == ("192.0.2.10", 10172)
    assert rtp_destination(DESK_AV.encode()) == ("198.51.100.8", 5004)  # media-level c= wins
    assert rtp_destination(IPV6_DYNAMIC) == ("2001:db8::1", 7078)
    assert rtp_destination(OLD_HOLD) is None
    assert rtp_destination(SIPP.replace("m=audio 6000", "m=audio 0")) is None


def test_rtp_destination_needs_a_connection() -> None:
    with pytest.raises(SdpError):
        rtp_destination("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 4 RTP/AVP 0\r\n")


def test_rewrite_session_level_connection() -> None:
    out = rewrite_audio_address(BARESIP.encode(), address="10.0.0.1", port=40000)
    expected = BARESIP.replace("c=IN IP4 192.0.2.10", "c=IN IP4 10.0.0.1").replace(
        "m=audio 10172", "m=audio 40000"
    )
    assert out.decode() == expected
    assert rtp_destination(out) == ("10.0.0.1", 40000)


def test_rewrite_media_level_connection_and_rtcp_keeps_video_untouched() -> None:
    out = rewrite_audio_address(DESK_AV.encode(), address="10.0.0.1", port=40000).decode()
    assert out == (
        DESK_AV.replace("m=audio 5004", "m=audio 40000")
        .replace("c=IN IP4 198.51.100.8", "c=IN IP4 10.0.0.1")
        .replace("a=rtcp:5005 IN IP4 198.51.100.8", "a=rtcp:40001 IN IP4 10.0.0.1")
    )
    assert "c=IN IP4 198.51.100.7\r\n" in out  # the video stream still uses it


def test_rewrite_inserts_media_connection_when_video_relies_on_session_one() -> None:
    body = DESK_AV.replace("c=IN IP4 198.51.100.8\r\n", "")
    out = rewrite_audio_address(body.encode(), address="10.0.0.1", port=40000).decode()
    assert "m=audio 40000 RTP/AVP 0 18 98\r\nc=IN IP4 10.0.0.1\r\n" in out
    sdp = parse_sdp(out)
    assert sdp.connection == Connection(address="198.51.100.7")
    assert rtp_destination(out) == ("10.0.0.1", 40000)


def test_rewrite_keeps_lf_endings_ipv6_and_hold() -> None:
    out = rewrite_audio_address(SIPP.encode(), address="2001:db8::5", port=40002).decode()
    assert out == SIPP.replace("c=IN IP4 127.0.0.1", "c=IN IP6 2001:db8::5").replace(
        "m=audio 6000", "m=audio 40002"
    )
    held = rewrite_audio_address(OLD_HOLD.encode(), address="10.0.0.1", port=40004).decode()
    assert held == OLD_HOLD.replace("m=audio 4000", "m=audio 40004")


def test_rewrite_without_active_audio_changes_nothing() -> None:
    body = SIPP.replace("m=audio 6000", "m=audio 0").encode()
    assert rewrite_audio_address(body, address="10.0.0.1", port=1) == body


@given(st.sampled_from([BARESIP, DESK_AV, SIPP, IPV6_DYNAMIC]), st.integers(1, 65534))
def test_rewrite_changes_only_the_audio_destination(sample: str, port: int) -> None:
    out = rewrite_audio_address(sample.encode(), address="10.1.2.3", port=port)
    before, after = parse_sdp(sample), parse_sdp(out)
    assert rtp_destination(after) == ("10.1.2.3", port)
    assert after.origin == before.origin
    assert [m.formats for m in after.media] == [m.formats for m in before.media]
    assert [m.media for m in after.media] == [m.media for m in before.media]
    assert len(out.splitlines()) - len(sample.encode().splitlines()) in (0, 1)

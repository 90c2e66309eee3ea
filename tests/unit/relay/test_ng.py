"""ng messages: framing, requests both ways, replies."""

from __future__ import annotations

import pytest

from media.relay.bencode import decode
from media.relay.errors import NgProtocolError, NgRefused, NgRequestError
from media.relay.ng import (
    Answer,
    BlockMedia,
    Delete,
    ListCalls,
    Offer,
    Ping,
    PlayMedia,
    Query,
    StartRecording,
    StopMedia,
    StopRecording,
    SubscribeAnswer,
    SubscribeRequest,
    UnblockMedia,
    Unsubscribe,
    check_reply,
    decode_message,
    encode_message,
    parse_request,
    reply_dict,
    reply_int,
    reply_list,
    reply_str,
)

SDP = (
    b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\n"
)


def test_ping_on_the_wire_is_the_readme_example() -> None:
    assert encode_message("5323_1", Ping().to_dict()) == b"5323_1 d7:command4:pinge"
    assert decode_message(b"5323_1 d6:result4:ponge") == ("5323_1", {"result": b"pong"})


@pytest.mark.parametrize(
    "data",
    [b"nocookie", b" d6:result2:oke", b"c le", b"c d6:result", b"\xff d6:result2:oke"],
)
def test_bad_datagrams_are_protocol_errors(data: bytes) -> None:
    with pytest.raises(NgProtocolError):
        decode_message(data)


def test_offer_dictionary_has_what_rtpengine_expects() -> None:
    offer = Offer(
        call_id="c1",
        from_tag="ft",
        sdp=SDP,
        via_branch="z9hG4bK1",
        label="caller",
        flags=("trust address",),
        record_call=True,
        metadata="call-id:c1",
        options=(("replace", ["origin"]),),
    )
    body = offer.to_dict()
    assert body == {
        "command": "offer",
        "call-id": "c1",
        "from-tag": "ft",
        "via-branch": "z9hG4bK1",
        "label": "caller",
        "sdp": SDP,
        "flags": ["trust address"],
        "record call": "yes",
        "metadata": "call-id:c1",
        "replace": ["origin"],
    }


REQUESTS = [
    Ping(),
    Offer(call_id="c", from_tag="a", sdp=SDP, via_branch="b", record_call=True, metadata="m"),
    Offer(call_id="c", from_tag="a", to_tag="t", sdp=SDP, label="caller"),
    Answer(call_id="c", from_tag="a", to_tag="t", sdp=SDP, via_branch="b", label="callee"),
    Delete(call_id="c"),
    Delete(call_id="c", from_tag="a", via_branch="b", delete_delay=0, fatal=True),
    Query(call_id="c", from_tag="a"),
    ListCalls(limit=5),
    StartRecording(call_id="c", metadata="m"),
    StopRecording(call_id="c"),
    PlayMedia(call_id="c", from_tag="a", file="/p.wav", repeat_times=2),
    StopMedia(call_id="c", from_tag="a"),
    BlockMedia(call_id="c", from_tag="b"),
    UnblockMedia(call_id="c", from_tag="b"),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: r.command)
def test_parse_request_inverts_to_dict(request_: object) -> None:
    wire = encode_message("k_1", request_.to_dict())  # type: ignore[attr-defined]
    _, body = decode_message(wire)
    assert parse_request(body) == request_


def test_subscribe_messages() -> None:
    assert SubscribeRequest(call_id="c").to_dict() == {
        "command": "subscribe request",
        "call-id": "c",
        "flags": ["all"],
    }
    tags = SubscribeRequest(call_id="c", from_tags=("a", "b"), to_tag="rec").to_dict()
    assert tags["from-tags"] == ["a", "b"] and tags["to-tag"] == "rec" and "flags" not in tags
    assert SubscribeAnswer(call_id="c", to_tag="rec", sdp=SDP).to_dict()["sdp"] == SDP
    assert Unsubscribe(call_id="c", to_tag="rec").to_dict()["command"] == "unsubscribe"


def test_server_accepts_hyphenated_keys_and_flags() -> None:
    body = decode(b"d7:command6:delete7:call-id1:c12:delete-delay1:05:flagsl5:FATALee")
    assert isinstance(body, dict)
    assert parse_request(body) == Delete(call_id="c", delete_delay=0, fatal=True)
    offer = parse_request(
        {
            "command": b"offer",
            "call-id": b"c",
            "from-tag": b"a",
            "sdp": SDP,
            "flags": [b"record-call"],
        }
    )
    assert isinstance(offer, Offer) and offer.record_call


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({}, "No command"),
        ({"command": b"dance"}, "Unrecognized command"),
        ({"command": b"offer", "from-tag": b"a", "sdp": SDP}, "No call-id"),
        ({"command": b"offer", "call-id": b"c", "from-tag": b"a"}, "No SDP"),
        ({"command": b"answer", "call-id": b"c", "from-tag": b"a", "sdp": SDP}, "to-tag"),
        ({"command": b"query", "call-id": 5}, "not a string"),
        ({"command": b"delete", "call-id": b"c", "delete delay": b"soon"}, "not an integer"),
        (
            {"command": b"offer", "call-id": b"c", "from-tag": b"a", "sdp": SDP, "flags": b"x"},
            "flags",
        ),
        ({"command": b"list", "limit": -1}, "limit"),
        ({"command": b"play media", "call-id": b"c", "from-tag": b"a"}, "exactly one"),
        ({"command": b"query", "call-id": b"\x00bad"}, "bad call-id"),
    ],
)
def test_bad_requests_have_a_reason(body: dict[str, object], reason: str) -> None:
    with pytest.raises(NgRequestError, match=reason):
        parse_request(body)  # type: ignore[arg-type]


def test_request_values_validate_themselves() -> None:
    with pytest.raises(NgRequestError):
        Offer(call_id="", from_tag="a", sdp=SDP)
    with pytest.raises(NgRequestError):
        Offer(call_id="c", from_tag="a", sdp=b"")
    with pytest.raises(NgRequestError):
        Delete(call_id="c", delete_delay=-1)
    with pytest.raises(NgRequestError):
        PlayMedia(call_id="c", from_tag="a", file="f", repeat_times=0)


def test_check_reply() -> None:
    assert check_reply({"result": b"ok", "sdp": b"x"}) == {"result": b"ok", "sdp": b"x"}
    assert check_reply({"result": b"pong"}) == {"result": b"pong"}
    with pytest.raises(NgRefused) as info:
        check_reply({"result": b"error", "error-reason": b"Unknown call-id"}, "query")
    assert info.value.reason == "Unknown call-id" and info.value.error_id == "relay-refused"
    with pytest.raises(NgProtocolError):
        check_reply({"sdp": b"x"})


def test_reply_accessors_tolerate_wrong_types() -> None:
    reply = {"s": b"text", "i": 3, "d": {"x": 1}, "l": [1]}
    assert reply_str(reply, "s") == "text" and reply_str(reply, "i") is None
    assert reply_int(reply, "i") == 3 and reply_int(reply, "s") is None
    assert reply_dict(reply, "d") == {"x": 1} and reply_dict(reply, "l") == {}
    assert reply_list(reply, "l") == [1] and reply_list(reply, "missing") == []

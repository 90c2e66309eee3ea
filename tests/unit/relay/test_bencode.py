"""Bencode: round trips, strictness, bounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.relay.bencode import MAX_DEPTH, BencodeError, BValue, decode, encode

values: st.SearchStrategy[BValue] = st.recursive(
    st.integers(min_value=-(10**19), max_value=10**19) | st.binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)


@given(values)
def test_round_trip(value: BValue) -> None:
    assert decode(encode(value)) == value


@given(values)
def test_encoding_is_canonical(value: BValue) -> None:
    data = encode(value)
    assert encode(decode(data)) == data


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_bencode_error(data: bytes) -> None:
    try:
        value = decode(data)
    except BencodeError as exc:
        assert exc.error_id == "bencode-malformed"
    else:
        assert decode(encode(value)) == value  # whatever decodes, re-encodes losslessly


def test_known_encodings() -> None:
    assert encode({"command": "ping"}) == b"d7:command4:pinge"
    assert encode({"b": 1, "a": [b"x", "y", -3]}) == b"d1:al1:x1:yi-3ee1:bi1ee"
    assert encode({b"raw": b""}) == b"d3:raw0:e"


def test_reply_with_unsorted_keys_is_accepted() -> None:
    # rtpengine does not sort its reply keys (its README says so)
    assert decode(b"d6:result2:ok3:sdp3:v=0e") == {"result": b"ok", "sdp": b"v=0"}
    assert decode(b"d3:sdp3:v=06:result2:oke") == {"result": b"ok", "sdp": b"v=0"}


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"i1", "unterminated"),
        (b"i01e", "canonical"),
        (b"i-0e", "canonical"),
        (b"ie", "canonical"),
        (b"i1.5e", "canonical"),
        (b"i" + b"9" * 30 + b"e", "unterminated"),
        (b"5:abc", "runs past"),
        (b"05:abcde", "length"),
        (b"-1:a", "unexpected"),
        (b"l", "ends"),
        (b"d3:keye", "without a value"),
        (b"d3:key", "ends"),
        (b"di1ei2ee", "not a string"),
        (b"d1:ai1e1:ai2ee", "twice"),
        (b"d2:\xff\xfei1ee", "UTF-8"),
        (b"i1ei2e", "trailing"),
        (b"x", "unexpected"),
    ],
)
def test_malformed_input_is_a_typed_error(data: bytes, why: str) -> None:
    with pytest.raises(BencodeError, match=why) as info:
        decode(data)
    assert info.value.error_id == "bencode-malformed"


def test_depth_is_bounded() -> None:
    deep = b"l" * (MAX_DEPTH + 2) + b"e" * (MAX_DEPTH + 2)
    with pytest.raises(BencodeError, match="nesting"):
        decode(deep)
    ok = b"l" * MAX_DEPTH + b"e" * MAX_DEPTH
    assert isinstance(decode(ok), list)


def test_size_is_bounded() -> None:
    with pytest.raises(BencodeError, match="exceeds"):
        decode(b"0:" + b" " * 100, max_size=50)


@pytest.mark.parametrize("bad", [True, 1.5, None, {1: 2}, {"a": object()}])
def test_unencodable_values_are_refused(bad: object) -> None:
    with pytest.raises(BencodeError):
        encode(bad)  # type: ignore[arg-type]


def test_duplicate_key_after_str_bytes_mix_is_refused() -> None:
    with pytest.raises(BencodeError, match="twice"):
        encode({"a": 1, b"a": 2})  # type: ignore[dict-item]

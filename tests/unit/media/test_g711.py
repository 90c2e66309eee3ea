"""G.711 against the ITU-T reference algorithm and hand-checked table values."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.errors import G711Error
from media.g711 import (
    ALAW_SILENCE,
    ULAW_SILENCE,
    Codec,
    alaw_decode,
    alaw_encode,
    decode,
    encode,
    silence_payload,
    ulaw_decode,
    ulaw_encode,
)

# ---------------------------------------------------------------- the G.191 reference algorithm
# Transcribed from the segment rules of ITU-T G.711 (as in the G.191 software tools' g711.c):
# an independent implementation the audioop-backed codec must agree with on every input.
_SEG_UEND = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_SEG_AEND = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _segment(value: int, table: tuple[int, ...]) -> int:
    for i, end in enumerate(table):
        if value <= end:
            return i
    return len(table)


def ref_lin2ulaw(sample: int) -> int:
    value = sample >> 2  # 14-bit magnitude
    mask = 0xFF
    if value < 0:
        value, mask = -value, 0x7F
    value = min(value, 8159) + 33  # clip, then add the bias (0x84 >> 2)
    seg = _segment(value, _SEG_UEND)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((value >> (seg + 1)) & 0x0F)) ^ mask


def ref_ulaw2lin(code: int) -> int:
    code = ~code & 0xFF
    t = (((code & 0x0F) << 3) + 0x84) << ((code & 0x70) >> 4)
    return 0x84 - t if code & 0x80 else t - 0x84


def ref_lin2alaw(sample: int) -> int:
    value = sample >> 3  # 13-bit magnitude
    mask = 0xD5
    if value < 0:
        value, mask = -value - 1, 0x55
    seg = _segment(value, _SEG_AEND)
    if seg >= 8:
        return 0x7F ^ mask
    mantissa = (value >> 1) if seg < 2 else (value >> seg)
    return ((seg << 4) | (mantissa & 0x0F)) ^ mask


def ref_alaw2lin(code: int) -> int:
    code ^= 0x55
    t = (code & 0x0F) << 4
    seg = (code & 0x70) >> 4
    t = t + 8 if seg == 0 else (t + 0x108) << (seg - 1) if seg > 1 else t + 0x108
    return t if code & 0x80 else -t


def _pcm(*samples: int) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


def _samples(pcm: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(pcm) // 2}h", pcm))


ALL_SAMPLES = _pcm(*range(-32768, 32768))
ALL_CODES = bytes(range(256))


# ---------------------------------------------------------------- golden values
# Linear (16-bit) -> code, worked by hand from the G.711 segment rules: zero, the first steps and
# full scale. µ-law: 0 -> 0xFF; ±full scale -> 0x80/0x00. A-law: 0 -> 0xD5, -1 -> 0x55,
# full scale -> 0xAA/0x2A.
ULAW_ENCODE_GOLDEN = [
    (0, 0xFF),
    (-8, 0x7E),
    (4, 0xFE),
    (132, 0xEF),
    (1000, 0xCE),
    (-1000, 0x4E),
    (32767, 0x80),
    (-32768, 0x00),
]
ULAW_DECODE_GOLDEN = [(0xFF, 0), (0x7F, 0), (0x80, 32124), (0x00, -32124), (0xCE, 988)]
ALAW_ENCODE_GOLDEN = [
    (0, 0xD5),
    (-1, 0x55),
    (16, 0xD4),
    (1000, 0xFA),
    (32767, 0xAA),
    (-32768, 0x2A),
]
ALAW_DECODE_GOLDEN = [(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256), (0xFA, 1008)]


@pytest.mark.parametrize(("linear", "code"), ULAW_ENCODE_GOLDEN)
def test_ulaw_encode_golden(linear: int, code: int) -> None:
    assert ulaw_encode(_pcm(linear)) == bytes((code,))


@pytest.mark.parametrize(("code", "linear"), ULAW_DECODE_GOLDEN)
def test_ulaw_decode_golden(code: int, linear: int) -> None:
    assert _samples(ulaw_decode(bytes((code,)))) == [linear]


@pytest.mark.parametrize(("linear", "code"), ALAW_ENCODE_GOLDEN)
def test_alaw_encode_golden(linear: int, code: int) -> None:
    assert alaw_encode(_pcm(linear)) == bytes((code,))


@pytest.mark.parametrize(("code", "linear"), ALAW_DECODE_GOLDEN)
def test_alaw_decode_golden(code: int, linear: int) -> None:
    assert _samples(alaw_decode(bytes((code,)))) == [linear]


def test_golden_values_agree_with_reference() -> None:
    # The hand-read table values and the transcribed algorithm check each other.
    assert all(ref_lin2ulaw(lin) == code for lin, code in ULAW_ENCODE_GOLDEN)
    assert all(ref_ulaw2lin(code) == lin for code, lin in ULAW_DECODE_GOLDEN)
    assert all(ref_lin2alaw(lin) == code for lin, code in ALAW_ENCODE_GOLDEN)
    assert all(ref_alaw2lin(code) == lin for code, lin in ALAW_DECODE_GOLDEN)


# ---------------------------------------------------------------- exhaustive against reference
def test_ulaw_encode_matches_reference_on_every_sample() -> None:
    expected = bytes(ref_lin2ulaw(s) for s in range(-32768, 32768))
    assert ulaw_encode(ALL_SAMPLES) == expected


def test_alaw_encode_matches_reference_on_every_sample() -> None:
    expected = bytes(ref_lin2alaw(s) for s in range(-32768, 32768))
    assert alaw_encode(ALL_SAMPLES) == expected


def test_decoders_match_reference_on_every_code() -> None:
    assert _samples(ulaw_decode(ALL_CODES)) == [ref_ulaw2lin(c) for c in ALL_CODES]
    assert _samples(alaw_decode(ALL_CODES)) == [ref_alaw2lin(c) for c in ALL_CODES]


def test_decode_then_encode_is_identity_on_codes() -> None:
    # Every code except µ-law's negative zero (0x7F decodes to 0, which encodes as 0xFF)
    # survives a round trip.
    assert ulaw_encode(ulaw_decode(ALL_CODES)) == ALL_CODES.replace(b"\x7f", b"\xff")
    assert alaw_encode(alaw_decode(ALL_CODES)) == ALL_CODES


# ---------------------------------------------------------------- properties
@given(st.lists(st.integers(-32768, 32767), max_size=400))
def test_round_trip_error_is_bounded_by_the_segment(samples: list[int]) -> None:
    pcm = _pcm(*samples)
    for codec in Codec:
        back = _samples(decode(codec, encode(codec, pcm)))
        assert len(back) == len(samples)
        for original, got in zip(samples, back, strict=True):
            # quantisation step doubles per segment; the top segment's step is 1024 (µ-law,
            # 16-bit scale) / 1024 (A-law): half a step plus the clip at full scale.
            assert abs(original - got) <= 1024


def test_silence_codes() -> None:
    assert ULAW_SILENCE == 0xFF and ALAW_SILENCE == 0xD5
    assert silence_payload(Codec.PCMU, 3) == b"\xff\xff\xff"
    assert silence_payload(Codec.PCMA, 2) == b"\xd5\xd5"
    assert _samples(decode(Codec.PCMU, silence_payload(Codec.PCMU, 160))) == [0] * 160
    assert set(_samples(decode(Codec.PCMA, silence_payload(Codec.PCMA, 160)))) == {8}


def test_frame_sizes() -> None:
    frame = _pcm(*range(160))
    assert len(encode(Codec.PCMU, frame)) == 160
    assert len(decode(Codec.PCMA, encode(Codec.PCMA, frame))) == 320


def test_odd_pcm_length_is_a_typed_error() -> None:
    with pytest.raises(G711Error) as info:
        encode(Codec.PCMU, b"\x00\x00\x00")
    assert info.value.error_id == "g711-bad-frame"
    with pytest.raises(G711Error):
        silence_payload(Codec.PCMA, -1)


def test_codec_values_are_rtp_payload_types() -> None:
    assert (Codec.PCMU.value, Codec.PCMA.value) == (0, 8)
    assert Codec(8).encoding_name == "PCMA"

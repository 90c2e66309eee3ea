"""Bencoding (the BitTorrent data format, BEP 3), the body format of rtpengine's ng protocol.

Four types: integers `i<decimal>e`, byte strings `<length>:<octets>`, lists `l…e` and
dictionaries `d<key><value>…e` whose keys are byte strings. BEP 3 requires keys in sorted
order; rtpengine's README says it does not honour that ("The requirement stipulated by the
bencode standard that dictionary keys must be present in lexicographical order is not
currently honoured"), so the decoder accepts any order but refuses a key given twice, and the
encoder always sorts (deterministic output, what a strict peer expects).

The decoder is strict because it reads datagrams from the network:
- the input is bounded (`max_size`, 64 KiB by default: one UDP datagram) and so is nesting
  (`max_depth`), so a hostile datagram costs at most one linear pass and no deep recursion;
- integers are canonical (no leading zeros, no `-0`, at most 20 digits), a string length may
  not run past the input, and nothing may follow the top-level value;
- every failure is a `BencodeError` (error id `bencode-malformed`) naming the offset, never an
  IndexError or ValueError.

Decoded values: `int`, `bytes`, `list`, and `dict` with `str` keys (ng keys are ASCII words;
a key that is not UTF-8 is refused). String values stay `bytes` — an SDP body or a media blob
is whatever octets the peer sent; `media.relay.ng` has the typed accessors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import MediaError

__all__ = ["BValue", "BencodeError", "decode", "encode"]

BValue = int | bytes | list["BValue"] | dict[str, "BValue"]
EncodableValue = int | str | bytes | Sequence["EncodableValue"] | Mapping[str, "EncodableValue"]

MAX_SIZE = 65_536
MAX_DEPTH = 32
_MAX_INT_DIGITS = 20
_DIGITS = frozenset(b"0123456789")


class BencodeError(MediaError):
    """Input that is not strict bencode, or a value that cannot be encoded."""

    default_id = "bencode-malformed"


# --------------------------------------------------------------------------- encoding
def encode(value: EncodableValue) -> bytes:
    """Bencode `value`; `str` is written as UTF-8, dictionary keys (str or bytes) sorted."""
    out: list[bytes] = []
    _encode(value, out, 0)
    return b"".join(out)


def _encode(value: EncodableValue, out: list[bytes], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise BencodeError(f"nesting deeper than {MAX_DEPTH}")
    if isinstance(value, bool):  # bool is an int subclass; True as i1e hides mistakes
        raise BencodeError("booleans have no bencoding; use a string such as 'yes'")
    if isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, str | bytes):
        _encode_string(value, out)
    elif isinstance(value, Mapping):
        _encode_dict(value, out, depth)
    elif isinstance(value, Sequence):
        out.append(b"l")
        for item in value:
            _encode(item, out, depth + 1)
        out.append(b"e")
    else:
        raise BencodeError(f"cannot bencode a {type(value).__name__}")


def _encode_string(value: str | bytes, out: list[bytes]) -> None:
    raw = value.encode() if isinstance(value, str) else value
    out.append(b"%d:" % len(raw))
    out.append(raw)


def _encode_dict(value: Mapping[str, EncodableValue], out: list[bytes], depth: int) -> None:
    items: dict[bytes, EncodableValue] = {}
    for key, item in value.items():
        if not isinstance(key, str | bytes):  # bytes keys are accepted too (runtime only)
            raise BencodeError(f"dictionary key {key!r} is not a string")
        raw = key.encode() if isinstance(key, str) else key
        if raw in items:
            raise BencodeError(f"dictionary key {raw!r} given twice")
        items[raw] = item
    out.append(b"d")
    for raw in sorted(items):
        _encode_string(raw, out)
        _encode(items[raw], out, depth + 1)
    out.append(b"e")


# --------------------------------------------------------------------------- decoding
def decode(data: bytes, *, max_size: int = MAX_SIZE, max_depth: int = MAX_DEPTH) -> BValue:
    """Decode exactly one bencoded value filling `data`, or raise BencodeError."""
    if len(data) > max_size:
        raise BencodeError(f"{len(data)} octets exceeds the limit of {max_size}")
    if not data:
        raise BencodeError("empty input")
    value, end = _Decoder(data, max_depth).value(0, 0)
    if end != len(data):
        raise BencodeError(f"{len(data) - end} octets of trailing data at offset {end}")
    return value


class _Decoder:
    __slots__ = ("data", "max_depth")

    def __init__(self, data: bytes, max_depth: int) -> None:
        self.data = data
        self.max_depth = max_depth

    def value(self, at: int, depth: int) -> tuple[BValue, int]:
        if depth > self.max_depth:
            raise BencodeError(f"nesting deeper than {self.max_depth} at offset {at}")
        lead = self._byte(at)
        if lead == 0x69:  # i
            return self.integer(at)
        if lead == 0x6C:  # l
            return self.list(at, depth)
        if lead == 0x64:  # d
            return self.dict(at, depth)
        if lead in _DIGITS:
            return self.string(at)
        raise BencodeError(f"unexpected {bytes((lead,))!r} at offset {at}")

    def _byte(self, at: int) -> int:
        if at >= len(self.data):
            raise BencodeError(f"input ends at offset {at} inside a value")
        return self.data[at]

    def _find(self, marker: bytes, at: int, limit: int) -> int:
        end = self.data.find(marker, at, at + limit + 2)
        if end < 0:
            raise BencodeError(f"unterminated number at offset {at}")
        return end

    def integer(self, at: int) -> tuple[int, int]:
        end = self._find(b"e", at + 1, _MAX_INT_DIGITS)
        digits = self.data[at + 1 : end]
        body = digits[1:] if digits[:1] == b"-" else digits
        canonical = body and set(body) <= _DIGITS and (body == b"0" or body[:1] != b"0")
        if not canonical or digits == b"-0":
            raise BencodeError(f"not a canonical integer {digits[:24]!r} at offset {at}")
        return int(digits), end + 1

    def string(self, at: int) -> tuple[bytes, int]:
        colon = self._find(b":", at, _MAX_INT_DIGITS)
        length = self.data[at:colon]
        if not set(length) <= _DIGITS or (length[:1] == b"0" and length != b"0"):
            raise BencodeError(f"bad string length {length[:24]!r} at offset {at}")
        start = colon + 1
        end = start + int(length)
        if end > len(self.data):
            raise BencodeError(f"string of {int(length)} octets at offset {at} runs past the end")
        return self.data[start:end], end

    def list(self, at: int, depth: int) -> tuple[list[BValue], int]:
        items: list[BValue] = []
        at += 1
        while self._byte(at) != 0x65:  # e
            item, at = self.value(at, depth + 1)
            items.append(item)
        return items, at + 1

    def dict(self, at: int, depth: int) -> tuple[dict[str, BValue], int]:
        items: dict[str, BValue] = {}
        at += 1
        while self._byte(at) != 0x65:
            if self.data[at] not in _DIGITS:
                raise BencodeError(f"dictionary key at offset {at} is not a string")
            raw, at = self.string(at)
            key = _key(raw, at)
            if key in items:
                raise BencodeError(f"dictionary key {key!r} given twice (offset {at})")
            if self._byte(at) == 0x65:
                raise BencodeError(f"dictionary key {key!r} without a value (offset {at})")
            items[key], at = self.value(at, depth + 1)
        return items, at + 1


def _key(raw: bytes, at: int) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise BencodeError(f"dictionary key before offset {at} is not UTF-8") from exc

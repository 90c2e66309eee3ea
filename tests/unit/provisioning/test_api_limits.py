"""The request bounds as pure functions: the JSON depth pre-scan (strings do not count, escapes
are understood, no recursion) and how a parser error becomes an API error."""

from __future__ import annotations

import json

import pytest
from aiohttp.http_exceptions import BadHttpMessage, BadStatusLine, LineTooLong
from hypothesis import given
from hypothesis import strategies as st

from provisioning.api.limits import MAX_JSON_DEPTH, HttpLimits, json_too_deep
from provisioning.api.schema import String, utf8_encodable
from provisioning.api.server import refusal_of


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("data", "limit", "deep"),
    [
        (nested(3), 3, False),
        (nested(4), 3, True),
        (b'{"a": {"b": [1, {"c": []}]}}', 5, False),
        (b'{"a": {"b": [1, {"c": []}]}}', 4, True),
        (b'["[[[[[[", "{{{{"]', 1, False),  # brackets inside strings
        (b'["\\"[[[[", "\\\\", [[]]]', 3, False),  # escaped quote, escaped backslash
        (b'["\\"[[[[", "\\\\", [[]]]', 2, True),
        (b"[[[" + b"]" * 10 + b"[[[", 3, False),  # unbalanced: the decoder refuses it
        (b'"[[[[[[', 1, True),  # an unterminated string does not hide brackets
        (b"", 0, False),
    ],
)
def test_depth(data: bytes, limit: int, deep: bool) -> None:
    assert json_too_deep(data, limit) is deep


def test_no_recursion_on_a_megabyte_of_brackets() -> None:
    assert json_too_deep(b"[" * 1_000_000, MAX_JSON_DEPTH)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=20,
)


def depth_of(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


@given(json_values, st.integers(min_value=0, max_value=6), st.booleans())
def test_depth_agrees_with_the_decoded_value(value: object, limit: int, ascii: bool) -> None:
    data = json.dumps(value, ensure_ascii=ascii).encode()
    assert json_too_deep(data, limit) is (depth_of(value) > limit)


def test_limits_must_tell_request_line_from_header() -> None:
    with pytest.raises(ValueError, match="differ"):
        HttpLimits(request_line=8190, header_field=8190)
    assert HttpLimits().handler_args() == {
        "max_line_size": 8192,
        "max_field_size": 8190,
        "max_headers": 100,
    }


@pytest.mark.parametrize(
    ("exc", "status", "error_id"),
    [
        (LineTooLong(b"/x...", 8192), 414, "request-line-too-long"),
        (LineTooLong(b"aaa...", 8190), 431, "header-too-large"),
        (BadHttpMessage("Too many headers received"), 431, "header-too-large"),
        (BadStatusLine("GET / HTTP/9.9"), 400, "bad-http-request"),
    ],
)
def test_parser_errors_become_api_errors(exc: BadHttpMessage, status: int, error_id: str) -> None:
    refusal = refusal_of(exc, HttpLimits())
    assert (refusal.status, refusal.error_id) == (status, error_id)


@pytest.mark.parametrize(
    ("text", "ok"),
    [("plain", True), ("Café 😀 日本", True), ("x\ud800", False), ("\udfff", False), ("", True)],
)
def test_strings_must_be_unicode_text(text: str, ok: bool) -> None:
    assert utf8_encodable(text) is ok
    if ok:
        assert String().validate(text, "f") == text
    else:
        with pytest.raises(ValueError, match="f: must be valid Unicode"):
            String(any_text=True).validate(text, "f")

"""How big a request may be: every bound is checked BEFORE the part it bounds is parsed.

| what                          | bound       | answer                       | checked by        |
|-------------------------------|-------------|------------------------------|-------------------|
| request target (URL)          | 8,192 bytes | 414 `request-line-too-long`  | aiohttp, server.py |
| a header name or value        | 8,190 bytes | 431 `header-too-large`       | aiohttp, server.py |
| header fields                 | 100         | 431 `header-too-large`       | aiohttp, server.py |
| JSON body                     | 64 KiB      | 413 `payload-too-large`      | core.read_limited |
| JSON nesting ([ and {)        | 32 levels   | 400 `json-too-deep`          | `json_too_deep`   |

Why these numbers: 8 KiB request lines and 8,190-byte header fields are what Apache
(`LimitRequestLine`, `LimitRequestFieldSize`), nginx (`large_client_header_buffers 4 8k`) and
aiohttp itself default to; the API's longest URL (a voicemail message with a 512-character
cursor) is under 1 KiB and its only big header is a ~60-character bearer token. 100 header
fields is Apache's `LimitRequestFields`. The deepest document the API takes is 3 levels
(`after_hours.slots.weekday`): 32 leaves room for any client while a body of 64 KiB of
brackets can no longer make the JSON decoder recurse thousands of levels deep.

aiohttp (3.14) checks a header field's name + value against `max_field_size` only when the
name arrived in the same read as the previous field's end; otherwise it checks name and value
each. So: a name or a value over 8,190 bytes is always refused, a field whose name + value
fit in 8,190 is always accepted, and one in between may pass (it is still bounded).

The request-line and header-field limits differ by two bytes on purpose: aiohttp reports both
overflows as `LineTooLong(line, limit)`, and the limit is how server.py tells them apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_JSON_BODY",
    "MAX_JSON_DEPTH",
    "HttpLimits",
    "json_too_deep",
]

MAX_JSON_BODY = 64 * 1024  # bytes; uploads declare their own limit (core.Operation.body_limit)
MAX_JSON_DEPTH = 32


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpLimits:
    """What aiohttp's HTTP parser accepts before it hands a request over."""

    request_line: int = 8192
    header_field: int = 8190
    header_count: int = 100

    def __post_init__(self) -> None:
        if min(self.request_line, self.header_field, self.header_count) < 1:
            raise ValueError("HTTP limits must be positive")
        if self.request_line == self.header_field:
            raise ValueError("request_line and header_field must differ (see limits.py)")

    def handler_args(self) -> dict[str, Any]:
        """Keyword arguments of aiohttp's RequestHandler (AppRunner / handler_args)."""
        return {
            "max_line_size": self.request_line,
            "max_field_size": self.header_field,
            "max_headers": self.header_count,
        }


# A JSON string (escapes included) or one bracket; everything else is skipped by finditer.
_STRING_OR_BRACKET = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_OPEN = frozenset(b"[{")


def json_too_deep(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when the brackets of `data` nest deeper than `limit`, counted without decoding
    (one regex pass: linear, no recursion). Brackets inside strings do not count. Malformed
    JSON is left to the decoder, which then sees a bounded depth."""
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(data):
        first = match.group()[0]
        if first in _OPEN:
            depth += 1
            if depth > limit:
                return True
        elif first != ord('"'):
            depth -= 1
    return False

"""SIP wire parser (RFC 3261 §7, §18.3, §25): datagrams and stream framing.

CONTRACT — see message.py. The only exception that leaves this module is ParseError.

Theory of operation: the head (start line + header fields) is decoded once as UTF-8 and cut
into canonical (name, value) fields; folded lines are joined first. The headers that decide
whether a message can be handled at all (Via, From, To, Call-ID, CSeq, Max-Forwards,
Content-Length, Contact, Expires) are validated eagerly and their parsed forms land in the
Headers cache, so the transaction layer never parses them twice. Everything else stays text
until somebody asks. The body is never decoded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ._grammar import TOKEN, ParseError
from .headers import Headers, canonical_name
from .message import Request, Response
from .uri import parse_uri
from .values import parse_cseq, parse_name_addr, parse_via, split_strict

__all__ = [
    "DEFAULT_MAX_HEADERS",
    "DEFAULT_MAX_MESSAGE",
    "KeepAlive",
    "StreamFramer",
    "is_keepalive",
    "parse_head",
    "parse_message",
    "partial_of",
]

DEFAULT_MAX_MESSAGE = 65_535  # octets, head + body
DEFAULT_MAX_HEADERS = 256  # header fields


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """A CRLF keep-alive seen on a stream (RFC 5626 §3.5.1). `ping` is True for a
    double-CRLF ping, which the transport answers with a single CRLF pong."""

    ping: bool


def is_keepalive(datagram: bytes) -> bool:
    """True for a datagram that is only CR/LF octets (UDP keep-alive): ignore it."""
    return bool(datagram) and not datagram.strip(b"\r\n")


# --------------------------------------------------------------------------- grammar
_METHOD_RE = re.compile(TOKEN)
_NAME_RE = re.compile(TOKEN)
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:")
_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE)
_STATUS_RE = re.compile(r"SIP/2\.0 ([1-6][0-9][0-9])(?: (.*))?", re.IGNORECASE | re.DOTALL)
_DIGITS_RE = re.compile(r"[0-9]{1,10}")
_CLASS_DIGITS = frozenset("123456")  # one character each: "" is in neither set
_DIGIT_CHARS = frozenset("0123456789")
_FOLD_RE = re.compile(r"\r\n[ \t]+")
_CALL_ID_RE = re.compile(r"[^\s]+")
_SUPPORTED_SCHEMES = frozenset(["sip", "sips", "tel"])
# Headers that must appear exactly once (RFC 3261 §8.1.1, §20); Via at least once.
_REQUIRED = ("Via", "From", "To", "Call-ID", "CSeq")
_AT_MOST_ONCE = frozenset(["Max-Forwards", "Content-Length", "From", "To", "Call-ID", "CSeq"])


def partial_of(error: ParseError) -> Request | Response | None:
    """The message as far as it could be read (raw header fields, values unparsed), or None.
    Used to answer 400 with the request's Via/From/To/Call-ID/CSeq copied verbatim."""
    return getattr(error, "partial", None)


def parse_message(
    data: bytes,
    *,
    max_size: int = DEFAULT_MAX_MESSAGE,
    max_headers: int = DEFAULT_MAX_HEADERS,
    stream: bool = False,
) -> Request | Response:
    """Parse one complete message (a UDP datagram, or one framed stream message).

    - Start line: request "METHOD SP Request-URI SP SIP/2.0" or status line; a version other
      than SIP/2.0 is ParseError(505); a Request-URI with an unsupported scheme is 416 only
      when the rest is well-formed.
    - Header names case-insensitive with compact forms; obsolete line folding is unfolded.
    - Mandatory headers validated eagerly (so that bad input gets 400): Via (every value),
      From, To, Call-ID, CSeq (method must equal the request method), Max-Forwards (0-255),
      Content-Length (non-negative integer), Contact (each value), Expires (integer).
    - Body framing: Content-Length; over a datagram, octets after the body are ignored
      (RFC 3261 §18.3) and a Content-Length larger than the available octets is 400; a
      datagram without Content-Length takes the rest as the body.
    - Too large: ParseError(413); too many headers: ParseError(400).
    Raises ParseError with `.partial` set (see below) whenever the start line and the raw
    header fields could be read, so that the caller can build a 400 reply.

    Presence rules enforced here (the core may rely on them for every parsed message): at
    least one Via; exactly one From, To, Call-ID and CSeq; at most one Max-Forwards and
    Content-Length. Max-Forwards itself is optional (RFC 2543 peers, RFC 4475 §3.4.1).
    With `stream=True` the data is exactly one framed message: a Content-Length that
    disagrees with the octets present is 400.
    """
    try:
        return _parse(data, max_size, max_headers, stream)
    except ParseError:
        raise
    except Exception as exc:  # safety net: the contract allows no other exception type
        raise ParseError(f"malformed message ({type(exc).__name__})") from exc


def parse_head(data: bytes, *, max_headers: int = DEFAULT_MAX_HEADERS) -> Request | Response:
    """Only the start line and the raw header fields of a datagram: no body framing, no
    header value parsed or validated (values are parsed on demand, e.g. `top_via`). For a
    decision that must be cheap (the overload gate answers a new INVITE with 503 from this);
    whatever it lets through is parsed in full by `parse_message`. ParseError (any kind) when
    even that much cannot be read."""
    try:
        start = 0
        while data.startswith(b"\r\n", start):
            start += 2
        end = data.find(b"\r\n\r\n", start)
        if end < 0:
            raise ParseError("no empty line after the header fields")
        return _read_head(data[start:end].decode("utf-8"), max_headers)[0]
    except ParseError:
        raise
    except Exception as exc:
        raise ParseError(f"malformed message ({type(exc).__name__})") from exc


def _parse(data: bytes, max_size: int, max_headers: int, stream: bool) -> Request | Response:
    if len(data) > max_size:
        raise ParseError(f"message of {len(data)} octets exceeds {max_size}", 413)
    start = 0
    while data.startswith(b"\r\n", start):  # RFC 3261 §7.5: ignore CRLF before start line
        start += 2
    end = data.find(b"\r\n\r\n", start)
    body_start = end + 4
    if end < 0:
        if stream or not data.endswith(b"\r\n"):
            raise ParseError("no empty line after the header fields")
        # A datagram whose last header line lacks the closing blank line (RFC 4475's
        # baddn.dat as archived): read the fields anyway, so the real error is reported.
        end, body_start = len(data) - 2, len(data)
    try:
        head = data[start:end].decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("header section is not UTF-8") from None
    message, fields = _read_head(head, max_headers)
    try:
        first, repeated = _index(fields)
        message.body = _frame_body(data, body_start, first, repeated, stream)
        _validate(message, fields, first, repeated)
    except ParseError as exc:
        exc.partial = message
        raise
    return message


def _read_head(head: str, max_headers: int) -> tuple[Request | Response, list[tuple[str, str]]]:
    if "\r\n " in head or "\r\n\t" in head:
        head = _FOLD_RE.sub(" ", head)  # obsolete line folding (§7.3.1): CRLF+WSP is one SP
    start_line, crlf, rest = head.partition("\r\n")
    count = rest.count("\r\n") + 1 if crlf else 0
    if count > max_headers:
        raise ParseError(f"more than {max_headers} header fields")
    if head.count("\r") != count or head.count("\n") != count:
        raise ParseError("bare CR or LF in the header section")
    fields: list[tuple[str, str]] = []
    if crlf:
        # One pass (partition, name, value) per line; on any error the two-pass reading
        # below runs instead, so that the error reported is the same as before: a line
        # without ':' anywhere wins over a bad header name.
        known = _KNOWN_NAMES.get
        append = fields.append
        try:
            for line in rest.split("\r\n"):
                name, colon, value = line.partition(":")
                if not colon:
                    raise ParseError(f"header line without ':' {name[:80]!r}")
                append((known(name) or _field_name(name), value.strip(" \t")))
        except ParseError:
            _read_fields_strictly(rest)
            raise
    try:
        message = _read_start_line(start_line, Headers._trusted(fields))
    except ParseError as exc:
        if exc.partial is None and not start_line.startswith("SIP/"):
            # Keep what a 400 needs (Via, From, To, Call-ID, CSeq) even for a bad start line.
            method = start_line.split(" ", 1)[0]
            exc.partial = Request(method=method, uri="", headers=Headers._trusted(fields))
        raise
    return message, fields


def _read_fields_strictly(rest: str) -> list[tuple[str, str]]:
    """The header fields in two passes: every line has a ':' first, then the names."""
    parts = [line.partition(":") for line in rest.split("\r\n")]
    for name, colon, _ in parts:
        if not colon:
            raise ParseError(f"header line without ':' {name[:80]!r}")
    known = _KNOWN_NAMES.get
    return [(known(n) or _field_name(n), v.strip(" \t")) for n, _, v in parts]


@lru_cache(maxsize=1024)
def _field_name(raw: str) -> str:
    name = raw.rstrip(" \t")
    if not _NAME_RE.fullmatch(name):
        raise ParseError(f"bad header name {raw[:80]!r}")
    return canonical_name(name)


# Spellings seen on nearly every message, resolved without a function call.
_KNOWN_NAMES = {
    spelling: canonical_name(spelling)
    for name in ("Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards",
                 "Content-Length", "Content-Type", "Route", "Record-Route", "Allow",
                 "Supported", "User-Agent", "Expires", "Authorization", "Require", "Server",
                 "Proxy-Authorization", "WWW-Authenticate", "Proxy-Authenticate", "Accept",
                 "Date", "Call-Id", "Cseq", "v", "f", "t", "i", "m", "l", "c", "k")
    for spelling in (name, name.lower())
}  # fmt: skip


def _read_start_line(line: str, headers: Headers) -> Request | Response:
    if line[:4].upper() == "SIP/":
        return _read_status_line(line, headers)
    parts = line.split(" ")
    if len(parts) != 3 or not _METHOD_RE.fullmatch(parts[0]):
        raise ParseError(f"bad request line {line[:80]!r}")
    method, uri, version = parts
    if not uri or not uri.isprintable() or "\t" in uri:
        raise ParseError(f"bad Request-URI {uri!r}")
    request = Request(method=method, uri=uri, headers=headers)
    try:
        _check_version(version)
    except ParseError as exc:
        exc.partial = request  # a 505 can still be answered
        raise
    return request


def _check_version(version: str) -> None:
    if version.upper() == "SIP/2.0":
        return
    if _VERSION_RE.fullmatch(version):
        raise ParseError(f"SIP version {version!r} not supported", 505)
    raise ParseError(f"bad SIP version {version!r}")


def _read_status_line(line: str, headers: Headers) -> Response:
    # The usual form ("SIP/2.0 200 OK") without the regular expression; anything else
    # (another case, a bad code) goes through it, and so gets exactly its answer.
    if (
        line[:8] == "SIP/2.0 "
        and line[8:9] in _CLASS_DIGITS
        and line[9:10] in _DIGIT_CHARS
        and line[10:11] in _DIGIT_CHARS
        and line[11:12] in ("", " ")
    ):
        return Response(status=int(line[8:11]), reason=line[12:], headers=headers)
    m = _STATUS_RE.fullmatch(line)
    if m is None:
        version = line.split(" ", 1)[0]
        _check_version(version)
        raise ParseError(f"bad status line {line[:80]!r}")
    return Response(status=int(m.group(1)), reason=m.group(2) or "", headers=headers)


def _frame_body(
    data: bytes, offset: int, first: dict[str, str], repeated: set[str], stream: bool
) -> bytes:
    value = first.get("Content-Length")
    available = len(data) - offset
    if value is None:
        return data[offset:]  # RFC 3261 §18.3: a datagram without one runs to its end
    if "Content-Length" in repeated:
        raise ParseError("more than one Content-Length")
    if not _DIGITS_RE.fullmatch(value):
        raise ParseError(f"bad Content-Length {value!r}")
    length = int(value)
    if length > available or (stream and length != available):
        raise ParseError(f"Content-Length {length} but {available} body octets")
    return data[offset : offset + length]


# --------------------------------------------------------------------------- validation
def _index(fields: list[tuple[str, str]]) -> tuple[dict[str, str], set[str]]:
    """First value of every header name, and the names that occur more than once."""
    first: dict[str, str] = {}
    repeated: set[str] = set()
    for name, value in fields:
        if name in first:
            repeated.add(name)
        else:
            first[name] = value
    return first, repeated


def _validate(
    message: Request | Response,
    fields: list[tuple[str, str]],
    first: dict[str, str],
    repeated: set[str],
) -> None:
    if repeated and not _AT_MOST_ONCE.isdisjoint(repeated):
        raise ParseError(f"more than one {sorted(_AT_MOST_ONCE & repeated)[0]}")
    for name in _REQUIRED:
        if name not in first:
            raise ParseError(f"missing {name}")
    cache = message.headers._cache
    if "Via" in repeated:
        cache["Via"] = [via for n, v in fields if n == "Via" for via in parse_via(v)]
    else:
        cache["Via"] = parse_via(first["Via"])
    cseq = cache["CSeq"] = parse_cseq(first["CSeq"])
    cache["From"] = [parse_name_addr(first["From"])]
    cache["To"] = [parse_name_addr(first["To"])]
    if not _CALL_ID_RE.fullmatch(first["Call-ID"]):
        raise ParseError("bad Call-ID")
    if "Contact" in first:
        values = (
            [v for n, v in fields if n == "Contact"]
            if "Contact" in repeated
            else [first["Contact"]]
        )
        cache["Contact"] = [
            parse_name_addr(part) for v in values for part in split_strict(v, "Contact")
        ]
    if "Max-Forwards" in first:
        value = first["Max-Forwards"]
        if not _DIGITS_RE.fullmatch(value) or int(value) > 255:
            raise ParseError(f"bad Max-Forwards {value!r}")
    if "Expires" in first:
        # delta-seconds: any digit string (§20.19; huge values mean "very long", §10.2.1.1)
        for value in message.headers.get_fields("Expires"):
            if not value.isdigit() or not value.isascii():
                raise ParseError(f"bad Expires {value!r}")
    if isinstance(message, Request):
        _check_request(message, cseq.method)


def _check_request(request: Request, cseq_method: str) -> None:
    if cseq_method != request.method:
        raise ParseError(f"CSeq method {cseq_method!r} != request method {request.method!r}")
    uri = request.uri
    m = _SCHEME_RE.match(uri)
    if m is None:
        raise ParseError(f"bad Request-URI {uri!r}")
    if m.group()[:-1].lower() not in _SUPPORTED_SCHEMES:
        raise ParseError(f"unsupported Request-URI scheme in {uri!r}", 416)
    parsed = parse_uri(uri)
    if getattr(parsed, "headers", None):
        # §19.1.5: headers are not allowed in a Request-URI; never forward them.
        raise ParseError(f"escaped headers in Request-URI {uri!r}")
    request._uri_cache = (uri, parsed)


# --------------------------------------------------------------------------- streams
_CL_RE = re.compile(rb"\r\n(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)


class StreamFramer:
    """Frames messages on a TCP/TLS byte stream by Content-Length (mandatory on streams,
    RFC 3261 §18.3). Leading CRLFs between messages are keep-alives.

        framer.feed(data)
        while (item := framer.next()) is not None:   # Request | Response | KeepAlive
            ...
    A ParseError from next() means the stream cannot be re-synchronised: answer if possible
    and close the connection. A head larger than max_size without a blank line is 413.

    Keep-alives: "\\r\\n\\r\\n" is a ping (KeepAlive(ping=True)); a lone "\\r\\n" is reported
    as KeepAlive(ping=False) once the next octet shows it is not the start of a ping (it needs
    no answer, so waiting costs nothing). A message without Content-Length has an empty body.
    """

    def __init__(
        self, *, max_size: int = DEFAULT_MAX_MESSAGE, max_headers: int = DEFAULT_MAX_HEADERS
    ) -> None:
        self._buf = bytearray()
        self._scanned = 0  # the blank line is not in _buf[:_scanned]
        self._max_size = max_size
        self._max_headers = max_headers
        self._broken: ParseError | None = None

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next(self) -> Request | Response | KeepAlive | None:
        if self._broken is not None:
            raise self._broken
        buf = self._buf
        if buf[:1] == b"\r":
            return self._keepalive()
        end = buf.find(b"\r\n\r\n", self._scanned)
        if end < 0:
            self._scanned = max(0, len(buf) - 3)
            if len(buf) > self._max_size:
                self._fail(ParseError("header section too large", 413))
            return None
        total = end + 4 + self._content_length(bytes(buf[: end + 2]))
        if total > self._max_size:
            self._fail(ParseError(f"message of {total} octets exceeds {self._max_size}", 413))
        if len(buf) < total:
            return None
        data = bytes(buf[:total])
        del buf[:total]
        self._scanned = 0
        return parse_message(
            data, max_size=self._max_size, max_headers=self._max_headers, stream=True
        )

    def _keepalive(self) -> KeepAlive | None:
        buf = self._buf
        if buf.startswith(b"\r\n\r\n"):
            del buf[:4]
            return KeepAlive(ping=True)
        if b"\r\n\r\n".startswith(bytes(buf[:4])):
            return None  # "\r", "\r\n", "\r\n\r": could still become a ping
        if buf.startswith(b"\r\n"):
            del buf[:2]
            self._scanned = 0
            return KeepAlive(ping=False)
        self._fail(ParseError("bare CR on the stream"))
        raise AssertionError("unreachable")  # pragma: no cover

    def _content_length(self, head: bytes) -> int:
        found = _CL_RE.findall(head)
        if not found:
            return 0
        values = {v.strip(b" \t") for v in found}
        value = values.pop()
        if values or not value.isdigit() or len(value) > 10:
            self._fail(ParseError(f"bad Content-Length framing {found!r}"))
        return int(value)

    def _fail(self, error: ParseError) -> None:
        self._broken = error
        raise error

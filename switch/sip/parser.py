"""SIP wire parser (RFC 3261 §7, §18.3, §25): datagrams and stream framing.

CONTRACT — see message.py. The only exception that leaves this module is ParseError.
"""

from __future__ import annotations

from dataclasses import dataclass

from .message import ParseError, Request, Response

__all__ = [
    "DEFAULT_MAX_MESSAGE",
    "DEFAULT_MAX_HEADERS",
    "parse_message",
    "StreamFramer",
    "KeepAlive",
    "is_keepalive",
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
    raise NotImplementedError


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
      From, To, Call-ID, CSeq (method must equal the request method), Max-Forwards (0–255),
      Content-Length (non-negative integer), Contact (each value), Expires (integer).
    - Body framing: Content-Length; over a datagram, octets after the body are ignored
      (RFC 3261 §18.3) and a Content-Length larger than the available octets is 400; a
      datagram without Content-Length takes the rest as the body.
    - Too large: ParseError(413); too many headers: ParseError(400).
    Raises ParseError with `.partial` set (see below) whenever the start line and the raw
    header fields could be read, so that the caller can build a 400 reply.
    """
    raise NotImplementedError


def partial_of(error: ParseError) -> Request | Response | None:
    """The message as far as it could be read (raw header fields, values unparsed), or None.
    Used to answer 400 with the request's Via/From/To/Call-ID/CSeq copied verbatim."""
    return getattr(error, "partial", None)


class StreamFramer:
    """Frames messages on a TCP/TLS byte stream by Content-Length (mandatory on streams,
    RFC 3261 §18.3). Leading CRLFs between messages are keep-alives.

        framer.feed(data)
        while (item := framer.next()) is not None:   # Request | Response | KeepAlive
            ...
    A ParseError from next() means the stream cannot be re-synchronised: answer if possible
    and close the connection. A head larger than max_size without a blank line is 413.
    """

    def __init__(
        self, *, max_size: int = DEFAULT_MAX_MESSAGE, max_headers: int = DEFAULT_MAX_HEADERS
    ) -> None:
        raise NotImplementedError

    def feed(self, data: bytes) -> None:
        raise NotImplementedError

    def next(self) -> Request | Response | KeepAlive | None:
        raise NotImplementedError

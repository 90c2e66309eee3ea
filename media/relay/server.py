"""The ng server side, sans-IO: a datagram in, the reply datagram out.

- Retransmissions: UDP clients resend a request with the same cookie until they get a reply.
  Acting twice would allocate a second port pair for one offer, so the reply to every cookie
  is cached (per source address, `cache_ttl` seconds, at most `cache_size` entries) and a
  repeated cookie gets the cached reply without the command being run again — as rtpengine
  does.
- Errors: a datagram without a cookie cannot be answered and is dropped (counted); a body
  that is not a bencoded dictionary gets `error` "Could not decode dictionary"; a request the
  core refuses gets `error` with its reason; a bug in a handler gets `error` "Internal error"
  and is logged — the relay never dies of a request.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import MediaError
from .bencode import BencodeError, EncodableValue, decode
from .errors import NgRequestError
from .ng import Request, encode_message, parse_request

__all__ = ["NgServer", "ServerStats"]

log = logging.getLogger(__name__)
Handler = Callable[[Request, float, float], dict[str, EncodableValue]]


@dataclass(slots=True)
class ServerStats:
    requests: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    retransmissions: int = 0
    dropped: int = 0  # no cookie: cannot be answered
    internal_errors: int = 0


class NgServer:
    def __init__(
        self, handler: Handler, *, cache_ttl: float = 30.0, cache_size: int = 20_000
    ) -> None:
        self.handler = handler
        self.cache_ttl = cache_ttl
        self.cache_size = cache_size
        self.stats = ServerStats()
        self._cache: OrderedDict[tuple[object, str], tuple[float, bytes]] = OrderedDict()

    def datagram_received(
        self, data: bytes, source: object, now: float, wall: float
    ) -> bytes | None:
        """The reply to send back to `source`, or None (nothing can be answered)."""
        raw, space, body = data.partition(b" ")
        cookie = raw.decode("ascii", errors="replace")
        if not space or not cookie or len(cookie) > 64 or not cookie.isprintable():
            self.stats.dropped += 1
            return None
        self._expire(now)
        cached = self._cache.get((source, cookie))
        if cached is not None:
            self.stats.retransmissions += 1
            return cached[1]
        reply = encode_message(cookie, self._reply(body, now, wall))
        self._cache[(source, cookie)] = (now + self.cache_ttl, reply)
        return reply

    def _reply(self, body: bytes, now: float, wall: float) -> dict[str, EncodableValue]:
        try:
            value = decode(body)
        except BencodeError:
            return self._error("Could not decode dictionary")
        if not isinstance(value, dict):
            return self._error("Could not decode dictionary")
        try:
            request = parse_request(value)
            self.stats.requests[request.command] = self.stats.requests.get(request.command, 0) + 1
            return self.handler(request, now, wall)
        except NgRequestError as exc:
            return self._error(exc.message)
        except MediaError as exc:
            return self._error(f"{exc.error_id}: {exc.message}")
        except Exception:  # a bug must cost one request, not the relay
            log.exception("ng request failed")
            self.stats.internal_errors += 1
            return self._error("Internal error")

    def _error(self, reason: str) -> dict[str, EncodableValue]:
        self.stats.errors += 1
        return {"result": "error", "error-reason": reason}

    def _expire(self, now: float) -> None:
        cache = self._cache
        while cache and (len(cache) > self.cache_size or next(iter(cache.values()))[0] <= now):
            cache.popitem(last=False)

"""Typed errors of the relay control path (rtpengine's ng protocol), all `MediaError`s with a
stable `error_id` the proxy can switch on and count.

- `NgTimeout` (`relay-timeout`): no reply after the whole retransmission schedule.
- `NgUnreachable` (`relay-unreachable`): the relay's port answered with ICMP "port
  unreachable" (nothing listens), or the socket could not be opened.
- `NgRefused` (`relay-refused`): the relay answered `result: error`; `reason` is its
  `error-reason` verbatim ("Unknown call-id", …).
- `NgProtocolError` (`relay-malformed`): a datagram or dictionary that is not the ng protocol
  (bad cookie, bad bencode, a reply without `result`, a request without `command`).
- `NgRequestError` (`relay-bad-request`): a request the relay refuses to act on; the server
  side turns it into an `error` reply with the message as `error-reason`.
"""

from __future__ import annotations

from ..errors import MediaError

__all__ = [
    "NgError",
    "NgProtocolError",
    "NgRefused",
    "NgRequestError",
    "NgTimeout",
    "NgUnreachable",
]


class NgError(MediaError):
    """Base of the relay control errors."""

    default_id = "relay-error"


class NgTimeout(NgError):
    default_id = "relay-timeout"


class NgUnreachable(NgError):
    default_id = "relay-unreachable"


class NgProtocolError(NgError):
    default_id = "relay-malformed"


class NgRequestError(NgError):
    default_id = "relay-bad-request"


class NgRefused(NgError):
    """The relay's `result: error` reply; `reason` is its `error-reason`."""

    default_id = "relay-refused"

    def __init__(self, reason: str, *, command: str = "") -> None:
        super().__init__(f"relay refused {command or 'request'}: {reason}")
        self.reason = reason
        self.command = command

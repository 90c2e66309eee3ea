"""Where a SIP message goes or came from: `Target`, and fresh RFC 3261 branches.

A leaf module (no imports from the rest of the package): `switch.state` stores targets
(registrations, flows), `switch.transport` sends to them and `switch.proxy` computes them, so
the address type must not drag the transaction layer or the parser along. `Target` is
transport-independent data; which socket or connection it means is the transport's business
(`conn_id` names a stream connection, a "flow", when one is known).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["MAGIC_COOKIE", "Target", "new_branch"]

# RFC 3261 §8.1.1.7: a branch starting with this cookie was built by an RFC 3261 element
# (unique per transaction), which is what §17.2.3 matching relies on.
MAGIC_COOKIE = "z9hG4bK"


@dataclass(frozen=True, slots=True)
class Target:
    """Where a message goes or came from."""

    transport: str  # "udp" | "tcp" | "tls" (lower-case)
    host: str
    port: int
    conn_id: int | None = None  # a specific stream connection (flow) to reuse, when known

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"


def new_branch() -> str:
    """A fresh RFC 3261 branch: magic cookie + 80 random bits (unique in practice)."""
    # os.urandom directly: what secrets.token_hex(10) reads, without its two Python calls
    # (a branch per forwarded request)
    return MAGIC_COOKIE + os.urandom(10).hex()

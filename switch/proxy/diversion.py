"""Diversions: what the proxy puts on calls it sends elsewhere than the dialled devices - to
the media service (announcement, busy message, voicemail, voicemail menu) or, forwarded,
through the carrier.

Media hand-offs
---------------
The hand-off URI format is the contract in `switch/handoff.py` (shared with the media
service, which parses it). This module maps routing decisions onto it and onto the
configured media URIs (`MediaService`: `[media] uri`, one or several; the shared `secret`
signs every hand-off). The request also carries P-Called-Party-ID with the dialled number
and keeps the caller's From/P-Asserted-Identity, so a media service can read the headers too.

Forwarding identity
-------------------
A forwarded call leaves with the dialled tenant number as identity (P-Asserted-Identity and
From, `trunk.identity_headers`; service rule: the target sees the 03 number, not the caller).
The diversion is described by History-Info (RFC 7044), the standards-track header, with two
entries: index 1 the dialled tenant number as it reached us, index 1.1 the forward target with
`cause=302` (RFC 4458 cause for an unconditional forward, RFC 7044 §10.1) and `mp=1` (the
target was changed by a mapping, §10.3), and also by Diversion (RFC 5806,
`reason=unconditional`), which many carrier trunks still read instead. Neither header
carries the caller's own number (their semantics are the retargeting history), and the
service rule says the target must not see it: the original caller is kept on the switch side
(the Forward decision's `original_caller`, logged and, later, in the CDR and the app's call
history).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from provisioning.model import national_form
from routing.decisions import Announce, Busy, Forward, Voicemail, VoicemailMenu
from switch.handoff import (
    BUSY_PROMPT,
    CAUSE_BUSY,
    CAUSE_FORWARD,
    CAUSE_UNAVAILABLE,
    HandOff,
    Service,
    Then,
)
from switch.sip.message import Headers, ParseError, SipURI, parse_uri

__all__ = [
    "MediaService",
    "announce_handoff",
    "busy_handoff",
    "forward_headers",
    "menu_handoff",
    "voicemail_handoff",
]


@dataclass(frozen=True, slots=True)
class MediaService:
    """The media service's SIP URIs (`[media] uri`: one, or several to spread calls over)
    and the secret that signs hand-offs (`[media] secret`, shared with the media service)."""

    uris: tuple[SipURI, ...]
    secret: bytes = b""

    @classmethod
    def parse(cls, text: str | list[str], secret: bytes = b"") -> MediaService:
        texts = [text] if isinstance(text, str) else list(text)
        if not texts:
            raise ValueError("media.uri: at least one sip: URI expected")
        return cls(tuple(_media_uri(t) for t in texts), secret)

    @property
    def uri(self) -> SipURI:
        return self.uris[0]

    def order(self, call_id: str) -> list[int]:
        """The media URIs to try for a call: its share first (a stable hash of the Call-ID
        spreads calls evenly), then the others in turn, as fail-over."""
        n = len(self.uris)
        first = zlib.crc32(call_id.encode()) % n
        return [(first + i) % n for i in range(n)]

    def uri_for(self, handoff: HandOff, index: int = 0) -> str:
        """The Request-URI of a hand-off to the `index`-th media URI: the service in the
        user part, the media URI's own transport parameter first, then the hand-off's."""
        base = self.uris[index % len(self.uris)]
        params = {**base.params, **handoff.uri_params(self.secret)}
        return str(base.with_(user=handoff.service.value, params=params))


def _media_uri(text: str) -> SipURI:
    try:
        uri = parse_uri(text.strip())
    except ParseError as exc:
        raise ValueError(f"media.uri: not a URI: {text!r}") from exc
    if not isinstance(uri, SipURI) or uri.scheme not in ("sip", "sips"):
        raise ValueError(f"media.uri must be a sip: URI, got {text!r}")
    if set(uri.params) - {"transport"}:
        raise ValueError(f"media.uri: only ;transport= is allowed, got {text!r}")
    return uri


def announce_handoff(d: Announce, caller: str | None) -> HandOff:
    return HandOff(
        service=Service.ANNOUNCE,
        tenant=d.tenant_id,
        target=d.number,
        prompt=d.prompt,
        then=Then.VOICEMAIL if d.then_voicemail else Then.HANGUP,
        mailboxes=(d.mailbox,) if d.mailbox is not None else (),
        caller=caller or None,
    )


def busy_handoff(d: Busy, caller: str | None) -> HandOff:
    """Voicemail takes a busy call when the number has it; else the fixed busy message."""
    if d.mailbox is not None:
        return voicemail_handoff(d.tenant_id, d.number, d.mailbox, caller, CAUSE_BUSY)
    return HandOff(
        service=Service.BUSY,
        tenant=d.tenant_id,
        target=d.number,
        prompt=BUSY_PROMPT,
        then=Then.HANGUP,
        caller=caller or None,
        cause=CAUSE_BUSY,
    )


def voicemail_handoff(
    tenant_id: str, number: str, mailbox: str, caller: str | None, cause: int
) -> HandOff:
    return HandOff(
        service=Service.VOICEMAIL,
        tenant=tenant_id,
        target=number,
        mailboxes=(mailbox,),
        caller=caller or None,
        cause=cause,
    )


def menu_handoff(d: VoicemailMenu) -> HandOff:
    """The voicemail menu of a device (the access code): its tenant, itself, its mailboxes."""
    return HandOff(
        service=Service.VOICEMAIL_MENU, tenant=d.tenant_id, device=d.device_id,
        mailboxes=d.mailboxes,
    )  # fmt: skip


def voicemail_decision_handoff(d: Voicemail, caller: str | None) -> HandOff:
    return voicemail_handoff(d.tenant_id, d.number, d.mailbox, caller, CAUSE_UNAVAILABLE)


def forward_headers(headers: Headers, d: Forward, realm: str, gateway_uri: str) -> None:
    """History-Info and Diversion of a forwarded call (see the module docstring). Whatever
    the carrier sent of either is replaced: the history starts at our tenant number (what
    came before is the caller's network's, and indexes would have to continue it)."""
    dialled = f"sip:{d.number}@{realm};user=phone"
    headers.remove("History-Info")
    headers.add("History-Info", f"<{dialled}>;index=1")
    target = f"{gateway_uri}?Reason=SIP%3Bcause%3D{CAUSE_FORWARD}"
    headers.add("History-Info", f"<{_with_cause(target)}>;index=1.1;mp=1")
    headers.set(
        "Diversion",
        f"<sip:{national_form(d.number)}@{realm}>;reason=unconditional;counter=1;privacy=off",
    )


def _with_cause(uri: str) -> str:
    """RFC 4458 cause parameter in the hi-targeted-to-uri (before any escaped headers)."""
    base, sep, hdrs = uri.partition("?")
    return f"{base};cause={CAUSE_FORWARD}{sep}{hdrs}"

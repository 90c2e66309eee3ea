"""Hand-offs: the Request-URIs and headers of calls the proxy sends to the media service
(announcement, busy message, voicemail) or forwards through the carrier.

Media URIs
----------
The media service is a SIP user agent at `[media] uri` (e.g. `sip:media@127.0.0.1:5090`).
A hand-off replaces the user part with the service wanted and says everything the media side
needs in URI parameters, in the style of RFC 4458 (SIP URIs for voicemail and IVR: `target`
= the original target, `cause` = why the call was diverted), so that the media service needs
no lookup and no state of ours::

    sip:announce@127.0.0.1:5090;prompt=template-1;then=voicemail;mailbox=+81355500100;
        tenant=t1;target=+81355500100;caller=+81312345678
    sip:busy@127.0.0.1:5090;prompt=busy;then=hangup;tenant=t1;target=+81355500100;
        caller=+81312345678;cause=486
    sip:voicemail@127.0.0.1:5090;mailbox=+81355500100;tenant=t1;target=+81355500100;
        caller=+81312345678;cause=408

- user part: `announce` (after-hours), `busy` (every channel in use), `voicemail`;
- `prompt`: the announcement (`template-1..3` or `prompt:<id>` of an uploaded file), `busy`
  for the fixed system busy message (service rule: it cannot be changed);
- `then`: `voicemail` (record a message into `mailbox` after the prompt) or `hangup`;
- `mailbox`: the number whose voicemail records (E.164);
- `tenant`: the tenant id; `target`: the dialled tenant number (E.164);
- `caller`: the caller's number as received (omitted when unknown);
- `cause` (RFC 4458 §3.2): 486 busy (channels full), 408 no answer within the voicemail ring
  time, 480 nobody registered. Announcements carry none (nothing failed).
Values are escaped as URI parameter text (RFC 3261 §25.1 paramchar); `+` and `:` need none.
The request also carries P-Called-Party-ID with the dialled number, and keeps the caller's
From/P-Asserted-Identity, so a media service can equally read the headers.

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

from dataclasses import dataclass

from provisioning.model import national_form
from routing.decisions import Announce, Busy, Forward, Voicemail
from switch.sip.message import Headers, ParseError, SipURI, parse_uri

__all__ = [
    "BUSY_PROMPT",
    "CAUSE_BUSY",
    "CAUSE_FORWARD",
    "CAUSE_NO_ANSWER",
    "CAUSE_UNAVAILABLE",
    "MediaService",
    "announce_uri",
    "busy_uri",
    "forward_headers",
    "voicemail_decision_uri",
    "voicemail_uri",
]

CAUSE_BUSY = 486
CAUSE_NO_ANSWER = 408
CAUSE_UNAVAILABLE = 480
CAUSE_FORWARD = 302
BUSY_PROMPT = "busy"


@dataclass(frozen=True, slots=True)
class MediaService:
    """The media service's SIP URI (`[media] uri`)."""

    uri: SipURI

    @classmethod
    def parse(cls, text: str) -> MediaService:
        try:
            uri = parse_uri(text.strip())
        except ParseError as exc:
            raise ValueError(f"media.uri: not a URI: {text!r}") from exc
        if not isinstance(uri, SipURI) or uri.scheme not in ("sip", "sips"):
            raise ValueError(f"media.uri must be a sip: URI, got {text!r}")
        return cls(uri)

    def service(self, name: str, params: dict[str, str | None]) -> str:
        """`name` in the user part; the configured URI's own parameters (e.g. transport)
        first, then the hand-off's."""
        return str(self.uri.with_(user=name, params={**self.uri.params, **params}))


def _common(tenant_id: str, number: str, caller: str | None) -> dict[str, str | None]:
    params: dict[str, str | None] = {"tenant": tenant_id, "target": number}
    if caller:
        params["caller"] = caller
    return params


def announce_uri(media: MediaService, d: Announce, caller: str | None) -> str:
    params: dict[str, str | None] = {
        "prompt": d.prompt,
        "then": "voicemail" if d.then_voicemail else "hangup",
    }
    if d.mailbox is not None:
        params["mailbox"] = d.mailbox
    return media.service("announce", params | _common(d.tenant_id, d.number, caller))


def busy_uri(media: MediaService, d: Busy, caller: str | None) -> str:
    """Voicemail takes a busy call when the number has it; else the fixed busy message."""
    if d.mailbox is not None:
        return voicemail_uri(media, d.tenant_id, d.number, d.mailbox, caller, CAUSE_BUSY)
    params: dict[str, str | None] = {"prompt": BUSY_PROMPT, "then": "hangup"}
    params |= _common(d.tenant_id, d.number, caller)
    params["cause"] = str(CAUSE_BUSY)
    return media.service("busy", params)


def voicemail_uri(
    media: MediaService,
    tenant_id: str,
    number: str,
    mailbox: str,
    caller: str | None,
    cause: int,
) -> str:
    params: dict[str, str | None] = {"mailbox": mailbox}
    params |= _common(tenant_id, number, caller)
    params["cause"] = str(cause)
    return media.service("voicemail", params)


def voicemail_decision_uri(media: MediaService, d: Voicemail, caller: str | None) -> str:
    return voicemail_uri(media, d.tenant_id, d.number, d.mailbox, caller, CAUSE_UNAVAILABLE)


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

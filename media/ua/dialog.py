"""The UAS side of one INVITE dialog (RFC 3261 §12, §13.3, §14, §15), sans-IO.

The media user agent answers calls and never places them, so a dialog here is always created
by an incoming INVITE: its identity is the Call-ID, our To tag (`local_tag`) and the caller's
From tag (`remote_tag`); the route set is the INVITE's Record-Route values in order and the
remote target its Contact (§12.1.1). This module builds the messages of that dialog — the
responses to the INVITE, the answers to in-dialog requests, our own BYE — and checks what the
peer sends (§12.2.2: a request with a lower CSeq than the last one is answered 500).

Session timer (RFC 4028). If the INVITE asks for one (Session-Expires), the 2xx states the
interval and leaves the refreshes to the caller (`refresher=uac`, §9: the UAS may choose);
an interval below our minimum is refused with 422 and Min-SE (§8.1). `session_deadline(now)`
tells the glue when to give up on a session nobody refreshed (§10: send BYE at the expiry);
every in-dialog request that refreshes the session moves it.

Nothing here sends or waits: the agent (media/ua/agent.py) passes messages in and out.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass

from switch.sip.message import (
    Headers,
    NameAddr,
    ParseError,
    Request,
    Response,
    SipURI,
    make_response,
    parse_name_addr,
)

__all__ = [
    "ALLOW",
    "MIN_SE",
    "DialogId",
    "SessionTimer",
    "UasDialog",
    "dialog_id_of",
    "session_request",
]

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"
MIN_SE = 90  # RFC 4028 §4: the minimum session interval we accept (and its default)
_SDP = "application/sdp"


@dataclass(frozen=True, slots=True)
class DialogId:
    """§12: Call-ID, our tag, the peer's tag."""

    call_id: str
    local_tag: str
    remote_tag: str


def dialog_id_of(request: Request) -> DialogId | None:
    """The id of the dialog an in-dialog request (one with a To tag) belongs to, from our side
    (To tag = ours, From tag = the peer's). None for a request outside a dialog."""
    local = request.to_tag
    remote = request.from_tag
    if local is None:
        return None
    return DialogId(request.call_id, local, remote or "")


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionTimer:
    """What RFC 4028 negotiation produced: the interval, and whether the caller supports the
    extension (then the 2xx carries `Require: timer`)."""

    interval: int
    uac_supports: bool


def session_request(request: Request) -> SessionTimer | int | None:
    """The session timer an INVITE asks for: None (none asked), a SessionTimer, or, when the
    interval is below MIN_SE, that interval (the caller answers 422)."""
    value = request.headers.get("Session-Expires")
    if not value:
        return None
    try:
        interval = int(value.split(";", 1)[0].strip())
    except ValueError as exc:
        raise ParseError("bad Session-Expires", 400) from exc
    if interval < MIN_SE:
        return interval
    supported = ",".join(request.headers.get_all("Supported")).lower()
    return SessionTimer(interval=interval, uac_supports="timer" in supported)


class UasDialog:
    """One dialog we answered. `contact` is our own Contact URI (where in-dialog requests
    reach us), e.g. `<sip:media@127.0.0.1:5062>`."""

    __slots__ = (
        "_cseq",
        "contact",
        "id",
        "invite",
        "remote_cseq",
        "remote_target",
        "route_set",
        "session",
        "session_expiry",
    )

    def __init__(self, invite: Request, contact: str, *, local_tag: str | None = None) -> None:
        self.invite = invite
        self.contact = contact
        self.id = DialogId(invite.call_id, local_tag or secrets.token_hex(6), invite.from_tag or "")
        self.remote_cseq = invite.cseq.seq
        self.route_set = invite.headers.get_all("Record-Route")
        self.remote_target = _contact_uri(invite)
        self._cseq = itertools.count(secrets.randbelow(2**20) + 1)
        self.session: SessionTimer | None = None
        self.session_expiry: float | None = None

    # ------------------------------------------------------------------ the INVITE
    def respond(
        self,
        status: int,
        *,
        sdp: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
    ) -> Response:
        """A response to the INVITE: our To tag on every one above 100, our Contact on the
        dialog-establishing ones (1xx/2xx, §12.1.1), the SDP when given."""
        extra = list(headers or [])
        if 100 < status < 300:
            extra += [("Contact", self.contact), ("Allow", ALLOW)]
        if status < 300 and self.session is not None and status >= 200:
            extra += _session_headers(self.session)
        if sdp:
            extra.append(("Content-Type", _SDP))
        tag = self.id.local_tag if status > 100 else None
        return make_response(self.invite, status, to_tag=tag, headers=extra, body=sdp)

    def start_session_timer(self, timer: SessionTimer, now: float) -> None:
        self.session = timer
        self.session_expiry = now + timer.interval

    def refreshed(self, request: Request, now: float) -> None:
        """A re-INVITE or UPDATE refreshes the session (RFC 4028 §10); it may change the
        interval (never below MIN_SE: such a refresh was refused with 422 before)."""
        asked = session_request(request)
        if isinstance(asked, SessionTimer):
            self.session = asked
        if self.session is not None:
            self.session_expiry = now + self.session.interval

    # ------------------------------------------------------------------ in the dialog
    def accepts(self, request: Request) -> int | None:
        """§12.2.2: None when the request may be processed, else the status to refuse it
        with (500 for a CSeq lower than the last, per the RFC)."""
        seq = request.cseq.seq
        if request.method in ("ACK", "CANCEL"):
            return None  # they reuse their INVITE's CSeq number
        if seq <= self.remote_cseq and request.method != "ACK":
            return 500
        self.remote_cseq = seq
        return None

    def answer(
        self,
        request: Request,
        status: int,
        *,
        sdp: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
    ) -> Response:
        """A response to an in-dialog request (re-INVITE/UPDATE answers carry our Contact)."""
        extra = list(headers or [])
        if request.method in ("INVITE", "UPDATE") and 200 <= status < 300:
            extra += [("Contact", self.contact), ("Allow", ALLOW)]
            if self.session is not None:
                extra += _session_headers(self.session)
        if sdp:
            extra.append(("Content-Type", _SDP))
        return make_response(request, status, headers=extra, body=sdp)

    def request(self, method: str, *, headers: list[tuple[str, str]] | None = None) -> Request:
        """A request of ours in the dialog (§12.2.1.1): the remote target as Request-URI,
        the route set as Route, From/To swapped from the INVITE with the tags, a new CSeq.
        The caller adds its Via (it knows the transport) and sends to `next_hop()`."""
        h = self.invite.headers
        to = _with_tag(h.get("From") or "", None)
        fields: list[tuple[str, str]] = [("Route", r) for r in self.route_set]
        fields += [
            ("Max-Forwards", "70"),
            ("From", _with_tag(h.get("To") or "", self.id.local_tag)),
            ("To", to),
            ("Call-ID", self.id.call_id),
            ("CSeq", f"{next(self._cseq)} {method}"),
            *(headers or []),
        ]
        return Request(method=method, uri=self.remote_target, headers=Headers(fields))

    def next_hop(self) -> SipURI:
        """§12.2.1.1 / §16.12: the first Route when it is a loose router, else the remote
        target (a strict router first in the route set is not supported: the proxies we
        sit behind are loose routers)."""
        if self.route_set:
            uri = parse_name_addr(self.route_set[0]).uri
            if isinstance(uri, SipURI):
                return uri
        target = parse_name_addr(f"<{self.remote_target}>").uri
        if not isinstance(target, SipURI):
            raise ParseError("remote target is not a SIP URI", 416)
        return target


def _contact_uri(invite: Request) -> str:
    contact = invite.headers.name_addr("Contact")
    if contact is None:
        raise ParseError("INVITE without Contact", 400)  # §8.1.1.8: MUST be present
    return str(contact.uri)


def _with_tag(value: str, tag: str | None) -> str:
    """The name-addr text with its tag kept (tag None) or set to `tag`."""
    na: NameAddr = parse_name_addr(value)
    if tag is None or na.tag == tag:
        return value
    return f"{value};tag={tag}" if na.tag is None else value


def _session_headers(timer: SessionTimer) -> list[tuple[str, str]]:
    out = [("Session-Expires", f"{timer.interval};refresher=uac")]
    if timer.uac_supports:
        out.append(("Require", "timer"))
    return out

"""The hand-off contract between the proxy (which builds hand-off URIs) and the media service
(which parses them): one pure module both import, so the two sides cannot drift apart.

A hand-off is an INVITE the proxy sends to the media service with everything the media side
needs in the Request-URI, in the style of RFC 4458 (SIP URIs for voicemail and IVR: `target`
is the original target, `cause` says why the call was diverted), so that media needs no lookup
in the switch's state::

    sip:announce@127.0.0.1:5062;prompt=template-1;then=voicemail;mailbox=+81355500100;
        tenant=t1;target=+81355500100;caller=+81312345678;sig=…
    sip:busy@127.0.0.1:5062;prompt=busy;then=hangup;tenant=t1;target=+81355500100;
        caller=+81312345678;cause=486;sig=…
    sip:voicemail@127.0.0.1:5062;mailbox=+81355500100;tenant=t1;target=+81355500100;
        caller=+81312345678;cause=408;sig=…
    sip:voicemail-menu@127.0.0.1:5062;tenant=t1;device=d1;mailbox=%2B81355500100,…;sig=…

- user part: the `Service`;
- `prompt`: `template-1..3`, `prompt:<id>` (an uploaded file), or `busy` (the fixed system
  message; service rule: it cannot be changed);
- `then`: `voicemail` (record into `mailbox` after the prompt) or `hangup`;
- `mailbox`: the number whose voicemail records (E.164); for the retrieval menu, every mailbox
  the calling device may listen to, comma-separated;
- `tenant`, `target` (the dialled tenant number), `caller` (as received, omitted when
  unknown), `device` (the calling ID, retrieval menu only);
- `cause` (RFC 4458 §3.2): 486 busy, 408 no answer, 480 nobody registered;
- `sig`: an HMAC-SHA-256 (truncated) of the other parameters under the secret the proxy and
  the media service share, so that media serves only what the proxy handed over (a phone that
  learns the media address cannot record into someone's mailbox or play their messages).

Values are percent-escaped outside RFC 3261 §25.1 `paramchar` by the URI serialiser (a comma
becomes %2C); `+` and `:` need none. The signature covers the unescaped values.
Parsing is strict: an unknown service, an unknown or repeated parameter, a missing required
one or a bad signature is a `HandOffError` with the SIP status the media service answers
(404 for an unknown service, 400 for bad parameters, 403 for a bad signature).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from dataclasses import dataclass

__all__ = [
    "BUSY_PROMPT",
    "CAUSE_BUSY",
    "CAUSE_FORWARD",
    "CAUSE_NO_ANSWER",
    "CAUSE_UNAVAILABLE",
    "HandOff",
    "HandOffError",
    "Service",
    "Then",
]

CAUSE_BUSY = 486
CAUSE_NO_ANSWER = 408
CAUSE_UNAVAILABLE = 480
CAUSE_FORWARD = 302
BUSY_PROMPT = "busy"
_CAUSES = frozenset({CAUSE_BUSY, CAUSE_NO_ANSWER, CAUSE_UNAVAILABLE})
_SIG_BYTES = 12  # 96-bit tag: forging one needs the secret


class Service(enum.StrEnum):
    ANNOUNCE = "announce"  # after-hours announcement (then voicemail or hang up)
    BUSY = "busy"  # every channel in use: the fixed system message
    VOICEMAIL = "voicemail"  # record a message into `mailbox`
    VOICEMAIL_MENU = "voicemail-menu"  # a device listens to its mailboxes (access code)


class Then(enum.StrEnum):
    VOICEMAIL = "voicemail"
    HANGUP = "hangup"


class HandOffError(ValueError):
    """A hand-off URI media must refuse, with the SIP status to answer it with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True, kw_only=True)
class HandOff:
    """One hand-off, validated on construction (see the module docstring)."""

    service: Service
    tenant: str
    target: str | None = None
    prompt: str | None = None
    then: Then | None = None
    mailboxes: tuple[str, ...] = ()
    caller: str | None = None
    device: str | None = None
    cause: int | None = None

    def __post_init__(self) -> None:
        _check(bool(self.tenant), "tenant is required")
        _check(all(_e164(m) for m in self.mailboxes), f"mailbox must be E.164: {self.mailboxes}")
        _check(self.target is None or _e164(self.target), f"target must be E.164: {self.target}")
        _check(self.cause is None or self.cause in _CAUSES, f"unknown cause {self.cause}")
        match self.service:
            case Service.ANNOUNCE:
                _check(bool(self.prompt) and self.then is not None, "announce: prompt and then")
                wants = self.then is Then.VOICEMAIL
                _check(wants == (len(self.mailboxes) == 1), "a mailbox iff then=voicemail")
                _check(self.target is not None, "announce: target is required")
            case Service.BUSY:
                _check(self.prompt == BUSY_PROMPT, "busy: the fixed busy prompt")
                _check(not self.mailboxes and self.target is not None, "busy: target, no mailbox")
            case Service.VOICEMAIL:
                _check(len(self.mailboxes) == 1, "voicemail: exactly one mailbox")
                _check(self.target is not None, "voicemail: target is required")
            case Service.VOICEMAIL_MENU:
                _check(bool(self.device), "voicemail-menu: device is required")

    @property
    def mailbox(self) -> str | None:
        return self.mailboxes[0] if len(self.mailboxes) == 1 else None

    # ------------------------------------------------------------------ to and from a URI
    def params(self) -> list[tuple[str, str]]:
        """The URI parameters, in a fixed order (the signature covers this text)."""
        out: list[tuple[str, str]] = []
        for key, value in (
            ("prompt", self.prompt),
            ("then", self.then.value if self.then else None),
            ("mailbox", ",".join(self.mailboxes) if self.mailboxes else None),
            ("tenant", self.tenant),
            ("target", self.target),
            ("device", self.device),
            ("caller", self.caller),
            ("cause", str(self.cause) if self.cause is not None else None),
        ):
            if value is not None:
                out.append((key, value))
        return out

    def uri_params(self, secret: bytes) -> dict[str, str | None]:
        """The parameters to put on `sip:<service>@host:port` (after its own transport
        parameter), signature last. Values are unescaped; SipURI escapes them."""
        params = self.params()
        return {**dict(params), "sig": _sign(self.service, params, secret)}

    @classmethod
    def from_uri(
        cls, user: str | None, params: list[tuple[str, str | None]], secret: bytes
    ) -> HandOff:
        """Parse and verify a hand-off from the Request-URI's user part and (unescaped)
        parameters in order. Parameters this contract does not define are refused, except
        the URI's own transport-level ones (`transport`, `lr`), which are skipped."""
        try:
            service = Service(user or "")
        except ValueError:
            raise HandOffError(f"no such media service: {user!r}", 404) from None
        own = [(k, v) for k, v in params if k not in ("transport", "lr", "sig")]
        sig = [v for k, v in params if k == "sig"]
        if len(sig) != 1 or sig[0] is None:
            raise HandOffError("missing signature", 403)
        expected = _sign(service, [(k, v or "") for k, v in own], secret)
        if not hmac.compare_digest(sig[0], expected):
            raise HandOffError("bad signature", 403)
        return cls._build(service, own)

    @classmethod
    def _build(cls, service: Service, own: list[tuple[str, str | None]]) -> HandOff:
        values: dict[str, str] = {}
        for key, value in own:
            if key not in _KNOWN or key in values or value is None:
                raise HandOffError(f"bad hand-off parameter {key!r}")
            values[key] = value
        if "tenant" not in values:
            raise HandOffError("tenant is required")
        try:
            return cls(
                service=service,
                tenant=values["tenant"],
                target=values.get("target"),
                prompt=values.get("prompt"),
                then=Then(values["then"]) if "then" in values else None,
                mailboxes=tuple(values["mailbox"].split(",")) if "mailbox" in values else (),
                caller=values.get("caller"),
                device=values.get("device"),
                cause=int(values["cause"]) if "cause" in values else None,
            )
        except HandOffError:
            raise
        except ValueError as exc:
            raise HandOffError(str(exc)) from None


_KNOWN = frozenset({"prompt", "then", "mailbox", "tenant", "target", "device", "caller", "cause"})


def _sign(service: Service, params: list[tuple[str, str]], secret: bytes) -> str:
    text = "\n".join([service.value, *(f"{k}={v}" for k, v in params)])
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()[: _SIG_BYTES * 2]


def _e164(number: str) -> bool:
    return number.startswith("+") and number[1:].isdigit() and 8 <= len(number) <= 16


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise HandOffError(message)

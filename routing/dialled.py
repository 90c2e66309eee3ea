"""Classify the dialled string of a call (the Request-URI user part), once per call: `Call`
does it when it is built (`Call.classified`), and both `routing.needs` and `routing.decide`
read that. Two readings, by who dials:

`classify_called` - what a carrier delivers: one of the service's numbers, in national or
E.164 form ("0312345678", "+81312345678", also "81312345678"; separators, a "tel:" scheme and
";" parameters tolerated). `e164` is set when it is a Japanese number at all; the kind is
NATIONAL then, INVALID otherwise. No prefixes: 184/186 are dialled by callers, not delivered.

`classify` - what a device dialled:

Japanese dialling, as the service's devices send it:
- "110", "118", "119": police, coast guard, fire/ambulance. The service cannot place them.
- "104": directory enquiries, allowed (charged per call). Every other 1XY short code is refused:
  the user guide says "この他発信できない番号があります" (there are other numbers you cannot call).
- "184" / "186" before a number: withhold / present the caller's number for this call only.
  The prefix is stripped and the rest classified again, so "184110" is still an emergency call.
- "0" + 9 or 10 digits: a national number ("0312345678", "09012345678", "0570…", "0120…").
- "+81…": the same in E.164. Any other "+" is international; so are "010…" (Japan's
  international prefix) and "00XY…" (carrier selection codes, used for international calls).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from functools import lru_cache

from provisioning.model import normalize_number

from .decisions import DestinationKind

EMERGENCY = frozenset({"110", "118", "119"})
ALLOWED_SHORT_CODES = frozenset({"104"})
WITHHOLD_PREFIX = "184"
PRESENT_PREFIX = "186"

_SEPARATORS = re.compile(r"[\s\-().]")
_SHORT_CODE = re.compile(r"1[0-9]{2}")
_NATIONAL = re.compile(r"0[1-9][0-9]{8,9}")
_DIGITS = re.compile(r"[0-9]+")


class DialKind(enum.StrEnum):
    EMERGENCY = "emergency"
    INTERNATIONAL = "international"
    NATIONAL = "national"  # e164 is set
    DIRECTORY = "directory"  # 104
    BARRED_SHORT_CODE = "barred-short-code"
    INCOMPLETE = "incomplete"  # starts like a national number but is too short
    INVALID = "invalid"


@dataclass(frozen=True, slots=True, kw_only=True)
class Dialled:
    kind: DialKind
    digits: str  # separators and the 184/186 prefix removed
    e164: str | None = None
    withhold: bool = False


def clean(text: str) -> str:
    """Drop a "tel:" scheme, URI parameters (";phone-context=…") and visual separators."""
    text = text.strip().removeprefix("tel:").split(";", 1)[0]
    return _SEPARATORS.sub("", text)


# Both readings are pure functions of the text and a Dialled is immutable: the same dialled
# strings recur on every call to a number, so each is classified once (bounded).
@lru_cache(maxsize=4096)
def classify_called(text: str) -> Dialled:
    """The called number of an inbound carrier call (see the module docstring)."""
    try:
        e164 = normalize_number(text.split(";", 1)[0])
    except ValueError:
        return Dialled(kind=DialKind.INVALID, digits=clean(text))
    return Dialled(kind=DialKind.NATIONAL, digits=clean(text), e164=e164)


@lru_cache(maxsize=4096)
def classify(text: str) -> Dialled:
    """What a device dialled (see the module docstring)."""
    digits = clean(text)
    withhold = False
    for prefix, hide in ((WITHHOLD_PREFIX, True), (PRESENT_PREFIX, False)):
        if digits.startswith(prefix) and len(digits) > len(prefix):
            digits, withhold = digits[len(prefix) :], hide
            break
    return Dialled(kind=_kind(digits), digits=digits, e164=_e164(digits), withhold=withhold)


def _kind(digits: str) -> DialKind:
    if digits in EMERGENCY:
        return DialKind.EMERGENCY
    if digits.startswith("+"):
        if not digits.startswith("+81"):
            return DialKind.INTERNATIONAL
        return DialKind.NATIONAL if _e164(digits) else DialKind.INVALID
    if not _DIGITS.fullmatch(digits):
        return DialKind.INVALID
    if digits.startswith(("010", "00")):
        return DialKind.INTERNATIONAL
    if _SHORT_CODE.fullmatch(digits):
        return DialKind.DIRECTORY if digits in ALLOWED_SHORT_CODES else DialKind.BARRED_SHORT_CODE
    if _NATIONAL.fullmatch(digits):
        return DialKind.NATIONAL
    if digits.startswith("0") and len(digits) < 10:
        return DialKind.INCOMPLETE
    return DialKind.INVALID


def _e164(digits: str) -> str | None:
    if not (_NATIONAL.fullmatch(digits) or digits.startswith("+81")):
        return None
    try:
        return normalize_number(digits)
    except ValueError:
        return None


def destination_kind(e164: str) -> DestinationKind:
    """Rating class of a Japanese E.164 number."""
    national = "0" + e164[3:]
    for prefixes, kind in _KINDS:
        if national.startswith(prefixes):
            return kind
    return DestinationKind.LANDLINE


# Longer prefixes first: "0800" (toll-free) must not be taken for "080" (mobile).
_KINDS: tuple[tuple[tuple[str, ...], DestinationKind], ...] = (
    (("0570",), DestinationKind.NAVI_DIAL),
    (("0120", "0800"), DestinationKind.TOLL_FREE),
    (("0180", "0990"), DestinationKind.OTHER),
    (("070", "080", "090"), DestinationKind.MOBILE),
    (("050",), DestinationKind.IP_PHONE),
    (("020",), DestinationKind.OTHER),
)

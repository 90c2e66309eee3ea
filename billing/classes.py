"""What kind of call a CDR is: its direction, its class, and the caller's kind for toll-free.

Destinations are classified by `routing.dialled` (one numbering-plan reader for routing and
billing, so a call is never routed as one kind and rated as another):
- landline (0A…, the default), mobile (070/080/090), IP phone (050), navi dial (0570),
  toll-free (0120/0800), directory (104), other (020, 0180, 0990);
- refused: emergency (110/118/119), international (+ other than +81, 010…, 00XY…), and
  "barred" for the rest routing refuses (other 1XY short codes, incomplete or invalid input).
"""

from __future__ import annotations

import enum
from typing import assert_never

from routing.decisions import DestinationKind
from routing.dialled import DialKind, classify, destination_kind


class Direction(enum.StrEnum):
    OUTBOUND = "outbound"  # dialled from one of the tenant's IDs to the carrier
    FORWARDED = "forwarded"  # the carrier leg of a forwarded call (the number's option)
    INBOUND = "inbound"  # from the carrier to one of the tenant's ordinary numbers
    INTERNAL = "internal"  # between the tenant's own IDs
    TOLL_FREE_INBOUND = "toll-free-inbound"  # to the tenant's 0120/0800 number: the tenant pays


class CallClass(enum.StrEnum):
    """The rating class. The first seven are `routing.decisions.DestinationKind`'s values."""

    LANDLINE = "landline"
    MOBILE = "mobile"
    IP_PHONE = "ip-phone"
    NAVI_DIAL = "navi-dial"
    TOLL_FREE = "toll-free"
    DIRECTORY = "directory"
    OTHER = "other"
    INTERNAL = "internal"
    INBOUND = "inbound"
    EMERGENCY = "emergency"
    INTERNATIONAL = "international"
    BARRED = "barred"


DESTINATION_CLASSES = tuple(CallClass(kind.value) for kind in DestinationKind)
REFUSED_CLASSES = frozenset({CallClass.EMERGENCY, CallClass.INTERNATIONAL, CallClass.BARRED})


class CallerKind(enum.StrEnum):
    """Who calls a toll-free number; the toll-free tariff is per caller kind."""

    LANDLINE = "landline"
    MOBILE = "mobile"  # 携帯・PHS
    PAYPHONE = "payphone"


def destination_class(dialled: str) -> CallClass:
    """The class of a dialled destination: E.164, a national number, or a short code."""
    found = classify(dialled)
    match found.kind:
        case DialKind.NATIONAL:
            assert found.e164 is not None  # classify sets it for every national number
            return CallClass(destination_kind(found.e164).value)
        case DialKind.DIRECTORY:
            return CallClass.DIRECTORY
        case DialKind.EMERGENCY:
            return CallClass.EMERGENCY
        case DialKind.INTERNATIONAL:
            return CallClass.INTERNATIONAL
        case DialKind.BARRED_SHORT_CODE | DialKind.INCOMPLETE | DialKind.INVALID:
            return CallClass.BARRED
        case _:
            assert_never(found.kind)


_MOBILE_PREFIXES = ("+8170", "+8180", "+8190")


def caller_kind_for(caller: str | None, cpc: str | None = None) -> CallerKind:
    """The caller's kind for the toll-free tariff.

    A payphone cannot be told from its number: the carrier says so in the calling party's
    category, the tel URI `cpc` parameter (RFC 4694 §4: cpc=payphone, cpc=cellular,
    cpc=cellular-roaming). Without it, 070/080/090 numbers are mobiles and every other caller
    (landline, 050, withheld, unknown) is charged as a landline, the tariff's lowest rate.
    """
    category = (cpc or "").lower()
    if category == "payphone":
        return CallerKind.PAYPHONE
    if category in ("cellular", "cellular-roaming"):
        return CallerKind.MOBILE
    found = classify(caller or "")
    if found.e164 is not None and found.e164.startswith(_MOBILE_PREFIXES):
        return CallerKind.MOBILE
    return CallerKind.LANDLINE

import pytest

from routing.decisions import DestinationKind
from routing.dialled import DialKind, classify, destination_kind


@pytest.mark.parametrize(
    ("text", "kind", "e164", "withhold"),
    [
        ("110", DialKind.EMERGENCY, None, False),
        ("118", DialKind.EMERGENCY, None, False),
        ("119", DialKind.EMERGENCY, None, False),
        ("tel:119", DialKind.EMERGENCY, None, False),
        ("184110", DialKind.EMERGENCY, None, True),
        ("186119", DialKind.EMERGENCY, None, False),
        ("1 1 0", DialKind.EMERGENCY, None, False),
        ("104", DialKind.DIRECTORY, None, False),
        ("117", DialKind.BARRED_SHORT_CODE, None, False),
        ("184", DialKind.BARRED_SHORT_CODE, None, False),
        ("0312345678", DialKind.NATIONAL, "+81312345678", False),
        ("03-1234-5678", DialKind.NATIONAL, "+81312345678", False),
        ("+81312345678", DialKind.NATIONAL, "+81312345678", False),
        ("tel:+81-3-1234-5678;phone-context=example", DialKind.NATIONAL, "+81312345678", False),
        ("1840312345678", DialKind.NATIONAL, "+81312345678", True),
        ("1860312345678", DialKind.NATIONAL, "+81312345678", False),
        ("09012345678", DialKind.NATIONAL, "+819012345678", False),
        ("0570123456", DialKind.NATIONAL, "+81570123456", False),
        ("0120123456", DialKind.NATIONAL, "+81120123456", False),
        ("01012125551234", DialKind.INTERNATIONAL, None, False),
        ("+12125551234", DialKind.INTERNATIONAL, None, False),
        ("+442071234567", DialKind.INTERNATIONAL, None, False),
        ("0033010121255512", DialKind.INTERNATIONAL, None, False),
        ("184+12125551234", DialKind.INTERNATIONAL, None, True),
        ("031234", DialKind.INCOMPLETE, None, False),
        ("+81110", DialKind.INVALID, None, False),
        ("alice", DialKind.INVALID, None, False),
        ("", DialKind.INVALID, None, False),
        ("031234567890123", DialKind.INVALID, None, False),
        ("*67", DialKind.INVALID, None, False),
    ],
)
def test_classify(text: str, kind: DialKind, e164: str | None, withhold: bool) -> None:
    dialled = classify(text)
    assert (dialled.kind, dialled.e164, dialled.withhold) == (kind, e164, withhold)


@pytest.mark.parametrize(
    ("e164", "kind"),
    [
        ("+81312345678", DestinationKind.LANDLINE),
        ("+819012345678", DestinationKind.MOBILE),
        ("+818012345678", DestinationKind.MOBILE),
        ("+817012345678", DestinationKind.MOBILE),
        ("+815012345678", DestinationKind.IP_PHONE),
        ("+81570123456", DestinationKind.NAVI_DIAL),
        ("+81120123456", DestinationKind.TOLL_FREE),
        ("+818001234567", DestinationKind.TOLL_FREE),
        ("+81990123456", DestinationKind.OTHER),
    ],
)
def test_destination_kind(e164: str, kind: DestinationKind) -> None:
    assert destination_kind(e164) is kind

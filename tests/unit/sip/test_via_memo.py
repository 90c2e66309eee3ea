"""The Vias the switch writes itself are recorded in the Via parse memo (values.remember_via,
remember_own_via) so that the responses echoing them are not parsed again: what is recorded
must be exactly what parsing the text gives, and nothing may be recorded for a text whose
parse would differ or fail."""

from __future__ import annotations

import pytest

from switch.sip._grammar import ParseError
from switch.sip.headers import Headers
from switch.sip.values import (
    Via,
    _parse_one_via,
    _via_memo,
    parse_via,
    remember_via,
    split_strict,
)

RECEIVED = [
    "SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-1;rport",
    "SIP/2.0/tcp Host.Example.COM;branch=abc;received=1.2.3.4",
    "SIP/2.0/UDP [::1]:5060;branch=x;rport",
    'SIP/2.0/UDP 10.0.0.1;branch="q";rport',
    "SIP/2.0/UDP 10.0.0.1:5060 ; branch=a ; rport",
    "SIP/2.0/UDP a.b;BRANCH=x;Rport",
]
FIXES = [{}, {"received": "9.9.9.9"}, {"received": "9.9.9.9", "rport": "1234"}, {"received": "::1"}]


def _parsed(text: str) -> list[Via]:
    return [_parse_one_via(v) for v in split_strict(text, "Via")]


@pytest.mark.parametrize("received", RECEIVED)
@pytest.mark.parametrize("fix", FIXES)
def test_a_fixed_up_via_is_remembered_as_it_parses(received: str, fix: dict[str, str]) -> None:
    via = parse_via(received)[0].with_params(**fix)
    text = str(via)
    _via_memo.clear()
    remember_via(text, via)
    hit = _via_memo.get(text)
    if hit is not None:
        assert hit == _parsed(text)
    if "[" not in text and '"' not in text:  # the plain form is recorded
        assert hit is not None


@pytest.mark.parametrize(
    "via",
    [
        Via(transport="udp", host="a.b", port=1, params={"branch": "x"}),  # parses as UDP
        Via(transport="UDP", host="A.b", port=1, params={"branch": "x"}),  # host lower-cased
        Via(transport="UDP", host="a.b", port=70000, params={"branch": "x"}),  # out of range
        Via(transport="UDP", host="a.b", port=1, params={"Branch": "x"}),  # keys lower-cased
        Via(transport="UDP", host="-a.b", port=1, params={"branch": "x"}),  # not a host
    ],
)
def test_nothing_is_remembered_when_the_parse_would_differ(via: Via) -> None:
    text = str(via)
    _via_memo.clear()
    remember_via(text, via)
    assert _via_memo.get(text) is None


@pytest.mark.parametrize("host", ["Switch.Example.com", "192.0.2.1", "-bad.example"])
def test_our_own_via_is_remembered_as_it_parses(host: str) -> None:
    _via_memo.clear()
    h = Headers([("Via", "SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKlower")])
    h.prepend_own_via("udp", host, 5060, "z9hG4bKabc.123")
    text = h.get_fields("Via")[0]
    hit = _via_memo.get(text)
    if host.startswith("-"):
        assert hit is None
        with pytest.raises(ParseError):  # not a host
            _parsed(text)
    else:
        assert hit == _parsed(text) == [h.vias()[0]]

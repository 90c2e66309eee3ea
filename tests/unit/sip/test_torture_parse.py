"""RFC 4475 / RFC 5118 torture messages through the parser.

The corpus lives outside the repository (/work/shared/conformance/sip-torture, found as
`parents[4] / "shared/conformance/sip-torture"` from this file); nothing is copied in. Each
manifest row is checked against what the *parser* is responsible for:

- valid / valid-but-unusual: parses. (A request whose Request-URI has an unknown scheme may
  instead raise ParseError(416), which is the RFC's answer for unkscm/novelsc.)
- invalid-must-reject: ParseError, with the RFC's preferred code when rfc_response names one.
- may-reject: either, but never anything other than ParseError.

What the parser rejects, and why (PARSER_DECISIONS below is the table):
- Presence and multiplicity of Via/From/To/Call-ID/CSeq are checked here, not in the core:
  with one missing or doubled, no transaction or dialog can be matched, so `insuf` and
  `multi01` are 400 at parse time and the core may rely on every parsed message having them.
- The CSeq method must equal the request method (`mismatch01`, `mismatch02`): checked here
  (400; RFC 4475 also allows 501 for mismatch02, which the core could not answer without
  the same check). Max-Forwards stays optional (`inv2543`).
- Framing faults (`clerr`, `ncl`, `mcl01`) are 400 over a datagram.
- Responses that are malformed (`scalarlg`, `bigcode`) are ParseError too; the transport
  drops them silently since a response is never answered.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from switch.sip.message import ParseError
from switch.sip.parser import parse_message
from tests.peers import need

CORPUS = Path(__file__).resolve().parents[4] / "shared/conformance/sip-torture"
MANIFEST = CORPUS / "manifest.tsv"

# file -> what our parser does with it: "parse", or the ParseError status_hint.
PARSER_DECISIONS: dict[str, str | int] = {
    # may-reject rows: our choice, and why
    "lwsstart.dat": 400,  # extra SP in the Request-Line: strict grammar, never forwarded
    "trws.dat": 400,  # SP before CRLF on the Request-Line: same
    "escruri.dat": 400,  # headers in a Request-URI must never be forwarded (§19.1.5)
    "baddate.dat": "parse",  # Date is not used by the switch: leave it alone
    "badbranch.dat": "parse",  # branch "z9hG4bK" is syntactically fine; transaction layer
    "unksm2.dat": "parse",  # non-SIP schemes in To/From/Contact are legal syntax
    "sdp01.dat": "parse",  # Accept is the UAS's business
    # semantic rejections that live in the parser (see the module docstring)
    "insuf.dat": 400,
    "multi01.dat": 400,
    "mismatch01.dat": 400,
    "mismatch02.dat": 400,
    # unknown Request-URI schemes: well-formed, answered 416
    "unkscm.dat": 416,
    "novelsc.dat": 416,
}


def _rows() -> list[dict[str, str]]:
    if not MANIFEST.is_file():
        return []
    with MANIFEST.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


ROWS = _rows()


@pytest.fixture(autouse=True, scope="module")
def _corpus_present() -> None:
    need(bool(ROWS), f"the SIP torture corpus at {CORPUS} (shared conformance kit)")


def _outcome(data: bytes) -> str | int:
    try:
        parse_message(data)
    except ParseError as exc:
        return exc.status_hint
    return "parse"


def test_manifest_is_complete() -> None:
    assert len(ROWS) == 61
    assert {r["expected"] for r in ROWS} == {
        "valid",
        "valid-but-unusual",
        "invalid-must-reject",
        "may-reject",
    }
    assert set(PARSER_DECISIONS) <= {r["file"] for r in ROWS}


@pytest.mark.parametrize("row", ROWS, ids=[r["file"] for r in ROWS])
def test_torture_message(row: dict[str, str]) -> None:
    data = (CORPUS / row["file"]).read_bytes()
    outcome = _outcome(data)  # any other exception type fails the test by itself
    expected, rfc = row["expected"], row["rfc_response"]
    if row["file"] in PARSER_DECISIONS:
        assert outcome == PARSER_DECISIONS[row["file"]], row["note"]
    if expected in ("valid", "valid-but-unusual"):
        if row["kind"] == "request" and "416" in rfc.split("|"):
            assert outcome in ("parse", 416), row["note"]
        else:
            assert outcome == "parse", row["note"]
    elif expected == "invalid-must-reject":
        assert outcome != "parse", row["note"]
        codes = [int(c) for c in rfc.split("|") if c.isdigit()]
        if codes and row["kind"] == "request":
            assert outcome in codes, f"{row['note']} (got {outcome})"
        elif "4xx" in rfc:
            assert isinstance(outcome, int) and 400 <= outcome < 500
    else:
        assert expected == "may-reject"
        assert outcome == "parse" or isinstance(outcome, int)


@pytest.mark.parametrize("name", ["dblreq.dat", "mpart01.dat", "inv2543.dat", "esc02.dat"])
def test_torture_details(name: str) -> None:
    msg = parse_message((CORPUS / name).read_bytes())
    if name == "dblreq.dat":  # trailing INVITE octets ignored (RFC 3261 §18.3)
        assert msg.cseq.method == "REGISTER" and msg.body == b""
    elif name == "mpart01.dat":  # binary body with NUL and bare CR kept as bytes
        assert len(msg.body) == 553 and b"\x00" in msg.body
    elif name == "inv2543.dat":  # no Content-Length over UDP: body runs to the end
        assert msg.body.startswith(b"v=0") and msg.body.endswith(b"RTP/AVP 0\r\n")
    else:  # RE%47IST%45R is an unknown method; two Contact values, not three
        assert getattr(msg, "method", None) == "RE%47IST%45R"
        assert len(msg.headers.name_addrs("Contact")) == 2
        assert msg.headers.get("C%6Fntact") is not None

"""The hand-off contract (switch/handoff.py): what the proxy builds, media parses back
exactly, through a real SIP URI (serialised and parsed again), and nothing else gets in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switch.handoff import HandOff, HandOffError, Service, Then
from switch.proxy.diversion import MediaService
from switch.sip.message import SipURI, parse_uri

SECRET = b"shared-secret"
MEDIA = MediaService.parse(
    ["sip:media@127.0.0.1:5062", "sip:media@127.0.0.2:5062;transport=tcp"], SECRET
)
E164 = st.from_regex(r"\+81[1-9][0-9]{8,9}", fullmatch=True)
TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=20
)


def _roundtrip(h: HandOff, index: int = 0) -> HandOff:
    text = MEDIA.uri_for(h, index)
    uri = parse_uri(text)
    assert isinstance(uri, SipURI)
    return HandOff.from_uri(uri.user, list(uri.params.items()), SECRET)


@st.composite
def handoffs(draw: st.DrawFn) -> HandOff:
    service = draw(st.sampled_from(list(Service)))
    tenant = draw(TEXT)
    caller = draw(st.none() | TEXT)
    target = draw(E164)
    if service is Service.ANNOUNCE:
        vm = draw(st.booleans())
        return HandOff(
            service=service, tenant=tenant, target=target, caller=caller,
            prompt=draw(st.sampled_from(["template-1", "template-3", "prompt:p-42"])),
            then=Then.VOICEMAIL if vm else Then.HANGUP,
            mailboxes=(draw(E164),) if vm else (),
        )  # fmt: skip
    if service is Service.BUSY:
        return HandOff(
            service=service, tenant=tenant, target=target, caller=caller, prompt="busy",
            then=Then.HANGUP, cause=486,
        )  # fmt: skip
    if service is Service.VOICEMAIL:
        return HandOff(
            service=service, tenant=tenant, target=target, caller=caller,
            mailboxes=(draw(E164),), cause=draw(st.sampled_from([408, 480, 486])),
        )  # fmt: skip
    return HandOff(
        service=service, tenant=tenant, device=draw(TEXT),
        mailboxes=tuple(draw(st.lists(E164, max_size=3))),
    )  # fmt: skip


@given(handoffs(), st.integers(0, 3))
def test_every_parameter_survives_the_round_trip(h: HandOff, index: int) -> None:
    back = _roundtrip(h, index)
    assert back == h
    assert back.params() == h.params()


def test_the_media_uri_keeps_its_transport_and_spreads_by_index() -> None:
    h = HandOff(service=Service.VOICEMAIL, tenant="t1", target="+81355500100",
                mailboxes=("+81355500100",), cause=408)  # fmt: skip
    assert MEDIA.uri_for(h, 0).startswith("sip:voicemail@127.0.0.1:5062;mailbox=")
    assert MEDIA.uri_for(h, 1).startswith("sip:voicemail@127.0.0.2:5062;transport=tcp;mailbox=")


def _params(h: HandOff) -> list[tuple[str, str | None]]:
    uri = parse_uri(MEDIA.uri_for(h))
    assert isinstance(uri, SipURI)
    return list(uri.params.items())


VM = HandOff(service=Service.VOICEMAIL, tenant="t1", target="+81355500100",
             mailboxes=("+81355500100",), caller="+81312345678", cause=408)  # fmt: skip


@pytest.mark.parametrize(
    ("user", "mutate", "status"),
    [
        ("record", lambda p: p, 404),  # unknown service
        ("voicemail", lambda p: [x for x in p if x[0] != "sig"], 403),  # unsigned
        ("voicemail", lambda p: [(k, "0" * 24 if k == "sig" else v) for k, v in p], 403),
        # a parameter changed after signing: the signature no longer matches
        ("voicemail", lambda p: [(k, "+81399999999" if k == "mailbox" else v) for k, v in p], 403),
        ("voicemail", lambda p: [*p[:-1], ("extra", "1"), p[-1]], 403),  # added: unsigned
    ],
)
def test_tampered_or_unknown_hand_offs_are_refused(user, mutate, status) -> None:
    with pytest.raises(HandOffError) as err:
        HandOff.from_uri(user, mutate(_params(VM)), SECRET)
    assert err.value.status == status


def test_a_signed_but_malformed_hand_off_is_400() -> None:
    # signed with the right secret, but violating the contract (no mailbox for voicemail)
    from switch import handoff

    params = [("tenant", "t1"), ("target", "+81355500100"), ("cause", "408")]
    sig = handoff._sign(Service.VOICEMAIL, params, SECRET)
    with pytest.raises(HandOffError) as err:
        HandOff.from_uri("voicemail", [*params, ("sig", sig)], SECRET)
    assert err.value.status == 400


@pytest.mark.parametrize(
    "kwargs",
    [
        {"service": Service.ANNOUNCE, "tenant": "t", "target": "+81355500100", "prompt": "x"},
        {"service": Service.BUSY, "tenant": "t", "target": "+81355500100", "prompt": "template-1"},
        {"service": Service.VOICEMAIL, "tenant": "t", "target": "+81355500100"},
        {"service": Service.VOICEMAIL_MENU, "tenant": "t"},
        {"service": Service.VOICEMAIL, "tenant": "", "mailboxes": ("+81355500100",)},
        {"service": Service.VOICEMAIL, "tenant": "t", "mailboxes": ("0355500100",)},
        {
            "service": Service.BUSY,
            "tenant": "t",
            "target": "+81355500100",
            "prompt": "busy",
            "cause": 404,
        },
    ],
)
def test_invalid_hand_offs_cannot_be_built(kwargs) -> None:
    with pytest.raises(HandOffError):
        HandOff(**kwargs)


def test_media_uri_with_other_parameters_is_refused() -> None:
    with pytest.raises(ValueError):
        MediaService.parse("sip:media@127.0.0.1:5062;lr;maddr=10.0.0.1")

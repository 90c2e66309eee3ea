"""Side effects of a settings change: the ON/OFF switches that changed without being asked
for, named with the rule that changed them (pure: two numbers in, a tuple out)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from provisioning import rules
from provisioning.model import AfterHours, Forwarding, Number, NumberKind, NumberOptions
from provisioning.services import SideEffect
from provisioning.services.number_settings import side_effects

ALL = NumberOptions(after_hours=True, voicemail=True, forwarding=True, recording=True)
BASE = Number(
    e164="+81312345678", tenant_id="t", kind=NumberKind.CONTRACT, ring_group=("d",), options=ALL
)


def number(after_hours: bool, forwarding: bool) -> Number:
    return replace(
        BASE,
        after_hours=AfterHours(enabled=after_hours),
        forwarding=Forwarding(enabled=forwarding, target="+819012345678"),
    )


def test_forwarding_on_reports_the_announcement_switched_off() -> None:
    before = number(after_hours=True, forwarding=False)
    after = rules.set_forwarding_enabled(before, True)
    got = side_effects(before, after, ("forwarding.enabled",), "forwarding-excludes-after-hours")
    assert got == (
        SideEffect(
            setting="after_hours.enabled",
            before=True,
            after=False,
            rule="forwarding-excludes-after-hours",
        ),
    )


def test_what_was_asked_for_is_no_side_effect() -> None:
    before = number(after_hours=False, forwarding=False)
    after = rules.set_forwarding_enabled(before, True)
    assert (
        side_effects(before, after, ("forwarding.enabled",), "forwarding-excludes-after-hours")
        == ()
    )


def test_unsubscribing_both_reports_both() -> None:
    before = number(after_hours=True, forwarding=False)
    before = replace(before, forwarding=Forwarding(enabled=True, target="+819012345678"))
    after = rules.drop_options(replace(before, options=NumberOptions(voicemail=True)))
    got = side_effects(before, after, (), "unsubscribed-option-is-off")
    assert [(e.setting, e.before, e.after) for e in got] == [
        ("after_hours.enabled", True, False),
        ("forwarding.enabled", True, False),
    ]


def test_unknown_settings_and_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown side effect"):
        SideEffect(setting="voicemail", before=True, after=False, rule="unsubscribed-option-is-off")
    with pytest.raises(ValueError, match="unknown side effect"):
        SideEffect(setting="forwarding.enabled", before=True, after=False, rule="because")

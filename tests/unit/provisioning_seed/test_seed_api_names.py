"""One name and one shape per field in the seed file and the API: a number exactly as the API
answers it (minus `tenant_id`) is a valid seed entry and loads back to the same number; the
older seed layout (day kinds directly under after_hours, 48-letter strings) still loads, to
the same schedule."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from provisioning.api.resources.numbers import NUMBER_SCHEMA, render_number
from provisioning.model import DayKind, SlotAction
from provisioning.seed import SeedError, parse_seed

from .test_seed import base_doc

EVENING = ["ring"] * 18 + ["announce"] * 28 + ["forward"] * 2


def _with_number(number: dict[str, Any]) -> dict[str, Any]:
    doc = base_doc()
    doc["tenants"][0]["numbers"] = [number]
    return doc


def _full_number() -> dict[str, Any]:
    return {
        "number": "03-1234-5678",
        "kind": "contract",
        "label": "Main",
        "label_in_display_name": True,
        "app_ring_delay": 5.0,
        "max_ring_time": 45.0,
        "ring_group": ["a", "b"],
        "options": {"after_hours": True, "voicemail": True, "forwarding": True, "recording": True},
        "after_hours": {
            "enabled": True,
            "announcement": "template-2",
            "slots": {"weekday": EVENING, "sunday": ["announce"] * 48},
        },
        "forwarding": {"enabled": False, "target": "090-1234-5678"},
        "voicemail_ring_time": 25,
        "recording_notice": True,
    }


def test_the_api_rendering_of_a_number_is_a_seed_entry() -> None:
    number = parse_seed(_with_number(_full_number())).numbers[0]
    shown = render_number(number)
    assert set(shown) <= set(NUMBER_SCHEMA.inner.fields)  # type: ignore[attr-defined]
    del shown["tenant_id"]
    again = parse_seed(_with_number(shown)).numbers[0]
    assert again == number
    assert shown["after_hours"]["slots"]["weekday"] == EVENING
    assert shown["voicemail_ring_time"] == 25 and shown["recording_notice"] is True


def test_every_seed_number_key_is_an_api_field_name() -> None:
    api_fields = set(NUMBER_SCHEMA.inner.fields)  # type: ignore[attr-defined]
    assert set(_full_number()) <= api_fields


def test_the_older_layout_loads_to_the_same_schedule() -> None:
    old = copy.deepcopy(_full_number())
    letters = "".join(a[0].upper() for a in EVENING)
    old["after_hours"] = {
        "enabled": True,
        "announcement": "template-2",
        "weekday": letters,  # directly under after_hours, as letters
        "sunday": "A" * 48,
    }
    new = parse_seed(_with_number(_full_number())).numbers[0]
    assert parse_seed(_with_number(old)).numbers[0] == new
    assert new.after_hours.slots[DayKind.SATURDAY] == (SlotAction.RING,) * 48


@pytest.mark.parametrize(
    ("after_hours", "message"),
    [
        ({"slots": {"weekday": EVENING}, "weekday": "R" * 48}, "weekday given twice"),
        ({"slots": {"weekdays": EVENING}}, "slots: a table of weekday"),
        ({"slots": "R" * 48}, "slots: a table"),
        ({"weekdy": "R" * 48}, "unknown key"),
        ({"slots": {"holiday": ["ring"] * 47}}, r"after_hours\.slots\.holiday: needs exactly 48"),
        ({"slots": {"holiday": ["ring"] * 47 + ["nap"]}}, r"slots\.holiday: 'nap'"),
    ],
)
def test_bad_schedules_are_refused_naming_where(after_hours: dict[str, Any], message: str) -> None:
    number = {**_full_number(), "after_hours": after_hours}
    with pytest.raises(SeedError, match=message):
        parse_seed(_with_number(number))

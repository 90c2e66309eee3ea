"""The 10-minute plan's fair-use flag: ~30 outgoing calls a day (threshold from the tariff)."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime

import pytest

from billing import BillingError, default_tariffs, heavy_callers, outgoing_calls_per_day

PLAN = default_tariffs().versions[0].plan


@pytest.mark.parametrize(
    ("counts", "flagged"),
    [
        ({}, set()),
        ({"a": 0, "b": 1}, set()),
        ({"a": 29}, set()),
        ({"a": 30}, {"a"}),
        ({"a": 29, "b": 30, "c": 31, "d": 300}, {"b", "c", "d"}),
    ],
)
def test_ids_at_or_above_the_threshold_are_flagged(
    counts: dict[str, int], flagged: set[str]
) -> None:
    assert heavy_callers(counts, PLAN) == flagged


def test_the_threshold_is_tariff_data() -> None:
    strict = dataclasses.replace(PLAN, fair_use_calls_per_day=10)
    assert heavy_callers({"a": 9, "b": 10}, strict) == {"b"}


@pytest.mark.parametrize("bad", [-1, True, 1.5])
def test_bad_counts_are_refused(bad: object) -> None:
    with pytest.raises(BillingError) as err:
        heavy_callers({"a": bad}, PLAN)  # type: ignore[dict-item]
    assert err.value.error_id == "bad-call-count"


def test_calls_are_counted_per_local_day_of_the_tenant() -> None:
    def at(text: str) -> datetime:
        return datetime.fromisoformat(text)

    calls = [
        ("a", at("2024-05-10T23:59:59+09:00")),
        ("a", at("2024-05-10T15:00:00+00:00")),  # 2024-05-11 00:00 in Tokyo
        ("a", at("2024-05-11T12:00:00+09:00")),
        ("b", at("2024-05-11T23:59:59+09:00")),
    ]
    assert outgoing_calls_per_day(calls, "Asia/Tokyo") == {
        date(2024, 5, 10): {"a": 1},
        date(2024, 5, 11): {"a": 2, "b": 1},
    }
    # in UTC, the first two calls fall on the same day
    assert outgoing_calls_per_day(calls, "UTC")[date(2024, 5, 10)] == {"a": 2}
    with pytest.raises(BillingError):
        outgoing_calls_per_day([("a", datetime(2024, 5, 10))], "Asia/Tokyo")


def test_thirty_calls_on_one_day_flag_the_id_but_not_when_split_over_two() -> None:
    start = datetime.fromisoformat("2024-05-10T09:00:00+09:00")
    one_day = [("a", start.replace(minute=m)) for m in range(30)]
    (counts,) = outgoing_calls_per_day(one_day, "Asia/Tokyo").values()
    assert heavy_callers(counts, PLAN) == {"a"}
    two_days = one_day[:15] + [("a", start.replace(day=11, minute=m)) for m in range(15)]
    days = outgoing_calls_per_day(two_days, "Asia/Tokyo")
    assert all(heavy_callers(c, PLAN) == frozenset() for c in days.values())

"""Billing months: the 26th to the 25th in the tenant's time zone, named by the closing 25th."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from billing import (
    BillingError,
    BillingMonth,
    billing_month,
    billing_month_from_label,
    billing_month_of,
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("instant", "tz", "label"),
    [
        ("2024-05-25T23:59:59+09:00", "Asia/Tokyo", "2024-05"),
        ("2024-05-25T23:59:59.999999+09:00", "Asia/Tokyo", "2024-05"),
        ("2024-05-26T00:00:00+09:00", "Asia/Tokyo", "2024-06"),
        ("2024-05-25T14:59:59+00:00", "Asia/Tokyo", "2024-05"),  # same instants in UTC
        ("2024-05-25T15:00:00+00:00", "Asia/Tokyo", "2024-06"),
        ("2024-04-26T00:00:00+09:00", "Asia/Tokyo", "2024-05"),
        ("2024-05-01T12:00:00+09:00", "Asia/Tokyo", "2024-05"),
        ("2024-12-25T23:59:59+09:00", "Asia/Tokyo", "2024-12"),
        ("2024-12-26T00:00:00+09:00", "Asia/Tokyo", "2025-01"),  # across the new year
        ("2025-01-25T23:59:59+09:00", "Asia/Tokyo", "2025-01"),
        # a tenant in Los Angeles: Tokyo's 26th 00:00 is still the 25th there
        ("2024-05-26T00:00:00+09:00", "America/Los_Angeles", "2024-05"),
        ("2024-05-25T23:59:59-07:00", "America/Los_Angeles", "2024-05"),
        ("2024-05-26T00:00:00-07:00", "America/Los_Angeles", "2024-06"),
        ("2024-05-26T06:59:59+00:00", "America/Los_Angeles", "2024-05"),
        ("2024-05-26T07:00:00+00:00", "America/Los_Angeles", "2024-06"),
    ],
)
def test_a_call_is_billed_in_the_month_it_started(instant: str, tz: str, label: str) -> None:
    month = billing_month_of(at(instant), tz)
    assert month.label == label
    assert at(instant) in month
    assert month.timezone == tz


def test_the_bounds_of_a_tokyo_month() -> None:
    month = billing_month(2024, 5, "Asia/Tokyo")
    assert (month.start, month.end) == (
        at("2024-04-26T00:00:00+09:00"),
        at("2024-05-26T00:00:00+09:00"),
    )
    assert month.start.tzinfo is UTC and month.end.tzinfo is UTC
    assert at("2024-05-26T00:00:00+09:00") not in month
    assert at("2024-04-25T23:59:59+09:00") not in month
    assert month.following().start == month.end
    assert month.preceding().end == month.start
    assert month.following().label == "2024-06" and month.preceding().label == "2024-04"
    assert billing_month(2025, 1, "Asia/Tokyo").start == at("2024-12-26T00:00:00+09:00")


def test_a_month_across_a_dst_change_keeps_local_midnights() -> None:
    # London's clocks go forward on 2024-03-31: the month 2024-04 is 26 Mar (GMT) to
    # 26 Apr (BST), one hour shorter than 31 days.
    month = billing_month(2024, 4, "Europe/London")
    assert month.start == at("2024-03-26T00:00:00+00:00")
    assert month.end == at("2024-04-26T00:00:00+01:00")
    assert month.end - month.start == timedelta(days=31, hours=-1)


def test_a_zone_that_skips_local_midnight_starts_the_month_at_the_transition() -> None:
    # Egypt springs forward at midnight on the last Friday of April: on 2024-04-26, 23:59:59
    # EET (+02:00) on the 25th is followed by 01:00:00 EEST (+03:00) on the 26th.
    zone = "Africa/Cairo"
    for instant, label in [
        ("2024-04-25T21:59:59+00:00", "2024-04"),
        ("2024-04-25T22:00:00+00:00", "2024-05"),
        ("2024-04-26T01:00:00+03:00", "2024-05"),
    ]:
        assert billing_month_of(at(instant), zone).label == label
    may = billing_month(2024, 5, zone)
    assert may.start == at("2024-04-25T22:00:00+00:00")
    assert billing_month(2024, 4, zone).end == may.start


@pytest.mark.parametrize(
    ("call", "error_id"),
    [
        (lambda: billing_month_of(datetime(2024, 5, 1), "Asia/Tokyo"), "naive-instant"),
        (
            lambda: billing_month_of(at("2024-05-01T00:00+09:00"), "Mars/Olympus"),
            "unknown-timezone",
        ),
        (lambda: billing_month_of(at("2024-05-01T00:00+09:00"), "../etc"), "unknown-timezone"),
        (lambda: billing_month_from_label("2024-13", "Asia/Tokyo"), "bad-month-label"),
        (lambda: billing_month_from_label("24-05", "Asia/Tokyo"), "bad-month-label"),
        (lambda: billing_month(2024, 0, "Asia/Tokyo"), "bad-month-label"),
    ],
)
def test_bad_input_is_refused(call: Callable[[], BillingMonth], error_id: str) -> None:
    with pytest.raises(BillingError) as err:
        call()
    assert err.value.error_id == error_id


def test_a_label_round_trips() -> None:
    month = billing_month_from_label("2024-02", "Asia/Tokyo")
    assert month == billing_month(2024, 2, "Asia/Tokyo")
    assert month.start == at("2024-01-26T00:00:00+09:00")  # the guide's 2月度 (1月26日~2月25日)

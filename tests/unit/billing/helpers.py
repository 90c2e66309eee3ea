"""Builders shared by the billing tests."""

from __future__ import annotations

import copy
import tomllib
from datetime import datetime
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from billing import Direction, RatedCall, RatingInput, TariffTable, default_tariffs, rate_call
from billing.classes import CallerKind
from provisioning.model import DeviceKind

TOKYO = ZoneInfo("Asia/Tokyo")
# A weekday well inside the shipped tariff's validity and a billing month (2024-05).
T0 = datetime(2024, 5, 10, 10, 0, tzinfo=TOKYO)


def default_document() -> dict[str, Any]:
    """The shipped tariff document as parsed TOML, a fresh copy to mutate."""
    text = resources.files("billing").joinpath("tariffs.toml").read_text(encoding="utf-8")
    return copy.deepcopy(tomllib.loads(text))


def call(
    direction: Direction,
    destination: str,
    seconds: int,
    *,
    device: DeviceKind | None = None,
    plan: bool = False,
    caller: CallerKind | None = None,
    start: datetime = T0,
) -> RatingInput:
    return RatingInput(
        direction=direction,
        start=start,
        billable_seconds=seconds,
        destination=destination,
        device_kind=device,
        has_plan=plan,
        caller_kind=caller,
    )


def rate(rating_input: RatingInput, table: TariffTable | None = None) -> RatedCall:
    return rate_call(rating_input, table or default_tariffs())

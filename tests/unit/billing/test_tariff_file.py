"""The tariff document: the shipped default, version switches, and refusals with clear errors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import pytest

from billing import (
    CallClass,
    Direction,
    Money,
    Rounding,
    TariffError,
    TariffTable,
    default_tariffs,
    parse_tariffs,
    parse_tariffs_toml,
)
from billing.classes import CallerKind
from provisioning.model import DeviceKind

from .helpers import call, default_document, rate

Doc = dict[str, Any]


def test_the_shipped_tariff_has_the_published_prices() -> None:
    (version,) = default_tariffs().versions
    assert version.id == "2021-06-26"
    assert version.valid_from == datetime.fromisoformat("2021-06-26T00:00:00+09:00")
    app, desk = version.outbound[DeviceKind.APP], version.outbound[DeviceKind.DESK]
    assert (app[CallClass.MOBILE].price, app[CallClass.MOBILE].unit_seconds) == (
        Money.yen(20),
        30,
    )
    assert (desk[CallClass.LANDLINE].price.tenths, desk[CallClass.LANDLINE].unit_seconds) == (
        80,
        180,
    )
    assert (desk[CallClass.MOBILE].price.tenths, desk[CallClass.MOBILE].unit_seconds) == (175, 60)
    assert version.outbound[DeviceKind.ATA] == desk
    assert app[CallClass.DIRECTORY].per_call and app[CallClass.DIRECTORY].price == Money.yen(265)
    tfi = version.toll_free_inbound
    assert [str(tfi[k]) for k in CallerKind] == ["¥7/60 s", "¥20/60 s", "¥30/60 s"]
    assert version.plan.free_seconds == 600 and version.plan.fair_use_calls_per_day == 30
    assert version.plan.devices == {DeviceKind.APP}
    assert version.statement_rounding is Rounding.DOWN


def test_the_same_document_as_json_shaped_data_with_string_instants() -> None:
    doc = default_document()
    doc["versions"][0]["valid_from"] = "2021-06-26T00:00:00+09:00"
    assert parse_tariffs(doc) == default_tariffs()


def _two_versions() -> TariffTable:
    doc = default_document()
    later = default_document()["versions"][0]
    later["id"] = "2025-04"
    later["valid_from"] = datetime.fromisoformat("2025-04-01T00:00:00+09:00")
    later["outbound"]["app"]["landline"] = {"yen": "22", "per_seconds": 30}
    doc["versions"].insert(0, later)  # any order in the document
    return parse_tariffs(doc)


@pytest.mark.parametrize(
    ("start", "version", "charge"),
    [
        ("2025-03-31T23:59:59+09:00", "2021-06-26", 200),
        ("2025-03-31T23:59:59.999999+09:00", "2021-06-26", 200),
        ("2025-04-01T00:00:00+09:00", "2025-04", 220),
        ("2025-03-31T15:00:00+00:00", "2025-04", 220),
        ("2025-03-31T14:59:59+00:00", "2021-06-26", 200),
    ],
)
def test_the_version_in_force_at_the_start_of_the_call_rates_it(
    start: str, version: str, charge: int
) -> None:
    # A 30 s call is one unit; a 3-hour call started before the switch is still rated
    # whole by the version in force at its start.
    table = _two_versions()
    for seconds in (30, 3 * 3600):
        rated = rate(
            call(
                Direction.OUTBOUND,
                "0312345678",
                seconds,
                device=DeviceKind.APP,
                start=datetime.fromisoformat(start),
            ),
            table,
        )
        assert rated.tariff_version == version
        assert rated.charge.tenths == charge * rated.units
        assert rated.units == -(-seconds // 30)


def test_operators_add_versions_for_the_future_only() -> None:
    table = default_tariffs()
    new = _two_versions().versions[1]
    now = datetime.fromisoformat("2025-03-01T12:00:00+09:00")
    assert [v.id for v in table.with_version(new, now=now).versions] == ["2021-06-26", "2025-04"]
    for late in ("2025-04-01T00:00:00+09:00", "2025-05-01T00:00:00+09:00"):
        with pytest.raises(TariffError) as err:
            table.with_version(new, now=datetime.fromisoformat(late))
        assert err.value.error_id == "tariff-not-in-future"
    with pytest.raises(TariffError) as dup:
        table.with_version(table.versions[0], now=datetime.fromisoformat("2020-01-01T00:00+09:00"))
    assert dup.value.error_id == "tariff-duplicate-version"


def _set(path: str, value: object) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[last] = value

    return mutate


def _drop(path: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[last]

    return mutate


def _duplicate(change: Callable[[Doc], None]) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        other = default_document()["versions"][0]
        doc["versions"].append(other)
        change(doc)

    return mutate


V = "versions.0"
P = "versions[0]"
BAD_DOCUMENTS = [
    (_set("format", 2), "tariff-format", "format"),
    (_set("format", "1"), "tariff-format", "format"),
    (_drop("versions"), "tariff-missing-key", "versions"),
    (_set("versions", []), "tariff-no-versions", "versions"),
    (_set("currency", "JPY"), "tariff-unknown-key", "currency"),
    (_drop(f"{V}.id"), "tariff-missing-key", f"{P}.id"),
    (_set(f"{V}.id", "new prices!"), "tariff-bad-value", f"{P}.id"),
    (_set(f"{V}.id", 7), "tariff-wrong-type", f"{P}.id"),
    (_set(f"{V}.valid_from", datetime(2021, 6, 26)), "tariff-bad-value", f"{P}.valid_from"),
    (_set(f"{V}.valid_from", date(2021, 6, 26)), "tariff-wrong-type", f"{P}.valid_from"),
    (_set(f"{V}.valid_from", "yesterday"), "tariff-bad-value", f"{P}.valid_from"),
    (_set(f"{V}.valid_from", "2021-06-26T00:00:00"), "tariff-bad-value", f"{P}.valid_from"),
    (_set(f"{V}.statement_rounding", "bankers"), "tariff-bad-value", f"{P}.statement_rounding"),
    (_set(f"{V}.vat", 10), "tariff-unknown-key", f"{P}.vat"),
    (_set(f"{V}.outbound", "cheap"), "tariff-wrong-type", f"{P}.outbound"),
    (_drop(f"{V}.outbound.ata"), "tariff-missing-key", f"{P}.outbound.ata"),
    (_set(f"{V}.outbound.fax", {}), "tariff-unknown-key", f"{P}.outbound.fax"),
    (_drop(f"{V}.outbound.desk.mobile"), "tariff-incomplete", f"{P}.outbound.desk"),
    (
        _set(f"{V}.outbound.desk.satellite", {"yen": "1", "per_call": True}),
        "tariff-unknown-key",
        f"{P}.outbound.desk.satellite",
    ),
    (
        _set(f"{V}.outbound.desk.internal", {"yen": "0", "per_call": True}),
        "tariff-unknown-key",
        f"{P}.outbound.desk",
    ),
    (
        _set(f"{V}.outbound.desk.mobile.yen", 17.5),
        "tariff-wrong-type",
        f"{P}.outbound.desk.mobile.yen",
    ),
    (
        _set(f"{V}.outbound.desk.mobile.yen", "17.55"),
        "tariff-bad-value",
        f"{P}.outbound.desk.mobile.yen",
    ),
    (
        _set(f"{V}.outbound.desk.mobile.yen", "-1"),
        "tariff-bad-value",
        f"{P}.outbound.desk.mobile.yen",
    ),
    (
        _set(f"{V}.outbound.desk.mobile.yen", -1),
        "tariff-bad-value",
        f"{P}.outbound.desk.mobile.yen",
    ),
    (
        _set(f"{V}.outbound.desk.mobile.yen", True),
        "tariff-wrong-type",
        f"{P}.outbound.desk.mobile.yen",
    ),
    (
        _drop(f"{V}.outbound.desk.mobile.yen"),
        "tariff-missing-key",
        f"{P}.outbound.desk.mobile.yen",
    ),
    (
        _set(f"{V}.outbound.app.landline.per_call", True),
        "tariff-bad-value",
        f"{P}.outbound.app.landline",
    ),
    (
        _drop(f"{V}.outbound.app.landline.per_seconds"),
        "tariff-bad-value",
        f"{P}.outbound.app.landline",
    ),
    (
        _set(f"{V}.outbound.app.landline.per_seconds", 0),
        "tariff-bad-value",
        f"{P}.outbound.app.landline.per_seconds",
    ),
    (
        _set(f"{V}.outbound.app.landline.per_seconds", 3601),
        "tariff-bad-value",
        f"{P}.outbound.app.landline.per_seconds",
    ),
    (
        _set(f"{V}.outbound.app.landline.per_seconds", "30"),
        "tariff-wrong-type",
        f"{P}.outbound.app.landline.per_seconds",
    ),
    (
        _set(f"{V}.outbound.app.directory.per_call", False),
        "tariff-bad-value",
        f"{P}.outbound.app.directory.per_call",
    ),
    (
        _set(f"{V}.outbound.app.landline.currency", "JPY"),
        "tariff-unknown-key",
        f"{P}.outbound.app.landline.currency",
    ),
    (
        _set(f"{V}.forwarded.directory", {"yen": "265", "per_call": True}),
        "tariff-unknown-key",
        f"{P}.forwarded",
    ),
    (_drop(f"{V}.forwarded.mobile"), "tariff-incomplete", f"{P}.forwarded"),
    (_drop(f"{V}.toll_free_inbound.payphone"), "tariff-incomplete", f"{P}.toll_free_inbound"),
    (
        _set(f"{V}.toll_free_inbound.phs", {"yen": "20", "per_seconds": 60}),
        "tariff-unknown-key",
        f"{P}.toll_free_inbound.phs",
    ),
    (
        _set(f"{V}.free_call_plan.free_seconds", 0),
        "tariff-bad-value",
        f"{P}.free_call_plan.free_seconds",
    ),
    (
        _set(f"{V}.free_call_plan.free_seconds", 600.0),
        "tariff-wrong-type",
        f"{P}.free_call_plan.free_seconds",
    ),
    (
        _set(f"{V}.free_call_plan.devices", ["fax"]),
        "tariff-bad-value",
        f"{P}.free_call_plan.devices",
    ),
    (
        _set(f"{V}.free_call_plan.devices", "app"),
        "tariff-wrong-type",
        f"{P}.free_call_plan.devices",
    ),
    (
        _set(f"{V}.free_call_plan.not_covered", ["internal"]),
        "tariff-bad-value",
        f"{P}.free_call_plan.not_covered",
    ),
    (
        _set(f"{V}.free_call_plan.fair_use_calls_per_day", 0),
        "tariff-bad-value",
        f"{P}.free_call_plan.fair_use_calls_per_day",
    ),
    (
        _set(f"{V}.free_call_plan.fair_use_calls_per_day", True),
        "tariff-wrong-type",
        f"{P}.free_call_plan.fair_use_calls_per_day",
    ),
    (
        _drop(f"{V}.free_call_plan.devices"),
        "tariff-missing-key",
        f"{P}.free_call_plan.devices",
    ),
    (_duplicate(lambda d: None), "tariff-duplicate-version", "versions"),
    (
        _duplicate(_set("versions.1.id", "again")),
        "tariff-duplicate-version",
        "versions",
    ),
]


@pytest.mark.parametrize(("mutate", "error_id", "path"), BAD_DOCUMENTS)
def test_invalid_documents_are_refused_naming_the_field(
    mutate: Callable[[Doc], None], error_id: str, path: str
) -> None:
    doc = default_document()
    mutate(doc)
    with pytest.raises(TariffError) as err:
        parse_tariffs(doc)
    assert (err.value.error_id, err.value.path) == (error_id, path)
    assert str(err.value).startswith(f"{path}: ")
    assert err.value.to_dict()["details"] == {"path": path}


@pytest.mark.parametrize(
    ("text", "error_id", "path"),
    [
        ("format = 1\n[[versions]\n", "tariff-syntax", ""),
        ("format = 1\nversions = 3\n", "tariff-no-versions", "versions"),
        ('format = 1\n[[versions]]\nid = "x"\n', "tariff-missing-key", "versions[0].forwarded"),
    ],
)
def test_invalid_toml_is_refused(text: str, error_id: str, path: str) -> None:
    with pytest.raises(TariffError) as err:
        parse_tariffs_toml(text)
    assert (err.value.error_id, err.value.path) == (error_id, path)


def test_a_float_price_in_toml_is_refused_with_the_fix_in_the_message() -> None:
    text = default_document_text().replace('mobile = { yen = "17.5"', "mobile = { yen = 17.5", 1)
    with pytest.raises(TariffError) as err:
        parse_tariffs_toml(text)
    assert err.value.path == "versions[0].outbound.desk.mobile.yen"
    assert '"17.5"' in err.value.message


def default_document_text() -> str:
    from importlib import resources

    return resources.files("billing").joinpath("tariffs.toml").read_text(encoding="utf-8")

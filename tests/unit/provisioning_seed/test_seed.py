"""The TOML seed format: the demo seed loads, and each service rule the loader checks refuses
a seed that breaks it, naming where."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import pytest

from provisioning.model import DayKind, DeviceKind, NumberKind, SlotAction
from provisioning.seed import SeedError, load_seed, parse_seed

DEMO = Path(__file__).resolve().parents[3] / "deploy" / "demo-seed.toml"


def base_doc() -> dict[str, Any]:
    return {
        "realm": "example.test",
        "tenants": [
            {
                "id": "t1",
                "identity_verified": True,
                "devices": [
                    {
                        "id": "a",
                        "kind": "desk",
                        "password": "pw-a",
                        "presented_number": "0312345678",
                    },
                    {
                        "id": "b",
                        "kind": "app",
                        "password": "pw-b",
                        "presented_number": "0312345678",
                    },
                    {
                        "id": "c",
                        "kind": "app",
                        "password": "pw-c",
                        "presented_number": "0312345678",
                    },
                ],
                "numbers": [{"number": "03-1234-5678", "kind": "contract"}],
            }
        ],
    }


def test_demo_seed_loads_into_a_snapshot() -> None:
    snap = load_seed(DEMO).snapshot()
    assert snap.realm == "softswitch.local"
    desk = snap.devices_by_username["demo-desk"]
    assert desk.kind is DeviceKind.DESK
    expected = hashlib.md5(b"demo-desk:softswitch.local:desk-secret-0100").hexdigest()
    assert desk.ha1_md5 == expected
    assert snap.numbers["+81355500100"].kind is NumberKind.CONTRACT
    assert snap.numbers["+81355500101"].ring_group == ("demo-app2",)
    assert snap.channels("demo") == 3
    assert snap.gateway_for_source("127.0.0.2") is not None
    assert snap.gateway_for_source("127.0.0.1") is None


def test_clear_passwords_are_not_kept_anywhere() -> None:
    data = parse_seed(base_doc())
    assert "pw-a" not in repr(data)
    sha = hashlib.sha256(b"a:example.test:pw-a").hexdigest()
    assert data.devices[0].ha1_sha256 == sha


def test_ring_group_defaults_to_every_id() -> None:
    data = parse_seed(base_doc())
    assert data.numbers[0].ring_group == ("a", "b", "c")


def test_slots_as_letters() -> None:
    doc = base_doc()
    doc["tenants"][0]["numbers"][0]["after_hours"] = {"enabled": True, "saturday": "A" * 48}
    num = parse_seed(doc).numbers[0]
    assert num.after_hours.slots[DayKind.SATURDAY] == (SlotAction.ANNOUNCE,) * 48
    assert num.after_hours.slots[DayKind.WEEKDAY] == (SlotAction.RING,) * 48


def mutate(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(base_doc())
    node: Any = doc["tenants"][0]
    *parents, last = path.split(".")
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    if value is DELETE:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return doc


DELETE = object()
EXTRA = {"number": "03-1234-0001", "kind": "additional"}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (mutate("numbers", []), "exactly one contract number"),
        (
            mutate(
                "numbers",
                [base_doc()["tenants"][0]["numbers"][0]]
                + [{"number": f"03-1234-000{i}", "kind": "additional"} for i in range(3)],
            ),
            "at most 2 additional",
        ),
        (mutate("numbers.0.voicemail_ring_time", 0), "voicemail_ring_time"),
        (mutate("numbers.0.voicemail_ring_time", 35), "voicemail_ring_time"),
        (mutate("numbers.0.ring_group", []), "ring_group"),
        (mutate("numbers.0.ring_group", ["zz"]), "ring_group"),
        (mutate("numbers.0.after_hours", {"weekday": "F" * 48}), "forwarding option"),
        (mutate("numbers.0.after_hours", {"weekday": "R" * 47}), "exactly 48"),
        (mutate("devices.0.kind", "fax"), "kind"),
        (mutate("devices.0.presented_number", "0399999999"), "does not own"),
        (mutate("devices.0.free_calls_10min", True), "apps only"),
    ],
)
def test_rules_refuse_bad_seeds(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(SeedError, match=message):
        parse_seed(doc)


@pytest.mark.parametrize(
    "doc",
    [
        mutate("devices", base_doc()["tenants"][0]["devices"][:1]),  # one ID, contract number
        mutate("identity_verified", False),  # unverified is fine without after-hours/forwarding
    ],
)
def test_edge_seeds_that_are_valid(doc: dict[str, Any]) -> None:
    assert parse_seed(doc).tenants[0].id == "t1"


def test_additional_numbers_never_exceed_additional_ids() -> None:
    doc = base_doc()
    doc["tenants"][0]["devices"] = doc["tenants"][0]["devices"][:1]
    doc["tenants"][0]["numbers"].append(dict(EXTRA))
    with pytest.raises(SeedError, match="additional IDs"):
        parse_seed(doc)


def test_toll_free_needs_more_than_one_id() -> None:
    doc = base_doc()
    doc["tenants"][0]["devices"] = doc["tenants"][0]["devices"][:1]
    doc["tenants"][0]["numbers"].append({"number": "0120-123-456", "kind": "toll-free"})
    with pytest.raises(SeedError, match="toll-free"):
        parse_seed(doc)


def test_forwarding_needs_verified_identity() -> None:
    doc = base_doc()
    doc["tenants"][0]["identity_verified"] = False
    doc["tenants"][0]["numbers"][0]["options"] = {"forwarding": True}
    doc["tenants"][0]["numbers"][0]["forwarding"] = {"enabled": True, "target": "09012345678"}
    with pytest.raises(SeedError, match="verified identity"):
        parse_seed(doc)


def test_duplicate_usernames_across_tenants_are_refused() -> None:
    doc = base_doc()
    other = copy.deepcopy(doc["tenants"][0])
    other["id"] = "t2"
    other["numbers"][0]["number"] = "0398765432"
    for d in other["devices"]:
        d["presented_number"] = "0398765432"
    doc["tenants"].append(other)
    with pytest.raises(SeedError, match="duplicate device id"):
        parse_seed(doc)


def test_unreadable_file_is_a_seed_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("realm = [unterminated")
    with pytest.raises(SeedError):
        load_seed(bad)
    with pytest.raises(SeedError):
        load_seed(tmp_path / "missing.toml")

"""Small pure parts of the services: principals, cursors, errors, snapshot diffs."""

from __future__ import annotations

import dataclasses

import pytest

from provisioning import live
from provisioning.diff import dropped_devices
from provisioning.errors import (
    ERROR_IDS,
    Forbidden,
    InvalidInput,
    NotFound,
    PhonebookImportRejected,
    StoreUnavailable,
    Unauthenticated,
)
from provisioning.model import Device, DeviceKind, Snapshot, Tenant, TenantStatus
from provisioning.services import UNSET, Principal, TenantUpdate, base
from provisioning.store.queries.sql import like


def test_principals() -> None:
    op, me = Principal.operator(), Principal.for_tenant("a")
    op.require_operator()
    op.require_tenant("anything")
    me.require_tenant("a")
    with pytest.raises(Forbidden) as e:
        me.require_tenant("b")
    assert (e.value.error_id, e.value.status) == ("wrong-tenant", 403)
    with pytest.raises(Forbidden) as e:
        me.require_operator()
    assert e.value.error_id == "operator-only"


def test_cursor_round_trip_and_garbage() -> None:
    c = base.encode_cursor(["山田 %", "id_1"])
    assert base.decode_cursor(c, 2) == ["山田 %", "id_1"]
    for bad in ("%%%", base.encode_cursor(["one"]), base.encode_cursor([1, 2])):
        with pytest.raises(InvalidInput) as e:
            base.decode_cursor(bad, 2)
        assert e.value.error_id == "invalid-cursor"
    assert base.decode_cursor(None, 2) is None


def test_like_escapes_wildcards() -> None:
    assert like("A%_\\b") == "%a\\%\\_\\\\b%"


def test_update_defaults_are_unset() -> None:
    u = TenantUpdate()
    assert all(getattr(u, f.name) is UNSET for f in dataclasses.fields(u))
    assert repr(UNSET) == "UNSET"


def test_errors_render_and_are_registered() -> None:
    for err in (
        NotFound("tenant", "x"),
        StoreUnavailable(),
        Unauthenticated(),
        PhonebookImportRejected([{"row": 3, "reason": "bad"}]),
    ):
        body = err.to_dict()
        assert set(body) == {"error_id", "message", "details"}
        assert ERROR_IDS[err.error_id] == err.status
    assert StoreUnavailable().status == 503
    assert all(400 <= s < 600 for s in ERROR_IDS.values())
    assert all(k == k.lower() and " " not in k for k in ERROR_IDS)


def _snap(devices: list[Device], status: TenantStatus = TenantStatus.ACTIVE) -> Snapshot:
    return Snapshot.build(
        version=1,
        realm="r",
        tenants=[Tenant(id="t", name="t", status=status)],
        devices=devices,
        numbers=[],
        gateways=[],
    )


def test_dropped_devices() -> None:
    a = Device(
        id="a",
        tenant_id="t",
        username="a",
        kind=DeviceKind.APP,
        ha1_md5="1",
        ha1_sha256="2",
        presented_number="+81311112222",
    )
    b = dataclasses.replace(a, id="b", username="b")
    old = _snap([a, b])
    assert dropped_devices(old, _snap([a, b])) == set()
    assert dropped_devices(old, _snap([a])) == {"b"}
    assert dropped_devices(old, _snap([dataclasses.replace(a, release_seq=1), b])) == {"a"}
    assert dropped_devices(old, _snap([dataclasses.replace(a, ha1_md5="x"), b])) == {"a"}
    assert dropped_devices(old, _snap([a, dataclasses.replace(b, display_name="B")])) == set()
    assert dropped_devices(old, _snap([a, b], TenantStatus.SUSPENDED)) == {"a", "b"}
    assert live.dropped_devices is dropped_devices  # the switch's import keeps working

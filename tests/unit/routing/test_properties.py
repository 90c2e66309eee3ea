"""Property-based tests: for any snapshot, live state, call and time, decide() returns a
valid Decision and the service rules' invariants hold."""

from datetime import UTC, date, datetime
from types import MappingProxyType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from provisioning.model import (
    SLOTS_PER_DAY,
    AfterHours,
    DayKind,
    DeviceKind,
    Forwarding,
    NumberKind,
    NumberOptions,
    SlotAction,
    Snapshot,
    TenantStatus,
)
from routing import (
    Announce,
    Busy,
    Call,
    Decision,
    Direction,
    Forward,
    Internal,
    LiveState,
    Outbound,
    OutboundUsage,
    Reject,
    Ring,
    Voicemail,
    decide,
)
from routing.caps import DEFAULT_LIMITS
from routing.dialled import DialKind, classify
from routing.inbound import lookup_number
from routing.outbound import EMERGENCY_WARNING
from routing.testing import device, number, snapshot, tenant

ZONES = ("Asia/Tokyo", "Europe/Berlin", "America/New_York", "UTC", "Not/AZone")
NUMBER_POOL = (*(f"+8131234{i:04d}" for i in range(8)), "+81120123456", "+818001234567")
VALID_TARGETS = ("09011112222", "+819011112222", "0355550000")
TARGETS = (*VALID_TARGETS * 3, None, "", "+12125551234", "110", "x", NUMBER_POOL[0])
HOLIDAYS = (date(2026, 1, 1), date(2026, 3, 29), date(2026, 11, 22), date(2026, 11, 23))
FLOATS = st.sampled_from((0.0, 2.5, 5.0, 60.0, -1.0, float("nan"), float("inf")))
EMERGENCY = ("110", "118", "119")
STATUSES = st.sampled_from((TenantStatus.ACTIVE,) * 4 + (TenantStatus.SUSPENDED,))

actions = st.sampled_from(tuple(SlotAction))
day = st.one_of(
    st.builds(lambda a: (a,) * SLOTS_PER_DAY, actions),
    st.lists(actions, min_size=SLOTS_PER_DAY, max_size=SLOTS_PER_DAY).map(tuple),
    st.lists(actions, max_size=3).map(tuple),  # malformed: too short
)


@st.composite
def schedules(draw: st.DrawFn) -> AfterHours:
    days = draw(st.dictionaries(st.sampled_from(tuple(DayKind)), day))
    return AfterHours(
        enabled=draw(st.booleans()),
        slots=MappingProxyType(days),
        announcement=draw(st.sampled_from(("template-2", "prompt:3"))),
    )


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    n_tenants = draw(st.integers(1, 3))
    pool = list(NUMBER_POOL)
    tenants, devices, numbers = [], [], []
    for t in range(n_tenants):
        tid = f"t{t}"
        tenants.append(
            tenant(
                tid,
                timezone=draw(st.sampled_from(ZONES)),
                holidays=draw(st.frozensets(st.sampled_from(HOLIDAYS))),
                status=draw(STATUSES),
            )
        )
        mine = [
            pool.pop(draw(st.integers(0, len(pool) - 1)))
            for _ in range(draw(st.integers(0, min(3, len(pool)))))
        ]
        for d in range(draw(st.integers(0, 6))):
            presented = draw(st.sampled_from([*mine, NUMBER_POOL[-1], "+81399999999"]))
            devices.append(
                device(
                    f"{tid}d{d}",
                    tenant_id=tid,
                    presented_number=presented,
                    kind=draw(st.sampled_from(tuple(DeviceKind))),
                )
            )
        for e164 in mine:
            numbers.append((tid, e164))
    ids = [d.id for d in devices] + ["ghost"]
    built = [_number(draw, tid, e164, ids) for tid, e164 in numbers]
    return snapshot(tenants, devices, built)


def _number(draw: st.DrawFn, tid: str, e164: str, ids: list[str]) -> Any:
    kind = NumberKind.TOLL_FREE if e164 in NUMBER_POOL[-2:] else NumberKind.CONTRACT
    options = NumberOptions(
        after_hours=draw(st.booleans()),
        voicemail=draw(st.booleans()),
        forwarding=draw(st.booleans()),
        recording=draw(st.booleans()),
    )
    return number(
        e164,
        draw(st.lists(st.sampled_from(ids), max_size=6)),
        tenant_id=tid,
        kind=kind,
        options=options,
        after_hours=draw(schedules()),
        forwarding=Forwarding(enabled=draw(st.booleans()), target=draw(st.sampled_from(TARGETS))),
        voicemail_ring_time=draw(st.sampled_from((0, 5, 7, 15, 30, 45))),
        max_ring_time=draw(FLOATS),
        app_ring_delay=draw(FLOATS),
        recording_notice=draw(st.booleans()),
        label=draw(st.sampled_from((None, "", "Sales"))),
        label_in_display_name=draw(st.booleans()),
    )


def dialled_strings(snap: Snapshot) -> st.SearchStrategy[str]:
    numbers = [n for e in snap.numbers for n in (e, "0" + e[3:], "tel:" + e)]
    users = [*snap.devices_by_username, "user-nobody"]
    fixed = [
        "110",
        "118",
        "119",
        "184110",
        "tel:119",
        "104",
        "117",
        "0355550000",
        "1840355550000",
        "+12125551234",
        "01012125551234",
        "0570123456",
        "031234",
        "",
    ]
    return st.one_of(st.sampled_from(numbers + users + fixed), st.text(max_size=16))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Call, Snapshot, LiveState, datetime]:
    snap = draw(snapshots())
    ids = sorted(snap.devices)
    live = LiveState(
        channels={t: draw(st.integers(0, 7) | st.just(0)) for t in snap.tenants},
        registered=frozenset(i for i in ids if draw(st.sampled_from((True, True, False)))),
        usage={i: draw(usages()) for i in ids},
    )
    dialled = draw(dialled_strings(snap))
    if draw(st.booleans()):
        if snap.numbers and draw(st.sampled_from((True, True, True, False))):
            dialled = draw(st.sampled_from(sorted(snap.numbers)))
        fax = draw(st.booleans())
        call = Call.inbound(call_id="c", dialled=dialled, caller_number="+81355550000", fax=fax)
    else:
        caller = draw(st.sampled_from([*ids, *ids, *ids, "ghost"]))
        call = Call.from_device(call_id="c", device_id=caller, dialled=dialled)
    now = draw(
        st.one_of(
            st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31)),
            st.datetimes(),
        ).map(lambda d: d.replace(tzinfo=UTC))
    )
    return call, snap, live, now


def _full(snap: Snapshot, live: LiveState, tenant_id: str) -> bool:
    return live.channels_in_use(tenant_id) >= snap.channels(tenant_id)


def check_inbound(call: Call, snap: Snapshot, live: LiveState, decision: Decision) -> None:
    num = lookup_number(call.dialled, snap)
    if num is None:
        assert isinstance(decision, Reject) and decision.status == 404
        return
    t = snap.tenants[num.tenant_id]
    if not t.active:
        assert isinstance(decision, Reject) and decision.status == 480
        return
    full = _full(snap, live, t.id)
    if isinstance(decision, Forward):
        assert not decision.record and decision.takes_channel and not full
        assert num.options.forwarding and decision.presented_identity == num.e164
    if isinstance(decision, Announce):
        assert num.options.after_hours and num.after_hours.enabled
        assert decision.then_voicemail == num.options.voicemail
    if isinstance(decision, Ring):
        assert not full and decision.record == num.options.recording
        for device_id in decision.device_ids:
            assert device_id in num.ring_group and live.is_registered(device_id)
            assert snap.devices[device_id].tenant_id == t.id
    if isinstance(decision, Busy):
        assert full
    if isinstance(decision, (Ring, Voicemail)) or decision.rule == "no-registered-device":
        assert not full
    if full:  # Busy iff channels full, for every call that is not an announcement
        assert isinstance(decision, (Busy, Announce))
    assert not isinstance(decision, (Outbound, Internal))


@st.composite
def usages(draw: st.DrawFn) -> OutboundUsage:
    """Mostly idle IDs; now and then one just below or at a default cap."""
    return OutboundUsage(
        active_id=draw(st.sampled_from((0, 0, 0, 1, 2, 3))),
        today_id=draw(st.sampled_from((0, 0, 0, 5, 299, 300))),
        today_tenant=draw(st.sampled_from((0, 0, 0, 50, 1999, 2000))),
        expensive_today_id=draw(st.sampled_from((0, 0, 0, 19, 20))),
    )


def check_caps(call: Call, live: LiveState, decision: Decision) -> None:
    """An outbound call passes every cap; a cap refusal names a cap that is reached."""
    usage = live.outbound_usage(call.device_id or "")
    limits = DEFAULT_LIMITS
    if isinstance(decision, Outbound):
        assert usage.active_id < limits.concurrent_per_id
        assert usage.today_id < limits.per_id_per_day
        assert usage.today_tenant < limits.per_tenant_per_day
        if decision.destination_kind in limits.expensive:
            assert usage.expensive_today_id < limits.expensive_per_id_per_day
    reached = {
        "outbound-concurrent-cap": usage.active_id >= limits.concurrent_per_id,
        "outbound-daily-cap": usage.today_id >= limits.per_id_per_day,
        "outbound-tenant-daily-cap": usage.today_tenant >= limits.per_tenant_per_day,
        "outbound-expensive-cap": usage.expensive_today_id >= limits.expensive_per_id_per_day,
    }
    if decision.rule in reached:
        assert isinstance(decision, Reject) and decision.status == 403
        assert reached[decision.rule]


def check_from_device(call: Call, snap: Snapshot, live: LiveState, decision: Decision) -> None:
    check_caps(call, live, decision)
    kind = classify(call.dialled).kind
    if kind is DialKind.EMERGENCY:
        assert isinstance(decision, Reject) and decision.rule == "outbound-emergency"
    if isinstance(decision, Outbound):
        caller = snap.devices[decision.device_id]
        assert kind in (DialKind.NATIONAL, DialKind.DIRECTORY)
        assert decision.destination.startswith("+81") or decision.destination == "104"
        assert not _full(snap, live, caller.tenant_id)
        presented = snap.numbers[decision.presented_number]
        assert presented.tenant_id == caller.tenant_id
        assert presented.kind is not NumberKind.TOLL_FREE
        assert decision.record == presented.options.recording
    if isinstance(decision, Internal):
        assert call.device_id not in decision.device_ids
        for device_id in decision.device_ids:
            assert live.is_registered(device_id)
            assert snap.devices[device_id].tenant_id == decision.tenant_id
    assert isinstance(decision, (Reject, Outbound, Internal))


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_decide_never_raises_and_invariants_hold(
    scenario: tuple[Call, Snapshot, LiveState, datetime],
) -> None:
    call, snap, live, now = scenario
    decision = decide(call, snap, live, now)
    assert isinstance(decision, Decision) and decision.rule
    assert decide(call, snap, live, now) == decision  # deterministic
    if call.direction is Direction.INBOUND:
        check_inbound(call, snap, live, decision)
    else:
        check_from_device(call, snap, live, decision)


@given(
    snap=snapshots(),
    prefix=st.sampled_from(("", "184", "186", "tel:", " ")),
    code=st.sampled_from(EMERGENCY),
    separator=st.sampled_from(("", "-", " ")),
    in_use=st.integers(0, 9),
    data=st.data(),
)
def test_emergency_calls_are_always_refused(
    snap: Snapshot, prefix: str, code: str, separator: str, in_use: int, data: st.DataObject
) -> None:
    caller = data.draw(st.sampled_from([*sorted(snap.devices), "ghost"]))
    dialled = prefix + separator.join(code)
    live = LiveState(
        channels=dict.fromkeys(snap.tenants, in_use), registered=frozenset(snap.devices)
    )
    call = Call.from_device(call_id="c", device_id=caller, dialled=dialled)
    decision = decide(call, snap, live, datetime(2026, 11, 20, tzinfo=UTC))
    assert decision == Reject(
        status=403, reason="Forbidden", warning=EMERGENCY_WARNING, rule="outbound-emergency"
    )

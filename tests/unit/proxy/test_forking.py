"""The forking engine alone: stages, best response, CANCEL, Timer C — fake scheduler."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from switch.proxy.forking import Branch, BranchState, Fork, Stage, choose_best

from .fakes import FakeHandle, FakeScheduler


class Recorder:
    def __init__(self, sched: FakeScheduler) -> None:
        self.sched = sched
        self.started: list[str] = []
        self.cancels: list[str] = []
        self.forwarded: list[tuple[str, str]] = []
        self.finals: list[tuple[int, str | None]] = []
        self.on_start: Callable[[Branch[str]], None] | None = None

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeHandle:
        return self.sched.call_later(delay, callback)

    def start_branch(self, branch: Branch[str]) -> None:
        self.started.append(branch.payload)
        if self.on_start:
            self.on_start(branch)

    def cancel_branch(self, branch: Branch[str]) -> None:
        self.cancels.append(branch.payload)

    def forward(self, branch: Branch[str], response: str) -> None:
        self.forwarded.append((branch.payload, response))

    def finish(
        self, status: int, chosen: str | None, finals: Sequence[tuple[int, str | None]]
    ) -> None:
        self.finals.append((status, chosen))


def make(
    *stages: Stage[str], timer_c: float = 185.0
) -> tuple[Fork[str, str], Recorder, FakeScheduler]:
    sched = FakeScheduler()
    rec = Recorder(sched)
    fork: Fork[str, str] = Fork(stages, rec, timer_c=timer_c)
    return fork, rec, sched


def br(fork: Fork[str, str], payload: str) -> Branch[str]:
    return next(b for b in fork.branches if b.payload == payload)


def test_parallel_fork_first_200_cancels_ringing_other() -> None:
    fork, rec, _ = make(Stage(payloads=("a", "b")))
    fork.start()
    assert rec.started == ["a", "b"]
    fork.on_provisional(br(fork, "a"), 180, "180a")
    fork.on_provisional(br(fork, "b"), 180, "180b")
    fork.on_final(br(fork, "a"), 200, "200a")
    assert rec.forwarded == [("a", "180a"), ("b", "180b"), ("a", "200a")]
    assert rec.cancels == ["b"]
    fork.on_final(br(fork, "b"), 487, "487b")
    assert rec.finals == []  # the 2xx was the answer; no second final
    assert fork.finished and fork.answered


def test_no_provisional_is_forwarded_after_the_answer() -> None:
    fork, rec, _ = make(Stage(payloads=("a", "b")))
    fork.start()
    fork.on_final(br(fork, "a"), 200, "200a")
    fork.on_provisional(br(fork, "b"), 180, "180b")  # b had not rung yet: CANCEL it now
    assert rec.forwarded == [("a", "200a")]
    assert rec.cancels == ["b"]


def test_2xx_racing_the_callers_cancel_is_still_forwarded() -> None:
    fork, rec, _ = make(Stage(payloads=("a",)))
    fork.start()
    fork.on_provisional(br(fork, "a"), 180, "180")
    fork.cancel()
    fork.on_final(br(fork, "a"), 200, "200")
    assert rec.forwarded[-1] == ("a", "200")
    assert rec.finals == []  # no 487 after the 2xx


def test_cancel_waits_for_provisional_before_cancelling_branch() -> None:
    fork, rec, _ = make(Stage(payloads=("a",)))
    fork.start()
    fork.cancel()
    assert rec.cancels == []  # §9.1: no CANCEL before a provisional
    fork.on_provisional(br(fork, "a"), 100, "100")
    assert rec.cancels == []
    fork.on_provisional(br(fork, "a"), 180, "180")
    assert rec.cancels == ["a"]
    assert rec.forwarded == []  # nothing forwarded once cancelled
    fork.on_final(br(fork, "a"), 487, "487")
    assert rec.finals == [(487, None)]


def test_every_2xx_is_forwarded() -> None:
    fork, rec, _ = make(Stage(payloads=("a", "b")))
    fork.start()
    fork.on_final(br(fork, "a"), 200, "200a")
    fork.on_final(br(fork, "b"), 200, "200b")
    assert [r for _, r in rec.forwarded] == ["200a", "200b"]
    assert rec.finals == []


def test_busy_beats_not_found() -> None:
    fork, rec, _ = make(Stage(payloads=("a", "b")))
    fork.start()
    fork.on_final(br(fork, "a"), 404, "404")
    assert rec.finals == []
    fork.on_final(br(fork, "b"), 486, "486")
    assert rec.finals == [(486, "486")]


def test_6xx_cancels_others_and_wins() -> None:
    fork, rec, _ = make(Stage(payloads=("a", "b")))
    fork.start()
    fork.on_provisional(br(fork, "b"), 180, "180b")
    fork.on_final(br(fork, "a"), 603, "603")
    assert rec.cancels == ["b"]
    assert rec.finals == []
    fork.on_final(br(fork, "b"), 487, "487")
    assert rec.finals == [(603, "603")]


@pytest.mark.parametrize(
    ("statuses", "best"),
    [
        ([404, 486], 486),
        ([486, 302], 302),
        ([503, 404], 404),
        ([500, 603, 200 + 286], 603),
        ([408, 487, 480], 480),
        ([401, 486, 407], 401),
        ([503], 503),
    ],
)
def test_choose_best(statuses: list[int], best: int) -> None:
    assert statuses[choose_best(statuses)] == best


def test_timed_stage_starts_while_earlier_rings_and_never_after_answer() -> None:
    fork, rec, sched = make(
        Stage(payloads=("desk",)),
        Stage(payloads=("app",), delay=5.0, only_if_earlier_ringing=True),
    )
    fork.start()
    assert rec.started == ["desk"]
    fork.on_provisional(br(fork, "desk"), 180, "180")
    sched.advance(4.9)
    assert rec.started == ["desk"]
    sched.advance(0.2)
    assert rec.started == ["desk", "app"]


def test_delayed_stage_never_starts_after_answer() -> None:
    fork, rec, sched = make(
        Stage(payloads=("desk",)),
        Stage(payloads=("app",), delay=5.0, only_if_earlier_ringing=True),
    )
    fork.start()
    fork.on_provisional(br(fork, "desk"), 180, "180")
    fork.on_final(br(fork, "desk"), 200, "200")
    sched.advance(60)
    assert rec.started == ["desk"]
    assert br(fork, "app").state is BranchState.DONE
    assert fork.finished


def test_delayed_stage_never_starts_after_cancel() -> None:
    fork, rec, sched = make(
        Stage(payloads=("desk",)),
        Stage(payloads=("app",), delay=5.0),
    )
    fork.start()
    fork.on_provisional(br(fork, "desk"), 180, "180")
    fork.cancel()
    sched.advance(60)
    assert rec.started == ["desk"]
    fork.on_final(br(fork, "desk"), 487, "487")
    assert rec.finals == [(487, None)]


def test_conditional_stage_starts_at_once_when_earlier_failed() -> None:
    fork, rec, _sched = make(
        Stage(payloads=("desk",)),
        Stage(payloads=("app",), delay=5.0, only_if_earlier_ringing=True),
    )
    fork.start()
    fork.on_final(br(fork, "desk"), 486, "486")
    assert rec.started == ["desk", "app"]  # no silence for the caller
    assert rec.finals == []
    fork.on_final(br(fork, "app"), 480, "480")
    assert rec.finals == [(486, "486")]


def test_unconditional_stage_waits_full_delay() -> None:
    fork, rec, sched = make(Stage(payloads=("a",)), Stage(payloads=("b",), delay=5.0))
    fork.start()
    fork.on_final(br(fork, "a"), 486, "486")
    assert rec.started == ["a"] and rec.finals == []
    sched.advance(5.0)
    assert rec.started == ["a", "b"]


def test_empty_first_stage_starts_conditional_stage_at_once() -> None:
    fork, rec, _ = make(
        Stage(payloads=()), Stage(payloads=("app",), delay=5.0, only_if_earlier_ringing=True)
    )
    fork.start()
    assert rec.started == ["app"]


def test_no_branch_at_all_is_480() -> None:
    fork, rec, _ = make(Stage(payloads=()))
    fork.start()
    assert rec.finals == [(480, None)]


def test_synchronous_failure_does_not_finish_early() -> None:
    fork, rec, _ = make(Stage(payloads=("bad", "good")))
    rec.on_start = lambda b: fork.on_final(b, 503, None) if b.payload == "bad" else None
    fork.start()
    assert rec.started == ["bad", "good"]
    assert rec.finals == []
    fork.on_final(br(fork, "good"), 486, "486")
    assert rec.finals == [(486, "486")]


def test_timer_c_without_provisional_is_408() -> None:
    fork, rec, sched = make(Stage(payloads=("a",)), timer_c=181.0)
    fork.start()
    sched.advance(180.0)
    assert rec.finals == []
    sched.advance(1.0)
    assert rec.cancels == []
    assert rec.finals == [(408, None)]


def test_timer_c_with_provisional_cancels_and_rearms_on_provisional() -> None:
    fork, rec, sched = make(Stage(payloads=("a",)), timer_c=181.0)
    fork.start()
    sched.advance(100)
    fork.on_provisional(br(fork, "a"), 180, "180")
    sched.advance(100)  # 200 s since start, 100 s since the 180: not yet
    assert rec.cancels == []
    sched.advance(81)
    assert rec.cancels == ["a"]
    fork.on_final(br(fork, "a"), 487, "487")
    assert rec.finals == [(487, "487")]


def test_ring_timeout_cancels_and_answers_480() -> None:
    fork, rec, sched = make(Stage(payloads=("a", "b")))
    fork.start(ring_timeout=30.0)
    fork.on_provisional(br(fork, "a"), 180, "180")
    sched.advance(30.0)
    assert rec.cancels == ["a"]
    fork.on_provisional(br(fork, "b"), 183, "183")
    assert rec.cancels == ["a", "b"]
    fork.on_final(br(fork, "a"), 487, "487")
    fork.on_final(br(fork, "b"), 487, "487")
    assert rec.finals == [(480, None)]


def test_answer_stops_ring_timeout() -> None:
    fork, _rec, sched = make(Stage(payloads=("a",)))
    fork.start(ring_timeout=30.0)
    fork.on_final(br(fork, "a"), 200, "200")
    assert sched.pending() == []


# --------------------------------------------------------------------------- the phase table
def test_phase_table_ignores_and_counts_what_it_does_not_allow() -> None:
    from switch.proxy.forkphases import IGNORED, TRANSITIONS, Input, Phase, transition

    for phase in Phase:
        for event in Input:
            before = IGNORED[phase, event]
            entry = transition(phase, event)
            if (phase, event) in TRANSITIONS:
                assert entry == TRANSITIONS[phase, event] and IGNORED[phase, event] == before
            else:
                assert entry is None and IGNORED[phase, event] == before + 1
    # A finished fork accepts no 6xx (its branches have all ended); nothing leaves FINISHED.
    assert (Phase.FINISHED, Input.GLOBAL_FAILURE) not in TRANSITIONS
    assert all(
        nxt is Phase.FINISHED for (ph, _), (_, nxt) in TRANSITIONS.items() if ph is Phase.FINISHED
    )


def test_a_fork_with_a_diversion_diverts_once_then_runs_plainly() -> None:
    from switch.proxy.forkphases import Input, Phase, transition

    assert transition(Phase.DIVERTIBLE, Input.RING_TIMEOUT) == (
        transition(Phase.DIVERTIBLE, Input.BRANCHES_DONE)
    )
    action, nxt = transition(Phase.DIVERTIBLE, Input.RING_TIMEOUT) or (None, None)
    assert nxt is Phase.RUNNING
    assert transition(Phase.RUNNING, Input.RING_TIMEOUT) != (action, nxt)


# --------------------------------------------------------------------------- fail-over
def _failover() -> tuple[Fork[str, str], Recorder, FakeScheduler]:
    fork, rec, sched = make(
        Stage(payloads=("m1",), response_timeout=1.0),
        Stage(payloads=("m2",), failover=True, response_timeout=1.0),
    )
    fork.start()
    return fork, rec, sched


def test_a_silent_next_hop_fails_over_after_the_response_timeout() -> None:
    fork, rec, sched = _failover()
    assert rec.started == ["m1"]
    sched.advance(0.99)
    assert rec.started == ["m1"]
    sched.advance(0.02)  # no response at all within 1 s: treated as 408, the next one starts
    assert rec.started == ["m1", "m2"]
    assert br(fork, "m1").final_status == 408 and rec.cancels == []  # no CANCEL without 1xx
    fork.on_final(br(fork, "m2"), 200, "200m2")
    assert rec.forwarded == [("m2", "200m2")] and rec.finals == []


def test_a_100_trying_turns_the_response_timeout_into_timer_c() -> None:
    fork, rec, sched = _failover()
    fork.on_provisional(br(fork, "m1"), 100, "100")
    sched.advance(10.0)  # alive (it answered 100), e.g. playing early media later
    assert rec.started == ["m1"] and br(fork, "m1").state is BranchState.TRYING
    fork.on_provisional(br(fork, "m1"), 183, "183")
    sched.advance(60.0)
    assert rec.started == ["m1"] and rec.cancels == []
    fork.on_final(br(fork, "m1"), 486, "486")
    assert rec.finals == [(486, "486")] and rec.started == ["m1"]  # a real answer: no fail-over


def test_every_next_hop_silent_ends_in_408() -> None:
    _, rec, sched = _failover()
    sched.advance(2.5)
    assert rec.started == ["m1", "m2"]
    assert rec.finals == [(408, None)]


def test_response_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Stage(payloads=("x",), response_timeout=0)

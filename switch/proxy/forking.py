"""The forking engine: one INVITE's response context (RFC 3261 §16.7) with timed stages.

Theory of operation
-------------------
A `Fork` owns the branches of one proxied request and decides, from the statuses the branches
report, what the proxy must do next. It is pure: it never builds or sends a message, it calls
the `ForkHooks` the proxy gives it (start a branch, CANCEL a branch, forward a response,
send the final answer) and schedules its timers through `hooks.call_later`, so unit tests
drive it with a fake scheduler and no network.

Stages (timed forking). The plan is a list of `Stage`s, each a set of branch payloads with a
start delay counted from the moment the fork starts. A stage flagged
`only_if_earlier_ringing` exists so that desk phones ring before apps: its delay only holds
while a branch of an earlier stage is still alive (trying or ringing); when every earlier
branch has already failed (busy desk phone, nothing registered) it starts at once, so the
caller never waits in silence for nothing. A stage without the flag waits its full delay.
Once the call is answered (2xx), decided by a 6xx, cancelled or timed out, stages that have
not started never start (§16.7 step 5: "MUST NOT create any new branches").

Best response (§16.7 step 6): 2xx are forwarded at once, every one of them (forking may
produce several). A 6xx cancels every other branch and is the answer. Otherwise, when every
branch has completed and no stage is left, the answer is chosen from the lowest response
class by `choose_best`; the proxy turns a chosen 503 into 500 and merges 401/407 challenges.
If the caller CANCELled and nothing answered 2xx, the answer is 487.

Timer C (§16.6 step 11): armed per INVITE branch when it starts, re-armed on every
provisional above 100. When it fires, a branch that received a provisional is CANCELled;
one that never did is treated as if it had answered 408 (a CANCEL may not be sent before a
provisional, §9.1).

CANCEL rule (§9.1): a branch with no provisional yet is only marked; its CANCEL goes out when
its first provisional arrives.

Diversion (no answer -> voicemail). `start(divert_to=payload)` names a fallback branch: when
the ring timeout fires, or when every branch has failed with a 4xx/5xx before it (a busy or
unreachable desk phone), the fork CANCELs whatever is still ringing, starts no more stages and
starts one new branch with that payload (the voicemail hand-off). The fork keeps running, so
that branch's provisionals and 2xx reach the caller like any other; the finals of the
superseded branches (their 487s) no longer count when the answer is chosen. It diverts once;
a caller's CANCEL or a 6xx before it means no diversion.

Phases. Which of these things may happen when is one table, `forkphases.TRANSITIONS`
((phase, input) -> (action, next phase)); the Fork feeds it its inputs (a 2xx, a 6xx, the
caller's CANCEL, the ring timeout, "every branch has ended") and carries out the actions. An
input the table does not allow is ignored and counted (forkphases.IGNORED), never raised.
The pieces (Stage, Branch, ForkHooks, choose_best) are in branches.py.

Fail-over (`Stage.failover`, `Stage.response_timeout`). A branch whose stage has a response
timeout and that has had no response at all (not even 100 Trying) that long after it started
is treated as 408 - a dead next hop is given up in about a second instead of Timer C's three
minutes (Kamailio's fr_timer). A fail-over stage starts only when every earlier branch failed
for the next hop's own reasons (408, 5xx), at once; after a real answer (a 486 after a busy
message, a 403) it never starts. The proxy spreads media hand-offs over several media
services this way: one stage per service, the call's share first.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Generic

from .branches import (
    DEFAULT_TIMER_C,
    Branch,
    BranchState,
    ForkHooks,
    Handle,
    P,
    R,
    Stage,
    choose_best,
)
from .forkphases import Action, Input, Phase, transition

__all__ = [
    "DEFAULT_TIMER_C",
    "Branch",
    "BranchState",
    "Fork",
    "ForkHooks",
    "Stage",
    "choose_best",
]

_RUNNING = frozenset({Phase.RUNNING, Phase.DIVERTIBLE})


class Fork(Generic[P, R]):
    """The response context of one proxied request. See the module docstring."""

    __slots__ = (
        "_answered",
        "_decided_status",
        "_divert_to",
        "_final_branch",
        "_finals",
        "_hooks",
        "_phase",
        "_stage_started",
        "_stage_timers",
        "_timeout_handle",
        "branches",
        "cancelled",
        "diverted",
        "invite",
        "stages",
        "timer_c",
    )

    def __init__(
        self,
        stages: Sequence[Stage[P]],
        hooks: ForkHooks[P, R],
        *,
        invite: bool = True,
        timer_c: float = DEFAULT_TIMER_C,
    ) -> None:
        self.stages = tuple(stages)
        self._hooks = hooks
        self.invite = invite
        self.timer_c = timer_c
        self.branches: list[Branch[P]] = []
        for si, st in enumerate(self.stages):
            for p in st.payloads:
                self.branches.append(Branch(len(self.branches), si, p))
        self._stage_started = [False] * len(self.stages)
        self._stage_timers: list[Handle | None] = [None] * len(self.stages)
        self._finals: list[tuple[int, R | None]] = []
        self._final_branch: list[int] = []  # branch index of each entry of _finals
        self._phase = Phase.RUNNING
        self._answered = False
        self._decided_status: int | None = None  # 6xx / 487 / timeout status
        self._timeout_handle: Handle | None = None
        self._divert_to: P | None = None
        self.cancelled = False
        self.diverted = False

    # ------------------------------------------------------------------ public API
    @property
    def finished(self) -> bool:
        return self._phase is Phase.FINISHED

    @property
    def answered(self) -> bool:
        """A 2xx has been forwarded."""
        return self._answered

    def start(
        self,
        ring_timeout: float | None = None,
        timeout_status: int = 480,
        divert_to: P | None = None,
    ) -> None:
        """Start stage(s) due now and arm the others. `ring_timeout`: after that many seconds
        without a 2xx, CANCEL everything and answer `timeout_status`, or divert to
        `divert_to` when given (see Diversion in the module docstring)."""
        self._divert_to = divert_to
        if divert_to is not None:
            self._phase = Phase.DIVERTIBLE
        if ring_timeout is not None:
            self._timeout_handle = self._hooks.call_later(
                ring_timeout, lambda: self._on_ring_timeout(timeout_status)
            )
        for si, st in enumerate(self.stages):
            if st.delay <= 0 or st.failover:  # a fail-over stage waits for failures only
                continue
            self._stage_timers[si] = self._hooks.call_later(
                st.delay, functools.partial(self._start_stage, si)
            )
        for si, st in enumerate(self.stages):
            if st.delay <= 0 and not st.failover:
                self._start_stage(si)
        self._advance()

    def on_provisional(self, branch: Branch[P], status: int, response: R) -> None:
        """A 1xx on a branch. 100 is never forwarded (§16.7 step 5) but still counts as
        'trying'; 101-199 marks the branch ringing, re-arms Timer C and is forwarded."""
        if branch.response_timeout is not None and branch.state is not BranchState.DONE:
            branch.response_timeout = None  # it answers: Timer C from now on
            self._arm_timer_c(branch)
        if branch.state is BranchState.DONE or status == 100:
            return
        branch.state = BranchState.RINGING
        self._arm_timer_c(branch)
        if branch.cancel_pending:
            self._send_cancel(branch)
        if self._phase in _RUNNING and not branch.superseded:
            # never a 1xx after the 2xx, once decided, or from a branch a diversion replaced
            self._hooks.forward(branch, response)

    def on_final(self, branch: Branch[P], status: int, response: R | None) -> None:
        """A final response (or a timeout reported as 408 with `response=None`)."""
        if status < 300:
            self._on_2xx(branch, response)
            return
        if branch.state is BranchState.DONE:
            return  # late final after Timer C / a second final: ignore
        self._end_branch(branch)
        branch.final_status = status
        self._finals.append((status, response))
        self._final_branch.append(branch.index)
        if status >= 600:
            self._input(Input.GLOBAL_FAILURE, status)
        self._advance()

    def cancel(self) -> None:
        """The caller CANCELled (§16.10): CANCEL every pending branch, start no more; the
        answer is 487 unless a branch has answered 2xx."""
        if self._input(Input.CANCEL, 487):
            self._advance()

    # ------------------------------------------------------------------ the phase table
    def _input(self, event: Input, status: int | None = None) -> bool:
        """Feed the phase table (forkphases.py); carry out its action. False when nothing
        was done (Action.NONE, or an input the table ignores)."""
        entry = transition(self._phase, event)
        if entry is None:
            return False
        action, self._phase = entry
        match action:
            case Action.NONE:
                return False
            case Action.ANSWER:
                self._stop_timers()
                self._cancel_all()
            case Action.DECIDE | Action.CANCEL:
                self.cancelled = self.cancelled or action is Action.CANCEL
                assert status is not None
                self._decide(status)
            case Action.DIVERT:
                assert self._divert_to is not None
                self._divert(self._divert_to)
            case Action.FINISH:
                self._finish()
        return True

    # ------------------------------------------------------------------ internals
    def _start_stage(self, si: int) -> None:
        if self._stage_started[si] or self._phase not in _RUNNING:
            return
        self._stage_started[si] = True
        timer = self._stage_timers[si]
        if timer is not None:
            timer.cancel()
            self._stage_timers[si] = None
        # Mark the whole stage alive first: start_branch may report a failure synchronously,
        # and the fork must not look finished while siblings are still to be sent.
        batch = [b for b in self.branches if b.stage == si and b.state is BranchState.PENDING]
        for b in batch:
            b.state = BranchState.TRYING
            b.response_timeout = self.stages[si].response_timeout
        for b in batch:
            if b.state is not BranchState.TRYING:
                continue
            if self.invite:
                self._arm_timer_c(b)
            self._hooks.start_branch(b)
        if self._phase in _RUNNING:
            self._advance()

    def _earlier_alive(self, si: int) -> bool:
        return any(b.alive for b in self.branches if b.stage < si)

    def _earlier_answered(self, si: int) -> bool:
        """An earlier branch ended with a final answer of its own (not 408, not 5xx)."""
        return any(
            b.final_status is not None and b.final_status != 408 and not 500 <= b.final_status < 600
            for b in self.branches
            if b.stage < si
        )

    def _mark_never_started(self, si: int) -> None:
        timer = self._stage_timers[si]
        if timer is not None:
            timer.cancel()
            self._stage_timers[si] = None
        for b in self.branches:
            if b.stage == si and b.state is BranchState.PENDING:
                b.state = BranchState.DONE

    def _advance(self) -> None:
        """Start conditional stages whose earlier branches all failed; when every branch
        has ended and no stage is left, tell the phase table."""
        running = self._phase in _RUNNING
        if running:
            for si, st in enumerate(self.stages):
                if self._stage_started[si] or not (st.only_if_earlier_ringing or st.failover):
                    continue
                if st.failover and all(self._stage_started[:si]) and self._earlier_answered(si):
                    self._stage_started[si] = True  # a real answer came: no fail-over
                    self._mark_never_started(si)
                    continue
                if all(self._stage_started[:si]) and not self._earlier_alive(si):
                    self._start_stage(si)
                    return  # _start_stage re-enters _advance
        if self._phase is Phase.FINISHED or any(b.alive for b in self.branches):
            return
        if running and not all(self._stage_started):
            return  # a timed stage is still to come
        self._input(Input.BRANCHES_DONE)

    def _finish(self) -> None:
        """Action.FINISH: the final answer (none after a 2xx)."""
        self._stop_timers()
        if self._answered:
            return
        if self._decided_status is not None and self._decided_status < 600:
            self._hooks.finish(self._decided_status, None, self._finals)
            return
        finals = self._counted_finals()
        if not finals:
            self._hooks.finish(480, None, self._finals)  # nothing could be tried
            return
        i = choose_best([s for s, _ in finals])
        status, resp = finals[i]
        self._hooks.finish(status, resp, finals)

    def _counted_finals(self) -> list[tuple[int, R | None]]:
        if not self.diverted:
            return self._finals
        kept = {b.index for b in self.branches if not b.superseded}
        return [f for f, i in zip(self._finals, self._final_branch, strict=True) if i in kept]

    def _on_2xx(self, branch: Branch[P], response: R | None) -> None:
        self._end_branch(branch)
        branch.final_status = 200
        self._answered = True
        if response is not None:
            self._hooks.forward(branch, response)
        self._input(Input.ANSWER)
        self._advance()

    def _decide(self, status: int) -> None:
        """Action.DECIDE: start no more stages, CANCEL every live branch."""
        self._decided_status = status
        self._stop_stage_timers()
        for b in self.branches:
            if b.state is BranchState.PENDING:
                b.state = BranchState.DONE  # never started
        self._cancel_all()

    def _on_ring_timeout(self, status: int) -> None:
        self._timeout_handle = None
        if self._input(Input.RING_TIMEOUT, status):
            self._advance()

    def _divert(self, payload: P) -> None:
        """Action.DIVERT: replace every branch by one new branch (see Diversion)."""
        self.diverted = True
        self._stop_stage_timers()
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
            self._timeout_handle = None
        for b in self.branches:
            b.superseded = True
        self._cancel_all()
        self._stage_started = [True] * len(self.stages)
        branch = Branch(len(self.branches), len(self.stages), payload)
        self.branches.append(branch)
        branch.state = BranchState.TRYING
        if self.invite:
            self._arm_timer_c(branch)
        self._hooks.start_branch(branch)
        self._advance()

    def _cancel_all(self) -> None:
        for b in self.branches:
            if b.state is BranchState.PENDING:
                b.state = BranchState.DONE
            elif b.alive and self.invite:
                self._request_cancel(b)

    def _request_cancel(self, b: Branch[P]) -> None:
        if b.cancelled:
            return
        if b.state is BranchState.RINGING:
            self._send_cancel(b)
        else:
            b.cancel_pending = True

    def _send_cancel(self, b: Branch[P]) -> None:
        b.cancel_pending = False
        b.cancelled = True
        self._hooks.cancel_branch(b)

    def _arm_timer_c(self, b: Branch[P]) -> None:
        if b.timer_c is not None:
            b.timer_c.cancel()
        delay = b.response_timeout if b.response_timeout is not None else self.timer_c
        b.timer_c = self._hooks.call_later(delay, lambda: self._on_timer_c(b))

    def _on_timer_c(self, b: Branch[P]) -> None:
        b.timer_c = None
        if not b.alive:
            return
        if b.state is BranchState.RINGING:
            # §16.6 step 11: CANCEL; the branch ends with its 487 (or the txn's timeout).
            self._send_cancel(b)
        else:
            self.on_final(b, 408, None)

    def _end_branch(self, b: Branch[P]) -> None:
        b.state = BranchState.DONE
        b.cancel_pending = False
        if b.timer_c is not None:
            b.timer_c.cancel()
            b.timer_c = None

    def _stop_stage_timers(self) -> None:
        for i, t in enumerate(self._stage_timers):
            if t is not None:
                t.cancel()
                self._stage_timers[i] = None

    def _stop_timers(self) -> None:
        self._stop_stage_timers()
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
            self._timeout_handle = None
        for b in self.branches:
            if b.timer_c is not None and not b.alive:
                b.timer_c.cancel()
                b.timer_c = None

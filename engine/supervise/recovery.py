"""The three recovery tiers and the per-kind circuit breaker, as a pure decision object.

Owns, per task, the failures seen so far and, per task kind, whether the breaker is open.
First failure: the same agent gets its diff and the errors as delta context (targeted fix).
Second: the task's edits are rolled back and a fresh agent gets both errors (restart).
Third: the breaker for that kind opens and the task is escalated to the user. An open breaker
escalates every later failure of that kind at once until `reset(kind)`. It performs no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Literal

import msgspec

from delegation_machine.engine.protocol import Verdict

RecoveryKind = Literal["targeted_fix", "restart", "escalate"]
ESCALATION_CHOICES = ("Retry with another agent", "Show the diff", "Abandon")


class RecoveryAction(msgspec.Struct, frozen=True):
    """What the swarm does next with a failed task.

    `rollback`: reject the task's edits first (`state.reject_task(task_id)`);
    `fresh_agent`: start a new agent instead of re-prompting the same one;
    `feedback`: the failing verdicts to put in the agent's delta context (all failures so far
    for a restart); `diff`: the agent's own diff, echoed for a targeted fix;
    `choices`: the buttons of the escalation prompt (`window/showMessageRequest`).
    """

    kind: RecoveryKind
    task_id: str
    task_kind: str
    attempt: int
    feedback: tuple[Verdict, ...]
    rollback: bool = False
    fresh_agent: bool = False
    diff: str = ""
    choices: tuple[str, ...] = ()
    message: str = ""
    breaker_opened: bool = False


class BreakerState(msgspec.Struct, frozen=True):
    """An open circuit breaker: which task opened it, when (ladder clock) and why."""

    task_kind: str
    task_id: str
    opened_at: float
    reason: str


class RecoveryLadder:
    """Decides targeted fix -> restart -> escalate for each failure the swarm reports."""

    def __init__(
        self,
        *,
        targeted_fixes: int = 1,
        restarts: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.targeted_fixes = targeted_fixes
        self.restarts = restarts
        self.clock = clock
        self._failures: dict[str, list[tuple[Verdict, ...]]] = {}
        self._breakers: dict[str, BreakerState] = {}

    def on_failure(
        self, task_id: str, kind: str, verdicts: Sequence[Verdict], *, diff: str = ""
    ) -> RecoveryAction:
        """Record one failed check round of `task_id` and say what to do next."""
        failing = tuple(v for v in verdicts if v.kind != "passed")
        if failing and all(v.kind == "error" for v in failing):
            return self._checks_unavailable(task_id, kind, failing)
        history = self._failures.setdefault(task_id, [])
        history.append(failing)
        attempt = len(history)
        if kind in self._breakers:
            return self._escalate(task_id, kind, attempt, opened=False)
        if attempt <= self.targeted_fixes:
            return RecoveryAction(
                "targeted_fix",
                task_id,
                kind,
                attempt,
                failing,
                diff=diff,
                message=_summary("fix these findings in your own change", failing),
            )
        if attempt <= self.targeted_fixes + self.restarts:
            everything = tuple(v for round_ in history for v in round_)
            return RecoveryAction(
                "restart",
                task_id,
                kind,
                attempt,
                everything,
                rollback=True,
                fresh_agent=True,
                message=_summary("previous attempts failed with", everything),
            )
        self._breakers[kind] = BreakerState(
            kind, task_id, self.clock(), _summary("failed", history[-1])
        )
        return self._escalate(task_id, kind, attempt, opened=True)

    def on_success(self, task_id: str, kind: str) -> None:
        """The task's change passed its checks: forget its failures (the breaker stays)."""
        self._failures.pop(task_id, None)

    def forget(self, task_id: str) -> None:
        """The task ended otherwise (cancelled, rejected, abandoned)."""
        self._failures.pop(task_id, None)

    def breaker_open(self, kind: str) -> bool:
        return kind in self._breakers

    def breaker(self, kind: str) -> BreakerState | None:
        return self._breakers.get(kind)

    def open_breakers(self) -> dict[str, BreakerState]:
        return dict(self._breakers)

    def reset(self, kind: str) -> None:
        """Close the breaker of `kind` (the user chose to retry) and clear its tasks' history."""
        self._breakers.pop(kind, None)

    def attempts(self, task_id: str) -> int:
        return len(self._failures.get(task_id, ()))

    def _escalate(self, task_id: str, kind: str, attempt: int, *, opened: bool) -> RecoveryAction:
        everything = tuple(v for round_ in self._failures.get(task_id, []) for v in round_)
        breaker = self._breakers[kind]
        reason = (
            f"{attempt} attempt(s) failed; the circuit breaker for {kind!r} tasks is open"
            if opened
            else f"the circuit breaker for {kind!r} tasks is open since task {breaker.task_id}"
        )
        return RecoveryAction(
            "escalate",
            task_id,
            kind,
            attempt,
            everything,
            rollback=True,
            choices=ESCALATION_CHOICES,
            message=reason,
            breaker_opened=opened,
        )

    def _checks_unavailable(
        self, task_id: str, kind: str, failing: tuple[Verdict, ...]
    ) -> RecoveryAction:
        # Not the agent's fault: no tier is spent and no breaker opens, but nothing is kept.
        reasons = "; ".join(f"{v.check}: {v.reason}" for v in failing)
        return RecoveryAction(
            "escalate",
            task_id,
            kind,
            self.attempts(task_id),
            failing,
            rollback=True,
            choices=ESCALATION_CHOICES,
            message=f"a check could not run, so the change was not verified ({reasons})",
        )


def _summary(lead: str, verdicts: Sequence[Verdict]) -> str:
    parts = []
    for verdict in verdicts:
        codes = sorted({f.code for f in verdict.findings})
        parts.append(f"{verdict.check} ({', '.join(codes[:5]) or verdict.reason or verdict.kind})")
    return f"{lead}: {'; '.join(parts)}" if parts else lead

"""Quarantine: output of an agent with no reputation here gets a second, stricter check pass.

Owns the rule for entering and leaving quarantine when no economy is wired in (an agent
leaves after `clean_runs_to_leave` consecutive changes that passed the strict pass; any
failure resets its streak) and the two-pass check itself. With an economy, its
`is_quarantined(agent_id)` decides and this module only runs the passes.
Invariant: a quarantined agent's change is never reported clean unless the strict pass passed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import msgspec

from delegation_machine.engine.protocol import Verdict
from delegation_machine.engine.supervise.checks import CheckLevel, CheckRunner

STRICT_PREFIX = "quarantine:"


class QuarantinePolicy:
    """Who is in quarantine in this workspace (per Swarm instance, i.e. per workspace)."""

    def __init__(
        self,
        is_quarantined: Callable[[str], bool] | None = None,
        *,
        clean_runs_to_leave: int = 3,
    ) -> None:
        self._external = is_quarantined
        self.clean_runs_to_leave = clean_runs_to_leave
        self._clean_streak: dict[str, int] = {}

    def is_quarantined(self, agent_id: str) -> bool:
        if self._external is not None:
            return self._external(agent_id)
        return self._clean_streak.get(agent_id, 0) < self.clean_runs_to_leave

    def record(self, agent_id: str, verdicts: Sequence[Verdict]) -> None:
        """Count a checked change toward (or, if it failed, against) leaving quarantine."""
        if all(v.passed for v in verdicts):
            self._clean_streak[agent_id] = self._clean_streak.get(agent_id, 0) + 1
        else:
            self._clean_streak[agent_id] = 0


async def check_change(
    runner: CheckRunner,
    policy: QuarantinePolicy,
    files: Mapping[str, str],
    changed: Sequence[str],
    *,
    agent_id: str,
    task_id: str | None = None,
    level: CheckLevel = "quick",
) -> list[Verdict]:
    """The normal pass, then, for a quarantined agent whose change passed, the strict pass
    (level "full", semgrep warnings fail). Strict verdicts are named "quarantine:<check>"."""
    verdicts = await runner.check(files, changed, task_id=task_id, level=level)
    if policy.is_quarantined(agent_id) and all(v.passed for v in verdicts):
        strict = await runner.check(files, changed, task_id=task_id, level="full", strict=True)
        renamed: list[Verdict] = [
            msgspec.structs.replace(v, check=STRICT_PREFIX + v.check) for v in strict
        ]
        verdicts += renamed
    policy.record(agent_id, verdicts)
    return verdicts

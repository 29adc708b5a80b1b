"""Supervision (the Judicial branch): checks in a sandbox, judging changes, recovery tiers.

`runner.TaskRunner` runs every dispatched task; `attempts.AttemptLoop` takes an agent task
through attempts, `change.ChangeChecker` judges each change (quarantine pass included) and
`recovery.RecoveryLadder` decides what follows a failure; `checks.CheckRunner` runs the
parser, semgrep (a warm worker under a `Supervisor`) and the affected tests. Nothing here
imports the server or LSP libraries.
"""

from __future__ import annotations

from delegation_machine.engine.supervise.checks import CheckLevel, CheckRunner
from delegation_machine.engine.supervise.diagnostics import (
    DiagnosticAction,
    TaskDiagnostic,
    task_diagnostics,
)
from delegation_machine.engine.supervise.recovery import (
    ESCALATION_CHOICES,
    BreakerState,
    RecoveryAction,
    RecoveryLadder,
)
from delegation_machine.engine.supervise.sandbox import (
    IsolationSupport,
    SandboxLimits,
    SandboxResult,
    ShadowWorkspace,
    detect_isolation,
    run_sandboxed,
    scrub_environment,
)
from delegation_machine.engine.supervise.supervisor import (
    ChildShutdown,
    ChildSpec,
    RestartIntensityExceeded,
    Supervisor,
    SupervisorReport,
)

__all__ = [
    "ESCALATION_CHOICES",
    "BreakerState",
    "CheckLevel",
    "CheckRunner",
    "ChildShutdown",
    "ChildSpec",
    "DiagnosticAction",
    "IsolationSupport",
    "RecoveryAction",
    "RecoveryLadder",
    "RestartIntensityExceeded",
    "SandboxLimits",
    "SandboxResult",
    "ShadowWorkspace",
    "Supervisor",
    "SupervisorReport",
    "TaskDiagnostic",
    "detect_isolation",
    "run_sandboxed",
    "scrub_environment",
    "task_diagnostics",
]

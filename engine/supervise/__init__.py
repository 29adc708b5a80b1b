"""Supervision: deterministic checks in a sandbox, an OTP supervisor tree, recovery tiers.

The swarm calls `CheckRunner.check` on every agent change (through `check_change` for agents
in quarantine), `RecoveryLadder` on every failed check round, and runs agents and check
workers as children of a `Supervisor`. Nothing here imports the server or LSP libraries.
"""

from __future__ import annotations

from delegation_machine.engine.supervise.checks import CheckLevel, CheckRunner
from delegation_machine.engine.supervise.diagnostics import (
    DiagnosticAction,
    TaskDiagnostic,
    task_diagnostics,
)
from delegation_machine.engine.supervise.quarantine import QuarantinePolicy, check_change
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
    "QuarantinePolicy",
    "RecoveryAction",
    "RecoveryLadder",
    "RestartIntensityExceeded",
    "SandboxLimits",
    "SandboxResult",
    "ShadowWorkspace",
    "Supervisor",
    "SupervisorReport",
    "TaskDiagnostic",
    "check_change",
    "detect_isolation",
    "run_sandboxed",
    "scrub_environment",
    "task_diagnostics",
]

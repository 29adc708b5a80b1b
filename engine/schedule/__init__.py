"""Scheduling: HEFT/CPOP list scheduling, Tomasulo-style issue, work stealing, the live
Dispatcher and a virtual-clock simulator to compare them.

The live path is `dispatch.Dispatcher`; the other modules are general cores it is built on.
"""

from __future__ import annotations

from delegation_machine.engine.schedule.dispatch import (
    Dispatcher,
    DispatchStatus,
    ScheduleRecord,
    StationEntry,
    WorkerSpec,
    WorkerStatus,
)
from delegation_machine.engine.schedule.heft import (
    Schedule,
    ScheduledTask,
    cpop,
    downward_rank,
    heft,
    upward_rank,
)

__all__ = [
    "DispatchStatus",
    "Dispatcher",
    "Schedule",
    "ScheduleRecord",
    "ScheduledTask",
    "StationEntry",
    "WorkerSpec",
    "WorkerStatus",
    "cpop",
    "downward_rank",
    "heft",
    "upward_rank",
]

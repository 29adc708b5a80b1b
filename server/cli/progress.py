"""What a terminal shows while a swarm runs: a live display, plain lines, or nothing.

Owns the three views of a run's progress, chosen by `display_mode`: "live" (a terminal: with
`rich`, one progress bar per plan and one line per busy agent — task, file, elapsed — redrawn
a few times a second), "plain" (stdout is not a terminal, or `--plain`: one line per task
state change, as a log), "quiet" (`--quiet`: only the final summary). Every view reads what it
shows from the task board's per-task state changes (one task's record at a time), never by
listing every task of a plan per change, so a plan of a thousand tasks costs no more per
update than one of ten.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from delegation_machine.engine.notices import MessageNotice, Notice
from delegation_machine.engine.protocol import TaskState
from delegation_machine.engine.schedule.board import TaskRecord

DisplayMode = Literal["live", "plain", "quiet"]
REFRESHES_PER_SECOND = 8
BUSY_STATES = frozenset({TaskState.RUNNING.value, TaskState.CHECKING.value})
STATE_STYLES = {
    "verified": "green",
    "accepted": "green",
    "no-change": "cyan",
    "done": "green",
    "failed": "bold red",
    "escalated": "bold red",
    "held": "yellow",
    "cancelled": "dim",
    "rejected": "dim",
}


def display_mode(out: TextIO, *, plain: bool, quiet: bool) -> DisplayMode:
    """quiet wins, then plain; otherwise live only where `out` is a terminal."""
    if quiet:
        return "quiet"
    if plain or not out.isatty():
        return "plain"
    return "live"


@dataclass
class _TaskView:
    task_id: str
    plan_id: str
    kind: str
    state: str = TaskState.QUEUED.value
    agent: str | None = None
    files: tuple[str, ...] = ()
    busy_since: float | None = None


@dataclass
class _PlanView:
    plan_id: str
    label: str
    total: int
    finished: set[str] = field(default_factory=set)


class RunProgress:
    """Keeps a run's progress and shows it in the chosen mode.

    Give `observe` to the task board (`TaskBoard.observe`): it is called with each task's id
    and new state; `task_of(id)` is the task's record and `plan_size(plan_id)` the number of
    tasks of a plan (None: not a plan; such tasks, an edit's own checks, are not shown). It
    must never raise: it runs inside the board's state changes. The instance itself listens to the
    notice stream for the swarm's messages (warnings), shown above the live view."""

    def __init__(
        self,
        out: TextIO,
        mode: DisplayMode,
        *,
        task_of: Callable[[str], TaskRecord | None],
        plan_size: Callable[[str], int | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mode = mode
        self._out = out
        self._task_of = task_of
        self._plan_size = plan_size
        self._clock = clock
        self._started = clock()
        self._tasks: dict[str, _TaskView] = {}
        self._plans: dict[str, _PlanView] = {}
        self._console = Console(file=out, force_terminal=mode == "live", highlight=False)
        self._live: Live | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self.mode == "live" and self._live is None:
            self._live = Live(
                get_renderable=self.renderable,
                console=self._console,
                refresh_per_second=REFRESHES_PER_SECOND,
                transient=True,  # the summary replaces the live view when the run ends
            )
            self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    # -- what it is told ---------------------------------------------------------------------

    def __call__(self, notice: Notice) -> None:
        if not isinstance(notice, MessageNotice):
            return
        if self.mode == "live":
            self._console.print(f"[{notice.level}] {notice.text}", markup=False)
        elif self.mode == "plain":
            print(f"[{notice.level}] {notice.text}", file=self._out, flush=True)

    def observe(self, task_id: str, state: TaskState) -> None:
        record = self._task_of(task_id)
        if record is None:  # forgotten already (a long session keeps only recent tasks)
            return
        plan_id = record.spec.plan_id
        task = self._tasks.get(task_id)
        if task is None:
            if plan_id not in self._plans:
                size = self._plan_size(plan_id) if plan_id else None
                if size is None:  # the check of an edit (the user's or a rollback's), no plan
                    return
                self._plans[plan_id] = _PlanView(plan_id, record.spec.kind, size)
            task = self._tasks[task_id] = _TaskView(task_id, plan_id, record.spec.kind, "")
        task.state, task.agent = state.value, record.agent
        task.files = tuple(sorted(record.files)) or record.spec.paths
        if state.value in BUSY_STATES:
            task.busy_since = task.busy_since or self._clock()
        else:
            task.busy_since = None
        plan = self._plans[task.plan_id]
        if state.finished:
            plan.finished.add(task_id)
        else:
            plan.finished.discard(task_id)
        if self.mode == "plain":
            self._print_line(task, record.message)

    def _print_line(self, task: _TaskView, message: str) -> None:
        elapsed = self._clock() - self._started
        where = ", ".join(task.files) or (message if task.state == "failed" else "")
        print(
            f"{elapsed:7.2f}s  {task.task_id:<14} {task.kind:<7} {task.state:<9} "
            f"{task.agent or '-':<28} {where}",
            file=self._out,
            flush=True,
        )

    # -- the live view -----------------------------------------------------------------------

    def busy(self) -> list[_TaskView]:
        """The tasks an agent is working on or a supervisor is checking, longest first."""
        busy = [t for t in self._tasks.values() if t.busy_since is not None]
        return sorted(busy, key=lambda t: t.busy_since or 0.0)

    def renderable(self) -> RenderableType:
        now = self._clock()
        bars = Table.grid(padding=(0, 1))
        bars.add_column(no_wrap=True)
        bars.add_column(width=32)
        bars.add_column(justify="right", no_wrap=True)
        for plan in self._plans.values():
            done = len(plan.finished)
            bars.add_row(
                Text(f"{plan.label} {plan.plan_id}", style="bold"),
                ProgressBar(total=max(plan.total, 1), completed=done, width=32),
                f"{done}/{plan.total}",
            )
        agents = Table(box=None, show_header=True, header_style="dim", pad_edge=False)
        for name in ("agent", "task", "state", "file", "elapsed"):
            agents.add_column(name, no_wrap=True, justify="right" if name == "elapsed" else "left")
        for task in self.busy():
            agents.add_row(
                task.agent or "-",
                task.task_id,
                task.state,
                ", ".join(task.files) or "-",
                f"{now - (task.busy_since or now):.1f}s",
            )
        footer = Text(f"{now - self._started:.1f}s elapsed", style="dim")
        return Group(bars, agents, footer)

    # -- the summary -------------------------------------------------------------------------

    def print_table(
        self, headers: Sequence[str], rows: Sequence[Sequence[str]], plain: str
    ) -> None:
        """A summary table: a rich table on a terminal, else the `plain` rendering."""
        if self.mode != "live":
            print("\n" + plain, file=self._out)
            return
        table = Table(*headers, header_style="bold", show_lines=False)
        state_column = headers.index("state") if "state" in headers else -1
        for row in rows:
            cells: list[RenderableType] = list(row)
            if state_column >= 0:
                cells[state_column] = Text(
                    row[state_column], STATE_STYLES.get(row[state_column], "")
                )
            table.add_row(*cells)
        self._console.print()
        self._console.print(table)

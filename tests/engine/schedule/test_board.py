"""The task board: one owner of task and plan state, the ledger told before anyone else."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delegation_machine.engine.ledger import Ledger
from delegation_machine.engine.plan.graph import TaskSpec
from delegation_machine.engine.protocol import DelegationRequest, TaskState, TaskUpdate
from delegation_machine.engine.schedule.board import TaskBoard

REQUEST = DelegationRequest(instruction="fix")
FINAL = (TaskState.VERIFIED, TaskState.FAILED, TaskState.ESCALATED, TaskState.CANCELLED)


def specs(plan_id: str, n: int) -> list[TaskSpec]:
    return [TaskSpec(task_id=f"{plan_id}.{i}", kind="fix", plan_id=plan_id) for i in range(n)]


def test_a_plan_follows_its_tasks_and_the_worst_final_state_wins(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    board = TaskBoard(ledger)
    updates: list[TaskUpdate] = []
    board.subscribe(updates.append)
    board.add_plan("p", REQUEST, "fix", specs("p", 2))
    board.mark_waiting("p.0")
    board.start("p.0", "builtin:fix@w1")
    board.mark_checking("p.0")
    assert board.plan("p").state == TaskState.CHECKING
    assert updates[-1].agent == "builtin:fix@w1"
    assert board.finish("p.0", TaskState.VERIFIED, "1 file(s) changed")
    assert not board.plan("p").done.is_set()
    board.finish("p.1", TaskState.FAILED, "internal error: boom")
    plan = board.plan("p")
    assert plan.state == TaskState.FAILED and plan.done.is_set()
    assert plan.message == "p.1: internal error: boom"
    finished = ledger.events(kinds=("plan.finished",))
    assert [e.payload["state"] for e in finished] == ["failed"]
    ledger.close()


def test_a_final_state_is_never_left(tmp_path: Path) -> None:
    board = TaskBoard()
    board.add_plan("p", REQUEST, "fix", specs("p", 1))
    assert board.finish("p.0", TaskState.CANCELLED, "cancelled while running")
    assert not board.finish("p.0", TaskState.VERIFIED, "too late")
    board.start("p.0", "someone")
    board.mark_waiting("p.0")
    record = board.task("p.0")
    assert record is not None
    assert (record.state, record.message) == (TaskState.CANCELLED, "cancelled while running")
    with pytest.raises(ValueError, match="not a final state"):
        board.finish("p.0", TaskState.RUNNING, "")


def test_the_ledger_records_each_change_before_a_listener_hears_of_it(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    board = TaskBoard(ledger)
    seen_at: list[tuple[str, int]] = []
    board.subscribe(lambda update: seen_at.append((update.state.value, ledger.last_seq())))
    board.add_plan("p", REQUEST, "fix", specs("p", 1))
    board.start("p.0", "a")
    board.finish("p.0", TaskState.VERIFIED, "ok")
    board.close_plan("p", TaskState.ACCEPTED)
    kinds = [e.kind for e in ledger.events()]
    assert kinds == [
        "plan.submitted",
        "task.state",
        "plan.state",
        "task.state",
        "plan.finished",
        "plan.accepted",
    ]
    # each listener call saw the event of that change already in the ledger
    assert seen_at == [("queued", 1), ("running", 3), ("verified", 5), ("accepted", 6)]
    ledger.close()


def test_finished_tasks_outside_plans_are_forgotten_beyond_the_memory() -> None:
    board = TaskBoard(finished_memory=2)
    for n in range(4):
        spec = TaskSpec(task_id=f"edit.{n}.check", kind="check", plan_id="edit")
        board.track(spec)
        board.finish(spec.task_id, TaskState.DONE, "")
    assert [board.state_of(f"edit.{n}.check") for n in range(4)] == [
        None,
        None,
        TaskState.DONE,
        TaskState.DONE,
    ]


def test_unknown_ids_say_so() -> None:
    board = TaskBoard()
    with pytest.raises(Exception, match="no task with id 't-nope'"):
        board.plan("t-nope")


operations = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=5),  # task number (two plans of three)
        st.sampled_from(["waiting", "start", "checking", *[s.value for s in FINAL]]),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(operations)
def test_any_interleaving_keeps_the_state_machine(ops: list[tuple[int, str]]) -> None:
    """Dispatcher and runner calls in any order: a finished task stays finished, a plan is
    final exactly when all its tasks are, and each plan finishes (and says so) once."""
    board = TaskBoard()
    finishes: list[str] = []
    board.subscribe(lambda u: finishes.append(u.task_id) if u.state.finished else None)
    for plan_id in ("a", "b"):
        board.add_plan(plan_id, REQUEST, "fix", specs(plan_id, 3))
    first_final: dict[str, TaskState] = {}
    for number, op in ops:
        task_id = f"{'ab'[number // 3]}.{number % 3}"
        if op == "waiting":
            board.mark_waiting(task_id)
        elif op == "start":
            board.start(task_id, "agent")
        elif op == "checking":
            board.mark_checking(task_id)
        else:
            board.finish(task_id, TaskState(op), op)
            first_final.setdefault(task_id, TaskState(op))
        record = board.task(task_id)
        assert record is not None
        if task_id in first_final:
            assert record.state == first_final[task_id]
    for plan_id in ("a", "b"):
        plan = board.plan(plan_id)
        records = board.plan_tasks(plan_id)
        all_final = all(r.state.finished for r in records)
        assert plan.state.finished == all_final == plan.done.is_set()
        assert finishes.count(plan_id) == (1 if all_final else 0)
        if all_final:
            worst = next((s for s in FINAL[1:] if any(r.state == s for r in records)), None)
            expected = {
                TaskState.ESCALATED: 0,
                TaskState.FAILED: 1,
                TaskState.CANCELLED: 2,
            }
            order = sorted(
                (r.state for r in records if r.state in expected), key=expected.__getitem__
            )
            assert plan.state == (order[0] if order else TaskState.VERIFIED)
            assert worst is None or plan.state != TaskState.VERIFIED


def test_the_running_event_names_the_worker_that_took_the_task(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    board = TaskBoard(ledger)
    board.add_plan("p", REQUEST, "fix", specs("p", 2))
    board.start("p.0", "builtin:fix@worker-1", "worker-2")  # a fresh agent from another slot
    board.start("p.1", "someone")
    running = {e.task_id: e.payload for e in ledger.events(kinds=("task.state",))}
    assert running["p.0"] == {"state": "running", "worker": "worker-2"}
    assert running["p.1"] == {"state": "running"}
    ledger.close()

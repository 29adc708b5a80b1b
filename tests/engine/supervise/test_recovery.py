"""The recovery ladder and editor diagnostics data."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from delegation_machine.engine.protocol import Finding, Point, Span, Verdict
from delegation_machine.engine.supervise.diagnostics import task_diagnostics
from delegation_machine.engine.supervise.recovery import ESCALATION_CHOICES, RecoveryLadder


def failed(code: str, task_id: str = "t1", path: str = "a.py") -> Verdict:
    finding = Finding(path, Span(Point(0, 0), Point(0, 1)), f"{code} went wrong", code)
    return Verdict("semgrep", "failed", (finding,), task_id=task_id, paths=(path,))


def test_three_tiers_in_order() -> None:
    ladder = RecoveryLadder()
    first = ladder.on_failure("t1", "fix", [failed("semgrep:a")], diff="--- a.py")
    assert (first.kind, first.attempt, first.rollback, first.fresh_agent) == (
        "targeted_fix",
        1,
        False,
        False,
    )
    assert first.feedback == (failed("semgrep:a"),) and first.diff == "--- a.py"

    second = ladder.on_failure("t1", "fix", [failed("semgrep:b")])
    assert (second.kind, second.rollback, second.fresh_agent) == ("restart", True, True)
    assert second.feedback == (failed("semgrep:a"), failed("semgrep:b"))  # both errors

    assert not ladder.breaker_open("fix")
    third = ladder.on_failure("t1", "fix", [failed("semgrep:c")])
    assert third.kind == "escalate" and third.breaker_opened
    assert third.choices == ESCALATION_CHOICES
    assert ladder.breaker_open("fix")
    assert not ladder.breaker_open("rename")


def test_open_breaker_escalates_other_tasks_of_that_kind_until_reset() -> None:
    ladder = RecoveryLadder()
    for _ in range(3):
        ladder.on_failure("t1", "fix", [failed("x")])
    other = ladder.on_failure("t2", "fix", [failed("y", task_id="t2")])
    assert other.kind == "escalate" and not other.breaker_opened
    assert ladder.on_failure("t3", "rename", [failed("z")]).kind == "targeted_fix"
    ladder.reset("fix")
    assert not ladder.breaker_open("fix")
    assert ladder.on_failure("t4", "fix", [failed("x")]).kind == "targeted_fix"


def test_success_clears_the_task_history() -> None:
    ladder = RecoveryLadder()
    ladder.on_failure("t1", "fix", [failed("x")])
    ladder.on_success("t1", "fix")
    assert ladder.attempts("t1") == 0
    assert ladder.on_failure("t1", "fix", [failed("x")]).kind == "targeted_fix"


def test_checks_that_could_not_run_spend_no_tier() -> None:
    ladder = RecoveryLadder()
    broken = Verdict("semgrep", "error", reason="semgrep is not installed")
    action = ladder.on_failure("t1", "fix", [broken])
    assert action.kind == "escalate" and not action.breaker_opened
    assert "semgrep is not installed" in action.message
    assert not ladder.breaker_open("fix") and ladder.attempts("t1") == 0
    assert action.rollback and not action.fresh_agent  # an unverified change is not kept


@given(st.lists(st.sampled_from(["fix", "rename"]), min_size=1, max_size=12))
def test_each_kind_escalates_on_its_third_failure(kinds: list[str]) -> None:
    """One task per kind failing repeatedly: fix, restart, then escalate, for ever after."""
    ladder = RecoveryLadder()
    seen: dict[str, int] = {}
    for kind in kinds:
        seen[kind] = seen.get(kind, 0) + 1
        action = ladder.on_failure(f"task-{kind}", kind, [failed("x")])
        expected = {1: "targeted_fix", 2: "restart"}.get(seen[kind], "escalate")
        assert action.kind == expected
        assert ladder.breaker_open(kind) == (seen[kind] >= 3)


def test_diagnostics_name_task_and_agent_and_offer_actions() -> None:
    verdicts = [
        failed("semgrep:x"),
        Verdict("syntax", "passed", paths=("a.py",), task_id="t1"),
        Verdict("tests", "error", reason="timed out", task_id="t1"),
    ]
    grouped = task_diagnostics(verdicts, agent_id="llm-2", task_kind="fix", attempt=2)
    assert set(grouped) == {("semgrep", "a.py"), ("syntax", "a.py")}
    assert grouped[("syntax", "a.py")] == []  # clears stale syntax diagnostics
    (diagnostic,) = grouped[("semgrep", "a.py")]
    assert diagnostic.related_message == "task t1 (fix), agent llm-2, attempt 2: semgrep"
    assert [a.title for a in diagnostic.actions] == ["Retry", "Escalate", "Show task"]
    assert all(a.task_id == "t1" for a in diagnostic.actions)


def test_diagnostics_of_user_edits_have_no_task_actions() -> None:
    verdict = failed("syntax", task_id="")
    verdict = Verdict("syntax", "failed", verdict.findings, paths=("a.py",))
    (diagnostic,) = task_diagnostics([verdict])[("syntax", "a.py")]
    assert diagnostic.actions == () and diagnostic.task_id is None

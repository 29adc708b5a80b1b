"""SSA reasoning traces: numbered immutable steps, explicit uses, dead-step pruning."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from delegation_machine.engine.plan.ssa import ReasoningTrace, SSAError, Step


def _diamond() -> ReasoningTrace:
    trace = ReasoningTrace()
    trace.add("read_symbol", "parse_config")  # %1
    trace.add("read_file", "config.toml")  # %2 (dead: nothing uses it)
    trace.add("thought", "the default is wrong", uses=[1])  # %3
    trace.add("search_symbols", "load_")  # %4
    trace.add("thought", "callers pass a dict", uses=[4])  # %5
    trace.add("propose_edit", "fix default", uses=[3, 5])  # %6
    trace.add("read_file", "README.md")  # %7 (dead)
    trace.add("answer", "done", uses=[6])  # %8
    return trace


def test_steps_are_numbered_in_order_and_immutable() -> None:
    trace = _diamond()
    assert [s.id for s in trace.steps] == list(range(1, 9))
    assert trace.step(6).uses == (3, 5)
    with pytest.raises(AttributeError):
        trace.step(1).content = "changed"  # type: ignore[misc]


def test_a_use_before_definition_is_refused() -> None:
    trace = ReasoningTrace()
    trace.add("thought", "a")
    with pytest.raises(SSAError, match="%2 uses %5"):
        trace.add("thought", "b", uses=[5])
    with pytest.raises(SSAError, match="defined twice"):
        ReasoningTrace([Step(1, "a", ""), Step(1, "b", "")])


def test_steps_the_answer_does_not_depend_on_are_pruned() -> None:
    trace = _diamond()
    assert trace.live([8]) == {1, 3, 4, 5, 6, 8}
    pruned = trace.pruned([8])
    assert [s.id for s in pruned.steps] == [1, 3, 4, 5, 6, 8]
    rendered = pruned.render()
    assert "%6 = propose_edit uses %3, %5: fix default" in rendered
    assert "config.toml" not in rendered and "README.md" not in rendered


def test_window_and_pinned_roots() -> None:
    trace = _diamond()
    roots = trace.default_roots(window=1, pinned=[2])
    assert roots == {8, 2}
    assert trace.live(roots) == {1, 2, 3, 4, 5, 6, 8}
    assert trace.live([99]) == frozenset()


@st.composite
def traces(draw: st.DrawFn) -> ReasoningTrace:
    trace = ReasoningTrace()
    for number in range(1, draw(st.integers(1, 30)) + 1):
        uses = draw(st.lists(st.integers(1, number - 1), max_size=3)) if number > 1 else []
        trace.add("step", f"s{number}", uses=uses)
    return trace


@given(traces(), st.data())
def test_pruned_trace_is_closed_under_uses_and_keeps_roots(
    trace: ReasoningTrace, data: st.DataObject
) -> None:
    roots = data.draw(st.sets(st.integers(1, len(trace)), max_size=4))
    pruned = trace.pruned(roots)
    kept = {s.id for s in pruned.steps}
    assert roots <= kept
    for step in pruned.steps:
        assert set(step.uses) <= kept
    # Minimal: every kept step is a root or used (transitively) by one.
    assert kept == set(trace.live(roots))
    # Idempotent.
    assert [s.id for s in pruned.pruned(roots).steps] == sorted(kept)

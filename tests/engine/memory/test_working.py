"""Working memory: budget signals, recoverable page-outs, masking and the MEMORY.md flush."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delegation_machine.engine.memory.working import (
    BudgetSignal,
    EpisodicStore,
    MemoryBudgetError,
    ObservationMasker,
    PageNotFound,
    Turn,
    WorkingMemory,
    mask_boundary,
    memory_file_path,
)


def count_words(text: str) -> int:
    return len(text.split())


def test_warning_at_70_percent_and_flush_at_budget(tmp_path: Path) -> None:
    signals: list[BudgetSignal] = []
    memory_file = memory_file_path(tmp_path, "t1")
    memory = WorkingMemory(
        100, memory_file=memory_file, count_tokens=count_words, on_signal=signals.append
    )
    first = memory.page_in("pytest failed: 3 errors " + "x " * 35, "pytest", turn=1)
    memory.page_in("y " * 30, "cat", turn=2)
    assert signals == []
    memory.page_in("z " * 5, "ls", turn=3)  # 74 of 100
    assert [s.kind for s in signals] == ["warning"]
    memory.page_in("w " * 30, "grep", turn=4)  # 104: flush
    assert [s.kind for s in signals] == ["warning", "flush"]
    assert signals[-1].paged_out[0] == first.handle
    assert memory.used_tokens < 70
    assert first.handle not in {p.handle for p in memory.resident()}
    # The flushed page is recoverable, and its key fact went to MEMORY.md first.
    assert memory.store.get(first.handle).content.startswith("pytest failed")
    text = memory_file.read_text(encoding="utf-8")
    assert "failure: pytest failed: 3 errors" in text
    assert memory_file == tmp_path / ".delegation" / "tasks" / "t1" / "MEMORY.md"


def test_recall_brings_a_page_back(tmp_path: Path) -> None:
    store = EpisodicStore(tmp_path / "pages")
    memory = WorkingMemory(50, store, count_tokens=count_words)
    page = memory.page_in("alpha beta gamma", "cat", turn=1)
    placeholder = memory.page_out(page.handle)
    assert page.handle in placeholder and "1 line" in placeholder
    assert memory.used_tokens == 0
    # A new store over the same folder still finds it: page-outs survive the process.
    assert EpisodicStore(tmp_path / "pages").get(page.handle) == page
    back = memory.recall(page.handle)
    assert back.content == "alpha beta gamma" and memory.used_tokens == 3
    with pytest.raises(PageNotFound):
        memory.store.get("pg-0000000000000000")


def test_a_page_larger_than_the_budget_is_refused() -> None:
    memory = WorkingMemory(5, count_tokens=count_words)
    with pytest.raises(MemoryBudgetError, match="more than the whole budget"):
        memory.page_in("a b c d e f", "cat")


def test_task_id_cannot_escape_the_tasks_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        memory_file_path(tmp_path, "../evil")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=40), st.integers(20, 120))
def test_every_page_out_is_recoverable(sizes: list[int], budget: int) -> None:
    memory = WorkingMemory(max(budget, max(sizes)), count_tokens=count_words)
    pages = [memory.page_in("t " * size, f"tool{i}", turn=i) for i, size in enumerate(sizes)]
    resident = {p.handle for p in memory.resident()}
    assert memory.used_tokens <= memory.budget_tokens
    for page in pages:
        assert page.handle in resident or memory.store.get(page.handle) == page


def _transcript(turns: int) -> list[Turn]:
    transcript = [Turn(0, "system", "you are an agent")]
    for t in range(1, turns + 1):
        transcript.append(Turn(t, "assistant", f"call tool {t}"))
        transcript.append(Turn(t, "tool", "\n".join(f"line {i} of {t}" for i in range(5)), "cat"))
    return transcript


def test_masking_keeps_the_last_window_and_says_how_many_lines() -> None:
    masker = ObservationMasker(window=10, step=1)
    view = masker.view(_transcript(25), current_turn=25)
    masked = [t for t in view if t.role == "tool" and t.content.startswith("[cat output omitted")]
    assert [t.turn for t in masked] == list(range(1, 16))
    assert all("5 lines" in t.content for t in masked)
    handle = masked[0].content.rsplit(" ", 1)[1].rstrip("]")
    assert masker.store.get(handle).content.startswith("line 0 of 1")
    kept = [t for t in view if t.role == "tool" and not t.content.startswith("[")]
    assert [t.turn for t in kept] == list(range(16, 26))


def test_stepped_boundary_moves_in_steps_and_never_past_the_sliding_one() -> None:
    assert [mask_boundary(t, 10, 5) for t in (9, 10, 14, 15, 19, 20, 24)] == [
        0,
        0,
        5,
        5,
        10,
        10,
        15,
    ]
    for t in range(60):
        assert mask_boundary(t, 10, 7) <= mask_boundary(t, 10, 1)


def test_stepped_masking_keeps_prompt_prefixes_between_steps() -> None:
    transcript = _transcript(40)
    masker = ObservationMasker(window=10, step=10)

    def prompt(t: int) -> str:
        visible = [m for m in transcript if m.turn <= t]
        return "".join(m.content for m in masker.view(visible, t))

    # Between boundary moves, each prompt extends the previous one.
    for t in range(19, 28):
        assert prompt(t + 1).startswith(prompt(t))
    sliding = ObservationMasker(window=10, step=1)
    before = "".join(m.content for m in sliding.view([m for m in transcript if m.turn <= 25], 25))
    after = "".join(m.content for m in sliding.view([m for m in transcript if m.turn <= 26], 26))
    assert not after.startswith(before)


def test_pre_compaction_flush_writes_key_facts_once(tmp_path: Path) -> None:
    memory_file = memory_file_path(tmp_path, "task-7")
    masker = ObservationMasker(window=1, step=1, memory_file=memory_file)
    transcript = [
        Turn(1, "tool", "found pyproject: line-length = 100\nnothing else", "cat"),
        Turn(2, "tool", "FAILED tests/test_a.py::test_x - AssertionError", "pytest"),
        Turn(3, "tool", "5 passed in 0.2s", "pytest"),
        Turn(4, "tool", "ok", "ls"),
    ]
    masker.view(transcript, current_turn=3)
    masker.view(transcript, current_turn=3)
    text = memory_file.read_text(encoding="utf-8")
    assert "configuration: found pyproject: line-length = 100" in text
    assert "failure: FAILED tests/test_a.py::test_x - AssertionError" in text
    assert text.count("## turn 1: cat") == 1
    assert "5 passed" not in text  # turn 3 is the current turn: still in the window

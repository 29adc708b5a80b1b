"""Time travel over the real ledger: workspace and agent state at any step, and forks."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delegation_machine.engine.ledger import Ledger
from delegation_machine.engine.memory.timetravel import (
    ReplayError,
    TimeTravel,
    replay_files,
    turn_event,
)
from delegation_machine.engine.protocol import Event


def _loaded(path: str, text: str, version: int = 0) -> Event:
    return Event(kind="file.loaded", payload={"path": path, "text": text, "version": version})


def _changed(path: str, edits: list[list[object]], version: int) -> Event:
    return Event(
        kind="file.changed",
        payload={"path": path, "origin": "agent:a1/task:t1", "edits": edits, "version": version},
        task_id="t1",
        agent_id="a1",
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / ".delegation" / "ledger.sqlite3")


def test_workspace_and_agent_state_at_each_step(ledger: Ledger) -> None:
    s1 = ledger.append(_loaded("a.py", "def f():\n    return 1\n")).seq
    s2 = ledger.append(
        turn_event(
            task_id="t1", agent_id="a1", turn=1, role="assistant", content="rename", tokens=7
        )
    ).seq
    s3 = ledger.append(_changed("a.py", [[4, 5, "g"]], 1)).seq
    s4 = ledger.append(_loaded("b.py", "import a\n")).seq
    s5 = ledger.append(_changed("a.py", [[0, 0, "# x\n"], [20, 21, "2"]], 2)).seq
    ledger.append(
        turn_event(task_id="t1", agent_id="a1", turn=2, role="tool", content="ok", tool="pytest")
    )
    travel = TimeTravel(ledger)
    assert travel.workspace_at(s1).files["a.py"].text == "def f():\n    return 1\n"
    assert travel.workspace_at(s3).text("a.py") == "def g():\n    return 1\n"
    assert set(travel.workspace_at(s3).files) == {"a.py"}
    assert set(travel.workspace_at(s4).files) == {"a.py", "b.py"}
    at5 = travel.workspace_at(s5).files["a.py"]
    assert (at5.text, at5.version) == ("# x\ndef g():\n    return 2\n", 2)
    agent = travel.agent_at("a1", s5)
    assert [t.turn for t in agent.turns] == [1] and agent.tokens == 7
    assert travel.agent_at("a1").turns[-1].tool == "pytest"
    assert travel.agent_at("a1", s2).turns[0].content == "rename"
    assert travel.agent_at("nobody", s5).turns == ()


def test_fork_from_a_step_records_an_event_and_carries_the_state(ledger: Ledger) -> None:
    ledger.append(_loaded("a.py", "x = 1\n"))
    ledger.append(turn_event(task_id="t1", agent_id="a1", turn=1, role="assistant", content="hi"))
    step = ledger.append(_changed("a.py", [[4, 5, "2"]], 1)).seq
    ledger.append(_changed("a.py", [[4, 5, "3"]], 2))
    forked = TimeTravel(ledger).fork("t1", step, new_task_id="t1-retry")
    assert forked.workspace.text("a.py") == "x = 2\n"
    assert [a.agent_id for a in forked.agents] == ["a1"]
    [event] = ledger.events(kinds=["task.forked"])
    assert event.task_id == "t1-retry" and event.payload["from_task"] == "t1"
    assert event.payload["step"] == step and event.seq == forked.event_seq
    with pytest.raises(ReplayError, match="cannot fork from step 99"):
        TimeTravel(ledger).fork("t1", 99)


def test_bad_events_raise_replay_errors_naming_seq_and_path() -> None:
    with pytest.raises(ReplayError, match=r"seq 2, a\.py: edit 0 \[3, 9\) is outside"):
        replay_files(
            [
                Event(kind="file.loaded", payload={"path": "a.py", "text": "abc"}, seq=1),
                Event(kind="file.changed", payload={"path": "a.py", "edits": [[3, 9, ""]]}, seq=2),
            ]
        )
    with pytest.raises(ReplayError, match=r"before any file\.loaded"):
        replay_files([Event(kind="file.changed", payload={"path": "b.py", "edits": []}, seq=1)])
    with pytest.raises(ReplayError, match="overlaps"):
        replay_files(
            [
                Event(kind="file.loaded", payload={"path": "a.py", "text": "abcdef"}, seq=1),
                Event(
                    kind="file.changed",
                    payload={"path": "a.py", "edits": [[0, 3, "x"], [2, 4, "y"]]},
                    seq=2,
                ),
            ]
        )


@settings(max_examples=60, deadline=None)
@given(
    st.text(max_size=30),
    st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1), st.text(max_size=5)), max_size=12),
)
def test_replay_at_every_step_matches_the_texts_as_they_were(
    initial: str, edits: list[tuple[float, float, str]]
) -> None:
    events = [Event(kind="file.loaded", payload={"path": "f.txt", "text": initial}, seq=1)]
    expected = {1: initial}
    text = initial
    for seq, (a, b, insert) in enumerate(edits, start=2):
        start, end = sorted((int(a * len(text)), int(b * len(text))))
        events.append(
            Event(
                kind="file.changed",
                payload={"path": "f.txt", "edits": [[start, end, insert]], "version": seq - 1},
                seq=seq,
            )
        )
        text = text[:start] + insert + text[end:]
        expected[seq] = text
    for seq, wanted in expected.items():
        assert replay_files(events, seq).files["f.txt"].text == wanted


def test_lenient_replay_leaves_out_only_the_broken_file() -> None:
    events = [
        Event(kind="file.loaded", payload={"path": "a.py", "text": "abc"}, seq=1),
        Event(kind="file.changed", payload={"path": "b.py", "edits": [[0, 0, "x"]]}, seq=2),
        Event(kind="file.changed", payload={"path": "a.py", "edits": [[0, 1, "z"]]}, seq=3),
    ]
    state = replay_files(events, strict=False)
    assert state.files["a.py"].text == "zbc"
    assert set(state.files) == {"a.py"}
    assert "seq 2, b.py: a change before any file.loaded" in state.problems["b.py"]
    reloaded = replay_files(
        [*events, Event(kind="file.loaded", payload={"path": "b.py", "text": "ok"}, seq=4)],
        strict=False,
    )
    assert reloaded.problems == {} and reloaded.files["b.py"].text == "ok"

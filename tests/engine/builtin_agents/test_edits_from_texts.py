"""`edits_from_texts`: the edits an agent's new text becomes, small enough to merge with typing."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from delegation_machine.engine.agents.base import apply_edits, edits_from_texts
from delegation_machine.engine.protocol import TextEdit

BEFORE = "import sys\n\ndef load(handle):\n    items = yaml.load(handle, Loader=yaml.Loader)\n"
AFTER = "\ndef load(handle):\n    items = yaml.safe_load(handle)\n"


def test_a_changed_line_becomes_only_the_changed_characters() -> None:
    edits = edits_from_texts(BEFORE, AFTER)
    assert apply_edits(BEFORE, edits) == AFTER
    changed = [e for e in edits if e.new_text]
    start, end = BEFORE.index("load(handle, L"), BEFORE.rindex(")")
    assert changed == [TextEdit(start, end, "safe_load(handle")]
    assert BEFORE[end:] == ")\n"  # the line's end is not the agent's: typing there stays put


def test_identical_texts_give_no_edit() -> None:
    assert edits_from_texts(BEFORE, BEFORE) == ()


lines = st.lists(st.sampled_from(["a\n", "ab\n", "b\r\n", "é c\n", "\n", "x = 1\n", "x = 2"]))


@given(lines, lines)
def test_the_edits_turn_before_into_after(before: list[str], after: list[str]) -> None:
    old, new = "".join(before), "".join(after)
    edits = edits_from_texts(old, new)
    assert apply_edits(old, edits) == new
    assert all(e.start <= e.end and (e.new_text or e.start < e.end) for e in edits)
    assert all(a.end <= b.start for a, b in itertools.pairwise(edits))

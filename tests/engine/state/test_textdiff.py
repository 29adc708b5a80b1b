"""Edit algebra: apply, diff and rebase (the version-rebase that anchors agent edits)."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from delegation_machine.engine.protocol import TextEdit
from delegation_machine.engine.state.textdiff import (
    ChangeComposer,
    apply_edits,
    diff_edits,
    map_position,
    rebase_edits,
    surviving_ranges,
)

ALPHABET = "ab\n😀é中\r"


def test_diff_then_apply_round_trips_on_a_known_case() -> None:
    old, new = "hello world", "hello brave new world!"
    edits = diff_edits(old, new)
    assert apply_edits(old, edits) == new
    assert edits[0].start == 6


def test_map_position_bias_at_an_insertion_point() -> None:
    change = [TextEdit(3, 3, "XY")]
    assert map_position(3, change, after_inserts=False) == 3
    assert map_position(3, change, after_inserts=True) == 5
    assert map_position(4, change, after_inserts=False) == 6


def test_surviving_ranges_skip_text_inserted_inside() -> None:
    # old "abcdef", delete [1, 5) = "bcde"; meanwhile "XY" inserted at 3 -> "abcXYdef"
    assert surviving_ranges(1, 5, [TextEdit(3, 3, "XY")]) == [(1, 3), (5, 7)]


def test_rebase_keeps_a_concurrent_insertion_inside_a_replaced_region() -> None:
    base = "abcdef"
    user = [TextEdit(3, 3, "XY")]
    agent = [TextEdit(1, 5, "Q")]
    result = apply_edits(apply_edits(base, user), rebase_edits(agent, user))
    assert result == "aQXYf"


@st.composite
def edit_lists(draw: st.DrawFn, text: str) -> list[TextEdit]:
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=6)))
    edits = []
    for start, end in zip(cuts[::2], cuts[1::2], strict=False):
        edits.append(TextEdit(start, end, draw(st.text(ALPHABET, max_size=3))))
    return edits


@given(st.data(), st.text(ALPHABET, max_size=30), st.text(ALPHABET, max_size=30))
def test_diff_edits_always_round_trip(data: st.DataObject, old: str, new: str) -> None:
    assert apply_edits(old, diff_edits(old, new)) == new


@given(st.data(), st.text("abcdefgh", min_size=0, max_size=25))
def test_rebase_never_loses_concurrently_inserted_text(data: st.DataObject, base: str) -> None:
    user = data.draw(edit_lists(base))
    agent = data.draw(edit_lists(base))
    marked_user = [TextEdit(e.start, e.end, "U" * len(e.new_text)) for e in user]
    after_user = apply_edits(base, marked_user)
    rebased = rebase_edits(agent, marked_user)
    final = apply_edits(after_user, rebased)
    # every character the user inserted is still there
    assert final.count("U") == after_user.count("U")
    # and the agent's inserted text is there too
    for edit in agent:
        assert edit.new_text in final


@given(st.data(), st.text(ALPHABET, max_size=20))
def test_composed_changes_equal_sequential_application(data: st.DataObject, base: str) -> None:
    composer = ChangeComposer(len(base))
    text = base
    for _ in range(data.draw(st.integers(0, 5))):
        change = data.draw(edit_lists(text))
        composer.apply(change)
        text = apply_edits(text, change)
    composed = composer.edits()
    assert apply_edits(base, composed) == text
    assert all(a.end <= b.start for a, b in itertools.pairwise(composed))

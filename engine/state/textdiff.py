"""Pure text-edit algebra in code points: apply, diff, and rebase edits through later changes.

An edit list is sorted by `start`, non-overlapping, and addresses the text it applies to.
`rebase_edits` moves edits made against an old text onto a newer one so that a rebased
deletion only removes characters that still exist from the old text: text inserted by the
later change (e.g. the user's keystrokes) is never deleted and never displaced out of the file.
"""

from __future__ import annotations

import bisect
import difflib
from collections.abc import Iterable, Sequence
from itertools import accumulate

from delegation_machine.engine.protocol import TextEdit


class EditRangeError(ValueError):
    """An edit list was not sorted, overlapped, or pointed outside its text."""


def check_edits(edits: Sequence[TextEdit], text_length: int) -> None:
    """Raise `EditRangeError` naming the first edit that is out of range or out of order."""
    previous_end = 0
    for index, edit in enumerate(edits):
        if edit.start < previous_end or edit.end < edit.start or edit.end > text_length:
            raise EditRangeError(
                f"edit #{index} [{edit.start}, {edit.end}) is out of order or outside the "
                f"text of {text_length} code points"
            )
        previous_end = edit.end


def normalize_edits(edits: Iterable[TextEdit]) -> list[TextEdit]:
    """Sort edits by position (stable) and drop no-ops; overlaps are left for `check_edits`."""
    ordered = list(edits)
    if len(ordered) > 1:
        ordered.sort(key=lambda edit: (edit.start, edit.end))
    return [edit for edit in ordered if edit.start != edit.end or edit.new_text]


def apply_edits(text: str, edits: Sequence[TextEdit]) -> str:
    """Apply sorted, non-overlapping edits (all addressing `text`)."""
    parts: list[str] = []
    cursor = 0
    for edit in edits:
        parts.append(text[cursor : edit.start])
        parts.append(edit.new_text)
        cursor = edit.end
    parts.append(text[cursor:])
    return "".join(parts)


CHAR_DIFF_LIMIT = 2_000  # above this many differing characters, diff lines first


def diff_edits(old: str, new: str) -> list[TextEdit]:
    """A small edit list turning `old` into `new`: common prefix/suffix, then difflib on
    characters (small middles) or on lines, then characters inside each changed block."""
    if old == new:
        return []
    prefix = _common_prefix(old, new)
    suffix = _common_suffix(old[prefix:], new[prefix:])
    old_mid = old[prefix : len(old) - suffix]
    new_mid = new[prefix : len(new) - suffix]
    if not old_mid or not new_mid:
        return [TextEdit(prefix, prefix + len(old_mid), new_mid)]
    if len(old_mid) + len(new_mid) <= CHAR_DIFF_LIMIT:
        return _char_diff(old_mid, new_mid, prefix)
    return _line_diff(old_mid, new_mid, prefix)


def _char_diff(old: str, new: str, offset: int) -> list[TextEdit]:
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    return [
        TextEdit(offset + i1, offset + i2, new[j1:j2])
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        if tag != "equal"
    ]


def _line_diff(old: str, new: str, offset: int) -> list[TextEdit]:
    old_lines = old.splitlines(keepends=True)
    new_lines = new.splitlines(keepends=True)
    old_starts = _starts(old_lines)
    new_starts = _starts(new_lines)
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    edits: list[TextEdit] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        old_block = old[old_starts[i1] : old_starts[i2]]
        new_block = new[new_starts[j1] : new_starts[j2]]
        block_offset = offset + old_starts[i1]
        if old_block and new_block and len(old_block) + len(new_block) <= CHAR_DIFF_LIMIT:
            edits.extend(_char_diff(old_block, new_block, block_offset))
        else:
            edits.append(TextEdit(block_offset, block_offset + len(old_block), new_block))
    return edits


def _starts(lines: list[str]) -> list[int]:
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    return starts


def _common_prefix(a: str, b: str) -> int:
    limit = min(len(a), len(b))
    low, high = 0, limit
    while low < high:  # binary search on slice equality: C-speed comparisons
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


def _common_suffix(a: str, b: str) -> int:
    limit = min(len(a), len(b))
    low, high = 0, limit
    while low < high:
        mid = (low + high + 1) // 2
        if a[len(a) - mid :] == b[len(b) - mid :]:
            low = mid
        else:
            high = mid - 1
    return low


def map_position(position: int, change: Sequence[TextEdit], *, after_inserts: bool) -> int:
    """Map a position in the text before `change` to the text after it.

    A position inside a deleted range moves to that range's start (or past its replacement
    when `after_inserts`); text inserted exactly at the position goes before it when
    `after_inserts`, after it otherwise.
    """
    shift = 0
    for edit in change:
        if edit.start > position or (edit.start == position and not after_inserts):
            break
        if edit.end <= position:
            shift += len(edit.new_text) - (edit.end - edit.start)
            continue
        # position strictly inside the replaced range [start, end)
        return int(edit.start) + shift + (len(edit.new_text) if after_inserts else 0)
    return position + shift


def surviving_ranges(start: int, end: int, change: Sequence[TextEdit]) -> list[tuple[int, int]]:
    """The parts of [start, end) of the old text that still exist after `change`, in new
    coordinates. Text that `change` inserted inside the range is excluded."""
    ranges: list[tuple[int, int]] = []
    shift = 0
    cursor = start
    for edit in change:
        if edit.start >= end:
            break
        if edit.start > cursor:
            ranges.append((cursor + shift, edit.start + shift))
        cursor = max(cursor, edit.end)
        shift += len(edit.new_text) - (edit.end - edit.start)
        if cursor >= end:
            break
    if cursor < end:
        ranges.append((cursor + shift, end + shift))
    return [(a, b) for a, b in ranges if a < b]


def rebase_edits(edits: Sequence[TextEdit], change: Sequence[TextEdit]) -> list[TextEdit]:
    """Rebase `edits` (against text T0) through `change` (T0 -> T1): the result addresses T1.

    Each replacement becomes: its new text inserted where its start mapped to, plus
    deletions of only those old characters that survived `change`.
    """
    if not change:
        return list(edits)
    rebased: list[TextEdit] = []
    for edit in edits:
        insert_at = map_position(edit.start, change, after_inserts=False)
        pieces = surviving_ranges(edit.start, edit.end, change) if edit.end > edit.start else []
        if pieces and pieces[0][0] <= insert_at:
            first_start, first_end = pieces[0]
            rebased.append(TextEdit(first_start, first_end, edit.new_text))
            rebased.extend(TextEdit(a, b, "") for a, b in pieces[1:])
            continue
        if edit.new_text:
            rebased.append(TextEdit(insert_at, insert_at, edit.new_text))
        rebased.extend(TextEdit(a, b, "") for a, b in pieces)
    return _merge_touching(rebased)


def _merge_touching(edits: list[TextEdit]) -> list[TextEdit]:
    """Keep the list sorted; two edits at the same point are merged into one."""
    edits.sort(key=lambda edit: (edit.start, edit.end))
    merged: list[TextEdit] = []
    for edit in edits:
        if merged and merged[-1].end == edit.start and merged[-1].start == edit.start:
            last = merged.pop()
            edit = TextEdit(last.start, edit.end, last.new_text + edit.new_text)
        merged.append(edit)
    return merged


def rebase_through(
    edits: Sequence[TextEdit], changes: Iterable[Sequence[TextEdit]]
) -> list[TextEdit]:
    """Rebase `edits` through a sequence of later changes, oldest first."""
    current = list(edits)
    for change in changes:
        current = rebase_edits(current, change)
    return current


class ChangeComposer:
    """Composes sequential changes (each addressing the text left by the previous one) into
    one edit list against the text it started from, in time linear in pieces and edits.

    The current text is kept as pieces: spans (start, end) of the original text, in order, and
    inserted strings; `edits()` reads the gaps and insertions back as TextEdits.
    """

    def __init__(self, original_length: int) -> None:
        self.original_length = original_length
        self.pieces: list[tuple[int, int] | str] = [(0, original_length)] if original_length else []
        self.sizes: list[int] = [original_length] if original_length else []  # kept in step

    def apply(self, change: Sequence[TextEdit]) -> None:
        pieces, sizes = self.pieces, self.sizes
        starts = list(accumulate(sizes, initial=0))
        total = starts[-1]
        result: list[tuple[int, int] | str] = []
        result_sizes: list[int] = []

        def emit(piece: tuple[int, int] | str) -> None:
            result.append(piece)
            result_sizes.append(_size(piece))

        def copy(start: int, end: int) -> None:
            """Append the pieces covering [start, end) of the current text."""
            if end <= start:
                return
            first = bisect.bisect_right(starts, start) - 1
            last = bisect.bisect_right(starts, end - 1) - 1  # the piece holding end - 1
            if first == last:
                emit(_slice(pieces[first], start - starts[first], end - starts[first]))
                return
            emit(_slice(pieces[first], start - starts[first], sizes[first]))
            result.extend(pieces[first + 1 : last])
            result_sizes.extend(sizes[first + 1 : last])
            emit(_slice(pieces[last], 0, end - starts[last]))

        cursor = 0
        for edit in change:
            if edit.end > total or edit.start < cursor:
                raise EditRangeError("a composed change is out of order or past the end")
            copy(cursor, edit.start)
            if edit.new_text:
                emit(edit.new_text)
            cursor = edit.end
        copy(cursor, total)
        self.pieces, self.sizes = result, result_sizes

    @property
    def piece_count(self) -> int:
        return len(self.pieces)

    def edits(self) -> list[TextEdit]:
        edits: list[TextEdit] = []
        original_cursor = 0
        inserted: list[str] = []
        for piece in self.pieces:
            if isinstance(piece, str):
                inserted.append(piece)
                continue
            start, end = piece
            if start > original_cursor or inserted:
                edits.append(TextEdit(original_cursor, start, "".join(inserted)))
                inserted = []
            original_cursor = end
        if original_cursor < self.original_length or inserted:
            edits.append(TextEdit(original_cursor, self.original_length, "".join(inserted)))
        return edits


def _size(piece: tuple[int, int] | str) -> int:
    return (piece[1] - piece[0]) if isinstance(piece, tuple) else len(piece)


def _slice(piece: tuple[int, int] | str, start: int, end: int) -> tuple[int, int] | str:
    if isinstance(piece, tuple):
        return (piece[0] + start, piece[0] + end)
    return piece[start:end]

"""Per-hunk review: one task's pending changes to one file, split into addressable hunks.

Owns `HunkTracker`, a run-length model of a file's current text that says, for every visible
character, whether the task inserted it ("task"), it was there before the task began ("base")
or someone else typed it since ("other"), and keeps what the task deleted as invisible "gone"
pieces at the place they were. Every committed change of the file is fed to every tracker in
order (`FileDocument._commit_edits`), so the model always matches the text.

A hunk is a labelled group of task and gone pieces: a new change of the task joins a hunk when
no whole untouched line of pre-task text lies between them (the text others typed does not
count), and labels never change on anyone else's edit, so the user typing inside a hunk keeps
its id. Rejecting a hunk deletes exactly its task pieces and puts its gone pieces back; every
other character — the user's included — stays. Owned by the event loop, like the Doc.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec

from delegation_machine.engine.protocol import TextEdit
from delegation_machine.engine.state.textdiff import apply_edits
from delegation_machine.engine.state.types import StateError, task_of_origin

PieceKind = Literal["base", "other", "task", "gone"]
NO_LABEL = 0
NEW_LABEL = -1  # set on pieces of the task's edit being recorded, until labels are assigned


def reject_hunk_origin(task_id: str, label: int) -> str:
    """The origin of the transaction that rejects one hunk of a task."""
    return f"reject:hunk:{task_id}#{label}"


def hunk_id_of(task_id: str, path: str, label: int) -> str:
    """A hunk's id: stable for the hunk's life (the same after a restart's replay)."""
    digest = hashlib.sha256(f"{task_id}\x00{path}\x00{label}".encode()).hexdigest()
    return f"h-{digest[:10]}"


class PendingHunk(msgspec.Struct, frozen=True):
    """One contiguous region of a task's pending change to one file.

    `start`/`end` are code points in the current text; `after` is that text, `before` what it
    becomes if the hunk is rejected (text others typed inside it stays in both).
    """

    task_id: str
    hunk_id: str
    path: str
    start: int
    end: int
    before: str
    after: str


class UnknownHunk(StateError):
    """No pending hunk has that id (decided already, or never a hunk of that task)."""


@dataclass(slots=True)
class Piece:
    kind: PieceKind
    size: int  # visible code points (0 for "gone")
    text: str = ""  # the deleted text of a "gone" piece
    label: int = NO_LABEL

    @property
    def is_change(self) -> bool:
        return self.kind in ("task", "gone")


class HunkTracker:
    """The pending change of one task to one file, as hunks."""

    def __init__(self, task_id: str, path: str, text_length: int) -> None:
        self.task_id = task_id
        self.path = path
        self.pieces: list[Piece] = [Piece("base", text_length)] if text_length else []
        self.decided = False  # a hunk was accepted or rejected: the task's undo is ours now
        self._next_label = 1

    # --- feeding it changes ----------------------------------------------------------------

    def observe(self, edits: Sequence[TextEdit], text: str, origin: str) -> None:
        """A committed change: sorted `edits` against `text` (the text before it)."""
        if origin.startswith("reject:hunk:"):
            task_id, _, label = origin[len("reject:hunk:") :].rpartition("#")
            if task_id == self.task_id and label.isdigit():
                self._settle(int(label), rejected=True)
                return
        by_task = task_of_origin(origin) == self.task_id
        for edit in reversed(edits):  # back to front: earlier offsets stay valid
            self._replace(edit, text, by_task)
        if by_task:
            self._assign_labels(text, edits)

    def accept(self, label: int) -> None:
        """Keep a hunk: its insertions become ordinary text, its deletions final."""
        self._require(label)
        self._settle(label, rejected=False)

    def rejection_edits(self, label: int | None = None) -> list[TextEdit]:
        """The edits (against the current text) that reject one hunk (every hunk: None)."""
        if label is not None:
            self._require(label)
        edits: list[TextEdit] = []
        position = 0
        run: list[int] | None = None  # [start, end] of the run of this hunk's pieces
        restored: list[str] = []
        for piece in self.pieces:
            if piece.label == label or (label is None and piece.label > NO_LABEL):
                if run is None:
                    run, restored = [position, position], []
                if piece.kind == "task":
                    run[1] = position + piece.size
                else:
                    restored.append(piece.text)
            elif run is not None and piece.size:
                edits.append(TextEdit(run[0], run[1], "".join(restored)))
                run = None
            position += piece.size
        if run is not None:
            edits.append(TextEdit(run[0], run[1], "".join(restored)))
        return edits

    # --- reading it ------------------------------------------------------------------------

    def labels(self) -> list[int]:
        seen: dict[int, None] = {}
        for piece in self.pieces:
            if piece.label > NO_LABEL:
                seen.setdefault(piece.label, None)
        return list(seen)

    def hunks(self, text: str) -> list[PendingHunk]:
        """The hunks in text order, read against the current `text`."""
        spans: dict[int, list[int]] = {}  # label -> [start, end, first piece, last piece]
        position = 0
        for index, piece in enumerate(self.pieces):
            if piece.label > NO_LABEL:
                span = spans.setdefault(piece.label, [position, position, index, index])
                span[1], span[3] = position + piece.size, index
            position += piece.size
        hunks = []
        for label, (start, end, first, last) in spans.items():
            before: list[str] = []
            cursor = start
            for piece in self.pieces[first : last + 1]:
                if piece.kind == "gone":
                    if piece.label == label:
                        before.append(piece.text)
                    continue
                if piece.kind != "task" or piece.label != label:
                    before.append(text[cursor : cursor + piece.size])
                cursor += piece.size
            hunks.append(
                PendingHunk(
                    task_id=self.task_id,
                    hunk_id=hunk_id_of(self.task_id, self.path, label),
                    path=self.path,
                    start=start,
                    end=end,
                    before="".join(before),
                    after=text[start:end],
                )
            )
        return hunks

    def label_of(self, hunk_id: str) -> int | None:
        for label in self.labels():
            if hunk_id_of(self.task_id, self.path, label) == hunk_id:
                return label
        return None

    def without_task(self, text: str) -> str:
        """`text` with every pending hunk of the task rejected (the task's pre-task view)."""
        parts: list[str] = []
        position = 0
        for piece in self.pieces:
            if piece.kind == "gone":
                parts.append(piece.text)
            elif piece.kind != "task":
                parts.append(text[position : position + piece.size])
            position += piece.size
        return "".join(parts)

    @property
    def length(self) -> int:
        return sum(piece.size for piece in self.pieces)

    # --- internals -------------------------------------------------------------------------

    def _require(self, label: int) -> None:
        if label not in self.labels():
            raise UnknownHunk(f"hunk {label} of task {self.task_id} is not pending", self.path)

    def _settle(self, label: int, *, rejected: bool) -> None:
        """The hunk is decided: rejected (its task text is gone, its deletions are back, as
        the committed rejection edits did) or accepted (its task text is ordinary text)."""
        kept: list[Piece] = []
        for piece in self.pieces:
            if piece.label != label:
                kept.append(piece)
            elif piece.kind == "gone" and rejected:
                kept.append(Piece("base", len(piece.text)))
            elif piece.kind == "task" and not rejected:
                kept.append(Piece("base", piece.size))
        self.pieces = _merged(kept)
        self.decided = True

    def _split(self, position: int) -> int:
        """Index of the first visible piece at visible offset `position` (after the invisible
        pieces there, which is where yrs puts an insert: a rejected replacement's old text
        comes back before what was typed at its place); splits a piece that straddles it."""
        offset = 0
        for index, piece in enumerate(self.pieces):
            if piece.size and offset + piece.size > position:
                cut = position - offset
                if cut > 0:
                    head, tail = _cut(piece, cut)
                    self.pieces[index : index + 1] = [head, tail]
                    return index + 1
                return index
            offset += piece.size
        if position > offset:
            raise ValueError(f"offset {position} is beyond the tracked text of {offset} characters")
        return len(self.pieces)

    def _replace(self, edit: TextEdit, text: str, by_task: bool) -> None:
        if edit.end > edit.start:
            first = self._split(edit.start)
            last = self._split(edit.end)
            removed: list[Piece] = []
            offset = edit.start
            for piece in self.pieces[first:last]:
                if piece.kind == "gone":
                    removed.append(piece)  # invisible: nobody deletes it again
                elif by_task and piece.kind != "task":
                    removed.append(Piece("gone", 0, text[offset : offset + piece.size], NEW_LABEL))
                offset += piece.size
            self.pieces[first:last] = removed
        if edit.new_text:
            kind: PieceKind = "task" if by_task else "other"
            label = NEW_LABEL if by_task else NO_LABEL
            self.pieces.insert(self._split(edit.start), Piece(kind, len(edit.new_text), "", label))
        self.pieces = _merged(self.pieces)

    def _assign_labels(self, text_before: str, edits: Sequence[TextEdit]) -> None:
        """Group the task's pieces into hunks after one of its edits (labels of earlier
        hunks are kept; a new piece joins its neighbours unless a whole untouched line of
        pre-task text lies between them)."""
        text = apply_edits(text_before, edits)
        groups: list[list[Piece]] = []
        gap: list[str] = []
        previous: Piece | None = None
        previous_text = ""
        position = 0
        for piece in self.pieces:
            visible = text[position : position + piece.size]
            position += piece.size
            if piece.kind == "other":
                continue  # what others typed neither joins nor separates hunks
            if piece.kind == "base":
                gap.append(visible)
                continue
            own_text = piece.text if piece.kind == "gone" else visible
            if previous is not None and _joins(previous, previous_text, piece, "".join(gap)):
                groups[-1].append(piece)
            else:
                groups.append([piece])
            previous, previous_text, gap = piece, own_text, []
        for group in _merge_split_labels(groups):
            old = sorted({p.label for p in group if p.label > NO_LABEL})
            label = old[0] if old else self._fresh_label()
            for piece in group:
                piece.label = label
        self.pieces = _merged(self.pieces)

    def _fresh_label(self) -> int:
        label = self._next_label
        self._next_label += 1
        return label


def _joins(left: Piece, left_text: str, right: Piece, gap: str) -> bool:
    if left.label > NO_LABEL and left.label == right.label:
        return True
    if NEW_LABEL not in (left.label, right.label):
        return False  # two earlier hunks stay apart, even once the text between them goes
    untouched_lines = gap.count("\n") - (0 if left_text.endswith("\n") else 1)
    return untouched_lines <= 0


def _merge_split_labels(groups: list[list[Piece]]) -> list[list[Piece]]:
    """A hunk's pieces never end up in two groups: merge every group between them."""
    merged: list[list[Piece]] = []
    last_group_of: dict[int, int] = {}
    for index, group in enumerate(groups):
        for piece in group:
            if piece.label > NO_LABEL:
                last_group_of[piece.label] = index
    reach = -1
    for index, group in enumerate(groups):
        if merged and index <= reach:
            merged[-1].extend(group)
        else:
            merged.append(list(group))
        for piece in group:
            if piece.label > NO_LABEL:
                reach = max(reach, last_group_of[piece.label])
    return merged


def _cut(piece: Piece, at: int) -> tuple[Piece, Piece]:
    return Piece(piece.kind, at, "", piece.label), Piece(
        piece.kind, piece.size - at, "", piece.label
    )


def _merged(pieces: list[Piece]) -> list[Piece]:
    out: list[Piece] = []
    for piece in pieces:
        if piece.size == 0 and piece.kind != "gone":
            continue
        last = out[-1] if out else None
        if last is not None and last.kind == piece.kind and last.label == piece.label:
            out[-1] = Piece(last.kind, last.size + piece.size, last.text + piece.text, last.label)
        else:
            out.append(piece)
    return out

"""Restore a file's text at any ledger step from recorded "file.loaded"/"file.changed" events.

Pure function over events: "file.loaded" resets the text (first load or a restart); each
"file.changed" applies its code-point edits against the previous text. Events of other files
and kinds are skipped, so the whole ledger can be passed in.
"""

from __future__ import annotations

from collections.abc import Iterable

from delegation_machine.engine.protocol import Event, TextEdit
from delegation_machine.engine.state.textdiff import apply_edits


class ReplayGap(ValueError):
    """The events do not describe the file up to the requested step (no load, or a gap)."""


def restore_text(events: Iterable[Event], path: str, upto_seq: int | None = None) -> str:
    """The text of `path` after the last event with `seq <= upto_seq` (all events if None)."""
    text: str | None = None
    version = -1
    for event in events:
        if upto_seq is not None and event.seq > upto_seq:
            break
        if event.payload.get("path") != path:
            continue
        if event.kind == "file.loaded":
            text = str(event.payload["text"])
            version = int(event.payload["version"])
        elif event.kind == "file.changed":
            if text is None:
                raise ReplayGap(f"{path}: a change at seq {event.seq} before any file.loaded")
            next_version = int(event.payload["version"])
            if next_version != version + 1:
                raise ReplayGap(
                    f"{path}: version jumps from {version} to {next_version} at seq {event.seq}"
                )
            edits = [TextEdit(int(s), int(e), str(t)) for s, e, t in event.payload["edits"]]
            text = apply_edits(text, edits)
            version = next_version
    if text is None:
        raise ReplayGap(f"{path}: no file.loaded event up to seq {upto_seq}")
    return text

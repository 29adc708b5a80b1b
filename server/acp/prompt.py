"""What an ACP prompt asks for: its instruction, and the file and lines it targets.

Owns the reading of a `session/prompt`'s content blocks into a `PromptTarget`: the text blocks
joined are the instruction; a resource link or an embedded text resource names the file, and
a line range in its URI fragment (`#L12`, `#L12-20`, `#L12:20`, `#L12-L20`, as editors write
selections) is the selection. An embedded resource without a range carries the client's
buffer of the whole file. Pure functions; `PromptError` says what was wrong in the prompt.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

import msgspec
from acp.schema import (
    AudioContentBlock,
    EmbeddedResourceContentBlock,
    ImageContentBlock,
    ResourceContentBlock,
    TextContentBlock,
    TextResourceContents,
)

from delegation_machine.engine.protocol import Point, Span

PromptBlock = (
    TextContentBlock
    | ImageContentBlock
    | AudioContentBlock
    | ResourceContentBlock
    | EmbeddedResourceContentBlock
)

_LINE_RANGE = re.compile(r"^L(\d+)(?:[-:]L?(\d+))?$")


class PromptError(ValueError):
    """The prompt cannot become a delegation; the message says what to change."""


class PromptTarget(msgspec.Struct, frozen=True):
    """A prompt read: the instruction, the absolute file it targets, and its 1-based lines."""

    instruction: str
    path: Path | None = None
    lines: tuple[int, int] | None = None
    buffer_text: str | None = None  # the client's whole buffer of `path`, when it sent one


def read_prompt(blocks: Sequence[PromptBlock]) -> PromptTarget:
    """The `PromptTarget` of a prompt's blocks; `PromptError` for what it cannot carry."""
    texts: list[str] = []
    files: list[tuple[Path, tuple[int, int] | None, str | None]] = []
    for number, block in enumerate(blocks):
        if isinstance(block, TextContentBlock):
            texts.append(block.text)
        elif isinstance(block, ResourceContentBlock):
            path, lines = file_of_uri(block.uri, where=f"prompt[{number}]")
            files.append((path, lines, None))
        elif isinstance(block, EmbeddedResourceContentBlock):
            resource = block.resource
            if not isinstance(resource, TextResourceContents):
                raise PromptError(f"prompt[{number}]: a binary resource cannot be delegated")
            path, lines = file_of_uri(resource.uri, where=f"prompt[{number}]")
            files.append((path, lines, resource.text if lines is None else None))
        else:
            raise PromptError(
                f"prompt[{number}]: {block.type} content is not supported; send text and "
                "resource links (the agent advertises no image or audio support)"
            )
    instruction = " ".join(text.strip() for text in texts if text.strip())
    if not instruction:
        raise PromptError("the prompt has no text: say what to do, e.g. 'fix'")
    distinct = {path for path, _, _ in files}
    if len(distinct) > 1:
        names = ", ".join(sorted(str(path) for path in distinct))
        raise PromptError(
            f"a delegation works on one file or the whole workspace; this prompt names "
            f"{len(distinct)} files ({names}): send one prompt per file"
        )
    if not files:
        return PromptTarget(instruction)
    path = files[0][0]
    lines = next((lines for _, lines, _ in files if lines is not None), None)
    buffer_text = next((text for _, _, text in files if text is not None), None)
    return PromptTarget(instruction, path, lines, buffer_text)


def file_of_uri(uri: str, *, where: str) -> tuple[Path, tuple[int, int] | None]:
    """The absolute path and 1-based inclusive line range a `file://` URI names."""
    parts = urlsplit(uri)
    if parts.scheme != "file":
        raise PromptError(f"{where}: {uri!r} is not a file:// URI")
    if parts.netloc not in ("", "localhost"):
        raise PromptError(f"{where}: {uri!r} names a file on another host")
    path = Path(unquote(parts.path))
    if not path.is_absolute():
        raise PromptError(f"{where}: {uri!r} is not an absolute file URI")
    if not parts.fragment:
        return path, None
    found = _LINE_RANGE.match(parts.fragment)
    if found is None:
        raise PromptError(
            f"{where}: the fragment #{parts.fragment} of {uri!r} is not a line range "
            "(#L12, #L12-20 or #L12:20)"
        )
    first = int(found.group(1))
    last = int(found.group(2) or first)
    if first < 1 or last < first:
        raise PromptError(f"{where}: lines {first}-{last} of {uri!r}: need 1 <= first <= last")
    return path, (first, last)


def lines_span(text: str, lines: tuple[int, int], where: str) -> Span:
    """The span that 1-based inclusive `lines` cover in `text` (PromptError if out of range)."""
    first, last = lines
    rows = text.split("\n")
    if text.endswith("\n"):
        rows.pop()  # the empty string after the final newline is not a line
    if last > len(rows):
        raise PromptError(f"lines {first}-{last} of {where}: the file has {len(rows)} lines")
    return Span(Point(first - 1, 0), Point(last - 1, len(rows[last - 1].rstrip("\r"))))

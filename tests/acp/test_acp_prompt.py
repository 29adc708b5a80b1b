"""Reading an ACP prompt into a delegation's target: file URIs, the line-range fragments that
editors write for selections, and the prompts that cannot be delegated (in process, fast)."""

from __future__ import annotations

from pathlib import Path

import pytest
from acp import resource_link_block, text_block
from acp.schema import AudioContentBlock, EmbeddedResourceContentBlock, TextResourceContents

from delegation_machine.engine.protocol import Point, Span
from delegation_machine.server.acp.prompt import (
    PromptError,
    file_of_uri,
    lines_span,
    read_prompt,
)


@pytest.mark.parametrize(
    ("uri", "path", "lines"),
    [
        ("file:///w/a.py", "/w/a.py", None),
        ("file:///w/a.py#L12", "/w/a.py", (12, 12)),
        ("file:///w/a.py#L12-20", "/w/a.py", (12, 20)),
        ("file:///w/a.py#L12:20", "/w/a.py", (12, 20)),  # Zed's selection mentions
        ("file:///w/a.py#L12-L20", "/w/a.py", (12, 20)),
        ("file://localhost/w/my%20file.py", "/w/my file.py", None),
    ],
)
def test_file_uris_and_their_line_ranges(
    uri: str, path: str, lines: tuple[int, int] | None
) -> None:
    assert file_of_uri(uri, where="prompt[1]") == (Path(path), lines)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("https://example.com/a.py", "not a file:// URI"),
        ("file://other-host/w/a.py", "on another host"),
        ("file:a.py", "not an absolute file URI"),
        ("file:///w/a.py#top", "not a line range"),
        ("file:///w/a.py#L0", "need 1 <= first <= last"),
        ("file:///w/a.py#L9-3", "need 1 <= first <= last"),
    ],
)
def test_bad_uris_say_what_is_wrong_and_where(uri: str, message: str) -> None:
    with pytest.raises(PromptError, match=message) as refused:
        file_of_uri(uri, where="prompt[1]")
    assert str(refused.value).startswith("prompt[1]: ")


def test_text_blocks_are_the_instruction_and_a_link_the_target() -> None:
    target = read_prompt(
        [text_block("fix "), resource_link_block("a.py", "file:///w/a.py#L3-4"), text_block(" ")]
    )
    assert (target.instruction, target.path, target.lines) == ("fix", Path("/w/a.py"), (3, 4))
    assert target.buffer_text is None


def test_an_embedded_resource_without_a_range_is_the_clients_buffer() -> None:
    whole = EmbeddedResourceContentBlock(
        type="resource", resource=TextResourceContents(uri="file:///w/a.py", text="x = 1\n")
    )
    excerpt = EmbeddedResourceContentBlock(
        type="resource", resource=TextResourceContents(uri="file:///w/a.py#L1", text="x = 1")
    )
    assert read_prompt([text_block("fix"), whole]).buffer_text == "x = 1\n"
    selected = read_prompt([text_block("fix"), excerpt])
    assert selected.buffer_text is None and selected.lines == (1, 1)


@pytest.mark.parametrize(
    ("blocks", "message"),
    [
        ([], "has no text"),
        ([resource_link_block("a.py", "file:///w/a.py")], "has no text"),
        (
            [text_block("fix"), AudioContentBlock(type="audio", data="AA", mime_type="audio/wav")],
            "audio content is not supported",
        ),
        (
            [
                text_block("fix"),
                resource_link_block("a.py", "file:///w/a.py"),
                resource_link_block("b.py", "file:///w/b.py"),
            ],
            "names 2 files",
        ),
    ],
)
def test_prompts_that_cannot_be_delegated(blocks: list, message: str) -> None:
    with pytest.raises(PromptError, match=message):
        read_prompt(blocks)


def test_lines_become_a_span_up_to_the_end_of_the_last_line() -> None:
    text = "a = 1\nbb = 2\r\nccc = 3\n"
    assert lines_span(text, (2, 3), "a.py") == Span(Point(1, 0), Point(2, 7))
    with pytest.raises(PromptError, match="the file has 3 lines"):
        lines_span(text, (3, 4), "a.py")

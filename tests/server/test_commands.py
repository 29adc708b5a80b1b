"""Validation of the `delegation.*` command arguments."""

from __future__ import annotations

import pytest

from delegation_machine.server.commands import (
    CommandArgumentError,
    DelegateArguments,
    TaskArguments,
    single_argument,
)


def test_valid_delegate_arguments_are_decoded() -> None:
    args = single_argument(
        "delegation.delegate",
        (
            {
                "uri": "file:///w/a.py",
                "instruction": "fix",
                "range": {"start": {"line": 1, "character": 0}, "end": {"line": 2, "character": 4}},
            },
        ),
        DelegateArguments,
    )
    assert args.instruction == "fix"
    assert args.range.end.character == 4


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((), "exactly one object argument, got 0"),
        (({"instruction": 7},), r"\$\.instruction"),
        (({"instruction": "  "},), "must not be empty"),
        (({"instruction": "fix", "range": {"start": {"line": "a"}}},), r"\$\.range\.start"),
    ],
)
def test_bad_delegate_arguments_say_what_and_where(arguments: tuple, message: str) -> None:
    with pytest.raises(CommandArgumentError, match=message):
        single_argument("delegation.delegate", arguments, DelegateArguments)


def test_task_commands_need_a_task_id() -> None:
    with pytest.raises(CommandArgumentError, match=r"\$\.taskId|taskId"):
        single_argument("delegation.cancel", ({},), TaskArguments)
    assert (
        single_argument("delegation.cancel", ({"taskId": "t-1"},), TaskArguments).task_id == "t-1"
    )


def test_hunk_commands_need_a_task_and_a_hunk() -> None:
    from delegation_machine.server.commands import HunkArguments, HunkQuery

    args = single_argument(
        "delegation.rejectHunk", ({"taskId": "t-1", "hunkId": "h-1"},), HunkArguments
    )
    assert (args.task_id, args.hunk_id) == ("t-1", "h-1")
    with pytest.raises(CommandArgumentError, match="hunkId"):
        single_argument("delegation.rejectHunk", ({"taskId": "t-1"},), HunkArguments)
    with pytest.raises(CommandArgumentError, match="must not be empty"):
        single_argument("delegation.acceptHunk", ({"taskId": " ", "hunkId": "h"},), HunkArguments)
    assert single_argument("delegation.hunks", ({},), HunkQuery) == HunkQuery()

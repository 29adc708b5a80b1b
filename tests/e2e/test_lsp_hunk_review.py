"""Per-hunk review through a real server subprocess: `Accept | Reject` code lenses above each
pending agent hunk, `delegation.rejectHunk` after the user typed inside the hunk (the typing
survives, the edit reaches the editor through workspace/applyEdit), `delegation.acceptHunk`
settling the task, lens refreshes, and clear errors for bad arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

STORAGE = "inventory/storage.py"  # the fix removes `import sys` and makes yaml.load safe


async def lenses(client: Any, uri: str) -> list[types.CodeLens]:
    found = await client.text_document_code_lens_async(
        types.CodeLensParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    return list(found or [])


async def run(client: Any, command: str, arguments: list[Any]) -> Any:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=command, arguments=arguments)
    )


def hunk_ids(found: list[types.CodeLens]) -> list[str]:
    return [lens.command.arguments[0]["hunkId"] for lens in found if lens.command.title == "Reject"]


async def test_hunks_get_lenses_and_are_decided_one_by_one(lsp: Any, workspace: Path) -> None:
    client, editor = lsp, lsp.editor
    capabilities = client.capabilities.workspace if client.capabilities else None
    refreshing = bool(
        capabilities and capabilities.code_lens and capabilities.code_lens.refresh_support
    )
    uri = editor.open(workspace / STORAGE)
    assert await lenses(client, uri) == []
    result = await run(client, "delegation.delegate", [{"uri": uri, "instruction": "fix"}])
    task_id = result["taskId"]
    await editor.wait_until(lambda: editor.task_state(task_id) == "verified")
    await editor.wait_until(lambda: "safe_load" in editor.text(uri))

    found = await lenses(client, uri)
    assert [lens.command.title for lens in found] == ["Accept", "Reject", "Accept", "Reject"]
    assert {lens.command.command for lens in found} == {
        "delegation.acceptHunk",
        "delegation.rejectHunk",
    }
    imports, loads = hunk_ids(found)
    assert all(lens.command.arguments[0]["taskId"] == task_id for lens in found)
    lines = editor.text(uri).split("\n")
    assert "safe_load" in lines[found[2].range.start.line]
    listed = await run(client, "delegation.hunks", [{"taskId": task_id}])
    assert [h["hunkId"] for h in listed["hunks"]] == [imports, loads]
    assert listed["hunks"][0]["before"] == "import sys\n"

    # the user types inside the yaml hunk: the hunk keeps its id
    line = next(n for n, text in enumerate(lines) if "safe_load" in text)
    column = lines[line].index("safe_load") + len("safe")
    editor.type_text(uri, line, column, "  # mine")
    assert hunk_ids(await lenses(client, uri)) == [imports, loads]

    pushed = len(editor.applied_edits)
    answer = await run(client, "delegation.rejectHunk", [{"taskId": task_id, "hunkId": loads}])
    assert answer == {"taskId": task_id, "hunkId": loads, "state": "verified"}
    restored = "yaml.load(handle, Loader=yaml.Loader)"  # with the typing kept inside it
    await editor.wait_until(lambda: restored in editor.text(uri).replace("  # mine", ""))
    assert len(editor.applied_edits) > pushed  # through workspace/applyEdit
    text = editor.text(uri)
    assert "  # mine" in text and "import sys\n" not in text
    assert hunk_ids(await lenses(client, uri)) == [imports]
    if refreshing:
        await editor.wait_until(lambda: editor.code_lens_refreshes > 0)

    bad = [
        ("delegation.rejectHunk", [{"taskId": task_id}], "hunkId"),
        ("delegation.rejectHunk", [{"taskId": task_id, "hunkId": ""}], "must not be empty"),
        ("delegation.acceptHunk", [{"taskId": task_id, "hunkId": 7}], "$.hunkId"),
        ("delegation.acceptHunk", [], "exactly one object argument"),
        ("delegation.acceptHunk", [{"taskId": task_id, "hunkId": loads}], "no pending hunk"),
        ("delegation.acceptHunk", [{"taskId": "t-missing", "hunkId": loads}], "no task"),
    ]
    for command, arguments, expected in bad:
        with pytest.raises(JsonRpcException) as error:
            await run(client, command, arguments)
        assert expected in str(error.value), (command, str(error.value))

    answer = await run(client, "delegation.acceptHunk", [{"taskId": task_id, "hunkId": imports}])
    assert answer["state"] == "accepted"
    await editor.wait_until(lambda: editor.task_state(task_id) == "accepted")
    assert await lenses(client, uri) == []
    assert "  # mine" in editor.text(uri) and "import sys\n" not in editor.text(uri)

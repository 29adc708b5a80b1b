"""`delegation-machine acp` driven by the ACP SDK's own client, as an editor's agent panel does.

Each test starts the real command on a scratch copy of samples/inventory and delegates the
seeded `verify=False` fix in inventory/http_client.py: the updates streamed (plan, a tool call
with locations, its update with a diff), the permission asked before anything is kept (the
disk still unchanged while it is asked), then allow (the file fixed, on disk or through the
client's fs/write_text_file), reject (the file unchanged byte for byte), cancel (stopReason
cancelled), and bad input (clear JSON-RPC errors, and the agent serves the next request).
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import sys
from pathlib import Path

import pytest
from acp import RequestError, resource_link_block, text_block
from acp.schema import EmbeddedResourceContentBlock, ImageContentBlock, TextResourceContents

from delegation_machine.engine.inference.scripted import (
    RecordedRequest,
    ScriptedServer,
    ScriptedTurn,
)
from tests.acp.acp_client import (
    AGENT,
    BROKEN_CALL,
    FIXED_CALL,
    TARGET,
    RecordingClient,
    start_agent,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
PROMPT_TIMEOUT_S = 120


def link(path: Path, fragment: str = "") -> object:
    uri = path.as_uri() + (f"#{fragment}" if fragment else "")
    return resource_link_block(name=path.name, uri=uri)


def show_log(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:] if log.exists() else ""


async def test_a_fix_streams_its_plan_asks_permission_and_keeps_it_on_disk(
    workspace: Path, tmp_path: Path
) -> None:
    target = workspace / TARGET
    before = target.read_bytes()
    client = RecordingClient(answer="allow-once")
    disk_when_asked: list[bytes] = []
    client.on_permission.append(lambda: disk_when_asked.append(target.read_bytes()))
    log = tmp_path / "agent.log"
    async with start_agent(client, log) as (conn, _):
        session = await conn.new_session(cwd=str(workspace))
        response = await asyncio.wait_for(
            conn.prompt(session_id=session.session_id, prompt=[text_block("fix"), link(target)]),
            PROMPT_TIMEOUT_S,
        )
    assert response.stop_reason == "end_turn", show_log(log)
    plans = client.of_kind("plan")
    assert plans and plans[-1].entries and plans[-1].entries[-1].status == "completed"
    started = client.of_kind("tool_call")
    assert len(started) == 1
    call = started[0]
    assert call.kind == "edit" and "fix" in call.title
    assert [loc.path for loc in call.locations] == [str(target)]  # "follow the agent"
    finished = [u for u in client.of_kind("tool_call_update") if u.content]
    assert finished and finished[-1].tool_call_id == call.tool_call_id
    assert finished[-1].status == "completed"
    diffs = [c for c in finished[-1].content if c.type == "diff"]
    assert [d.path for d in diffs] == [str(target)]
    assert BROKEN_CALL in diffs[0].old_text and FIXED_CALL in diffs[0].new_text
    assert diffs[0].old_text == before.decode()
    # Permission is asked before anything is kept: the disk is untouched while it is asked.
    assert len(client.permissions) == 1
    asked, options = client.permissions[0]
    assert asked.tool_call_id == call.tool_call_id
    assert {o.kind for o in options} == {"allow_once", "allow_always", "reject_once"}
    assert disk_when_asked == [before]
    fixed = target.read_text()
    assert FIXED_CALL in fixed and BROKEN_CALL not in fixed
    assert fixed == diffs[0].new_text
    messages = "".join(u.content.text for u in client.of_kind("agent_message_chunk"))
    assert "Kept the changes to inventory/http_client.py" in messages


async def test_a_save_on_disk_while_permission_is_asked_survives_the_kept_fix(
    workspace: Path, tmp_path: Path
) -> None:
    target = workspace / TARGET
    saved_line = "# saved in another editor while the agent asked\n"

    def user_saves() -> None:
        target.write_text(saved_line + target.read_text())

    for answer in ("allow-once", "reject"):
        original = target.read_text()
        client = RecordingClient(answer=answer)
        client.on_permission.append(user_saves)
        log = tmp_path / f"agent-{answer}.log"
        async with start_agent(client, log) as (conn, _):
            session = await conn.new_session(cwd=str(workspace))
            response = await asyncio.wait_for(
                conn.prompt(
                    session_id=session.session_id, prompt=[text_block("fix"), link(target)]
                ),
                PROMPT_TIMEOUT_S,
            )
        assert response.stop_reason == "end_turn", show_log(log)
        assert len(client.permissions) == 1
        after = target.read_text()
        if answer == "allow-once":  # the user's save and the fix, both
            assert after == saved_line + original.replace(BROKEN_CALL, FIXED_CALL)
            target.write_text(original)  # the next round starts from the sample again
        else:  # the user's save, and no fix
            assert after == saved_line + original


async def test_with_the_clients_fs_the_buffer_is_read_and_the_kept_text_written_back(
    workspace: Path, tmp_path: Path
) -> None:
    target = workspace / TARGET
    on_disk = target.read_bytes()
    # The editor holds an unsaved edit: the fix works on that buffer, not on the disk.
    buffer = "# edited in the editor, not saved\n" + on_disk.decode()
    client = RecordingClient(answer="allow-always", buffers={str(target): buffer})
    typed = "# typed while the agent asked\n"

    def user_types() -> None:  # in the editor's buffer, while the permission is asked
        assert client.buffers is not None
        client.buffers[str(target)] = typed + client.buffers[str(target)]

    client.on_permission.append(user_types)
    log = tmp_path / "agent.log"
    async with start_agent(client, log) as (conn, _):
        session = await conn.new_session(cwd=str(workspace))
        response = await asyncio.wait_for(
            conn.prompt(session_id=session.session_id, prompt=[text_block("fix"), link(target)]),
            PROMPT_TIMEOUT_S,
        )
        assert response.stop_reason == "end_turn", show_log(log)
        assert str(target) in client.reads
        assert list(client.writes) == [str(target)]
        written = client.writes[str(target)]
        assert written == typed + buffer.replace(BROKEN_CALL, FIXED_CALL)  # nothing typed lost
        assert target.read_bytes() == on_disk  # kept in the editor's buffer, not on disk
        # "Always keep" holds for the session: the next delegation is kept without asking.
        auth = workspace / "inventory" / "auth.py"
        second = await asyncio.wait_for(
            conn.prompt(session_id=session.session_id, prompt=[text_block("fix"), link(auth)]),
            PROMPT_TIMEOUT_S,
        )
        assert second.stop_reason == "end_turn", show_log(log)
    assert len(client.permissions) == 1
    assert "sha256" in client.writes[str(auth)]


async def test_a_rejected_fix_leaves_the_file_unchanged_byte_for_byte(
    workspace: Path, tmp_path: Path
) -> None:
    target = workspace / TARGET
    before = target.read_bytes()
    client = RecordingClient(answer="reject")
    log = tmp_path / "agent.log"
    async with start_agent(client, log) as (conn, _):
        session = await conn.new_session(cwd=str(workspace))
        response = await asyncio.wait_for(
            conn.prompt(
                session_id=session.session_id, prompt=[text_block("fix"), link(target, "L33-38")]
            ),
            PROMPT_TIMEOUT_S,
        )
    assert response.stop_reason == "end_turn", show_log(log)
    assert len(client.permissions) == 1
    assert any(
        c.type == "diff" for u in client.of_kind("tool_call_update") for c in u.content or []
    )
    assert target.read_bytes() == before
    messages = "".join(u.content.text for u in client.of_kind("agent_message_chunk"))
    assert "Rejected" in messages


async def test_a_cancelled_prompt_stops_its_task_and_keeps_nothing(
    workspace: Path, tmp_path: Path
) -> None:
    target = workspace / TARGET
    before = target.read_bytes()
    client = RecordingClient(answer=None)  # a permission asked after the cancel: "cancelled"
    log = tmp_path / "agent.log"
    async with start_agent(client, log) as (conn, _):
        session = await conn.new_session(cwd=str(workspace))
        prompt = asyncio.ensure_future(
            conn.prompt(session_id=session.session_id, prompt=[text_block("fix"), link(target)])
        )
        await asyncio.wait_for(client.wait_for_update("tool_call"), PROMPT_TIMEOUT_S)
        with pytest.raises(RequestError) as busy:  # one prompt at a time in a session
            await conn.prompt(session_id=session.session_id, prompt=[text_block("format")])
        assert busy.value.code == -32600 and "still working on a prompt" in str(busy.value)
        await conn.cancel(session_id=session.session_id)
        response = await asyncio.wait_for(prompt, PROMPT_TIMEOUT_S)
    assert response.stop_reason == "cancelled", show_log(log)
    outcomes = [u for u in client.of_kind("tool_call_update") if u.raw_output]
    assert outcomes and outcomes[-1].raw_output["state"] == "cancelled", show_log(log)
    assert outcomes[-1].status == "failed"
    assert not client.permissions
    assert target.read_bytes() == before


async def test_a_client_gone_while_asked_keeps_nothing_and_the_agent_exits(
    workspace: Path, tmp_path: Path
) -> None:
    target = workspace / TARGET
    before = target.read_bytes()
    client = RecordingClient(answer="never")
    asked = asyncio.Event()
    client.on_permission.append(asked.set)
    log = tmp_path / "agent.log"
    async with start_agent(client, log) as (conn, process):
        session = await conn.new_session(cwd=str(workspace))
        prompt = asyncio.ensure_future(
            conn.prompt(session_id=session.session_id, prompt=[text_block("fix"), link(target)])
        )
        await asyncio.wait_for(asked.wait(), PROMPT_TIMEOUT_S)
    # Leaving the block closed the agent's stdin with the permission still unanswered.
    assert process.returncode == 0, show_log(log)
    assert target.read_bytes() == before
    prompt.cancel()
    await asyncio.gather(prompt, return_exceptions=True)
    ledger = sqlite3.connect(workspace / ".delegation" / "ledger.sqlite3")
    kinds = [kind for (kind,) in ledger.execute("SELECT kind FROM events ORDER BY seq")]
    assert "plan.rejected" in kinds and kinds[-1] == "swarm.stopped"


async def test_bad_input_gets_clear_errors_and_the_agent_keeps_serving(
    workspace: Path, tmp_path: Path
) -> None:
    client = RecordingClient(answer="allow-once")
    log = tmp_path / "agent.log"
    outside = tmp_path / "outside.py"
    outside.write_text("import hashlib\nhashlib.sha1(b'x')\n")
    async with start_agent(client, log) as (conn, process):
        with pytest.raises(RequestError) as unknown:
            await conn.prompt(session_id="no-such-session", prompt=[text_block("fix")])
        assert unknown.value.code == -32602 and "unknown session" in str(unknown.value)
        session = await conn.new_session(cwd=str(workspace))
        sid = session.session_id
        bad_prompts = {
            "outside the workspace": [text_block("fix"), link(outside)],
            "no text": [link(workspace / TARGET)],
            "not supported": [
                text_block("fix"),
                ImageContentBlock(type="image", data="AAAA", mime_type="image/png"),
            ],
            "not a line range": [text_block("fix"), link(workspace / TARGET, "top")],
            "the file has": [text_block("fix"), link(workspace / TARGET, "L900-901")],
            "one file or the whole workspace": [
                text_block("fix"),
                link(workspace / TARGET),
                link(workspace / "inventory" / "auth.py"),
            ],
        }
        for expected, blocks in bad_prompts.items():
            with pytest.raises(RequestError) as refused:
                await conn.prompt(session_id=sid, prompt=blocks)  # type: ignore[arg-type]
            assert refused.value.code == -32602, expected
            assert expected in str(refused.value), (expected, str(refused.value))
        # A prompt that is not even a list of content blocks: the SDK's schema refuses it.
        with pytest.raises(RequestError) as malformed:
            await conn._conn.send_request(
                "session/prompt", {"sessionId": sid, "prompt": "fix everything"}
            )
        assert malformed.value.code == -32602
        with pytest.raises(RequestError) as relative:
            await conn.new_session(cwd="relative/folder")
        assert relative.value.code == -32602 and "absolute" in str(relative.value)
        # Plain language with no model configured: the swarm refuses it, saying why.
        refused_turn = await conn.prompt(
            session_id=sid, prompt=[text_block("explain this module"), link(workspace / TARGET)]
        )
        assert refused_turn.stop_reason == "refusal"
        said = client.of_kind("agent_message_chunk")[-1].content.text
        assert said.startswith("Not delegated: ") and "model" in said
        # Still serving: a valid delegation after all of that (an embedded buffer, no change).
        ids = workspace / "inventory" / "ids.py"
        embedded = EmbeddedResourceContentBlock(
            type="resource",
            resource=TextResourceContents(uri=ids.as_uri(), text=ids.read_text()),
        )
        response = await asyncio.wait_for(
            conn.prompt(session_id=sid, prompt=[text_block("fix"), embedded]), PROMPT_TIMEOUT_S
        )
        assert response.stop_reason == "end_turn", show_log(log)
        assert process.returncode is None
    assert not client.permissions  # nothing changed, nothing to ask about
    messages = "".join(u.content.text for u in client.of_kind("agent_message_chunk"))
    assert "Nothing changed" in messages


async def test_a_workspace_another_process_owns_is_refused_naming_it(
    workspace: Path, tmp_path: Path
) -> None:
    first, second = RecordingClient(), RecordingClient()
    async with start_agent(first, tmp_path / "first.log") as (conn, process):
        await conn.new_session(cwd=str(workspace))
        async with start_agent(second, tmp_path / "second.log") as (other, _):
            with pytest.raises(RequestError) as busy:
                await other.new_session(cwd=str(workspace))
        # The CLI meets the same lock: exit 3, naming the ACP agent that holds the workspace.
        run = await asyncio.create_subprocess_exec(
            str(AGENT), "run", str(workspace), "--task", "fix",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, run_err = await asyncio.wait_for(run.communicate(), PROMPT_TIMEOUT_S)
    assert busy.value.code == -32010
    assert f"in use by process {process.pid}" in str(busy.value)
    assert "delegation-machine acp" in str(busy.value)
    assert busy.value.data["owner"]["pid"] == process.pid
    assert run.returncode == 3
    assert f"in use by process {process.pid}" in run_err.decode()


MONEY = "inventory/money.py"
SIGNATURE = 'def format_money(amount: Decimal, currency: str = "EUR") -> str:\n'
DOCSTRING = '    """The amount with two decimals and thousands separators, then the currency."""\n'
MODEL_TURNS = [
    ScriptedTurn(content=json.dumps({"tool": "read_file", "path": MONEY})),
    ScriptedTurn(
        content=json.dumps(
            {
                "tool": "propose_edit",
                "path": MONEY,
                "old": SIGNATURE,
                "new": SIGNATURE + DOCSTRING,
                "description": "document format_money",
                "uses": [1],
            }
        )
    ),
    ScriptedTurn(
        content=json.dumps({"tool": "finish", "summary": "documented format_money", "uses": [2]})
    ),
]


def agent_turns_only(seen: RecordedRequest) -> ScriptedTurn:
    """The agent's turns by its trace length; anything else (a reviewer) refused."""
    if "# Task " not in json.dumps(seen.body["messages"]):
        return ScriptedTurn(status=400, error="this script answers only the agent")
    steps_so_far = len(re.findall(r"^%\d+ = ", seen.body["messages"][-1]["content"], re.M))
    return MODEL_TURNS[min(steps_so_far, len(MODEL_TURNS) - 1)]


async def test_a_model_delegation_sends_its_text_and_token_usage(
    workspace: Path, tmp_path: Path
) -> None:
    server = ScriptedServer(agent_turns_only).start()
    try:
        (workspace / ".delegation" / "config.toml").write_text(
            'check_level = "quick"\n[inference]\nprovider = "scripted"\n'
            f'base_url = "{server.base_url}"\nmodel = "m"\n'
        )
        target = workspace / MONEY
        first = target.read_text().splitlines().index(SIGNATURE.rstrip("\n")) + 1
        client = RecordingClient(answer="allow-once")
        log = tmp_path / "agent.log"
        async with start_agent(client, log) as (conn, _):
            session = await conn.new_session(cwd=str(workspace))
            response = await asyncio.wait_for(
                conn.prompt(
                    session_id=session.session_id,
                    prompt=[
                        text_block("document this function"),
                        link(target, f"L{first}-{first + 1}"),
                    ],
                ),
                PROMPT_TIMEOUT_S,
            )
    finally:
        server.stop()
    assert response.stop_reason == "end_turn", show_log(log)
    (call,) = client.of_kind("tool_call")
    assert call.locations[0].line == first - 1  # the selection's first line, 0-based
    usage = client.of_kind("usage_update")
    assert usage and usage[-1].used > 0 and usage[-1].size >= usage[-1].used
    assert response.usage is not None and response.usage.total_tokens == usage[-1].used
    messages = "".join(u.content.text for u in client.of_kind("agent_message_chunk"))
    assert "documented format_money" in messages  # the model's own words
    assert len(client.permissions) == 1
    assert DOCSTRING in target.read_text()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))

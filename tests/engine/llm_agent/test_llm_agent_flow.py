"""The LLM agent loop end to end against the scripted HTTP server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from delegation_machine.engine.agents.base import Agent, AgentFailure, apply_edits
from delegation_machine.engine.agents.llm import LLMAgent, ValidationGateFailure
from delegation_machine.engine.inference.backend import RetryPolicy
from delegation_machine.engine.inference.openai_compat import OpenAICompatibleBackend
from delegation_machine.engine.inference.scripted import ScriptedServer, ScriptedTurn
from delegation_machine.engine.inference.session import InferenceSession
from delegation_machine.engine.memory.symbols import SymbolIndex
from tests.engine.model_doubles import RecordingSleep

from .conftest import CALC, make_work, syntax_checker

Start = Callable[..., ScriptedServer]


def action(tool: str, **fields: object) -> ScriptedTurn:
    return ScriptedTurn(content=json.dumps({"tool": tool, **fields}))


def session_for(server: ScriptedServer, **kwargs: object) -> InferenceSession:
    backend = OpenAICompatibleBackend(
        base_url=server.base_url,
        model="m",
        sleep=RecordingSleep(),
        retry=RetryPolicy(max_retries=0),
        **kwargs,  # type: ignore[arg-type]
    )
    return InferenceSession(backend)


async def test_multi_turn_tool_calls_produce_mutations(
    scripted: Start, workspace: Path, index: SymbolIndex
) -> None:
    server = scripted(
        [
            action("search_symbols", query="ad"),
            action("read_symbol", name="add", uses=[1]),
            action("read_file", path="notes.py"),
            action(
                "propose_edit",
                path="calc.py",
                old="return a - b",
                new="return a + b",
                description="add, not subtract",
                uses=[2],
            ),
            action("run_checks", uses=[4]),
            action("finish", summary="add now adds", uses=[5]),
        ]
    )
    session = session_for(server)
    agent = LLMAgent("a1", session, checker=syntax_checker, trace_window=1, mask_window=None)
    assert isinstance(agent, Agent)
    result = await agent.run(make_work(workspace, index))
    await session.aclose()

    assert result.notes == "add now adds"
    (mutation,) = result.mutations
    assert (mutation.task_id, mutation.agent_id, mutation.path, mutation.base_version) == (
        "p1.1",
        "a1",
        "calc.py",
        3,
    )
    assert apply_edits(CALC, mutation.edits) == CALC.replace("a - b", "a + b")
    assert mutation.description == "add, not subtract"
    assert result.usage.tool_calls == 5
    assert result.usage.prompt_tokens == sum(r.prompt_tokens for r in server.requests)
    assert result.usage.cached_tokens == sum(r.cached_tokens for r in server.requests) > 0

    bodies = [r.body["messages"] for r in server.requests]
    assert len(bodies) == 6
    # Tool observations reach the model: the search found add's definition, read_symbol its body.
    assert "add (function) calc.py:1" in bodies[1][-1]["content"]
    assert "return a - b" in bodies[2][-1]["content"]
    # notes.py isn't a workspace file of this task, read via the snapshot only -> error text.
    assert "no file 'notes.py'" in bodies[3][-1]["content"]
    # The syntax check really ran on the edited text.
    assert "syntax: passed" in bodies[5][-1]["content"]
    # SSA pruning: at the last turn the live steps are %5 (window), %4 (an edit) and what they
    # use (%2, %1); the unused read_file step %3 is gone.
    last_trace = bodies[5][-1]["content"]
    for kept in ("%1 = search_symbols", "%2 = read_symbol", "%4 = propose_edit", "%5 = run_checks"):
        assert kept in last_trace
    assert "%3 =" not in last_trace
    assert agent.last_stats is not None and agent.last_stats.pruned_steps > 0
    # Every turn's prompt starts with the same shared prefix.
    assert len({json.dumps(b[0]) for b in bodies}) == 1


async def test_guided_json_schema_is_sent_with_every_turn(
    scripted: Start, workspace: Path, index: SymbolIndex
) -> None:
    server = scripted([action("finish", summary="nothing to do")])
    session = session_for(server)
    result = await LLMAgent("a1", session, checker=None).run(make_work(workspace, index))
    await session.aclose()
    assert result.mutations == ()
    schema = server.requests[0].body["response_format"]["json_schema"]["schema"]
    assert schema["discriminator"]["propertyName"] == "tool"


async def test_malformed_json_then_a_retry_that_succeeds(
    scripted: Start, workspace: Path, index: SymbolIndex
) -> None:
    server = scripted(
        [
            ScriptedTurn(content='{"tool": "propose_edit", "path": "calc.py", "old": '),
            action("propose_edit", path="calc.py", old="a - b", new="a + b"),
            ScriptedTurn(content='```json\n{"tool": "finish", "summary": "done"}\n```'),
        ]
    )
    session = session_for(server)
    agent = LLMAgent("a1", session, checker=None)
    result = await agent.run(make_work(workspace, index))
    await session.aclose()
    assert len(result.mutations) == 1
    assert agent.last_stats is not None and agent.last_stats.validation_retries == 1
    retry = server.requests[1].body["messages"]
    assert retry[-2] == {
        "role": "assistant",
        "content": '{"tool": "propose_edit", "path": "calc.py", "old": ',
    }
    assert "validation gate rejected" in retry[-1]["content"]
    assert "malformed JSON" in retry[-1]["content"]


async def test_schema_violation_names_the_json_path(
    scripted: Start, workspace: Path, index: SymbolIndex
) -> None:
    server = scripted(
        [
            action("read_file", path="calc.py", start_line="one"),
            action("finish", summary="ok"),
        ]
    )
    session = session_for(server)
    await LLMAgent("a1", session, checker=None).run(make_work(workspace, index))
    await session.aclose()
    assert "$.start_line" in server.requests[1].body["messages"][-1]["content"]


async def test_retries_exhausted_is_a_failure_verdict(
    scripted: Start, workspace: Path, index: SymbolIndex
) -> None:
    server = scripted([ScriptedTurn(content="I think the bug is in add.")] * 3)
    session = session_for(server)
    agent = LLMAgent("a1", session, checker=None, max_validation_retries=2)
    with pytest.raises(ValidationGateFailure) as caught:
        await agent.run(make_work(workspace, index))
    await session.aclose()
    assert len(server.requests) == 3
    verdict = caught.value.verdict
    assert (verdict.check, verdict.kind, verdict.task_id) == ("validation-gate", "failed", "p1.1")
    assert "3 time(s)" in verdict.reason


async def test_turn_limit_is_a_clear_failure(
    scripted: Start, workspace: Path, index: SymbolIndex
) -> None:
    server = scripted([action("read_file", path="calc.py")] * 2)
    session = session_for(server)
    with pytest.raises(AgentFailure, match="within 2 turns"):
        await LLMAgent("a1", session, checker=None, max_turns=2).run(make_work(workspace, index))
    await session.aclose()


async def test_budget_cap_stops_before_sending(
    scripted: Start, workspace: Path, index: SymbolIndex
) -> None:
    server = scripted([action("finish", summary="x")])
    session = session_for(server)
    with pytest.raises(AgentFailure, match="token budget is 100"):
        await LLMAgent("a1", session, budget=100, checker=None).run(make_work(workspace, index))
    await session.aclose()
    assert server.requests == []


async def test_cancellation_mid_stream(
    scripted: Start, workspace: Path, index: SymbolIndex
) -> None:
    server = scripted(
        [
            ScriptedTurn(
                content='{"tool": "finish", "summary": "never seen"}',
                chunk_chars=4,
                hold="mid_stream",
                hold_after_chunks=2,
            )
        ]
    )
    session = session_for(server)
    task = asyncio.create_task(
        LLMAgent("a1", session, checker=None).run(make_work(workspace, index))
    )
    assert await asyncio.to_thread(server.held.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(server.disconnected.wait, 10)
    await session.aclose()


async def test_two_agents_at_one_version_send_byte_identical_prefixes(
    scripted: Start, workspace: Path, index: SymbolIndex
) -> None:
    server = scripted([action("finish", summary="ok")] * 3)
    session = session_for(server)
    first = LLMAgent("a1", session, checker=None)
    second = LLMAgent("a2", session, checker=None)  # its own prefix catalog: bytes must agree
    await asyncio.gather(
        first.run(make_work(workspace, index, task_id="p1.1", instruction="fix add")),
        second.run(make_work(workspace, index, task_id="p1.2", instruction="document double")),
    )
    (workspace / "extra.py").write_text("def triple(x):\n    return 3 * x\n")
    index.update_file("extra.py", (workspace / "extra.py").read_text())
    await LLMAgent("a3", session, checker=None).run(
        make_work(workspace, index, task_id="p2.1", version=8)
    )
    await session.aclose()

    systems = [r.body["messages"][0]["content"].encode() for r in server.requests]
    deltas = [r.body["messages"][1]["content"] for r in server.requests]
    assert systems[0] == systems[1]
    assert deltas[0] != deltas[1]
    assert "# Workspace version 7" in systems[0].decode()
    assert systems[2] != systems[0] and "triple" in systems[2].decode()
    # The radix accounting saw the second agent reuse the first one's whole prefix.
    prefix_tokens = len(
        session.tokenizer.encode("<|system|>\n" + systems[0].decode() + "\n<|end|>\n")
    )
    observations = session.observations
    assert observations[1].matched_tokens >= prefix_tokens
    assert observations[1].reusable_tokens >= prefix_tokens - session.accounting.block_size
    # The two agents ran concurrently: whichever request went second reused the first's prefix.
    by_task = [session.ledger.task_summary(t) for t in ("p1.1", "p1.2")]
    second_sent = max(by_task, key=lambda s: s.predicted_reusable_tokens)
    assert second_sent.predicted_reusable_tokens == observations[1].reusable_tokens
    assert sorted(s.cached_tokens for s in by_task) == sorted(
        r.cached_tokens for r in server.requests[:2]
    )


async def test_an_invalid_context_package_is_refused(workspace: Path, index: SymbolIndex) -> None:
    from delegation_machine.engine.a2a import HandoffError

    work = make_work(workspace, index)
    bad = msgspec.structs.replace(
        work.package,
        goal=msgspec.structs.replace(work.package.goal, focus_paths=("../etc/passwd",)),
    )

    class NeverCalled:
        provider, model, supports_guided_json = "x", "x", False

    agent = LLMAgent("a1", NeverCalled(), checker=None)  # type: ignore[arg-type]
    with pytest.raises(HandoffError, match=r"agent.*focus_paths\[0\]"):
        await agent.run(msgspec.structs.replace(work, package=bad))

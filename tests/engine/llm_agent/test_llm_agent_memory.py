"""Working memory in the LLM agent loop, against the scripted HTTP server.

Old tool outputs are masked behind recall handles, their key facts reach the task's MEMORY.md
first, the agent pages one back in with `recall`, and between moves of the stepped boundary
every prompt extends the one before it (so a prefix cache keeps serving it). The read and
search tools go through the context funnel and the retrieval router, and a fault in either
reaches the caller.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from delegation_machine.engine.agents import llm_tools
from delegation_machine.engine.agents.base import AgentWork
from delegation_machine.engine.agents.llm import LLMAgent
from delegation_machine.engine.agents.llm_tools import AgentToolbox
from delegation_machine.engine.inference.backend import RetryPolicy
from delegation_machine.engine.inference.openai_compat import OpenAICompatibleBackend
from delegation_machine.engine.inference.scripted import (
    RecordedRequest,
    ScriptedServer,
    ScriptedTurn,
)
from delegation_machine.engine.inference.session import InferenceSession
from delegation_machine.engine.memory.embeddings import MiniLMScorer
from delegation_machine.engine.memory.symbols import SymbolIndex
from delegation_machine.engine.memory.working import EpisodicStore, mask_boundary
from tests.engine.memory.minilm import needs_minilm
from tests.engine.model_doubles import RecordingSleep

from .conftest import CALC, make_work

Start = Callable[..., ScriptedServer]
TRAILER = "\n\nReply with the next action as one JSON object."
HANDLE = re.compile(r"\[read_file output omitted: (\d+) lines; recall handle (pg-[0-9a-f]{16})\]")

SETTINGS = "\n".join(
    ["TIMEOUT_SECONDS = 30", "RETRIES = 4", ""]
    + [
        f"def fetch_page_{n}(session, url):\n    reply = session.get(url + '/{n}')\n"
        f"    return reply.json()['page_{n}']\n"
        for n in range(8)
    ]
)
LAYOUT = "\n".join(
    f"def column_{n}(table):\n    return [row[{n}] for row in table.rows if row]\n"
    for n in range(8)
)


def action(tool: str, **fields: object) -> ScriptedTurn:
    return ScriptedTurn(content=json.dumps({"tool": tool, **fields}))


def trace_of(request: RecordedRequest) -> str:
    """The trace message of a request, without the closing line that asks for the next action."""
    messages = request.body["messages"]
    assert len(messages) == 3, "the first request has no trace; later ones do"
    content: str = messages[-1]["content"]
    assert content.endswith(TRAILER)
    return content.removesuffix(TRAILER)


def session_for(server: ScriptedServer) -> InferenceSession:
    backend = OpenAICompatibleBackend(
        base_url=server.base_url, model="m", sleep=RecordingSleep(), retry=RetryPolicy(0)
    )
    return InferenceSession(backend)


def memory_work(workspace: Path, index: SymbolIndex) -> AgentWork:
    (workspace / "settings.py").write_text(SETTINGS, encoding="utf-8")
    (workspace / "layout.py").write_text(LAYOUT, encoding="utf-8")
    index.update_file("settings.py", SETTINGS)
    index.update_file("layout.py", LAYOUT)
    files = {"calc.py": CALC, "settings.py": SETTINGS, "layout.py": LAYOUT}
    return make_work(workspace, index, files=files)


def recalling_model(requests_seen: list[str]) -> Callable[[RecordedRequest], ScriptedTurn]:
    """Reads two files, recalls the first once it is masked, reads and searches, finishes."""

    def respond(request: RecordedRequest) -> ScriptedTurn:
        number = len(requests_seen) + 1
        text = request.body["messages"][-1]["content"]
        requests_seen.append(text)
        if number == 1:
            return action("read_file", path="settings.py")
        if number == 2:
            return action("read_file", path="layout.py")
        if number == 3:
            masked = HANDLE.search(text)
            assert masked is not None, "step 1 is past the boundary at request 3"
            return action("recall", handle=masked.group(2))
        if number == 4:
            return action("read_symbol", name="add")
        if number == 5:
            return action("search", question="who calls add")
        return action("finish", summary="looked around")

    return respond


async def test_old_outputs_are_masked_recalled_and_their_facts_kept(
    scripted: Start, workspace: Path, index: SymbolIndex
) -> None:
    seen: list[str] = []
    server = scripted(recalling_model(seen))
    session = session_for(server)
    agent = LLMAgent("a1", session, checker=None, mask_window=2, mask_step=2)
    work = memory_work(workspace, index)
    result = await agent.run(work)
    await session.aclose()
    assert result.notes == "looked around"
    requests = server.requests
    assert len(requests) == 6

    # Request 3: step 1 (settings.py) is past the boundary, step 2 (layout.py) is still whole.
    third = trace_of(requests[2])
    masked = HANDLE.search(third)
    assert masked is not None and int(masked.group(1)) == len(SETTINGS.splitlines())
    assert "TIMEOUT_SECONDS" not in third
    assert "return [row[7] for row in table.rows if row]" in third
    handle = masked.group(2)

    # The recall tool brought settings.py back in full, as step 3's output.
    fourth = trace_of(requests[3])
    assert "(recalled read_file output of step 1)" in fourth
    assert "TIMEOUT_SECONDS = 30" in fourth and "fetch_page_7" in fourth

    # The episodic store holds the page, and MEMORY.md its key facts, written before masking.
    memory_file = workspace / ".delegation" / "tasks" / "p1.1" / "MEMORY.md"
    memory = memory_file.read_text(encoding="utf-8")
    lines = len(SETTINGS.splitlines())
    assert f"## turn 1: read_file ({lines} lines, {handle})" in memory
    assert re.search(r"- configuration: 1 +TIMEOUT_SECONDS = 30", memory)
    assert EpisodicStore(memory_file.parent / "pages").get(handle).content.count("fetch_page_") == 8
    # Later requests mask steps 2 and 3 too (their outputs each once in MEMORY.md).
    assert memory.count("## turn 1:") == 1 and "## turn 2: read_file" in memory
    assert "## turn 3: recall" in memory
    assert agent.last_stats is not None and agent.last_stats.masked_outputs == 3
    assert agent.last_stats.pruned_steps == 0  # working memory masks; it drops no step

    # Search went through the retrieval router's graph route.
    sixth = trace_of(requests[5])
    assert "route: graph (callers: add)" in sixth and "calc.py:7" in sixth

    # Byte-stable between moves of the boundary; a move rewrites the trace once, not each turn.
    traces = [trace_of(r) for r in requests[1:]]
    for turn, (before, after) in enumerate(itertools.pairwise(traces), start=2):
        moved = mask_boundary(turn + 1, 2, 2) != mask_boundary(turn, 2, 2)
        assert after.startswith(before) != moved, f"request {turn} -> {turn + 1}"
    # ... so the prefix cache serves all of the previous prompt but its closing line.
    grew = requests[3]
    assert grew.cached_tokens >= requests[2].prompt_tokens - 64
    assert grew.cached_tokens > requests[2].cached_tokens


async def test_without_working_memory_nothing_is_masked(
    scripted: Start, workspace: Path, index: SymbolIndex
) -> None:
    server = scripted(
        [
            action("read_file", path="settings.py"),
            action("read_file", path="layout.py"),
            action("read_symbol", name="add"),
            action("finish", summary="done"),
        ]
    )
    session = session_for(server)
    agent = LLMAgent("a1", session, checker=None, mask_window=None)
    await agent.run(memory_work(workspace, index))
    await session.aclose()
    last = trace_of(server.requests[-1])
    assert "recall handle" not in last and "TIMEOUT_SECONDS = 30" in last
    assert not (workspace / ".delegation").exists()
    assert agent.last_stats is not None and agent.last_stats.masked_outputs == 0


async def test_recall_of_an_unknown_handle_says_so(workspace: Path, index: SymbolIndex) -> None:
    work = make_work(workspace, index)
    toolbox = AgentToolbox(work, memory=EpisodicStore())
    assert toolbox.recall("pg-0000000000000000").startswith("error: no masked output")
    off = AgentToolbox(work)
    assert off.recall("pg-0000000000000000").startswith("error: working memory is off")


BIG = (
    "\n".join(
        f"def handler_{n}(request, store):\n"
        f"    record = store.lookup(request.key_{n})\n"
        f"    if record is None:\n"
        f"        raise KeyError(request.key_{n})\n"
        f"    return record.render(width={n})\n"
        for n in range(80)
    )
    + "\n\ndef subtract_totals(a, b):\n    difference = a - b\n    return difference\n"
)


def big_work(workspace: Path, index: SymbolIndex, instruction: str) -> AgentWork:
    (workspace / "big.py").write_text(BIG, encoding="utf-8")
    index.update_file("big.py", BIG)
    return make_work(workspace, index, instruction=instruction, files={"big.py": BIG})


def test_a_large_file_is_read_through_the_funnel(workspace: Path, index: SymbolIndex) -> None:
    work = big_work(workspace, index, "subtract_totals returns the wrong sign")
    toolbox = AgentToolbox(work)
    shown = toolbox.read_file("big.py")
    assert shown.startswith("(context funnel: ")
    assert "def subtract_totals(a, b):" in shown and "difference = a - b" in shown
    assert "omitted" in shown and len(shown) < len(BIG) / 4
    exact = toolbox.read_file("big.py", 1, 5)  # an explicit range is read exactly
    assert exact.splitlines()[0] == "    1  def handler_0(request, store):"


def test_a_funnel_fault_reaches_the_caller(
    workspace: Path, index: SymbolIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("funnel bug")

    monkeypatch.setattr(llm_tools, "funnel", broken)
    toolbox = AgentToolbox(big_work(workspace, index, "fix subtract_totals"))
    with pytest.raises(RuntimeError, match="funnel bug"):
        toolbox.read_file("big.py")


@needs_minilm
def test_the_toolbox_funnel_uses_minilm_vectors(workspace: Path, index: SymbolIndex) -> None:
    # No word of the goal is in subtract_totals: BM25 alone cannot find it, the vectors do.
    work = big_work(workspace, index, "the gap between two amounts has the wrong sign")
    scorer = MiniLMScorer()
    with_vectors = AgentToolbox(work, scorer=scorer).read_file("big.py")
    assert scorer.embedded > 0
    assert "def subtract_totals(a, b):" in with_vectors
    lexical = AgentToolbox(work).read_file("big.py")
    assert "def subtract_totals(a, b):" not in lexical

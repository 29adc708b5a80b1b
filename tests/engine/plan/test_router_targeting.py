"""A natural-language request on one file or a selection goes straight to one agent.

The live swarm with the scripted OpenAI-compatible server as its model (a real local HTTP
server standing in for vLLM or a hosted API): what the model is asked shows whether the
planner ran. A request on a file (no template fits) becomes one LLM task whose prompt
carries the selection; a workspace-wide request still goes to the model planner.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from delegation_machine.engine.inference.scripted import (
    RecordedRequest,
    ScriptedServer,
    ScriptedTurn,
)
from delegation_machine.engine.protocol import DelegationRequest, Point, Span
from delegation_machine.engine.swarm import Swarm

ROOT = Path(__file__).resolve().parents[3]
TARGET = "inventory/money.py"
SIGNATURE = 'def format_money(amount: Decimal, currency: str = "EUR") -> str:\n'
DOCSTRING = '    """The amount with two decimals and thousands separators, then the currency."""\n'


def action(tool: str, **fields: object) -> ScriptedTurn:
    return ScriptedTurn(content=json.dumps({"tool": tool, **fields}))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    target = tmp_path / "inventory"
    shutil.copytree(
        ROOT / "samples" / "inventory",
        target,
        ignore=shutil.ignore_patterns(".delegation", "__pycache__"),
    )
    return target


@pytest.fixture
def model_server(request: pytest.FixtureRequest) -> Iterator[ScriptedServer]:
    server = ScriptedServer(request.param).start()
    yield server
    server.stop()


def model_swarm(workspace: Path, server: ScriptedServer) -> Swarm:
    inference = {"provider": "scripted", "baseUrl": server.base_url, "model": "m"}
    return Swarm(workspace, editor_settings={"agents": 1, "inference": inference}, watch=False)


AGENT_TURNS = [
    action("read_file", path=TARGET),
    action(
        "propose_edit",
        path=TARGET,
        old=SIGNATURE,
        new=SIGNATURE + DOCSTRING,
        description="say what format_money returns",
        uses=[1],
    ),
    action("finish", summary="format_money says what it returns", uses=[2]),
]


def agent_then_refuse(seen: RecordedRequest) -> ScriptedTurn:
    """The agent's turns, in order (again from the start for a retry); any other request
    (after the agent: a reviewer) is refused, so only the routing decides what this sees."""
    if "# Task " not in json.dumps(seen.body["messages"]):
        return ScriptedTurn(status=400, error="this script answers only the agent")
    steps_so_far = len(re.findall(r"^%\d+ = ", seen.body["messages"][-1]["content"], re.M))
    return AGENT_TURNS[min(steps_so_far, len(AGENT_TURNS) - 1)]


@pytest.mark.parametrize("model_server", [agent_then_refuse], indirect=True)
async def test_a_request_on_a_selection_skips_the_planner(
    workspace: Path, model_server: ScriptedServer
) -> None:
    lines = (workspace / TARGET).read_text().splitlines()
    first = lines.index(SIGNATURE.rstrip("\n"))
    selection = Span(Point(first, 0), Point(first + 1, len(lines[first + 1])))
    swarm = model_swarm(workspace, model_server)
    await swarm.start()
    try:
        plan_id = await swarm.submit(
            DelegationRequest(
                instruction="explain in the code what this function returns",
                path=TARGET,
                span=selection,
            )
        )
        final = await swarm.wait(plan_id, timeout=120)
        tasks = swarm.board.plan_tasks(plan_id)
    finally:
        await swarm.stop()

    assert [(t.spec.kind, t.spec.paths) for t in tasks] == [("llm", (TARGET,))]
    where = f"{TARGET} lines {first + 1}-{first + 2}"
    assert tasks[0].spec.instruction.startswith(f"In {where}: explain in the code")
    prompts = [json.dumps(r.body["messages"]) for r in model_server.requests]
    assert not any("# Planning" in prompt for prompt in prompts)  # the planner was never asked
    assert "# Task " in prompts[0] and f"(selection: lines {first + 1}-{first + 2})" in prompts[0]
    assert len([p for p in prompts if "# Task " in p]) >= len(AGENT_TURNS)  # the agent ran
    assert final.finished


PLAN_TURNS = [
    ScriptedTurn(
        content=json.dumps(
            {"tasks": [{"id": "1", "instruction": "check it", "kind": "check", "paths": [TARGET]}]}
        )
    )
]


@pytest.mark.parametrize("model_server", [PLAN_TURNS], indirect=True)
async def test_a_workspace_wide_request_still_goes_to_the_planner(
    workspace: Path, model_server: ScriptedServer
) -> None:
    swarm = model_swarm(workspace, model_server)
    await swarm.start()
    try:
        plan_id = await swarm.submit(DelegationRequest(instruction="make the money code safer"))
        await swarm.wait(plan_id, timeout=120)
        tasks = swarm.board.plan_tasks(plan_id)
    finally:
        await swarm.stop()

    assert len(model_server.requests) == 1
    assert "# Planning" in json.dumps(model_server.requests[0].body["messages"])
    assert [(t.spec.kind, t.spec.paths) for t in tasks] == [("check", (TARGET,))]

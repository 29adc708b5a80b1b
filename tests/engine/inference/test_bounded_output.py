"""Bounded structured output: every schema the model answers in bounds its strings and arrays,
max_tokens is sized per kind of reply, and a reply cut off at its cap is one failed gate
attempt with feedback, not a silent ramble. Against the scripted OpenAI-compatible server.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast

import msgspec
import pytest

from delegation_machine.engine.agents.llm_tools import (
    MAX_SUMMARY_CHARS,
    AgentAction,
    Finish,
    action_schema,
)
from delegation_machine.engine.inference.backend import ChatMessage, ChatRequest, RetryPolicy
from delegation_machine.engine.inference.gate import (
    GateFailure,
    complete_validated,
    unbounded_fields,
)
from delegation_machine.engine.inference.openai_compat import OpenAICompatibleBackend
from delegation_machine.engine.inference.scripted import ScriptedServer, ScriptedTurn
from delegation_machine.engine.inference.session import InferenceSession
from delegation_machine.engine.plan.planner import PLAN_REPLY_TOKENS, PlanDraft, plan_request
from delegation_machine.engine.protocol import DelegationRequest
from delegation_machine.engine.supervise.review import ReviewAnswer

Start = Callable[..., ScriptedServer]
FINISH = json.dumps({"tool": "finish", "summary": "done"})


def session_for(server: ScriptedServer) -> InferenceSession:
    return InferenceSession(
        OpenAICompatibleBackend(
            base_url=server.base_url, model=server.model, retry=RetryPolicy(max_retries=0)
        )
    )


def ask(max_tokens: int = 300) -> ChatRequest:
    return ChatRequest(
        messages=(ChatMessage("system", "rules", True), ChatMessage("user", "document f")),
        max_tokens=max_tokens,
    )


@pytest.mark.parametrize(
    "schema",
    [action_schema(), msgspec.json.schema(PlanDraft), msgspec.json.schema(ReviewAnswer)],
    ids=["agent-action", "plan", "review"],
)
def test_every_schema_the_model_answers_in_is_bounded(schema: dict[str, Any]) -> None:
    assert unbounded_fields(schema) == []


def test_an_unbounded_schema_is_reported() -> None:
    class Loose(msgspec.Struct):
        names: list[str]

    assert unbounded_fields(msgspec.json.schema(Loose)) == [
        "$defs.Loose.names",
        "$defs.Loose.names.items",
    ]


async def test_a_reply_cut_at_its_cap_is_one_failed_attempt(scripted: Start) -> None:
    ramble = '{"tool": "finish", "summary": "' + "fini shi " * 200
    server = scripted(
        [ScriptedTurn(content=ramble, finish_reason="length"), ScriptedTurn(content=FINISH)]
    )
    session = session_for(server)
    validated = await complete_validated(
        session, ask(max_tokens=300), cast(Any, AgentAction), what="action", max_retries=2
    )
    await session.aclose()
    assert validated.value == Finish(summary="done") and validated.attempts == 2
    retry = server.requests[1].body["messages"]
    assert "cut off at its limit of 300 output tokens" in retry[-1]["content"]
    assert "'length'" in retry[-1]["content"]
    assert len(retry[-2]["content"]) < 500 and retry[-2]["content"].startswith(ramble[:100])


async def test_a_reply_that_parses_but_hit_the_cap_is_still_refused(scripted: Start) -> None:
    """Guided decoding may close the JSON exactly at the cap: still not taken as an answer."""
    server = scripted([ScriptedTurn(content=FINISH, finish_reason="length")] * 2)
    session = session_for(server)
    with pytest.raises(GateFailure, match=r"failed validation 2 time.*cut off at its limit"):
        await complete_validated(
            session, ask(), cast(Any, AgentAction), what="action", max_retries=1
        )
    await session.aclose()


async def test_a_string_over_its_bound_fails_the_gate_naming_the_field(scripted: Start) -> None:
    long_summary = json.dumps({"tool": "finish", "summary": "x" * (MAX_SUMMARY_CHARS + 1)})
    server = scripted([ScriptedTurn(content=long_summary), ScriptedTurn(content=FINISH)])
    session = session_for(server)
    validated = await complete_validated(
        session, ask(), cast(Any, AgentAction), what="action", max_retries=1
    )
    await session.aclose()
    assert validated.attempts == 2
    feedback = server.requests[1].body["messages"][-1]["content"]
    assert f"length <= {MAX_SUMMARY_CHARS}" in feedback and "$.summary" in feedback


async def test_the_planner_asks_for_a_bounded_plan_within_its_reply_room(
    scripted: Start,
) -> None:
    plan = json.dumps({"tasks": [{"id": "1", "instruction": "do it", "paths": ["m.py"]}]})
    server = scripted([ScriptedTurn(content=plan)])
    session = session_for(server)
    await plan_request(
        DelegationRequest(instruction="split this module in two"),
        backend=session,
        plan_id="p1",
        max_output_tokens=4096,
    )
    await session.aclose()
    body = server.requests[0].body
    assert body["max_tokens"] == PLAN_REPLY_TOKENS
    schema = body["response_format"]["json_schema"]["schema"]
    assert unbounded_fields(schema) == []
    assert schema["$defs"]["PlanDraft"]["properties"]["tasks"]["maxItems"] > 0

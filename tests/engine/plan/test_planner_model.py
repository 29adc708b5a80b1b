"""plan_request: built-ins and templates without a model; the model's plan through the gate."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from delegation_machine.engine.inference.backend import RetryPolicy
from delegation_machine.engine.inference.openai_compat import OpenAICompatibleBackend
from delegation_machine.engine.inference.scripted import ScriptedServer, ScriptedTurn
from delegation_machine.engine.plan.planner import PlanningFailed, PlanningUnavailable, plan_request
from delegation_machine.engine.protocol import DelegationRequest


@pytest.fixture
def server_factory() -> Iterator[list[ScriptedServer]]:
    servers: list[ScriptedServer] = []
    yield servers
    for server in servers:
        server.stop()


def _backend(
    servers: list[ScriptedServer], turns: list[ScriptedTurn]
) -> tuple[ScriptedServer, OpenAICompatibleBackend]:
    server = ScriptedServer(turns).start()
    servers.append(server)
    return server, OpenAICompatibleBackend(
        base_url=server.base_url, model="m", retry=RetryPolicy(max_retries=0)
    )


def _plan(*tasks: dict[str, object]) -> ScriptedTurn:
    return ScriptedTurn(content=json.dumps({"tasks": list(tasks)}))


async def test_templates_and_builtins_need_no_backend() -> None:
    graph = await plan_request(
        DelegationRequest(instruction="write tests for parse", path="m.py"), plan_id="p"
    )
    assert [graph.task(t).kind for t in graph.topological_order()] == ["llm"]
    rename = await plan_request(
        DelegationRequest(instruction="rename old_name new_name", kind="rename", path="m.py"),
        plan_id="r",
    )
    assert rename.task("r.1").arguments == {"old": "old_name", "new": "new_name"}


async def test_natural_language_without_backend_names_the_builtins() -> None:
    with pytest.raises(PlanningUnavailable, match="rename OLD NEW"):
        await plan_request(DelegationRequest(instruction="split this module in two", path="m.py"))


async def test_model_plan_becomes_a_task_graph(server_factory: list[ScriptedServer]) -> None:
    server, backend = _backend(
        server_factory,
        [
            _plan(
                {"id": "a", "instruction": "move helpers to util.py", "paths": ["util.py", "m.py"]},
                {
                    "id": "b",
                    "instruction": "update imports in app.py",
                    "paths": ["app.py"],
                    "depends_on": ["a"],
                },
                {
                    "id": "c",
                    "instruction": "run the checks",
                    "kind": "check",
                    "paths": ["app.py"],
                    "depends_on": ["b"],
                },
            )
        ],
    )
    graph = await plan_request(
        DelegationRequest(instruction="split this module in two", path="m.py"),
        backend=backend,
        plan_id="p7",
        repo_map="m.py\n  function helper (line 1)",
    )
    await backend.aclose()
    assert graph.topological_order() == ["p7.1", "p7.2", "p7.3"]
    assert graph.task("p7.2").inputs == ("task:p7.1",)
    assert graph.task("p7.1").outputs == ("task:p7.1", "file:util.py", "file:m.py")
    assert graph.task("p7.3").outputs == ("task:p7.3",)
    assert graph.edges() == [("p7.1", "p7.2", 300), ("p7.2", "p7.3", 300)]
    body = server.requests[0].body
    assert "function helper" in body["messages"][0]["content"]  # the shared prefix
    assert body["response_format"]["json_schema"]["schema"]["$ref"].endswith("PlanDraft")


async def test_a_cyclic_plan_is_sent_back_then_fixed(server_factory: list[ScriptedServer]) -> None:
    server, backend = _backend(
        server_factory,
        [
            _plan(
                {"id": "a", "instruction": "x", "depends_on": ["b"]},
                {"id": "b", "instruction": "y", "depends_on": ["a"]},
            ),
            _plan(
                {"id": "a", "instruction": "x"},
                {"id": "b", "instruction": "y", "depends_on": ["a"]},
            ),
        ],
    )
    graph = await plan_request(
        DelegationRequest(instruction="do two things"), backend=backend, plan_id="q"
    )
    await backend.aclose()
    assert graph.topological_order() == ["q.1", "q.2"]
    assert "cycle" in server.requests[1].body["messages"][-1]["content"]


async def test_plan_failure_after_retries(server_factory: list[ScriptedServer]) -> None:
    _, backend = _backend(
        server_factory,
        [
            _plan({"id": "a", "instruction": "x", "depends_on": ["zzz"]}),
            ScriptedTurn(content="not json"),
            _plan({"id": "a", "instruction": "x", "paths": ["../outside.py"]}),
        ],
    )
    with pytest.raises(PlanningFailed) as caught:
        await plan_request(DelegationRequest(instruction="do it"), backend=backend, max_retries=2)
    await backend.aclose()
    assert caught.value.verdict.kind == "failed"
    assert "workspace-relative" in caught.value.verdict.reason


async def test_planned_acceptance_criteria_are_validated_and_carried_to_the_task(
    server_factory: list[ScriptedServer],
) -> None:
    criteria = [
        {"check": "tests-pass", "tests": ["tests/test_util.py"]},
        {"check": "symbol-exists", "name": "helper", "path": "util.py"},
        {"check": "review", "question": "Are the helpers gone from m.py?"},
    ]
    server, backend = _backend(
        server_factory,
        [
            _plan(
                {"id": "a", "instruction": "x", "acceptance": [{"check": "review", "question": ""}]}
            ),
            _plan({"id": "a", "instruction": "move helpers", "acceptance": criteria}),
        ],
    )
    graph = await plan_request(
        DelegationRequest(instruction="split this module in two"), backend=backend, plan_id="p"
    )
    await backend.aclose()
    assert graph.task("p.1").arguments == {"acceptance": criteria}
    assert len(server.requests) == 2  # the empty question was sent back through the gate
    assert "acceptance[0]" in server.requests[1].body["messages"][-1]["content"]

"""Context window and bounded output from the command line, against the scripted server.

Through the real `delegation-machine run`: a prompt that cannot fit the model's window fails
with one line saying so and what to configure, and nothing is sent; a model that rambles to
its output cap fails the task cleanly after its gate attempts (or the planning, on the
workspace-wide path); a model planner's HTTP 401 is one 'error:' line and a plan.refused event.
Every case exits 1 with no traceback and leaves the workspace as it was.
"""

from __future__ import annotations

import json
from pathlib import Path

from delegation_machine.engine.inference.scripted import ScriptedServer, ScriptedTurn
from tests.server.test_cli_model_faults import (
    TARGET,
    assert_clean_failure,
    configure,
    ledger_events,
    run_cli,
    snapshot,
    workspace,
)

__all__ = ["workspace"]  # the fixture, shared with the model-fault tests


def test_a_prompt_that_cannot_fit_fails_before_anything_is_sent(workspace: Path) -> None:
    with ScriptedServer([ScriptedTurn(content="never")], max_model_len=400) as server:
        configure(workspace, server.base_url)
        before = snapshot(workspace)
        result = run_cli(workspace, "--file", TARGET, "--task", "add type hints")
    line = assert_clean_failure(
        result, "does not fit the model's context window of 400 tokens", "Nothing was sent"
    )
    assert "max_model_len reported by" in line and "inference.context_window" in line
    assert server.requests == []
    (failure,) = ledger_events(workspace, "model.failed")
    assert failure["error"] == "BackendContextOverflow" and failure["retryable"] is False
    assert snapshot(workspace) == before


def test_a_model_that_rambles_to_its_cap_fails_the_task_cleanly(workspace: Path) -> None:
    ramble = '{"tool": "finish", "summary": "' + "fini shi " * 50
    turns = [ScriptedTurn(content=ramble, finish_reason="length")] * 3
    with ScriptedServer(turns, max_model_len=4096) as server:
        configure(workspace, server.base_url, max_validation_retries=2)
        before = snapshot(workspace)
        result = run_cli(workspace, "--file", TARGET, "--task", "add type hints")
    line = assert_clean_failure(result, "failed validation 3 time(s)", "cut off at its limit")
    assert line.startswith("failed:")
    assert len(server.requests) == 3
    assert all(r.body["max_tokens"] == 1024 for r in server.requests)  # a quarter of 4,096
    (failure,) = ledger_events(workspace, "model.failed")
    assert failure["error"] == "GateFailure" and failure["attempts"] == 3
    assert "cut off at its limit of 1024" in str(failure["reason"])
    assert [f["state"] for f in ledger_events(workspace, "plan.finished")] == ["failed"]
    assert snapshot(workspace) == before


def test_a_planner_that_rambles_to_its_cap_refuses_the_plan(workspace: Path) -> None:
    ramble = '{"tasks": [{"id": "1", "instruction": "' + "and then " * 80
    turns = [ScriptedTurn(content=ramble, finish_reason="length")] * 2
    with ScriptedServer(turns) as server:
        configure(workspace, server.base_url, max_validation_retries=1)
        before = snapshot(workspace)
        result = run_cli(workspace, "--task", "tidy up the error handling everywhere")
    line = assert_clean_failure(result, "could not plan this request", "cut off at its limit")
    assert line.startswith("error:")
    assert [r.body["max_tokens"] for r in server.requests] == [768, 768]
    schema = server.requests[0].body["response_format"]["json_schema"]["schema"]
    assert "maxItems" in json.dumps(schema) and "maxLength" in json.dumps(schema)
    (refused,) = ledger_events(workspace, "plan.refused")
    assert "cut off at its limit" in str(refused["reason"])
    assert snapshot(workspace) == before


def test_a_planner_refused_with_401_is_one_line_and_recorded(workspace: Path) -> None:
    with ScriptedServer([ScriptedTurn(status=401, error="invalid api key")]) as server:
        configure(workspace, server.base_url)
        before = snapshot(workspace)
        result = run_cli(workspace, "--task", "tidy up the error handling everywhere")
    assert_clean_failure(result, "HTTP 401", "api_key_env", server.base_url)
    assert len(server.requests) == 1  # a refusal is not retried
    (refused,) = ledger_events(workspace, "plan.refused")
    assert "HTTP 401" in str(refused["reason"])
    assert snapshot(workspace) == before

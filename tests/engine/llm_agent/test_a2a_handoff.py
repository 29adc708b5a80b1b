"""A2A Context Package hand-offs: JSON-RPC 2.0 envelopes validated at every boundary."""

from __future__ import annotations

import json

import msgspec
import pytest

from delegation_machine.engine.a2a import (
    HandoffError,
    cross,
    hand_off,
    package_for_task,
    receive_handoff,
)
from delegation_machine.engine.protocol import ContextPackage, DelegationRequest


def _package() -> ContextPackage:
    return package_for_task(
        task_id="p1.1",
        plan_id="p1",
        kind="llm",
        instruction="fix add",
        request=DelegationRequest(instruction="fix add", path="calc.py"),
        workspace_version=3,
        paths=["calc.py", "tests/test_calc.py"],
        inputs=["file:calc.py"],
        outputs=["file:calc.py"],
    )


def test_round_trip_through_every_boundary() -> None:
    package = _package()
    assert package.goal.focus_paths == ("calc.py",)
    for method in ("plan.submit", "task.assign", "task.review"):
        assert cross(package, method=method, request_id=7) == package
    envelope = json.loads(hand_off(package, method="task.assign", request_id="r1"))
    assert (
        envelope["jsonrpc"] == "2.0"
        and envelope["id"] == "r1"
        and envelope["method"] == "task.assign"
    )


def _tampered(path: list[str | int], value: object) -> bytes:
    envelope = json.loads(hand_off(_package(), method="task.assign", request_id=1))
    target = envelope
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return json.dumps(envelope).encode()


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        (["jsonrpc"], "1.0", "$.jsonrpc"),
        (["params", "manifest", "task_id"], "  ", "$.params.manifest.task_id"),
        (["params", "manifest", "inputs"], ["file:a", "file:a"], "$.params.manifest.inputs[1]"),
        (
            ["params", "environment", "workspace_version"],
            -1,
            "$.params.environment.workspace_version",
        ),
        (["params", "environment", "paths"], ["/etc/passwd"], "$.params.environment.paths[0]"),
        (["params", "goal", "focus_paths"], ["other.py"], "$.params.goal.focus_paths[0]"),
        (["params", "audit", "parent_task"], "p1.1", "$.params.audit.parent_task"),
        (["params", "manifest", "outputs"], "file:x", "$.params.manifest.outputs"),
        (["method"], "task.review", "$.method"),
    ],
)
def test_a_bad_envelope_is_refused_with_its_json_path(
    path: list[str | int], value: object, where: str
) -> None:
    with pytest.raises(HandoffError) as caught:
        receive_handoff(_tampered(path, value), stage="agent")
    assert caught.value.path == where
    assert caught.value.stage == "agent"
    assert where in str(caught.value)


def test_malformed_json_and_unknown_method() -> None:
    with pytest.raises(HandoffError, match="malformed JSON"):
        receive_handoff(b"{nope", stage="supervisor")
    with pytest.raises(HandoffError, match="unknown method"):
        hand_off(_package(), method="task.teleport")


def test_the_sender_refuses_an_invalid_package_too() -> None:
    bad = msgspec.structs.replace(
        _package(), manifest=msgspec.structs.replace(_package().manifest, plan_id="")
    )
    with pytest.raises(HandoffError, match=r"task.review.*|supervisor"):
        hand_off(bad, method="task.review")


def test_dict_params_from_json_rpc_are_validated() -> None:
    package = _package()
    envelope = json.loads(hand_off(package, method="plan.submit"))
    assert receive_handoff(envelope, stage="planner").params == package

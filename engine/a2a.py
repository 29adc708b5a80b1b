"""Validation gates for the A2A Context Package at every hand-off between the three branches.

Owns the JSON-RPC 2.0 hand-off: `hand_off` encodes a ContextPackage into a `JsonRpcEnvelope`,
and `receive_handoff` decodes and validates one on the receiving side (schema by msgspec, then
the semantic rules below). Invariant: a package that crosses planner -> agent -> supervisor is
well-formed at every boundary, or the hand-off raises `HandoffError` naming the stage and the
JSON path; nothing half-valid is passed on.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from delegation_machine.engine.protocol import (
    AuditTrail,
    ContextPackage,
    DelegationRequest,
    EnvironmentSnapshot,
    GoalHint,
    JsonRpcEnvelope,
    ProtocolError,
    TaskManifest,
    convert,
    decode_json,
    encode_json,
)

Stage = Literal["planner", "agent", "supervisor"]

# The method names of the hand-offs, by the branch that receives them.
METHODS: dict[str, Stage] = {
    "plan.submit": "planner",  # user/server -> planner (Legislative)
    "task.assign": "agent",  # planner/scheduler -> agent (Executive)
    "task.review": "supervisor",  # agent -> supervisor (Judicial)
}


class HandoffError(ProtocolError):
    """A Context Package was refused at a boundary; `stage` says which one."""

    def __init__(self, message: str, path: str, stage: str) -> None:
        super().__init__(f"hand-off to {stage} refused at {path}: {message}", path)
        self.stage = stage


def _check_path(value: str, where: str, stage: str) -> None:
    if not value or value.startswith("/") or "\\" in value or ".." in value.split("/"):
        raise HandoffError(f"{value!r} is not a workspace-relative POSIX path", where, stage)


def _check_tags(tags: Iterable[str], where: str, stage: str) -> None:
    seen: set[str] = set()
    for number, tag in enumerate(tags):
        if not tag:
            raise HandoffError("empty tag", f"{where}[{number}]", stage)
        if tag in seen:
            raise HandoffError(f"duplicate tag {tag!r}", f"{where}[{number}]", stage)
        seen.add(tag)


def validate_package(package: ContextPackage, *, stage: str) -> ContextPackage:
    """The semantic rules msgspec's schema cannot express."""
    manifest, env = package.manifest, package.environment
    for field in ("task_id", "plan_id", "kind"):
        if not getattr(manifest, field).strip():
            raise HandoffError("must not be empty", f"$.params.manifest.{field}", stage)
    _check_tags(manifest.inputs, "$.params.manifest.inputs", stage)
    _check_tags(manifest.outputs, "$.params.manifest.outputs", stage)
    if env.workspace_version < 0:
        raise HandoffError("must be >= 0", "$.params.environment.workspace_version", stage)
    for number, path in enumerate(env.paths):
        _check_path(path, f"$.params.environment.paths[{number}]", stage)
    for number, path in enumerate(package.goal.focus_paths):
        where = f"$.params.goal.focus_paths[{number}]"
        _check_path(path, where, stage)
        if env.paths and path not in env.paths:
            raise HandoffError(f"{path!r} is not among environment.paths", where, stage)
    if package.audit.created_at <= 0:
        raise HandoffError("must be a positive timestamp", "$.params.audit.created_at", stage)
    if package.audit.parent_task == manifest.task_id:
        raise HandoffError("a task cannot be its own parent", "$.params.audit.parent_task", stage)
    return package


def _check_method(method: str, stage: str) -> None:
    expected = METHODS.get(method)
    if expected is None:
        raise HandoffError(
            f"unknown method {method!r} (known: {', '.join(METHODS)})", "$.method", stage
        )
    if expected != stage:
        raise HandoffError(f"method {method!r} is addressed to {expected}", "$.method", stage)


def hand_off(package: ContextPackage, *, method: str, request_id: str | int | None = None) -> bytes:
    """Validate on the sending side and encode the JSON-RPC 2.0 envelope."""
    stage = METHODS.get(method, "unknown")
    _check_method(method, stage)
    validate_package(package, stage=stage)
    return encode_json(JsonRpcEnvelope(method=method, params=package, id=request_id))


def receive_handoff(data: bytes | str | Mapping[str, Any], *, stage: Stage) -> JsonRpcEnvelope:
    """Decode and validate an envelope on the receiving side; raise HandoffError otherwise."""
    try:
        if isinstance(data, Mapping):
            envelope = convert(dict(data), JsonRpcEnvelope)
        else:
            envelope = decode_json(data, JsonRpcEnvelope)
    except HandoffError:
        raise
    except ProtocolError as exc:
        raise HandoffError(str(exc).split(" - at ")[0], exc.path, stage) from None
    _check_method(envelope.method, stage)
    validate_package(envelope.params, stage=stage)
    return envelope


def cross(
    package: ContextPackage, *, method: str, request_id: str | int | None = None
) -> ContextPackage:
    """Send and receive in one step (in-process boundaries): what the receiver will see."""
    stage = METHODS.get(method)
    if stage is None:
        raise HandoffError(f"unknown method {method!r}", "$.method", "unknown")
    return receive_handoff(
        hand_off(package, method=method, request_id=request_id), stage=stage
    ).params


def package_for_task(
    *,
    task_id: str,
    plan_id: str,
    kind: str,
    instruction: str,
    request: DelegationRequest,
    workspace_version: int,
    paths: Iterable[str] = (),
    inputs: Iterable[str] = (),
    outputs: Iterable[str] = (),
    decision_records: Iterable[str] = (),
    symbols: Iterable[str] = (),
    parent_task: str | None = None,
    origin: str = "lsp",
) -> ContextPackage:
    """Build the package the planner hands to an agent (validated)."""
    path_tuple = tuple(dict.fromkeys(paths))
    package = ContextPackage(
        manifest=TaskManifest(task_id, plan_id, kind, instruction, tuple(inputs), tuple(outputs)),
        environment=EnvironmentSnapshot(
            workspace_version=workspace_version,
            paths=path_tuple,
            decision_records=tuple(decision_records),
        ),
        goal=GoalHint(
            text=request.instruction,
            focus_paths=tuple(p for p in (request.path,) if p and p in path_tuple),
            symbols=tuple(symbols),
        ),
        audit=AuditTrail(
            requested_by=request.requested_by,
            created_at=time.time(),
            parent_task=parent_task,
            origin=origin,
        ),
    )
    return validate_package(package, stage="planner")

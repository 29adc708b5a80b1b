"""Wire types for everything that crosses a boundary in the engine.

Owns the msgspec Structs exchanged between the planner, scheduler, agents, the CodeCRDT,
supervisors, the ledger and the server. Positions inside the engine are Python string
indices (Unicode code points) or (line, column-in-code-points) pairs; the state layer converts
to UTF-8 bytes for pycrdt and the server converts to the client's position encoding.
Decoding untrusted input never raises anything but `ProtocolError`, which names the JSON path.
"""

from __future__ import annotations

import enum
import time
from typing import Annotated, Any, Literal, TypeVar

import msgspec

T = TypeVar("T")


class DelegationError(Exception):
    """A request the swarm cannot take; the message says why and what to do instead."""


class ProtocolError(ValueError):
    """Untrusted input did not match its schema; `path` is the JSON path of the fault."""

    def __init__(self, message: str, path: str = "$") -> None:
        super().__init__(message)
        self.path = path


def decode_json(data: bytes | str, type_: type[T]) -> T:
    """Decode untrusted JSON into `type_`, raising only `ProtocolError`."""
    try:
        return msgspec.json.decode(data, type=type_)
    except msgspec.ValidationError as exc:
        message = str(exc)
        path = message.rsplit(" - at `", 1)[1].rstrip("`") if " - at `" in message else "$"
        raise ProtocolError(message, path) from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"malformed JSON: {exc}", "$") from None


def convert(obj: Any, type_: type[T]) -> T:
    """Validate an already-decoded object (dicts from JSON-RPC) into `type_`."""
    try:
        return msgspec.convert(obj, type=type_)
    except msgspec.ValidationError as exc:
        message = str(exc)
        path = message.rsplit(" - at `", 1)[1].rstrip("`") if " - at `" in message else "$"
        raise ProtocolError(message, path) from None


def encode_json(obj: Any) -> bytes:
    return msgspec.json.encode(obj)


# --- positions and edits -------------------------------------------------------------------


class Point(msgspec.Struct, frozen=True, gc=False):
    """A position: 0-based line and 0-based column counted in code points."""

    line: int
    column: int


class Span(msgspec.Struct, frozen=True, gc=False):
    """A half-open region of one file, start inclusive, end exclusive."""

    start: Point
    end: Point


class TextEdit(msgspec.Struct, frozen=True):
    """Replace code points [start, end) of the base text with `new_text`."""

    start: int
    end: int
    new_text: str


class Mutation(msgspec.Struct, frozen=True):
    """An agent's proposed change to one file, computed against `base_version` of its text.

    `path` is workspace-relative with forward slashes. Agents only ever return Mutations;
    the CodeCRDT applies them under a lease.
    """

    task_id: str
    agent_id: str
    path: str
    base_version: int
    edits: tuple[TextEdit, ...]
    description: str = ""


# --- supervision ----------------------------------------------------------------------------

Severity = Literal["error", "warning", "information", "hint"]
VerdictKind = Literal["passed", "failed", "error"]


class Finding(msgspec.Struct, frozen=True):
    """One problem a check found, shown as a diagnostic.

    `code` is e.g. "syntax", "semgrep:<rule-id>", "test:<node-id>".
    """

    path: str
    span: Span
    message: str
    code: str
    severity: Severity = "error"
    source: str = "delegation-machine"
    fix_available: bool = False


class Verdict(msgspec.Struct, frozen=True):
    """The result of one check on one change. A check that could not run is kind "error"."""

    check: str
    kind: VerdictKind
    findings: tuple[Finding, ...] = ()
    reason: str = ""
    task_id: str | None = None
    paths: tuple[str, ...] = ()
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        return self.kind == "passed"


# --- acceptance criteria (what "done" means for one task) ---------------------------------

ACCEPTANCE_CHECK = "acceptance"  # the verdict that says whether a task did what it was asked
MAX_CRITERIA = 8
MAX_CRITERION_TEXT = 400


CriterionText = Annotated[str, msgspec.Meta(max_length=MAX_CRITERION_TEXT)]
CriterionPath = Annotated[str, msgspec.Meta(max_length=MAX_CRITERION_TEXT)]


class PassingTests(msgspec.Struct, frozen=True, tag="tests-pass", tag_field="check"):
    """These tests (pytest node ids or test files) must pass after the change."""

    tests: Annotated[list[CriterionText], msgspec.Meta(max_length=MAX_CRITERIA)] = msgspec.field(
        default_factory=list
    )


class SymbolExists(msgspec.Struct, frozen=True, tag="symbol-exists", tag_field="check"):
    """A definition named `name` must exist after the change (in `path` when given)."""

    name: CriterionText
    path: CriterionPath | None = None


class SymbolGone(msgspec.Struct, frozen=True, tag="symbol-gone", tag_field="check"):
    """No definition or reference named `name` may remain after the change."""

    name: CriterionText


class FindingGone(msgspec.Struct, frozen=True, tag="finding-gone", tag_field="check"):
    """A finding with this code (e.g. "semgrep:<rule>") must be gone (from `path` if given)."""

    code: CriterionText
    path: CriterionPath | None = None


class ReviewQuestion(msgspec.Struct, frozen=True, tag="review", tag_field="check"):
    """A yes/no question about the diff for the reviewer, where no machine check fits."""

    question: CriterionText


Criterion = PassingTests | SymbolExists | SymbolGone | FindingGone | ReviewQuestion


def criterion_problem(criterion: Criterion) -> str | None:
    """What a schema cannot say about one criterion (bounded, non-empty), or None."""
    texts: list[str] = []
    if isinstance(criterion, PassingTests):
        if not criterion.tests or len(criterion.tests) > MAX_CRITERIA:
            return f"tests-pass needs 1 to {MAX_CRITERIA} tests"
        texts = criterion.tests
    elif isinstance(criterion, ReviewQuestion):
        texts = [criterion.question]
    elif isinstance(criterion, FindingGone):
        texts = [criterion.code]
    else:
        texts = [criterion.name]
    for text in texts:
        if not text.strip() or len(text) > MAX_CRITERION_TEXT:
            return (
                f"{criterion.__struct_config__.tag}: text must be 1 to {MAX_CRITERION_TEXT} chars"
            )
    return None


def verdict_summary(verdict: Verdict) -> dict[str, Any]:
    """A verdict as the ledger stores it and `delegation/taskUpdated` carries it."""
    return {
        "check": verdict.check,
        "kind": verdict.kind,
        "reason": verdict.reason,
        "findings": [
            {"path": f.path, "line": f.span.start.line, "code": f.code, "message": f.message}
            for f in verdict.findings
        ],
    }


# --- tasks ----------------------------------------------------------------------------------


class TaskState(enum.StrEnum):
    QUEUED = "queued"
    WAITING = "waiting"  # in a reservation station, inputs not ready
    RUNNING = "running"
    CHECKING = "checking"
    VERIFIED = "verified"
    FAILED = "failed"
    ESCALATED = "escalated"
    CANCELLED = "cancelled"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    # A task that is not a delegated change (an index or edit-check task, or a task run by a
    # bare dispatcher) ran to completion: there is no change to verify.
    DONE = "done"
    # A delegated task whose agent changed nothing: never "verified", whatever it said. Its
    # acceptance verdict says whether the goal held anyway (nothing needed doing).
    NO_CHANGE = "no-change"
    # A change that edited what judges it (tests, fixtures, check configuration): kept
    # uncommitted until the user accepts it explicitly (or rejects it).
    HELD = "held"

    @property
    def finished(self) -> bool:
        return self._value_ in _FINISHED_VALUES  # by value: Enum.__hash__ is Python code


_FINISHED = {
    TaskState.VERIFIED,
    TaskState.FAILED,
    TaskState.ESCALATED,
    TaskState.CANCELLED,
    TaskState.ACCEPTED,
    TaskState.REJECTED,
    TaskState.DONE,
    TaskState.NO_CHANGE,
    TaskState.HELD,
}
_FINISHED_VALUES = frozenset(state.value for state in _FINISHED)


class DelegationRequest(msgspec.Struct, frozen=True):
    """What the user asked for: an instruction on a region of a file (or the workspace)."""

    instruction: str
    path: str | None = None
    span: Span | None = None
    kind: str | None = None  # a built-in task kind ("fix", "format", "rename", "check") or None
    agents: int | None = None
    requested_by: str = "user"

    def selected_lines(self, rel: str) -> tuple[int, int] | None:
        """The 0-based line range a non-empty selection on `rel` covers, else None."""
        span = self.span
        if span is None or self.path != rel or span.start == span.end:
            return None
        last = span.end.line
        if span.end.column == 0 and span.end.line > span.start.line:
            last -= 1  # a selection ending at the start of a line does not cover that line
        return span.start.line, last


# --- the A2A Context Package (seed V4) -------------------------------------------------------


class TaskManifest(msgspec.Struct, frozen=True):
    task_id: str
    plan_id: str
    kind: str
    instruction: str
    inputs: tuple[str, ...] = ()  # operand tags this task waits on
    outputs: tuple[str, ...] = ()  # tags this task produces (files, symbols)


class EnvironmentSnapshot(msgspec.Struct, frozen=True):
    workspace_version: int
    paths: tuple[str, ...] = ()
    decision_records: tuple[str, ...] = ()
    recent_changes: tuple[str, ...] = ()


class GoalHint(msgspec.Struct, frozen=True):
    text: str
    focus_paths: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()


class AuditTrail(msgspec.Struct, frozen=True):
    requested_by: str
    created_at: float
    parent_task: str | None = None
    origin: str = "lsp"


class ContextPackage(msgspec.Struct, frozen=True):
    manifest: TaskManifest
    environment: EnvironmentSnapshot
    goal: GoalHint
    audit: AuditTrail


class JsonRpcEnvelope(msgspec.Struct, frozen=True):
    """A2A JSON-RPC 2.0 hand-off carrying a ContextPackage (or a result) between branches."""

    method: str
    params: ContextPackage
    id: str | int | None = None
    jsonrpc: Literal["2.0"] = "2.0"


# --- events ---------------------------------------------------------------------------------


class Event(msgspec.Struct, frozen=True):
    """One immutable ledger entry. `seq` is assigned by the ledger (total order per workspace)."""

    kind: str
    payload: dict[str, Any] = {}
    task_id: str | None = None
    agent_id: str | None = None
    ts: float = msgspec.field(default_factory=time.time)
    seq: int = 0


class TaskUpdate(msgspec.Struct, frozen=True):
    """What `delegation/taskUpdated` carries."""

    task_id: str
    state: TaskState
    kind: str
    agent: str | None = None
    files: tuple[str, ...] = ()
    tokens: int = 0
    verdicts: tuple[Verdict, ...] = ()
    message: str = ""

"""The reviewer (Judicial branch): a separate model call that answers one yes/no question.

Owns `Reviewer.review(...)`: given the task's instruction, one acceptance question and the diff
of the change, a model with its own context (the reviewer's rules, the question, the diff — never
the agent's reasoning, tool calls or notes) answers yes or no with a reason. The answer passes
the Validation Gate like any model output; its Verdict is one like any other check's.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

import msgspec

from delegation_machine.engine.inference.backend import BackendError, ChatMessage, ChatRequest
from delegation_machine.engine.inference.gate import GateFailure, complete_validated
from delegation_machine.engine.inference.session import InferenceSession
from delegation_machine.engine.protocol import Finding, Point, Span, Verdict

REVIEWER_ID = "judicial:reviewer"
MAX_DIFF_CHARS = 12_000
MAX_REASON_CHARS = 400
REVIEWER_RULES = (
    "You are a code reviewer. You are shown an instruction that was given to a coding agent, "
    "one question about whether the instruction was carried out, and the unified diff of the "
    "agent's change. You see nothing else. Answer the question from the diff alone: answer "
    '"no" when the diff does not clearly show it. Reply with one JSON object '
    '{"answer": "yes" | "no", "reason": "<one sentence>"} and nothing else.'
)


class ReviewAnswer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    answer: Literal["yes", "no"]
    reason: Annotated[str, msgspec.Meta(max_length=MAX_REASON_CHARS)] = ""


def _answer_problem(answer: ReviewAnswer) -> str | None:
    if len(answer.reason) > MAX_REASON_CHARS:
        return f"$.reason: at most {MAX_REASON_CHARS} characters"
    return None


class Reviewer:
    """Answers acceptance questions about a diff with a fresh model context."""

    def __init__(self, session: InferenceSession, *, max_retries: int = 1) -> None:
        self.session = session
        self.max_retries = max_retries

    async def review(
        self, *, task_id: str, instruction: str, question: str, diff: str, paths: tuple[str, ...]
    ) -> Verdict:
        started = time.monotonic()
        shown = diff if len(diff) <= MAX_DIFF_CHARS else diff[:MAX_DIFF_CHARS] + "\n[diff cut]\n"
        request = ChatRequest(
            messages=(
                ChatMessage("system", REVIEWER_RULES),
                ChatMessage(
                    "user",
                    f"Instruction: {instruction.strip()}\nQuestion: {question.strip()}\n"
                    f"Diff:\n{shown or '(no change)'}",
                ),
            ),
            max_tokens=160,
            task_id=task_id,
            agent_id=REVIEWER_ID,
        )
        try:
            validated = await complete_validated(
                self.session,
                request,
                ReviewAnswer,
                what="review",
                max_retries=self.max_retries,
                check=_answer_problem,
            )
        except (GateFailure, BackendError) as exc:  # no answer: the criterion is not shown met
            return review_verdict(
                task_id, question, paths, None, f"the reviewer gave no answer: {exc}", started
            )
        answer = validated.value
        return review_verdict(
            task_id, question, paths, answer.answer == "yes", answer.reason, started
        )


def review_verdict(
    task_id: str,
    question: str,
    paths: tuple[str, ...],
    met: bool | None,
    reason: str,
    started: float,
) -> Verdict:
    """A reviewer's answer as a verdict: passed on yes, failed on no, error on no answer."""
    findings: tuple[Finding, ...] = ()
    if met is False:
        where = paths[0] if paths else ""
        findings = (
            Finding(
                path=where,
                span=Span(Point(0, 0), Point(0, 0)),
                message=f"reviewer: {question} -> no: {reason}",
                code="acceptance:review",
                severity="error",
            ),
        )
    return Verdict(
        check="review",
        kind="passed" if met else ("failed" if met is False else "error"),
        findings=findings,
        reason=reason if met is not False else f"{question} -> no",
        task_id=task_id,
        paths=paths,
        duration_s=time.monotonic() - started,
    )

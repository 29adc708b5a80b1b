"""The Validation Gate: every model output that must be structured is decoded by msgspec here.

Owns `complete_validated`: ask for JSON (guided decoding where the backend has it), decode into
the expected type, run an optional semantic check, and on failure re-ask with the error and its
JSON path, at most `max_retries` times. A reply cut off at its `max_tokens` (finish reason
"length") is one failed attempt whatever it holds, re-asked with that said. Exhaustion raises
`GateFailure`, which carries a `Verdict` of kind "failed" naming the check "validation-gate".
Nothing unvalidated leaves here. `unbounded_fields` lists what a schema leaves unbounded (every
schema the model answers in bounds its strings and arrays).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from delegation_machine.engine.inference.backend import (
    BackendUsage,
    ChatMessage,
    ChatRequest,
    Completion,
)
from delegation_machine.engine.protocol import ProtocolError, Verdict, decode_json

T = TypeVar("T")

# Finish reasons that mean "stopped at max_tokens": OpenAI-compatible servers, Anthropic.
CAPPED = ("length", "max_tokens")
# Of a reply cut at the cap, this much is shown back to the model with the feedback.
CAPPED_ECHO_CHARS = 400

_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*?)\n?```\s*$", re.DOTALL)


class Completer(Protocol):
    async def complete(self, request: ChatRequest) -> Completion: ...


class GateFailure(Exception):
    """The model's output failed validation on every attempt."""

    def __init__(self, what: str, attempts: int, last_error: str, task_id: str | None) -> None:
        super().__init__(
            f"the model's {what} failed validation {attempts} time(s); last error: {last_error}"
        )
        self.attempts = attempts
        self.last_error = last_error
        self.verdict = Verdict(
            check="validation-gate",
            kind="failed",
            reason=str(self),
            task_id=task_id,
        )


class Validated(msgspec.Struct, Generic[T], frozen=True):
    value: T
    usage: BackendUsage
    attempts: int
    completions: int


def strip_fences(text: str) -> str:
    """Models often wrap JSON in a ``` fence even when told not to; accept exactly that."""
    match = _FENCE.match(text)
    return match.group(1) if match else text.strip()


def decode_output(text: str, type_: type[T]) -> T:
    """Decode one model output; raises ProtocolError naming the JSON path."""
    return decode_json(strip_fences(text), type_)


def _add_usage(a: BackendUsage, b: BackendUsage) -> BackendUsage:
    return BackendUsage(
        a.prompt_tokens + b.prompt_tokens,
        a.cached_tokens + b.cached_tokens,
        a.output_tokens + b.output_tokens,
        a.cached_reported or b.cached_reported,
    )


async def complete_validated(
    completer: Completer,
    request: ChatRequest,
    type_: type[T],
    *,
    what: str = "reply",
    max_retries: int = 2,
    schema: dict[str, Any] | None = None,
    check: Callable[[T], str | None] | None = None,
) -> Validated[T]:
    """One validated value of `type_` from the model, re-asking on invalid output."""
    schema = schema if schema is not None else msgspec.json.schema(type_)
    messages = list(request.messages)
    usage = BackendUsage()
    last_error = ""
    for attempt in range(1, max_retries + 2):
        attempt_request = msgspec.structs.replace(
            request, messages=tuple(messages), json_schema=schema
        )
        completion = await completer.complete(attempt_request)
        usage = _add_usage(usage, completion.usage)
        shown = completion.text
        if completion.finish_reason in CAPPED:
            last_error = (
                f"the reply was cut off at its limit of "
                f"{completion.max_tokens or attempt_request.max_tokens} output "
                f"tokens (finish reason {completion.finish_reason!r}); answer with a much "
                "shorter object: one small step, short strings"
            )
            if len(shown) > CAPPED_ECHO_CHARS:
                shown = shown[:CAPPED_ECHO_CHARS] + f" [… {len(shown) - CAPPED_ECHO_CHARS} more]"
        else:
            try:
                value = decode_output(completion.text, type_)
                problem = check(value) if check is not None else None
                if problem is None:
                    return Validated(value, usage, attempt, attempt)
                last_error = problem
            except ProtocolError as exc:
                last_error = f"{exc} (at {exc.path})"
        messages.append(ChatMessage("assistant", shown))
        messages.append(
            ChatMessage(
                "user",
                f"The validation gate rejected that reply: {last_error}. Reply again with "
                "exactly one JSON object that matches the schema, and nothing else.",
            )
        )
    raise GateFailure(what, max_retries + 1, last_error, request.task_id)


def unbounded_fields(schema: dict[str, Any]) -> list[str]:
    """JSON paths in `schema` of strings without maxLength and arrays without maxItems."""
    found: list[str] = []
    definitions = schema.get("$defs", {})
    seen: set[str] = set()

    def walk(node: Any, path: str) -> None:
        if isinstance(node, list):
            for n, item in enumerate(node):
                walk(item, f"{path}[{n}]")
            return
        if not isinstance(node, dict):
            return
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if name not in seen:
                seen.add(name)
                walk(definitions.get(name), f"$defs.{name}")
        kind = node.get("type")
        if kind == "string" and "maxLength" not in node and "enum" not in node:
            found.append(path)
        if kind == "array" and "maxItems" not in node:
            found.append(path)
        for key in ("properties", "items", "anyOf", "oneOf", "allOf", "prefixItems"):
            child = node.get(key)
            if isinstance(child, dict) and key == "properties":
                for name, sub in child.items():
                    walk(sub, f"{path}.{name}")
            elif child is not None:
                walk(child, f"{path}.{key}")

    walk(schema, "$")
    return found

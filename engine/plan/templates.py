"""Deterministic plan templates for common requests: no model is needed to plan them.

Owns `match_template` and `plan_from_template` for "write tests for this function", "fix this
diagnostic" and "document this module/function/class". Each template is one LLM task whose
arguments name what "done" means for it (`template`, `symbol`, `test_path`, `line`): the
supervisor's acceptance check reads them (supervise/acceptance.py), so no separate check task
follows. Invariant: the same request and files always give the same graph.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePosixPath

from delegation_machine.engine.plan.graph import TaskGraph, TaskSpec
from delegation_machine.engine.protocol import DelegationRequest

_IDENT = r"[A-Za-z_][A-Za-z0-9_.]*"
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "write-tests",
        re.compile(
            rf"^\s*(?:please\s+)?(?:write|add|create|generate)\s+(?:some\s+|unit\s+|pytest\s+)*"
            rf"tests?\s+(?:for|of|covering)\s+(?:the\s+)?(?:(?:this|that)\s+)?"
            rf"(?:function|method|class)?\s*`?(?P<symbol>{_IDENT})?`?",
            re.IGNORECASE,
        ),
    ),
    (
        "fix-diagnostic",
        re.compile(
            r"^\s*(?:please\s+)?fix\s+(?:this|the|that)\s+"
            r"(?:diagnostic|error|warning|problem|lint(?:\s+error)?|type\s+error)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "document",
        re.compile(
            rf"^\s*(?:please\s+)?(?:document|add\s+docstrings?\s+(?:to|for)|write\s+docs?\s+for)"
            rf"\s+(?:the\s+|this\s+|that\s+)?(?P<target>module|file|function|class|method)?"
            rf"\s*`?(?P<symbol>{_IDENT})?`?",
            re.IGNORECASE,
        ),
    ),
)
_NOT_A_SYMBOL = {"this", "that", "the", "function", "method", "class", "module", "file", "it"}
_DEF_LINE = re.compile(r"^\s*(?:async\s+def|def|class)\s+([A-Za-z_][A-Za-z0-9_]*)")
TEMPLATE_NAMES = tuple(name for name, _ in _PATTERNS)
# Requests a model can take that have a template, as the editor offers them (code actions).
OFFERED_TEMPLATES = ("write tests for this function", "document this module")


def match_template(request: DelegationRequest) -> tuple[str, str | None] | None:
    """(template name, symbol named in the instruction or None) if a template fits."""
    if request.path is None:
        return None
    for name, pattern in _PATTERNS:
        found = pattern.match(request.instruction)
        if found:
            symbol = found.groupdict().get("symbol")
            if symbol and symbol.lower() in _NOT_A_SYMBOL:
                symbol = None
            return name, symbol
    return None


def enclosing_definition(text: str, line: int) -> str | None:
    """The nearest `def`/`class` at or above 0-based `line` (the selection's function)."""
    lines = text.splitlines()
    for number in range(min(line, len(lines) - 1), -1, -1):
        found = _DEF_LINE.match(lines[number])
        if found:
            return found.group(1)
    return None


def test_path_for(path: str) -> str:
    source = PurePosixPath(path)
    return str(PurePosixPath("tests") / f"test_{source.stem}{source.suffix or '.py'}")


def _tag(path: str) -> str:
    return f"file:{path}"


def plan_from_template(
    request: DelegationRequest, *, plan_id: str, files: Mapping[str, str] | None = None
) -> TaskGraph | None:
    """The template's TaskGraph, or None when no template fits the request."""
    matched = match_template(request)
    if matched is None or request.path is None:
        return None
    name, symbol = matched
    path = request.path
    text = (files or {}).get(path, "")
    if symbol is None and name in ("write-tests", "document") and request.span is not None:
        symbol = enclosing_definition(text, request.span.start.line)
    line = request.span.start.line + 1 if request.span is not None else None
    if name == "write-tests":
        target = symbol or f"the public functions of {path}"
        test_path = test_path_for(path)
        work = TaskSpec(
            task_id=f"{plan_id}.1",
            kind="llm",
            instruction=(
                f"Write pytest tests for `{target}` defined in {path}, in {test_path} (create "
                "it if missing, otherwise add to it). Cover the normal cases, the edge cases and "
                "the errors it raises. Do not change the code under test."
            ),
            paths=(path, test_path),
            inputs=(_tag(path),),
            outputs=(_tag(test_path),),
            cost={"llm": 30.0},
            handoff_tokens=400,
            plan_id=plan_id,
            arguments={"template": name, "symbol": symbol or "", "test_path": test_path},
        )
        return TaskGraph.from_tags([work])
    if name == "fix-diagnostic":
        where = f"{path}:{line}" if line else path
        instruction = (
            f"Fix the diagnostic at {where} with the smallest change that removes it without "
            f"changing behaviour. The user said: {request.instruction.strip()}"
        )
        arguments = {"template": name, "line": line or 0}
    else:
        what = f"`{symbol}`" if symbol else f"the module {path}"
        instruction = (
            f"Document {what} in {path}: add or improve docstrings (what it does, its "
            "parameters, what it returns and raises). Change no code, only docstrings and comments."
        )
        arguments = {"template": name, "symbol": symbol or ""}
    work = TaskSpec(
        task_id=f"{plan_id}.1",
        kind="llm",
        instruction=instruction,
        paths=(path,),
        inputs=(_tag(path),),
        outputs=(_tag(path),),
        cost={"llm": 20.0},
        handoff_tokens=200,
        plan_id=plan_id,
        arguments=arguments,
    )
    return TaskGraph.from_tags([work])

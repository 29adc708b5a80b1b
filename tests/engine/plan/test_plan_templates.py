"""Deterministic templates: common requests become TaskGraphs without a model."""

from __future__ import annotations

import pytest

from delegation_machine.engine.plan.templates import (
    enclosing_definition,
    match_template,
    plan_from_template,
)
from delegation_machine.engine.protocol import DelegationRequest, Point, Span

SOURCE = "import os\n\n\ndef parse(text):\n    value = text.strip()\n    return value\n\n\nclass Loader:\n    def load(self):\n        return 1\n"


@pytest.mark.parametrize(
    ("instruction", "expected"),
    [
        ("write tests for this function", ("write-tests", None)),
        ("Add unit tests for `parse`", ("write-tests", "parse")),
        ("generate tests for Loader.load", ("write-tests", "Loader.load")),
        ("fix this diagnostic", ("fix-diagnostic", None)),
        ("Please fix the type error", ("fix-diagnostic", None)),
        ("document this module", ("document", None)),
        ("add docstrings to parse", ("document", "parse")),
        ("make parse faster", None),
        ("fix the flaky network layer by rewriting it", None),
    ],
)
def test_matching(instruction: str, expected: tuple[str, str | None] | None) -> None:
    assert match_template(DelegationRequest(instruction=instruction, path="pkg/mod.py")) == expected


def test_no_path_no_template() -> None:
    assert match_template(DelegationRequest(instruction="write tests for parse")) is None


def test_write_tests_for_the_selected_function() -> None:
    request = DelegationRequest(
        instruction="write tests for this function",
        path="pkg/mod.py",
        span=Span(Point(4, 4), Point(4, 10)),
    )
    graph = plan_from_template(request, plan_id="p9", files={"pkg/mod.py": SOURCE})
    assert graph is not None
    graph.validate()
    # One task: its acceptance check (supervise/acceptance.py) is what a check task was.
    (write,) = (graph.task(t) for t in graph.topological_order())
    assert write.kind == "llm"
    assert "`parse`" in write.instruction and "tests/test_mod.py" in write.instruction
    assert write.arguments == {
        "template": "write-tests",
        "symbol": "parse",
        "test_path": "tests/test_mod.py",
    }
    assert write.outputs == ("file:tests/test_mod.py",)
    assert write.paths == ("pkg/mod.py", "tests/test_mod.py")


def test_fix_diagnostic_and_document_module() -> None:
    fix = plan_from_template(
        DelegationRequest(
            instruction="fix this diagnostic", path="a.py", span=Span(Point(9, 0), Point(9, 3))
        ),
        plan_id="p1",
    )
    assert fix is not None and "a.py:10" in fix.task("p1.1").instruction
    assert fix.task("p1.1").arguments == {"template": "fix-diagnostic", "line": 10}
    doc = plan_from_template(
        DelegationRequest(instruction="document this module", path="a.py"), plan_id="p2"
    )
    assert doc is not None and "the module a.py" in doc.task("p2.1").instruction


def test_same_request_same_graph() -> None:
    request = DelegationRequest(
        instruction="document this function", path="m.py", span=Span(Point(10, 8), Point(10, 9))
    )
    a = plan_from_template(request, plan_id="p", files={"m.py": SOURCE})
    b = plan_from_template(request, plan_id="p", files={"m.py": SOURCE})
    assert a is not None and b is not None
    assert a.tasks() == b.tasks() and a.edges() == b.edges()
    assert "`load`" in a.task("p.1").instruction


def test_enclosing_definition() -> None:
    assert enclosing_definition(SOURCE, 5) == "parse"
    assert enclosing_definition(SOURCE, 0) is None
    assert enclosing_definition(SOURCE, 10) == "load"

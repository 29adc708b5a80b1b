"""Each acceptance check with a case it passes and a case it fails (real ruff, tree-sitter,
pytest + coverage.py in the sandbox, a reviewer over the scripted HTTP model server)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from delegation_machine.engine.inference.backend import RetryPolicy
from delegation_machine.engine.inference.openai_compat import OpenAICompatibleBackend
from delegation_machine.engine.inference.scripted import ScriptedServer, ScriptedTurn
from delegation_machine.engine.inference.session import InferenceSession
from delegation_machine.engine.protocol import Finding, Point, Span, Verdict
from delegation_machine.engine.supervise.acceptance import AcceptanceJudge, planned_criteria
from delegation_machine.engine.supervise.affected import AffectedTests
from delegation_machine.engine.supervise.integrity import (
    adds_tests_only,
    assertion_lines,
    is_judging_file,
    judging_changes,
)
from delegation_machine.engine.supervise.review import Reviewer
from tests.engine.model_doubles import RecordingSleep

PRICING = """def total(prices, discount=0.0):
    subtotal = sum(prices)
    if discount:
        subtotal = subtotal * (1 - discount)
    return round(subtotal, 2)


def unused(x):
    return x * 2
"""


def make_judge(root: Path, reviewer: Reviewer | None = None) -> AcceptanceJudge:
    def read_text(rel: str) -> str | None:
        path = root / rel
        return path.read_text() if path.is_file() else None

    return AcceptanceJudge(
        root,
        tests=AffectedTests(root, timeout_s=60),
        read_text=read_text,
        reviewer=lambda: reviewer,
    )


async def judge(
    judge_: AcceptanceJudge,
    kind: str,
    before: Mapping[str, str],
    after: Mapping[str, str],
    *,
    paths: Sequence[str] | None = None,
    arguments: Mapping[str, Any] | None = None,
    verdicts: Sequence[Verdict] = (),
    baseline: Sequence[Verdict] = (),
    instruction: str = "",
    diff: str = "",
) -> Verdict:
    return await judge_.judge(
        task_id="t-1.1",
        kind=kind,
        instruction=instruction,
        paths=list(paths if paths is not None else after),
        arguments=dict(arguments or {}),
        before=before,
        after=after,
        baseline=baseline,
        verdicts=verdicts,
        diff=diff,
    )


def semgrep_verdict(*findings: Finding) -> Verdict:
    return Verdict(check="semgrep", kind="failed" if findings else "passed", findings=findings)


def finding(path: str, line: int, code: str, *, fixable: bool = True) -> Finding:
    span = Span(Point(line, 0), Point(line, 5))
    return Finding(path=path, span=span, message=code, code=code, fix_available=fixable)


async def test_every_kind_fails_when_a_changed_file_does_not_parse(tmp_path: Path) -> None:
    verdict = await judge(
        make_judge(tmp_path), "format", {"a.py": "x = 1\n"}, {"a.py": "x = (\n"}, paths=["a.py"]
    )
    assert verdict.kind == "failed"
    assert [f.code for f in verdict.findings] == ["acceptance:parse"]


async def test_fix_passes_when_no_fixable_finding_is_left_and_fails_when_one_is(
    tmp_path: Path,
) -> None:
    judge_ = make_judge(tmp_path)
    texts = {"a.py": "import hashlib\nhashlib.sha256(b'x')\n"}
    clean = await judge(judge_, "fix", texts, texts, verdicts=[semgrep_verdict()])
    assert clean.kind == "passed" and "already held" in clean.reason
    left = await judge(
        judge_, "fix", texts, texts, verdicts=[semgrep_verdict(finding("a.py", 1, "semgrep:md5"))]
    )
    assert left.kind == "failed"
    assert left.findings[0].span.start.line == 1
    # Not fixable automatically: not the fix task's to do.
    manual = await judge(
        judge_,
        "fix",
        texts,
        texts,
        verdicts=[semgrep_verdict(finding("a.py", 1, "semgrep:eval", fixable=False))],
    )
    assert manual.kind == "passed"
    broken = Verdict(check="semgrep", kind="error", reason="semgrep crashed")
    assert (await judge(judge_, "fix", texts, texts, verdicts=[broken])).kind == "error"


async def test_fix_ignores_findings_inside_test_assertions(tmp_path: Path) -> None:
    test = "import hashlib\n\ndef test_digest():\n    assert store() == hashlib.md5(b'x').hexdigest()\n"
    texts = {"tests/test_store.py": test}
    verdict = await judge(
        make_judge(tmp_path),
        "fix",
        texts,
        texts,
        verdicts=[semgrep_verdict(finding("tests/test_store.py", 3, "semgrep:md5"))],
    )
    assert verdict.kind == "passed"


async def test_format_uses_the_formatters_own_check(tmp_path: Path) -> None:
    judge_ = make_judge(tmp_path)
    ugly = {"a.py": "x=[1,2 ,3]\n"}
    pretty = {"a.py": "x = [1, 2, 3]\n"}
    assert (await judge(judge_, "format", ugly, pretty)).kind == "passed"
    failed = await judge(judge_, "format", ugly, ugly)
    assert failed.kind == "failed" and "would reformat" in failed.findings[0].message


async def test_rename_fails_while_the_old_name_is_defined_imported_or_used_by_module(
    tmp_path: Path,
) -> None:
    judge_ = make_judge(tmp_path)
    names = {"old": "calc_total", "new": "compute_total"}
    before = {
        "shop/pricing.py": "def calc_total(x):\n    return x\n",
        "shop/cli.py": "from shop.pricing import calc_total\nfrom shop import pricing\n"
        "print(calc_total(1), pricing.calc_total(2))\n",
    }
    done = {
        "shop/pricing.py": "def compute_total(x):\n    return x\n",
        "shop/cli.py": "from shop.pricing import compute_total\nfrom shop import pricing\n"
        "print(compute_total(1), pricing.compute_total(2))\n",
    }
    assert (await judge(judge_, "rename", before, done, arguments=names)).kind == "passed"
    half = dict(done, **{"shop/cli.py": before["shop/cli.py"]})
    verdict = await judge(judge_, "rename", before, half, arguments=names)
    assert verdict.kind == "failed"
    codes = {f.code for f in verdict.findings}
    assert codes == {"acceptance:rename-left", "acceptance:import"}
    assert all(f.path == "shop/cli.py" for f in verdict.findings)
    # Another module's own `calc_total`, not the one renamed (the rename named its file): left.
    other = {"shop/legacy.py": "calc_total = 3\n"}
    hinted = dict(names, path="shop/pricing.py")
    kept = await judge(judge_, "rename", {**before, **other}, {**done, **other}, arguments=hinted)
    assert kept.kind == "passed", kept.findings


async def test_document_needs_the_docstring_and_no_code_change(tmp_path: Path) -> None:
    judge_ = make_judge(tmp_path)
    before = {"p.py": PRICING}
    documented = {
        "p.py": PRICING.replace(
            "def total(prices, discount=0.0):\n",
            'def total(prices, discount=0.0):\n    """Sum of prices after the discount."""\n',
        )
    }
    arguments = {"template": "document", "symbol": "total"}
    ok = await judge(judge_, "llm", before, documented, arguments=arguments)
    assert ok.kind == "passed"
    nothing = await judge(judge_, "llm", before, before, arguments=arguments)
    assert nothing.kind == "failed"
    assert [f.code for f in nothing.findings] == ["acceptance:document"]
    sneaky = {"p.py": documented["p.py"].replace("round(subtotal, 2)", "round(subtotal, 3)")}
    changed_code = await judge(judge_, "llm", before, sneaky, arguments=arguments)
    assert [f.code for f in changed_code.findings] == ["acceptance:document-code"]
    # "document this module": the module and each public function need a docstring.
    module = {"template": "document", "symbol": ""}
    partly = await judge(judge_, "llm", before, documented, arguments=module)
    assert [f.message for f in partly.findings] == [
        "p.py has no module docstring",
        "`unused` has no docstring",
    ]
    whole = {
        "p.py": '"""Prices."""\n'
        + documented["p.py"].replace("def unused(x):\n", 'def unused(x):\n    """Twice x."""\n')
    }
    assert (await judge(judge_, "llm", before, whole, arguments=module)).kind == "passed"
    # Already documented: nothing to change, and the goal holds.
    assert (await judge(judge_, "llm", whole, whole, arguments=module)).kind == "passed"


async def test_write_tests_needs_new_passing_tests_that_execute_the_target(
    tmp_path: Path,
) -> None:
    (tmp_path / "pricing.py").write_text(PRICING)
    judge_ = make_judge(tmp_path)
    arguments = {"template": "write-tests", "symbol": "total", "test_path": "tests/test_pricing.py"}
    paths = ["pricing.py", "tests/test_pricing.py"]
    before = {"pricing.py": PRICING}

    async def with_tests(text: str) -> Verdict:
        after = dict(before, **{"tests/test_pricing.py": text})
        return await judge(judge_, "llm", before, after, paths=paths, arguments=arguments)

    passed = await with_tests(
        "from pricing import total\n\n"
        "def test_total():\n    assert total([1, 2]) == 3\n\n"
        "def test_discount():\n    assert total([10], 0.5) == 5\n"
    )
    assert passed.kind == "passed", passed.findings
    missed = await with_tests(
        "from pricing import unused\n\ndef test_unused():\n    assert unused(2) == 4\n"
    )
    assert [f.code for f in missed.findings] == ["acceptance:coverage"]
    red = await with_tests(
        "from pricing import total\n\ndef test_total():\n    assert total([1, 2]) == 4\n"
    )
    assert [f.code for f in red.findings] == ["acceptance:tests"]
    uncollected = await with_tests(
        "from pricing import no_such_thing\n\ndef test_total():\n    assert no_such_thing() == 4\n"
    )
    assert [f.code for f in uncollected.findings] == ["acceptance:tests"]


async def test_fix_diagnostic_needs_the_named_finding_gone(tmp_path: Path) -> None:
    judge_ = make_judge(tmp_path)
    before = {"a.py": "import os\nos.system(cmd)\n"}
    after = {"a.py": "import os\nrun(cmd)\n"}
    named = finding("a.py", 1, "semgrep:os-system", fixable=False)
    arguments = {"template": "fix-diagnostic", "line": 2}
    gone = await judge(
        judge_,
        "llm",
        before,
        after,
        arguments=arguments,
        baseline=[semgrep_verdict(named)],
        verdicts=[semgrep_verdict()],
    )
    assert gone.kind == "passed"
    still = await judge(
        judge_,
        "llm",
        before,
        {"a.py": "import os\nos.system(cmd)  # fixed\n"},
        arguments=arguments,
        baseline=[semgrep_verdict(named)],
        verdicts=[semgrep_verdict(named)],
    )
    assert [f.code for f in still.findings] == ["acceptance:diagnostic"]


def review_server(scripted: Callable[..., ScriptedServer], answers: list[str]) -> Reviewer:
    turns = [
        ScriptedTurn(content=json.dumps({"answer": a, "reason": f"it is {a}"})) for a in answers
    ]
    server = scripted(turns)
    backend = OpenAICompatibleBackend(
        base_url=server.base_url,
        model="m",
        sleep=RecordingSleep(),
        retry=RetryPolicy(max_retries=0),
    )
    return Reviewer(InferenceSession(backend))


async def test_planned_criteria_are_machine_checked_and_questions_go_to_the_reviewer(
    tmp_path: Path, scripted: Callable[..., ScriptedServer]
) -> None:
    reviewer = review_server(scripted, ["yes", "no"])
    judge_ = make_judge(tmp_path, reviewer)
    before = {"a.py": "def old():\n    return 1\n"}
    after = {"a.py": "def new():\n    return 1\n"}
    criteria = [
        {"check": "symbol-exists", "name": "new"},
        {"check": "symbol-gone", "name": "old"},
        {"check": "review", "question": "Is the function renamed?"},
    ]
    arguments = {"acceptance": criteria}
    assert planned_criteria(arguments)[0].name == "new"  # type: ignore[union-attr]
    ok = await judge(judge_, "llm", before, after, arguments=arguments, diff="-old\n+new\n")
    assert ok.kind == "passed"
    no = await judge(judge_, "llm", before, after, arguments=arguments, diff="-old\n+new\n")
    assert no.kind == "failed" and no.findings[0].code == "acceptance:review"
    wrong = {"acceptance": [{"check": "symbol-exists", "name": "gone"}]}
    missing = await judge(judge_, "llm", before, after, arguments=wrong)
    assert [f.code for f in missing.findings] == ["acceptance:symbol"]
    invalid = await judge(judge_, "llm", before, after, arguments={"acceptance": [{"check": "x"}]})
    assert invalid.kind == "error"


async def test_a_model_task_that_changed_nothing_fails_without_asking_anyone(
    tmp_path: Path,
) -> None:
    texts = {"a.py": "x = 1\n"}
    verdict = await judge(make_judge(tmp_path), "llm", texts, texts, instruction="add y")
    assert [f.code for f in verdict.findings] == ["acceptance:no-change"]


async def test_without_a_reviewer_a_question_cannot_pass(tmp_path: Path) -> None:
    verdict = await judge(
        make_judge(tmp_path), "llm", {"a.py": "x = 1\n"}, {"a.py": "x = 2\n"}, instruction="x=2"
    )
    assert verdict.kind == "error" and "no model to review" in verdict.reason


def test_judging_files_and_what_a_change_to_them_does() -> None:
    judging = ["tests/test_a.py", "conftest.py", "pyproject.toml", "tests/data/expected.json"]
    assert all(is_judging_file(rel) for rel in judging)
    assert not any(is_judging_file(rel) for rel in ["app/a.py", "README.md", "app/testing.py"])
    assert is_judging_file("pkg/fixtures/input.txt")
    before = {"tests/test_a.py": "def test_a():\n    assert f() == 1\n", "app/a.py": "x = 1\n"}
    after = {"tests/test_a.py": "def test_a():\n    assert f() == 2\n", "app/a.py": "x = 2\n"}
    assert judging_changes(before, after) == ["tests/test_a.py"]
    assert not adds_tests_only(before["tests/test_a.py"], after["tests/test_a.py"])
    grown = before["tests/test_a.py"] + "\ndef test_b():\n    assert f() == 1\n"
    assert adds_tests_only(before["tests/test_a.py"], grown)
    assert assertion_lines(grown) == {1, 4}


@pytest.mark.parametrize("text", ["def test_x(:\n", ""])
def test_assertion_lines_of_broken_or_empty_files_are_empty(text: str) -> None:
    assert assertion_lines(text) == set()

"""CheckRunner: syntax, semgrep, compile and affected tests on CRDT texts, never on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from delegation_machine.engine.protocol import Finding, Point, Span, Verdict
from delegation_machine.engine.supervise.checks import CheckRunner, compile_verdict, syntax_verdict
from delegation_machine.engine.supervise.semgrep import BUNDLED_RULES, rule_files

from .conftest import RULES, needs_semgrep, write


def by_check(verdicts: list[Verdict]) -> dict[str, Verdict]:
    return {v.check: v for v in verdicts}


def ours(verdict: Verdict) -> list[Finding]:
    """Findings of this suite's own rules (the bundled rules may match too)."""
    return [f for f in verdict.findings if f.code.startswith("semgrep:test-")]


def test_syntax_error_has_exact_position() -> None:
    files = {"pkg/bad.py": "x = 1\ndef f(:\n    pass\n"}
    verdict = syntax_verdict(files, ["pkg/bad.py"], "t1")
    assert verdict.kind == "failed"
    assert verdict.task_id == "t1"
    (finding,) = verdict.findings
    assert finding.code == "syntax"
    assert finding.path == "pkg/bad.py"
    assert finding.span.start == Point(1, 6)


def test_syntax_columns_are_code_points_not_bytes() -> None:
    # "é" is two UTF-8 bytes; the error column must count it as one.
    files = {"m.py": 'def g(s="é", :\n    pass\n'}
    (finding,) = syntax_verdict(files, ["m.py"], None).findings
    assert finding.span.start == Point(0, 12)
    assert finding.message == "syntax error: missing ')'"


@pytest.mark.parametrize(
    ("path", "bad", "good"),
    [
        ("a.js", "function f( {", "function f() { return 1; }"),
        ("a.ts", "let x: number = ;", "let x: number = 1;"),
        ("a.tsx", "const A = () => <div>;", "const A = () => <div />;"),
        ("a.go", "package a\nfunc f( {", "package a\nfunc f() {}\n"),
        ("a.rs", "fn f( {", "fn f() {}\n"),
    ],
)
def test_every_installed_grammar_is_checked(path: str, bad: str, good: str) -> None:
    bad_verdict = syntax_verdict({path: bad}, [path], None)
    good_verdict = syntax_verdict({path: good}, [path], None)
    assert bad_verdict.kind == "failed" and bad_verdict.findings
    assert good_verdict.kind == "passed" and good_verdict.paths == (path,)


@needs_semgrep
async def test_semgrep_reads_the_given_text_not_the_disk(
    runner: CheckRunner, workspace: Path
) -> None:
    write(workspace, {"svc.py": "import subprocess\n"})  # clean on disk
    crdt_text = 'import subprocess\nname = "é"\nsubprocess.run("ls " + name, shell=True)\n'
    verdicts = by_check(await runner.check({"svc.py": crdt_text}, ["svc.py"], task_id="t9"))
    semgrep = verdicts["semgrep"]
    assert semgrep.kind == "failed", semgrep.reason
    (finding,) = ours(semgrep)
    assert finding.code == "semgrep:test-subprocess-shell-true"
    assert finding.path == "svc.py"
    assert finding.span == Span(Point(2, 0), Point(2, 40))
    assert "semgrep:dm-subprocess-shell-true" in {f.code for f in semgrep.findings}
    assert finding.severity == "error"
    assert (workspace / "svc.py").read_text() == "import subprocess\n"


@needs_semgrep
async def test_semgrep_batches_files_and_maps_paths_back(runner: CheckRunner) -> None:
    files = {
        "a/one.py": "import hashlib\nh = hashlib.md5(b'x')\n",
        "b/two.py": "value = eval(input())\n",
        "c/clean.py": "print('ok')\n",
    }
    semgrep = by_check(await runner.check(files, list(files)))["semgrep"]
    codes = {(f.path, f.code, f.fix_available) for f in ours(semgrep)}
    assert codes == {
        ("a/one.py", "semgrep:test-md5", True),
        ("b/two.py", "semgrep:test-eval-of-input", False),
    }
    assert semgrep.kind == "failed"


@needs_semgrep
async def test_warning_passes_unless_strict(runner: CheckRunner) -> None:
    files = {"h.py": "import hashlib\nh = hashlib.md5(b'x')\n"}
    normal = by_check(await runner.check(files, ["h.py"]))["semgrep"]
    strict = by_check(await runner.check(files, ["h.py"], strict=True))["semgrep"]
    assert normal.kind == "passed"
    assert {f.severity for f in normal.findings} == {"warning"}
    assert strict.kind == "failed"


@needs_semgrep
async def test_user_rules_in_dot_delegation_are_used(workspace: Path) -> None:
    write(
        workspace,
        {
            ".delegation/semgrep/house.yaml": (
                "rules:\n  - id: no-print\n    languages: [python]\n    severity: ERROR\n"
                "    message: use logging\n    pattern: print(...)\n"
            )
        },
    )
    checks = CheckRunner(workspace)
    try:
        semgrep = by_check(await checks.check({"p.py": "print(1)\n"}, ["p.py"]))["semgrep"]
    finally:
        checks.close()
    assert "semgrep:no-print" in [f.code for f in semgrep.findings]


def test_bundled_rules_are_included_when_present(workspace: Path) -> None:
    found = rule_files(workspace, [RULES])
    bundled = sorted(BUNDLED_RULES.glob("*.yaml")) if BUNDLED_RULES.is_dir() else []
    assert found[: len(bundled)] == bundled
    assert RULES / "hostile.yaml" in found


async def test_missing_semgrep_is_an_error_not_a_pass(workspace: Path) -> None:
    checks = CheckRunner(workspace, rule_paths=[RULES])
    checks.semgrep.executable = None
    try:
        semgrep = by_check(await checks.check({"x.py": "x = 1\n"}, ["x.py"]))["semgrep"]
    finally:
        checks.close()
    assert semgrep.kind == "error"
    assert "not installed" in semgrep.reason


async def test_crashing_semgrep_is_an_error(workspace: Path, tmp_path: Path) -> None:
    fake = tmp_path / "semgrep"
    fake.write_text("#!/bin/sh\necho 'boom' >&2\nexit 2\n")
    fake.chmod(0o755)
    checks = CheckRunner(workspace, rule_paths=[RULES])
    checks.semgrep.executable = str(fake)
    try:
        semgrep = by_check(await checks.check({"x.py": "x = 1\n"}, ["x.py"]))["semgrep"]
    finally:
        checks.close()
    assert semgrep.kind == "error"
    assert "exit 2" in semgrep.reason and "boom" in semgrep.reason


async def test_hanging_semgrep_times_out_as_an_error(workspace: Path, tmp_path: Path) -> None:
    fake = tmp_path / "semgrep"
    fake.write_text("#!/bin/sh\nexec tail -f /dev/null\n")
    fake.chmod(0o755)
    checks = CheckRunner(workspace, rule_paths=[RULES], semgrep_timeout_s=0.5)
    checks.semgrep.executable = str(fake)
    try:
        semgrep = by_check(await checks.check({"x.py": "x = 1\n"}, ["x.py"]))["semgrep"]
    finally:
        checks.close()
    assert semgrep.kind == "error"
    assert "timed out" in semgrep.reason


@needs_semgrep
async def test_invalid_rule_file_is_an_error(workspace: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules:\n  - id: broken\n    pattern: [unclosed\n")
    checks = CheckRunner(workspace, rule_paths=[broken])
    try:
        semgrep = by_check(await checks.check({"x.py": "x = 1\n"}, ["x.py"]))["semgrep"]
    finally:
        checks.close()
    assert semgrep.kind == "error"
    assert semgrep.reason


async def test_full_level_adds_compile_and_tests(runner: CheckRunner) -> None:
    # Valid for tree-sitter, rejected by the compiler: `return` outside a function.
    files = {"r.py": "x = 1\nreturn x\n"}
    full = by_check(await runner.check(files, ["r.py"], level="full"))
    assert full["syntax"].kind == "passed"
    (finding,) = full["compile"].findings
    assert finding.code == "compile" and finding.span.start == Point(1, 0)
    assert full["tests"].kind == "passed" and full["tests"].paths == ()


def test_compile_verdict_flags_only_uncompilable_files() -> None:
    assert compile_verdict({"r.py": "x = (\n"}, ["r.py"], None).kind == "failed"
    assert compile_verdict({"r.py": "x = 1\n"}, ["r.py"], None).kind == "passed"

"""The warm semgrep worker: same findings as the batch CLI, supervised, never a false pass."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from delegation_machine.engine.protocol import Finding, Verdict
from delegation_machine.engine.supervise.checks import CheckRunner

from .conftest import RULES, needs_semgrep

FILES = {
    "a.py": 'import hashlib\nx = eval(input())\nprint("é" + eval(x))\nh = hashlib.md5(b"x")\n',
    "pkg/b.py": 'import subprocess\nsubprocess.run("ls " + x, shell=True)\n',
    "c.py": "print('clean')\n",
}


def semgrep_of(verdicts: list[Verdict]) -> Verdict:
    return next(v for v in verdicts if v.check == "semgrep")


def ordered(findings: tuple[Finding, ...]) -> list[Finding]:
    return sorted(findings, key=lambda f: (f.path, f.span.start.line, f.span.start.column, f.code))


@needs_semgrep
async def test_warm_worker_matches_the_batch_scan_and_survives_a_crash(workspace: Path) -> None:
    checks = CheckRunner(workspace, rule_paths=[RULES], warm_semgrep=True)
    try:
        assert await checks.warm_up(timeout_s=120)
        warm = semgrep_of(await checks.check(FILES, list(FILES), task_id="t1"))
        assert checks.semgrep.warm_scans == 1
        checks.semgrep.warm = False
        batch = semgrep_of(await checks.check(FILES, list(FILES), task_id="t1"))
        checks.semgrep.warm = True
        assert ordered(warm.findings) == ordered(batch.findings)
        assert {f.code for f in warm.findings} >= {
            "semgrep:test-eval-of-input",
            "semgrep:test-subprocess-shell-true",
            "semgrep:test-md5",
        }
        assert (warm.kind, warm.task_id) == ("failed", "t1")

        worker = checks.semgrep._worker
        assert worker is not None and worker.pid is not None
        first_pid = worker.pid
        os.killpg(first_pid, signal.SIGKILL)
        # texts the worker has not answered yet (it remembers answers per text): a comment
        # line at the end moves no finding
        edited = {rel: text + "# edited\n" for rel, text in FILES.items()}
        after_crash = semgrep_of(await checks.check(edited, list(edited)))
        assert ordered(after_crash.findings) == ordered(batch.findings)  # fell back or restarted
        assert await worker.wait_ready(120)
        assert worker.pid != first_pid  # the supervisor started a new process
        again_edited = {rel: text + "# again\n" for rel, text in FILES.items()}
        again = semgrep_of(await checks.check(again_edited, list(again_edited)))
        assert ordered(again.findings) == ordered(batch.findings)
    finally:
        await checks.aclose()


@needs_semgrep
async def test_a_text_the_worker_answered_is_not_scanned_again(workspace: Path) -> None:
    checks = CheckRunner(workspace, rule_paths=[RULES], warm_semgrep=True)
    try:
        assert await checks.warm_up(timeout_s=120)
        worker = checks.semgrep._worker
        assert worker is not None
        first = semgrep_of(await checks.check(FILES, list(FILES)))
        exchanges = worker.scans
        fixes = await checks.semgrep.autofix_matches({"a.py": FILES["a.py"]})
        assert fixes is not None
        assert worker.scans == exchanges + 1  # fixes were not asked yet: one exchange
        second = semgrep_of(await checks.check(FILES, list(FILES)))
        assert worker.scans == exchanges + 1  # same texts: answered from memory
        assert ordered(second.findings) == ordered(first.findings)
        changed = {**FILES, "c.py": "import hashlib\nhashlib.md5(b'y')\n"}
        third = semgrep_of(await checks.check(changed, list(changed)))
        assert worker.scans == exchanges + 2  # only the changed text is asked
        assert "c.py" in {f.path for f in third.findings}
    finally:
        await checks.aclose()


@needs_semgrep
async def test_broken_rules_never_pass_through_the_warm_path(
    workspace: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules:\n  - id: broken\n    pattern: [unclosed\n")
    checks = CheckRunner(workspace, rule_paths=[broken], warm_semgrep=True)
    try:
        assert not await checks.warm_up(timeout_s=30)
        verdict = semgrep_of(await checks.check({"x.py": "x = 1\n"}, ["x.py"]))
    finally:
        await checks.aclose()
    assert verdict.kind == "error" and verdict.reason

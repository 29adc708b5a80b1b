"""The fix agent on the supervisor's warm semgrep worker: the same fixes as the CLI, no start-up.

Known answers come from the CLI itself (`semgrep scan --json` through `scan_texts`): the warm
worker's matches and fix replacements must be byte-for-byte the CLI's, including a match after
non-ASCII text (semgrep's language server counts UTF-8 bytes per line) and CRLF line ends.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from delegation_machine.engine.agents.base import AgentFailure
from delegation_machine.engine.agents.builtin import FixAgent
from delegation_machine.engine.agents.builtin.semgrep_fixes import (
    cli_fix_scan,
    scan_texts,
    shared_fix_scan,
)
from delegation_machine.engine.rules import bundled_semgrep_rules
from delegation_machine.engine.supervise.semgrep import SemgrepScanner
from delegation_machine.engine.supervise.semgrep_worker import SemgrepResult

from .support import apply_mutations, make_work, python_files

TEXTS = {
    "a.py": (
        "import random\nimport yaml\n\n"
        '# "é" and "日本" before the match shift byte columns away from code points\n'
        'def token():  # héllo 日本\n    return "é" + random.choice("abc")  # ü\n\n'
        "def load(text):\n    return yaml.load(text)\n"
    ),
    "pkg/b.py": "import yaml\r\n\r\nvalue = yaml.load(open('x'))\r\n",
    "clean.py": "print('nothing to fix')\n",
    # semgrep's default ignores skip tests/ unless told otherwise: the worker must not
    "tests/test_load.py": "import yaml\n\n\ndef test_load():\n    assert yaml.load('a: 1')\n",
}


def by_position(results: list[SemgrepResult]) -> list[tuple[str, str, int, int, int, str | None]]:
    return sorted((r.path, r.rule_id, r.line, r.start_byte, r.end_byte, r.fix) for r in results)


async def test_warm_matches_and_fixes_equal_the_cli_scan(tmp_path: Path) -> None:
    scanner = SemgrepScanner(tmp_path, warm=True)
    try:
        warm = await scanner.autofix_matches(TEXTS)
        assert warm is not None, "the warm worker must answer once it is ready"
        assert scanner.warm_scans == 1 and scanner.batch_scans == 1  # the rules' validation
    finally:
        await scanner.aclose()
    cli = await scan_texts(TEXTS, rule_paths=bundled_semgrep_rules())
    assert by_position(warm) == by_position(cli)
    assert {r.path for r in warm if r.fix} == {"a.py", "pkg/b.py", "tests/test_load.py"}


async def test_the_swarm_fix_scan_gives_the_cli_agents_files(sample_copy: Path) -> None:
    paths = [rel for rel in python_files(sample_copy) if rel.startswith("inventory/")]
    scanner = SemgrepScanner(sample_copy, warm=True)
    try:
        warm_agent = FixAgent(
            "builtin:fix-1", workspace_root=sample_copy, scan=shared_fix_scan(scanner)
        )
        work = make_work(sample_copy, paths, kind="fix", instruction="fix")
        warm = apply_mutations(sample_copy, work, (await warm_agent.run(work)).mutations)
        warm_scans = scanner.warm_scans
    finally:
        await scanner.aclose()
    cli_agent = FixAgent("builtin:fix-2", workspace_root=sample_copy, scan=cli_fix_scan())
    cli = apply_mutations(sample_copy, work, (await cli_agent.run(work)).mutations)
    assert warm_scans >= 1
    assert warm and warm == cli  # the sample has fixable findings: some file changed


async def test_rules_the_worker_refuses_fail_the_fix_loudly(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules:\n  - id: broken\n    pattern: [unclosed\n")
    scanner = SemgrepScanner(tmp_path, rule_paths=[broken], warm=True)
    try:
        assert await scanner.autofix_matches(TEXTS) is None  # the worker gave up on them
        with pytest.raises(AgentFailure, match="semgrep failed"):
            await shared_fix_scan(scanner)(TEXTS)  # the CLI with the same rules says why
    finally:
        await scanner.aclose()

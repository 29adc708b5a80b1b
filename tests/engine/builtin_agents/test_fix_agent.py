"""FixAgent on a copy of the inventory sample, with real semgrep and real ruff."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from delegation_machine.engine.agents.base import (
    Agent,
    AgentResult,
    FileVersion,
    apply_edits,
    edits_from_texts,
)
from delegation_machine.engine.agents.builtin import FixAgent
from delegation_machine.engine.agents.builtin.semgrep_fixes import splice_fixes
from delegation_machine.engine.protocol import TextEdit
from delegation_machine.engine.rules import bundled_rule_id
from delegation_machine.engine.supervise.semgrep_worker import SemgrepResult

from .support import (
    apply_mutations,
    make_work,
    pin_ruff_config,
    python_files,
    readme_rows,
    snapshot_tree,
)

SemgrepScan = Callable[[list[Path], Path], dict[str, Any]]


async def run_fix(root: Path, paths: list[str], **kwargs: Any) -> tuple[Any, AgentResult]:
    work = make_work(root, paths, kind="fix", instruction="fix security findings", **kwargs)
    agent = FixAgent("builtin:fix-1", workspace_root=root)
    assert isinstance(agent, Agent)
    return work, await agent.run(work)


async def test_fix_clears_every_fixable_finding_and_the_sample_tests_still_pass(
    sample_copy: Path, semgrep_scan: SemgrepScan, sample_tests: Callable[[Path], Any]
) -> None:
    package_files = [rel for rel in python_files(sample_copy) if rel.startswith("inventory/")]
    before = snapshot_tree(sample_copy)
    work, result = await run_fix(sample_copy, package_files)
    assert snapshot_tree(sample_copy) == before, "an agent must never write files"
    assert all(m.agent_id == "builtin:fix-1" for m in result.mutations)
    fixed = apply_mutations(sample_copy, work, result.mutations)
    for text in fixed.values():
        ast.parse(text)

    seeded = readme_rows("Seeded semgrep findings")
    fixable = {(path, rule) for path, _, rule, fix in seeded if "yes" in fix}
    unfixable = {(path, line, rule) for path, line, rule, fix in seeded if "yes" not in fix}
    assert fixable and unfixable
    assert {path for path, _ in fixable} <= set(fixed)
    report = semgrep_scan([sample_copy / rel for rel in package_files], sample_copy)
    remaining = {
        (
            Path(r["path"]).resolve().relative_to(sample_copy.resolve()).as_posix(),
            r["start"]["line"],
            bundled_rule_id(r["check_id"]),
        )
        for r in report["results"]
    }
    remaining_kinds = {(path, rule) for path, _, rule in remaining}
    assert not remaining_kinds & fixable
    # Fixes above a finding can move it; compare the rule and file, and the count.
    assert sorted((p, r) for p, _, r in remaining) == sorted((p, r) for p, _, r in unfixable)
    for path, line, rule in sorted(unfixable):
        assert f"{path}:{line} {rule}" in result.notes  # lines of the text the agent was given

    outcome = sample_tests(sample_copy)
    assert outcome.returncode == 0, outcome.stdout[-3000:]
    assert " passed" in outcome.stdout


async def test_fix_gives_the_expected_text_for_auth_and_models(sample_copy: Path) -> None:
    auth_before = (sample_copy / "inventory/auth.py").read_text(encoding="utf-8")
    models_before = (sample_copy / "inventory/models.py").read_text(encoding="utf-8")
    work, result = await run_fix(sample_copy, ["inventory/auth.py", "inventory/models.py"])
    fixed = apply_mutations(sample_copy, work, result.mutations)

    expected_auth = (
        auth_before.replace("random.choice(", "random.SystemRandom().choice(")
        .replace("random.getrandbits(64)", "random.SystemRandom().getrandbits(64)")
        .replace("hashlib.sha1(", "hashlib.sha256(")
    )
    assert fixed["inventory/auth.py"] == expected_auth
    expected_models = (
        models_before.replace("import os\n", "")
        .replace("from typing import List, Optional\n", "")
        .replace("List[str]", "list[str]")
        .replace("Optional[str]", "str | None")
    )
    assert fixed["inventory/models.py"] == expected_models
    by_path = {m.path: m for m in result.mutations}
    assert "dm-weak-hash x1" in by_path["inventory/auth.py"].description
    assert "dm-insecure-random-secret x2" in by_path["inventory/auth.py"].description
    assert by_path["inventory/models.py"].description == "ruff safe fixes"


async def test_byte_offsets_become_code_point_edits(tmp_path: Path) -> None:
    # Multi-byte characters before and between findings: semgrep's byte offsets would land
    # in the wrong place if they were used as string indices.
    source = (
        '"""Küchen-Inventar 📦 — Preise in €."""\n'
        "import hashlib\n"
        "import yaml\n"
        "\n"
        "\n"
        "def load(text):  # 📦📦 ünïcödé\n"
        '    label = "€€€"; data = yaml.load(text, Loader=yaml.FullLoader)\n'
        '    return label, data, hashlib.md5("🔑".encode()).hexdigest()\n'
    )
    (tmp_path / "mod.py").write_text(source, encoding="utf-8")
    pin_ruff_config(tmp_path)
    work, result = await run_fix(tmp_path, ["mod.py"])
    fixed = apply_mutations(tmp_path, work, result.mutations)
    assert fixed["mod.py"] == (
        source.replace("yaml.load(text, Loader=yaml.FullLoader)", "yaml.safe_load(text)").replace(
            "hashlib.md5(", "hashlib.sha256("
        )
    )


async def test_unparsable_files_are_left_alone_and_others_still_fixed(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import os\ndef f(:\n    yaml.load(x)\n", encoding="utf-8")
    (tmp_path / "good.py").write_text(
        "import os\nimport requests\n\n\ndef get(url):\n"
        "    return requests.get(url, verify=False)\n",
        encoding="utf-8",
    )
    (tmp_path / "notes.md").write_text("# notes\n", encoding="utf-8")
    pin_ruff_config(tmp_path)
    work, result = await run_fix(tmp_path, ["broken.py", "good.py", "notes.md"])
    assert [m.path for m in result.mutations] == ["good.py"]
    fixed = apply_mutations(tmp_path, work, result.mutations)
    assert fixed["good.py"] == (
        "import requests\n\n\ndef get(url):\n    return requests.get(url, verify=True)\n"
    )
    assert "skipped (not Python): notes.md" in result.notes
    assert "broken.py is not valid Python, so it was left unchanged" in result.notes


async def test_fix_uses_the_live_buffer_text_and_version(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text("x = 1\n", encoding="utf-8")
    pin_ruff_config(tmp_path)
    buffer = "import tempfile\nimport yaml\n\nDATA = yaml.load(open('a'))\n"
    work, result = await run_fix(tmp_path, ["mod.py"], overrides={"mod.py": buffer})
    (mutation,) = result.mutations
    assert mutation.base_version == 7
    fixed = apply_mutations(tmp_path, work, result.mutations)
    assert fixed["mod.py"] == "import yaml\n\nDATA = yaml.safe_load(open('a'))\n"


async def test_nothing_to_fix_gives_no_mutations(tmp_path: Path) -> None:
    (tmp_path / "clean.py").write_text("VALUE = 1\n", encoding="utf-8")
    pin_ruff_config(tmp_path, '["ALL"]')
    _, result = await run_fix(tmp_path, ["clean.py"])
    assert result.mutations == ()


@pytest.mark.parametrize(
    ("spans", "expected", "waited"),
    [
        ([(0, 3, "AAA"), (4, 7, "BBB")], "AAA-BBB", False),
        ([(0, 5, "XXXXX"), (3, 7, "YYYY")], "XXXXXbc", True),
    ],
)
def test_overlapping_fixes_wait_for_the_next_pass(
    spans: list[tuple[int, int, str]], expected: str, waited: bool
) -> None:
    results = [SemgrepResult("m.py", "dm-x", 1, s, e, "m", fix) for s, e, fix in spans]
    text, applied, did_wait = splice_fixes("aaa-abc", results)
    assert (text, did_wait) == (expected, waited)
    assert len(applied) == (1 if waited else 2)


def test_file_version_is_what_agents_receive() -> None:
    assert FileVersion("x", 3).version == 3


@given(
    text=st.text(min_size=1, max_size=60),
    cuts=st.lists(st.integers(min_value=0, max_value=60), min_size=2, max_size=8),
    replacements=st.lists(st.text(max_size=5), min_size=4, max_size=4),
)
def test_byte_spliced_fixes_equal_code_point_edits(
    text: str, cuts: list[int], replacements: list[str]
) -> None:
    """Property: splicing at semgrep's byte offsets == editing at the code-point offsets."""
    points = sorted({min(c, len(text)) for c in cuts})
    spans = list(zip(points[::2], points[1::2], strict=False))[:4]
    to_byte = [len(text[:i].encode("utf-8")) for i in range(len(text) + 1)]
    results = [
        SemgrepResult("m.py", "dm-x", 1, to_byte[s], to_byte[e], "m", replacements[n])
        for n, (s, e) in enumerate(spans)
    ]
    spliced, applied, waited = splice_fixes(text, results)
    expected = apply_edits(
        text, [TextEdit(s, e, replacements[n]) for n, (s, e) in enumerate(spans)]
    )
    assert (spliced, len(applied), waited) == (expected, len(spans), False)
    assert apply_edits(text, edits_from_texts(text, spliced)) == spliced

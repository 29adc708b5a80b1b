"""Many texts through one ruff run (`ruff_texts`) give what ruff gives each file on stdin.

The batch writes the texts and the workspace's ruff configuration files into a private copy;
these tests pin that the copy resolves the same settings as the workspace itself: nested
configurations, exclusions, a file ruff cannot parse, and a configuration that extends another
file (served file by file).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from delegation_machine.engine.agents.base import AgentFailure
from delegation_machine.engine.agents.builtin.ruff_tool import (
    ruff_format,
    ruff_safe_fixes,
    ruff_texts,
)

LONG = "x = [1111111, 2222222, 3333333, 4444444, 5555555, 6666666]\n"
FIXABLE = "import os\nimport sys\n\nprint(sys.argv)\n"


def _workspace(root: Path) -> dict[str, str]:
    (root / "pyproject.toml").write_text(
        '[tool.ruff]\nline-length = 40\nextend-exclude = ["pkg/skipped.py"]\n'
        '[tool.ruff.lint]\nselect = ["F401"]\n',
        encoding="utf-8",
    )
    (root / "pkg" / "wide").mkdir(parents=True)
    (root / "pkg" / "wide" / "ruff.toml").write_text("line-length = 200\n", encoding="utf-8")
    texts = {
        "top.py": LONG + FIXABLE,
        "pkg/narrow.py": LONG,
        "pkg/skipped.py": LONG + FIXABLE,
        "pkg/wide/wide.py": LONG + FIXABLE,
        "pkg/broken.py": "def f(:\n    pass\n",
    }
    for rel, text in texts.items():
        (root / rel).write_text(text, encoding="utf-8")
    return texts


async def test_one_run_formats_like_ruff_on_each_file(tmp_path: Path) -> None:
    texts = _workspace(tmp_path)
    batch = await ruff_texts("format", texts, tmp_path)
    assert batch.runs == 1
    assert set(batch.unparsable) == {"pkg/broken.py"}
    assert "line 1" in str(batch.unparsable["pkg/broken.py"])
    for rel, text in texts.items():
        if rel != "pkg/broken.py":
            assert batch.texts[rel] == await ruff_format(text, rel, tmp_path), rel
    assert batch.texts["pkg/narrow.py"] != LONG  # 40 columns: wrapped
    assert batch.texts["pkg/wide/wide.py"].startswith(LONG)  # the nested 200-column config
    assert batch.texts["pkg/skipped.py"] == texts["pkg/skipped.py"]  # excluded: unchanged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg", "pyproject.toml", "top.py"]


async def test_one_run_fixes_like_ruff_on_each_file(tmp_path: Path) -> None:
    texts = _workspace(tmp_path)
    del texts["pkg/broken.py"]
    batch = await ruff_texts("fix", texts, tmp_path)
    assert batch.runs == 1
    for rel, text in texts.items():
        assert batch.texts[rel] == await ruff_safe_fixes(text, rel, tmp_path), rel
    assert "import os" not in batch.texts["top.py"]
    assert batch.texts["pkg/skipped.py"] == texts["pkg/skipped.py"]


@pytest.mark.parametrize("where", ["pyproject.toml", "pkg/wide/ruff.toml"])
async def test_a_config_that_extends_another_file_is_served_file_by_file(
    tmp_path: Path, where: str
) -> None:
    texts = _workspace(tmp_path)
    (tmp_path / "base.toml").write_text("line-length = 30\n", encoding="utf-8")
    config = tmp_path / where
    extend = '[tool.ruff]\nextend = "base.toml"\n' if where == "pyproject.toml" else ""
    if where != "pyproject.toml":
        extend = 'extend = "../../base.toml"\n'
    config.write_text(extend, encoding="utf-8")
    batch = await ruff_texts("format", texts, tmp_path)
    assert batch.runs == len(texts)
    for rel, text in texts.items():
        if rel != "pkg/broken.py":
            assert batch.texts[rel] == await ruff_format(text, rel, tmp_path), rel


async def test_paths_outside_the_workspace_are_refused(tmp_path: Path) -> None:
    with pytest.raises(AgentFailure, match="inside the workspace"):
        await ruff_texts("format", {"a.py": "x = 1\n", "../b.py": "y = 2\n"}, tmp_path)

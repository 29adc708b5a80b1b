"""The editor set-up snippets for the ACP agent: the files in editor-clients/acp/ and the
copies in docs/editors.md say the same, and each starts `delegation-machine acp`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SNIPPETS = ROOT / "editor-clients" / "acp"
DOCS = (ROOT / "docs" / "editors.md").read_text(encoding="utf-8")
AGENT = "/path/to/project/.venv/bin/delegation-machine"


def docs_json_blocks() -> list[object]:
    blocks = re.findall(r"```json\n(.*?)```", DOCS, re.S)
    return [json.loads(block) for block in blocks if '"agent_servers"' in block]


@pytest.mark.parametrize("name", ["zed-settings.json", "jetbrains-acp.json"])
def test_json_snippets_start_the_acp_agent_and_match_the_docs(name: str) -> None:
    snippet = json.loads((SNIPPETS / name).read_text(encoding="utf-8"))
    (server,) = snippet["agent_servers"].values()
    assert (server["command"], server["args"]) == (AGENT, ["acp"])
    assert snippet in docs_json_blocks()


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("codecompanion.lua", f'{{ "{AGENT}", "acp" }}'),
        ("avante.lua", f'command = "{AGENT}",\n      args = {{ "acp" }}'),
        ("agent-shell.el", f'\'("{AGENT}" "acp")'),
    ],
)
def test_plugin_snippets_start_the_acp_agent(name: str, command: str) -> None:
    text = (SNIPPETS / name).read_text(encoding="utf-8")
    assert command in text
    assert name in (SNIPPETS / "README.md").read_text(encoding="utf-8")

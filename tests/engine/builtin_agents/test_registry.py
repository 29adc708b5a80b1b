"""The built-in agent registry and the instruction grammar the swarm routes with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from delegation_machine.engine.agents.base import Agent
from delegation_machine.engine.agents.builtin import (
    FixAgent,
    FormatAgent,
    RenameAgent,
    UnknownAgentKind,
    builtin_agent_kinds,
    create_builtin_agent,
    parse_builtin_instruction,
)


def test_every_kind_is_registered_and_builds_an_agent(tmp_path: Path) -> None:
    kinds = builtin_agent_kinds()
    assert kinds == {
        "fix": FixAgent,
        "format": FormatAgent,
        "rename": RenameAgent,
    }
    for number, kind in enumerate(sorted(kinds), start=1):
        agent = create_builtin_agent(kind, f"builtin:{kind}-{number}", workspace_root=tmp_path)
        assert isinstance(agent, Agent)
        assert (agent.kind, agent.agent_id) == (kind, f"builtin:{kind}-{number}")
    kinds.clear()
    assert "fix" in builtin_agent_kinds(), "callers get a copy"


def test_unknown_kind_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UnknownAgentKind, match=r"'llm'; built-in kinds: fix, format, rename"):
        create_builtin_agent("llm", "x", workspace_root=tmp_path)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("fix", ("fix", {})),
        ("FIX", ("fix", {})),
        ("Delegate: fix security findings", ("fix", {})),
        ("fix all the lint warnings in this file", ("fix", {})),
        ("autofix", ("fix", {})),
        ("format", ("format", {})),
        ("Delegate: Format this file", ("format", {})),
        ("reformat the selection", ("format", {})),
        ("check", ("check", {})),
        ("run checks", ("check", {})),
        ("Delegate: check security", ("check", {})),
        ("rename foo bar", ("rename", {"old": "foo", "new": "bar"})),
        ("rename foo to bar", ("rename", {"old": "foo", "new": "bar"})),
        (
            "Delegate: Rename calc_total to compute_order_total",
            ("rename", {"old": "calc_total", "new": "compute_order_total"}),
        ),
        (
            "rename the function `calc_total` to `OrderTotal`.",
            ("rename", {"old": "calc_total", "new": "OrderTotal"}),
        ),
        ("rename foo -> bar", ("rename", {"old": "foo", "new": "bar"})),
        # Invalid names still parse, so the agent can say what is wrong with them.
        ("rename foo to 1bar", ("rename", {"old": "foo", "new": "1bar"})),
        # Work a tool cannot do goes to a model.
        ("fix the rounding bug in pricing", None),
        ("format the report as a table", None),
        ("rename foo", None),
        ("rename foo to bar in pricing.py", None),
        ("add a cache to the supplier client", None),
        ("", None),
        ("Delegate:", None),
    ],
)
def test_parse_builtin_instruction(text: str, parsed: tuple[str, dict[str, Any]] | None) -> None:
    assert parse_builtin_instruction(text) == parsed

"""No secret ever reaches the ledger, the logs, results or error messages."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from delegation_machine.engine.agents.base import AgentFailure
from delegation_machine.engine.agents.llm import LLMAgent
from delegation_machine.engine.inference.config import create_session, load_backend_config
from delegation_machine.engine.inference.scripted import ScriptedServer, ScriptedTurn
from delegation_machine.engine.memory.symbols import SymbolIndex
from tests.engine.model_doubles import RecordingSleep

from .conftest import make_work

SECRET = "sk-live-DM7f3e9a2b1c4d5e6f"


async def test_fake_key_never_recorded(
    scripted: Callable[..., ScriptedServer],
    workspace: Path,
    index: SymbolIndex,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("DM_FAKE_KEY", SECRET)
    server = scripted(
        [
            ScriptedTurn(
                content=json.dumps(
                    {"tool": "propose_edit", "path": "calc.py", "old": "a - b", "new": "a + b"}
                )
            ),
            ScriptedTurn(content=json.dumps({"tool": "finish", "summary": "fixed"})),
            ScriptedTurn(status=401, error="bad key", echo_credentials=True),
            ScriptedTurn(status=500, error="boom", echo_credentials=True),
        ]
    )
    cfg = load_backend_config(
        {
            "provider": "openai",
            "base_url": server.base_url,
            "model": "m",
            "api_key_env": "DM_FAKE_KEY",
            "max_retries": 1,
        }
    )
    assert cfg is not None
    session = create_session(cfg, sleep=RecordingSleep())
    result = await LLMAgent("a1", session, checker=None).run(make_work(workspace, index))
    failures: list[str] = []
    for task_id in ("p1.2", "p1.3"):
        try:
            await LLMAgent("a2", session, checker=None).run(
                make_work(workspace, index, task_id=task_id)
            )
        except AgentFailure as exc:
            failures.append(repr(exc) + str(exc.__cause__) + str(exc.__context__))
    await session.aclose()

    assert len(failures) == 2 and "HTTP 401" in failures[0] and "[redacted]" in failures[0]
    assert all(r.had_credentials for r in server.requests)
    recorded = [
        msgspec.json.encode(session.ledger.snapshot()).decode(),
        msgspec.json.encode(result).decode(),
        repr(session.observations),
        caplog.text,
        *failures,
        json.dumps([r.body for r in server.requests]),
        repr(cfg),
        msgspec.json.encode(cfg).decode(),
    ]
    for text in recorded:
        assert SECRET not in text
        assert SECRET[3:15] not in text
    assert "DM_FAKE_KEY" in repr(cfg)  # the configuration holds the variable's name only

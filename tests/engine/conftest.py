"""Fixtures shared by every engine test folder."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from delegation_machine.engine.inference.scripted import ScriptedServer
from tests.engine.model_doubles import scripted_servers


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedServer]]:
    """`scripted(turns, **kwargs)` starts a real local OpenAI-compatible server replaying turns."""
    yield from scripted_servers()

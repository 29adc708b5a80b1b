"""Fixtures for the inference tests: a started ScriptedServer and a recording no-wait sleep."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest

from delegation_machine.engine.inference.scripted import Responder, ScriptedServer, ScriptedTurn


class RecordingSleep:
    """Injected as the backoff sleep: records each delay and returns at once (no wall time)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def backoff() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(turns: Sequence[ScriptedTurn] | Responder, **kwargs: object) -> ScriptedServer:
        server = ScriptedServer(turns, **kwargs).start()  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()

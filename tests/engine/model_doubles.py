"""Test doubles for model backends, shared by the inference and LLM-agent tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from delegation_machine.engine.inference.scripted import Responder, ScriptedServer, ScriptedTurn


class RecordingSleep:
    """Injected as the backoff sleep: records each delay and returns at once (no wall time)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def scripted_servers() -> Iterator[Callable[..., ScriptedServer]]:
    """Body of the `scripted` fixture: start ScriptedServers on demand, stop them all after."""
    servers: list[ScriptedServer] = []

    def start(turns: Sequence[ScriptedTurn] | Responder, **kwargs: object) -> ScriptedServer:
        server = ScriptedServer(turns, **kwargs).start()  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()

"""The ACP agent: `initialize`, `session/new`, `session/prompt`, `session/cancel`.

Owns the sessions of one connection and the swarms they work on: one `Swarm` per workspace
folder, started on the first `session/new` for it and shared by every session on it, stopped
when the connection ends; or, inside a `serve` process (`server.acp.attach`), that process's
own running swarm, never stopped by the connection. A workspace another process owns (`serve`
without its socket, `run`) is refused with an error naming that process. Errors a client can act on are JSON-RPC errors with a message
that says what to change; the agent goes on serving after each.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import Any, Protocol

from acp import PROTOCOL_VERSION, RequestError
from acp.interfaces import Client
from acp.schema import (
    AgentCapabilities,
    ClientCapabilities,
    Implementation,
    InitializeResponse,
    NewSessionResponse,
    PromptCapabilities,
    PromptResponse,
)

from delegation_machine.engine.config import ConfigError
from delegation_machine.engine.protocol import DelegationError
from delegation_machine.engine.state.owner import WorkspaceBusy
from delegation_machine.engine.swarm import Swarm
from delegation_machine.server.acp.prompt import PromptBlock
from delegation_machine.server.acp.session import AcpSession, ClientFiles, invalid_params

log = logging.getLogger(__name__)

VERSION = "0.1.0"
WORKSPACE_UNAVAILABLE = -32010  # server-defined: the workspace cannot be opened (busy, config)


class WorkspaceHost(Protocol):
    """Where a connection's sessions get their workspace's started swarm."""

    async def open(self, root: Path) -> Swarm:
        """The running swarm of `root` (resolved); `RequestError` if it cannot be had."""
        ...

    async def stop_all(self) -> None:
        """The connection ended: stop what this host started for it."""
        ...


class SwarmHost:
    """One started swarm per workspace folder, shared by the sessions on it."""

    def __init__(self) -> None:
        self._swarms: dict[Path, Swarm] = {}
        self._lock = asyncio.Lock()

    async def open(self, root: Path) -> Swarm:
        async with self._lock:
            swarm = self._swarms.get(root)
            if swarm is not None:
                return swarm
            try:
                swarm = Swarm(root)
            except (ConfigError, DelegationError) as exc:
                raise RequestError(WORKSPACE_UNAVAILABLE, f"{root}: {exc}") from None
            try:
                await swarm.start()
            except WorkspaceBusy as exc:
                raise RequestError(
                    WORKSPACE_UNAVAILABLE, str(exc), {"owner": dict(exc.owner)}
                ) from None
            self._swarms[root] = swarm
            return swarm

    async def stop_all(self) -> None:
        async with self._lock:
            swarms, self._swarms = list(self._swarms.values()), {}
        for swarm in swarms:
            await swarm.stop()


class DelegationAgent:
    """The Delegation Machine as an ACP agent: each prompt is a delegation to the swarm."""

    def __init__(self, host: WorkspaceHost | None = None) -> None:
        self._client: Client | None = None
        self._files = ClientFiles()
        self._sessions: dict[str, AcpSession] = {}
        self._host: WorkspaceHost = host if host is not None else SwarmHost()

    def on_connect(self, conn: Client) -> None:
        self._client = conn

    async def initialize(
        self,
        protocol_version: int,
        client_capabilities: ClientCapabilities | None = None,
        client_info: Implementation | None = None,
        **kwargs: Any,
    ) -> InitializeResponse:
        fs = client_capabilities.fs if client_capabilities is not None else None
        if fs is not None:
            self._files = ClientFiles(read=bool(fs.read_text_file), write=bool(fs.write_text_file))
        log.info(
            "ACP client %s, protocol %d, fs read %s write %s",
            client_info.name if client_info is not None else "?",
            protocol_version,
            self._files.read,
            self._files.write,
        )
        return InitializeResponse(
            protocol_version=min(protocol_version, PROTOCOL_VERSION),
            agent_capabilities=AgentCapabilities(
                load_session=False,
                prompt_capabilities=PromptCapabilities(
                    image=False, audio=False, embedded_context=True
                ),
            ),
            agent_info=Implementation(
                name="delegation-machine", title="Delegation Machine", version=VERSION
            ),
        )

    async def new_session(self, cwd: str, **kwargs: Any) -> NewSessionResponse:
        root = Path(cwd)
        if not root.is_absolute():
            raise invalid_params(f"cwd {cwd!r} is not an absolute path", cwd=cwd)
        if not root.is_dir():
            raise invalid_params(f"cwd {cwd!r} is not a folder", cwd=cwd)
        if self._client is None:
            raise RequestError(-32603, "the agent has no client connection")
        swarm = await self._host.open(root.resolve())
        session_id = f"dm-{uuid.uuid4().hex[:12]}"
        self._sessions[session_id] = AcpSession(session_id, swarm, self._client, self._files)
        log.info("session %s on %s", session_id, swarm.root)
        return NewSessionResponse(session_id=session_id)

    async def prompt(
        self, prompt: list[PromptBlock], session_id: str, **kwargs: Any
    ) -> PromptResponse:
        return await self._session(session_id).prompt(prompt)

    async def cancel(self, session_id: str, **kwargs: Any) -> None:
        session = self._sessions.get(session_id)
        if session is None:  # a notification has no reply: the log says why nothing happened
            log.warning("session/cancel for unknown session %r", session_id)
            return
        await session.cancel()

    def _session(self, session_id: str) -> AcpSession:
        session = self._sessions.get(session_id)
        if session is None:
            raise invalid_params(
                f"unknown session {session_id!r}; create one with session/new",
                sessionId=session_id,
            )
        return session

    async def aclose(self) -> None:
        """The connection ended: turns still running are cancelled, then the host stops the
        swarms it started for this connection (none, attached to a `serve`)."""
        for session in list(self._sessions.values()):
            await session.close()
        self._sessions.clear()
        await self._host.stop_all()

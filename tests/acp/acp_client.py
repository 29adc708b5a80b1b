"""A real ACP client (the `agent-client-protocol` SDK's client side) for `delegation-machine acp`.

`RecordingClient` answers the agent's requests as an editor would (permission with a chosen
option, `fs/read_text_file` from its buffers, `fs/write_text_file` into them) and records every
`session/update`; `start_agent` spawns the real command, its stderr in a log file that a
failing test prints.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from acp import spawn_agent_process
from acp.client.connection import ClientSideConnection
from acp.schema import (
    AllowedOutcome,
    ClientCapabilities,
    DeniedOutcome,
    FileSystemCapabilities,
    PermissionOption,
    ReadTextFileResponse,
    RequestPermissionResponse,
    ToolCallUpdate,
    WriteTextFileResponse,
)

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / ".venv" / "bin" / "delegation-machine"
TARGET = "inventory/http_client.py"  # dm-requests-verify-false: the fix sets verify=True
BROKEN_CALL = "verify=False"
FIXED_CALL = "verify=True"


class RecordingClient:
    """An editor's side of ACP: records updates, answers permission and file requests."""

    def __init__(self, *, answer: str | None = "allow-once", buffers: dict[str, str] | None = None):
        self.answer = answer  # the option chosen; None answers "cancelled"; "never" does not
        self.buffers = buffers  # path -> text: the editor's buffers (None: no fs capability)
        self.updates: list[Any] = []
        self.permissions: list[tuple[ToolCallUpdate, list[PermissionOption]]] = []
        self.on_permission: list[Any] = []  # callbacks run when permission is asked
        self.reads: list[str] = []
        self.writes: dict[str, str] = {}
        self._seen = asyncio.Condition()

    @property
    def capabilities(self) -> ClientCapabilities:
        files = self.buffers is not None
        return ClientCapabilities(
            fs=FileSystemCapabilities(read_text_file=files, write_text_file=files)
        )

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        async with self._seen:
            self.updates.append(update)
            self._seen.notify_all()

    async def wait_for_update(self, kind: str) -> Any:
        async with self._seen:
            await self._seen.wait_for(lambda: any(self.of_kind(kind)))
        return self.of_kind(kind)[0]

    def of_kind(self, kind: str) -> list[Any]:
        return [u for u in self.updates if u.session_update == kind]

    async def request_permission(
        self, session_id: str, tool_call: ToolCallUpdate, options: list[PermissionOption], **kw: Any
    ) -> RequestPermissionResponse:
        self.permissions.append((tool_call, options))
        for callback in self.on_permission:
            callback()
        if self.answer == "never":  # the user walks away: the request stays open
            await asyncio.Event().wait()
        if self.answer is None:
            return RequestPermissionResponse(outcome=DeniedOutcome(outcome="cancelled"))
        return RequestPermissionResponse(
            outcome=AllowedOutcome(outcome="selected", option_id=self.answer)
        )

    async def read_text_file(
        self,
        session_id: str,
        path: str,
        line: int | None = None,
        limit: int | None = None,
        **kw: Any,
    ) -> ReadTextFileResponse:
        assert self.buffers is not None, "fs/read_text_file without the capability"
        self.reads.append(path)
        text = self.buffers.get(path)
        if text is None:
            text = Path(path).read_text(encoding="utf-8")
        return ReadTextFileResponse(content=text)

    async def write_text_file(
        self, session_id: str, path: str, content: str, **kw: Any
    ) -> WriteTextFileResponse:
        assert self.buffers is not None, "fs/write_text_file without the capability"
        self.writes[path] = content
        self.buffers[path] = content
        return WriteTextFileResponse()


@asynccontextmanager
async def start_agent(
    client: RecordingClient, log: Path
) -> AsyncIterator[tuple[ClientSideConnection, asyncio.subprocess.Process]]:
    """The real `delegation-machine acp`, initialized with the client's capabilities."""
    with log.open("wb") as stderr:
        async with spawn_agent_process(
            client,
            str(AGENT),
            "acp",
            "--log-level",
            "INFO",
            env=dict(os.environ),
            transport_kwargs={"stderr": stderr.fileno(), "shutdown_timeout": 60.0},
        ) as (conn, process):
            response = await asyncio.wait_for(
                conn.initialize(protocol_version=1, client_capabilities=client.capabilities), 60
            )
            assert response.protocol_version == 1
            yield conn, process

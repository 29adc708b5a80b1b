"""ACP clients attached to a running `serve`: one swarm, one state, for LSP and ACP alike.

Owns the workspace's ACP socket: its path (`socket_path`, one per workspace root, short
enough for a Unix socket's 108-byte limit), the listener a `serve` process opens on it once
its swarm runs (`AcpListener`: each connection is served by the same `DelegationAgent` as the
stdio command, whose sessions get that process's own swarm and which never stops it), and the
other end (`pipe_to_serve`): `delegation-machine acp` started in a folder a `serve` hosts
becomes a byte pipe between its stdio and that socket. Invariants: the socket is private to
the user (mode 0600 from the moment it has its name), a stale one is replaced, and it is
removed when the listener closes. Lives on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import tempfile
from pathlib import Path
from typing import BinaryIO, cast

from acp import Agent, RequestError, run_agent

from delegation_machine.engine.swarm import Swarm
from delegation_machine.server.acp.agent import WORKSPACE_UNAVAILABLE, DelegationAgent

log = logging.getLogger(__name__)

STREAM_LIMIT_BYTES = 50 * 1024 * 1024  # a prompt may embed whole files
PIPE_CHUNK_BYTES = 1 << 16


def socket_path(root: Path) -> Path:
    """Where the `serve` process hosting `root` (resolved) listens for ACP connections."""
    digest = hashlib.blake2b(str(root).encode("utf-8"), digest_size=8).hexdigest()
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"dm-acp-{digest}.sock"


class AttachedHost:
    """The host of a connection to a `serve`: that process's swarm, for its root only."""

    def __init__(self, swarm: Swarm) -> None:
        self.swarm = swarm

    async def open(self, root: Path) -> Swarm:
        if root != self.swarm.root:
            raise RequestError(
                WORKSPACE_UNAVAILABLE,
                f"this agent is attached to the `delegation-machine serve` of "
                f"{self.swarm.root} and serves only that folder, not {root}; start "
                f"`delegation-machine acp` in {root} (or with --workspace {root}) for it",
                {"root": str(self.swarm.root), "cwd": str(root)},
            )
        return self.swarm

    async def stop_all(self) -> None:
        """Nothing to stop: the swarm is the `serve` process's, and outlives the connection."""


class AcpListener:
    """A `serve` process's ACP socket: each connection is an ACP agent on its swarm."""

    def __init__(self, swarm: Swarm) -> None:
        self.swarm = swarm
        self.path = socket_path(swarm.root)
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        sock = bind_private(self.path)
        self._inode = self.path.stat().st_ino
        self._server = await asyncio.start_unix_server(
            self._serve, sock=sock, limit=STREAM_LIMIT_BYTES
        )
        log.info("ACP clients attach to %s at %s", self.swarm.root, self.path)

    async def close(self) -> None:
        """Stop listening, end the connections (their turns keep nothing), remove the socket."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self._remove_socket()
        connections = list(self._connections)
        for task in connections:
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)

    def _remove_socket(self) -> None:
        """Only ours: a socket a later process put at the same path stays."""
        with contextlib.suppress(FileNotFoundError):
            if self.path.stat().st_ino == self._inode:
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        agent = DelegationAgent(AttachedHost(self.swarm))
        log.info("an ACP client attached to %s", self.swarm.root)
        try:
            # As in `serve_acp`: the SDK's Agent protocol lists methods this agent lacks.
            await run_agent(cast(Agent, agent), writer, reader)
        finally:
            await agent.aclose()
            writer.close()
            self._connections.discard(task)
            log.info("an ACP client detached from %s", self.swarm.root)


def bind_private(path: Path) -> socket.socket:
    """A listening Unix socket at `path`, mode 0600 before anyone can find it: bound in a
    private folder beside it, then renamed over `path` (replacing a stale socket)."""
    folder = Path(tempfile.mkdtemp(prefix=".dm-acp-", dir=path.parent))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        staged = folder / "s"
        sock.bind(str(staged))
        os.chmod(staged, 0o600)
        sock.listen()
        os.replace(staged, path)
    except BaseException:
        sock.close()
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            (folder / "s").unlink()
        folder.rmdir()
    return sock


async def connect(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    """A connection to the `serve` listening at `path`, or None when none listens there."""
    try:
        return await asyncio.open_unix_connection(str(path), limit=STREAM_LIMIT_BYTES)
    except (FileNotFoundError, ConnectionRefusedError):  # no socket, or a stale one
        return None


async def pipe_to_serve(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    protocol_in: BinaryIO,
    protocol_out: BinaryIO,
) -> None:
    """Carry bytes both ways between the client's pipes and the `serve` connection, until
    either side closes."""
    loop = asyncio.get_running_loop()
    client_reader = asyncio.StreamReader(limit=STREAM_LIMIT_BYTES)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(client_reader), protocol_in)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, protocol_out
    )
    client_writer = asyncio.StreamWriter(transport, protocol, None, loop)
    serve_reader, serve_writer = connection
    directions = [
        asyncio.ensure_future(carry(client_reader, serve_writer)),
        asyncio.ensure_future(carry(serve_reader, client_writer)),
    ]
    try:
        await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for direction in directions:
            direction.cancel()
        await asyncio.gather(*directions, return_exceptions=True)
        serve_writer.close()
        client_writer.close()
    for direction in directions:  # a fault in carrying (not a close) is raised, not hidden
        if not direction.cancelled() and direction.exception() is not None:
            raise cast(BaseException, direction.exception())


async def carry(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy `source` into `sink` until `source` ends (or `sink` is gone)."""
    try:
        while chunk := await source.read(PIPE_CHUNK_BYTES):
            sink.write(chunk)
            await sink.drain()
    except (ConnectionResetError, BrokenPipeError):
        log.info("the other side of the ACP pipe closed")

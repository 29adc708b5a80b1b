"""The ACP agent on this process's stdin and stdout.

Owns the protocol's two pipes: the process's standard input and output are moved to private
descriptors that only the ACP connection uses, and fds 0 and 1 are pointed at /dev/null and
stderr, so a child process (a check, a tool) or a stray print can neither read a client's
message nor write into the protocol stream. When a `serve` process hosts the workspace, the
pipes are carried to its ACP socket instead (`serve_or_attach`), so both share its swarm.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import BinaryIO, cast

from acp import Agent, run_agent

from delegation_machine.server.acp.agent import DelegationAgent
from delegation_machine.server.acp.attach import (
    STREAM_LIMIT_BYTES,
    connect,
    pipe_to_serve,
    socket_path,
)

log = logging.getLogger(__name__)


def take_protocol_pipes() -> tuple[BinaryIO, BinaryIO]:
    """(input, output) of the protocol, private; fds 0 and 1 no longer reach the client."""
    sys.stdout.flush()
    protocol_in = os.fdopen(os.dup(0), "rb", buffering=0)
    protocol_out = os.fdopen(os.dup(1), "wb", buffering=0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    return protocol_in, protocol_out


async def serve_acp(protocol_in: BinaryIO, protocol_out: BinaryIO) -> None:
    """Serve one client until it closes the connection; then stop every swarm."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=STREAM_LIMIT_BYTES)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), protocol_in)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, protocol_out
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    agent = DelegationAgent()
    try:
        # The SDK answers the methods an agent lacks (session/load, modes) with "method not
        # found"; its Agent protocol lists them all, so the structural check needs a cast.
        await run_agent(cast(Agent, agent), writer, reader)
    finally:
        await agent.aclose()


async def serve_or_attach(workspace: Path, protocol_in: BinaryIO, protocol_out: BinaryIO) -> None:
    """Attach to the `serve` hosting `workspace` (resolved) when one listens, else serve here."""
    path = socket_path(workspace)
    connection = await connect(path)
    if connection is None:
        await serve_acp(protocol_in, protocol_out)
        return
    log.info("attached to the serve process of %s (%s)", workspace, path)
    await pipe_to_serve(connection, protocol_in, protocol_out)

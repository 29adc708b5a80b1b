"""The worker process: takes agent tasks from Redis Streams, runs them, sends back Mutations.

Owns `ScaleWorker`: `slots` consumers of the namespace's consumer group on the streams of the
kinds it serves. Each entry is decoded through the wire types (a malformed or hostile one is
refused, logged, recorded on the namespace's rejected stream and acknowledged, never run);
its snapshots are fetched by digest and checked; the files are written into a private scratch
folder (the agent's `workspace_root`, with the workspace's tool configuration), the agent of
its kind runs there, and its Mutations (against the snapshot versions it was given), usage
and notes go to the host's results stream with the attempt's fencing token; then the entry is
acknowledged. While a task runs the worker heartbeats: it claims its own entry again (which
resets the idle time the host reclaims on) and refreshes its line on the workers hash; when
the claim comes back empty the host has taken the task back, and the agent is stopped. On
`stop()` (SIGTERM) it takes nothing new, lets running tasks finish for `drain_s`, and gives
back the rest (`ReleaseMessage`), so the host issues them again at once. A lost Redis is
logged once and waited out; a result is kept until it is sent. The worker uses its own
agents and inference configuration (`WorkerAgents`); nothing in a task names a key.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from delegation_machine.engine.agents.base import (
    Agent,
    AgentFailure,
    AgentResult,
    AgentWork,
    FileVersion,
)
from delegation_machine.engine.scale.blobs import BlobError, BlobStore
from delegation_machine.engine.scale.connection import StreamNames, redacted_url
from delegation_machine.engine.scale.wire import (
    WIRE_VERSION,
    Heartbeat,
    ReleaseMessage,
    ResultMessage,
    TaskMessage,
    WireError,
    check_relative_path,
    decode_entry,
    encode_message,
    entry_fields,
    stream_entries,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

READ_BLOCK_MS = 500
BACKOFF_S = (0.1, 0.25, 0.5, 1.0, 2.0)
REJECTED_MAX = 1_000
TRANSPORT_ERRORS = (RedisError, OSError)


class WorkerAgents(Protocol):
    """Builds the worker's agents (its own tools and model, never the host's)."""

    def kinds(self) -> tuple[str, ...]:
        """The task kinds these agents can run."""
        ...

    def create(self, kind: str, agent_id: str, root: Path) -> Agent:
        """An agent of `kind` named `agent_id` working in the scratch folder `root`."""
        ...


class _Running:
    def __init__(self, stream: str, entry_id: bytes, consumer: str, message: TaskMessage):
        self.stream = stream
        self.entry_id = entry_id
        self.consumer = consumer
        self.message = message
        self.task: asyncio.Task[AgentResult] | None = None
        self.lost = False  # the host took the entry back: the result would be stale


class ScaleWorker:
    """One worker process's consumers, heartbeat and drain."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        url: str,
        names: StreamNames,
        name: str,
        agents: WorkerAgents,
        kinds: Sequence[str],
        slots: int = 1,
        drain_s: float = 30.0,
        scratch: Path | None = None,
    ) -> None:
        unknown = sorted(set(kinds) - set(agents.kinds()))
        if unknown:
            raise ValueError(
                f"this worker cannot run {', '.join(unknown)}; it can run "
                f"{', '.join(agents.kinds())}"
            )
        if slots < 1:
            raise ValueError("a worker needs at least one agent slot")
        self._client = client
        self.where = redacted_url(url)
        self._names = names
        self.name = name
        self._agents = agents
        self.kinds = tuple(kinds)
        self.slots = slots
        self.drain_s = drain_s
        self._blobs = BlobStore(client, names)
        self._scratch = scratch or Path(tempfile.mkdtemp(prefix="dm-worker-"))
        self._owns_scratch = scratch is None
        self._stopping = asyncio.Event()
        self._closed = False  # drained: the heartbeat ends (cancelling alone may not end it)
        self._running: dict[bytes, _Running] = {}
        self._down = False
        self.completed = 0
        self.rejected = 0
        self.released = 0

    # --- lifecycle --------------------------------------------------------------------------

    def stop(self) -> None:
        """Take nothing new; finish or give back what runs (SIGTERM)."""
        self._stopping.set()

    async def run(self) -> None:
        """Serve until `stop()`; then drain and return."""
        await self._ensure_groups()
        lease = 30.0
        try:
            async with asyncio.TaskGroup() as group:
                beat = group.create_task(self._heartbeat_loop(lease), name="worker:heartbeat")
                consumers = [
                    group.create_task(self._consume(f"{self.name}/{n}"), name=f"worker:{n}")
                    for n in range(1, self.slots + 1)
                ]
                await self._stopping.wait()
                await self._drain()
                self._closed = True
                for task in consumers:
                    task.cancel()
                beat.cancel()
        finally:
            await self._forget_heartbeat()
            if self._owns_scratch:
                shutil.rmtree(self._scratch, ignore_errors=True)

    async def _drain(self) -> None:
        busy = [r.task for r in self._running.values() if r.task is not None]
        if busy:
            log.info("stopping: %d task(s) running; waiting up to %g s", len(busy), self.drain_s)
            await asyncio.wait(busy, timeout=self.drain_s)
        for running in list(self._running.values()):
            if running.task is not None and not running.task.done():
                running.task.cancel()  # _execute gives it back (ReleaseMessage)
        while self._running:
            await asyncio.sleep(0.05)

    async def _ensure_groups(self) -> None:
        for kind in self.kinds:
            try:
                await self._client.xgroup_create(
                    self._names.tasks(kind), StreamNames.GROUP, id="0", mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    # --- consuming --------------------------------------------------------------------------

    async def _consume(self, consumer: str) -> None:
        streams: dict[Any, Any] = {self._names.tasks(kind): ">" for kind in self.kinds}
        while not self._stopping.is_set():
            try:
                answer = await self._client.xreadgroup(
                    StreamNames.GROUP, consumer, streams, count=1, block=READ_BLOCK_MS
                )
            except TRANSPORT_ERRORS as exc:
                if "NOGROUP" in str(exc):  # Redis restarted empty: the groups are gone
                    await self._transport(self._ensure_groups)
                    continue
                await self._wait_out(exc)
                continue
            self._back()
            for stream, entry_id, fields in stream_entries(answer):
                if self._stopping.is_set():
                    continue  # taken after the stop: it stays pending, the host reclaims it
                await self._handle(stream, entry_id, fields, consumer)

    async def _handle(
        self, stream: str, entry_id: bytes, fields: dict[bytes, bytes], consumer: str
    ) -> None:
        try:
            message = decode_entry(fields)
            if not isinstance(message, TaskMessage):
                raise WireError(f"a {type(message).__name__} on a task stream")
            if self._names.tasks(message.kind) != stream:
                raise WireError(f"a {message.kind!r} task on {stream}")
        except WireError as exc:
            await self._refuse(stream, entry_id, str(exc))
            return
        running = _Running(stream, entry_id, consumer, message)
        self._running[entry_id] = running
        try:
            await self._execute(running)
        finally:
            self._running.pop(entry_id, None)

    async def _refuse(self, stream: str, entry_id: bytes, reason: str) -> None:
        self.rejected += 1
        log.warning("refused entry %s on %s: %s", entry_id.decode(errors="replace"), stream, reason)

        async def record() -> None:
            await self._client.xack(stream, StreamNames.GROUP, entry_id)
            await self._client.xdel(stream, entry_id)
            refusal: dict[Any, Any] = {
                b"stream": stream.encode(),
                b"entry": entry_id,
                b"worker": self.name.encode(),
                b"reason": reason.encode()[:2000],
            }
            await self._client.xadd(
                self._names.rejected, refusal, maxlen=REJECTED_MAX, approximate=True
            )

        await self._transport(record)

    async def _execute(self, running: _Running) -> None:
        message = running.message
        started = time.monotonic()
        folder = self._scratch / f"{message.token}-{running.entry_id.decode()}"
        try:
            work = await self._work_for(message, folder)
            agent = self._agents.create(message.kind, message.agent_id, folder)
            running.task = asyncio.create_task(agent.run(work), name=f"agent-{message.task_id}")
            try:
                result = await running.task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
                if running.lost:
                    log.info("task %s was taken back by the host", message.task_id)
                    return
                await self._release(running, "the worker is stopping")
                return
            answer = ResultMessage(
                v=WIRE_VERSION,
                task_id=message.task_id,
                token=message.token,
                worker=self.name,
                mutations=result.mutations,
                usage=result.usage,
                notes=result.notes,
                elapsed_s=time.monotonic() - started,
            )
        except (AgentFailure, BlobError, WireError) as exc:
            answer = self._failure(message, str(exc), started)
        except Exception as exc:  # an agent crashed: the host fails the attempt with why
            log.exception("task %s crashed on %s", message.task_id, self.name)
            answer = self._failure(message, f"internal error: {exc!r}", started)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if running.lost:
            log.info("task %s was taken back by the host; its result is dropped", message.task_id)
            return
        await self._send(running, answer)
        self.completed += 1

    def _failure(self, message: TaskMessage, error: str, started: float) -> ResultMessage:
        return ResultMessage(
            v=WIRE_VERSION,
            task_id=message.task_id,
            token=message.token,
            worker=self.name,
            error=error,
            elapsed_s=time.monotonic() - started,
        )

    async def _work_for(self, message: TaskMessage, folder: Path) -> AgentWork:
        """The snapshot, fetched by digest, checked, and written into the scratch folder."""
        refs = (*message.files, *message.config_files)
        texts = await self._transport(lambda: self._blobs.get_many([r.digest for r in refs]))
        folder.mkdir(parents=True)
        root = folder.resolve()
        for ref, text in zip(refs, texts, strict=True):
            target = (root / check_relative_path(ref.path)).resolve()
            if not target.is_relative_to(root):
                raise WireError(f"{ref.path} leaves the scratch folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        files = {
            ref.path: FileVersion(text, ref.version)
            for ref, text in zip(message.files, texts[: len(message.files)], strict=True)
        }
        return AgentWork(
            task_id=message.task_id,
            package=message.package,
            request=message.request,
            files=files,
            workspace_root=root,
            arguments=message.arguments,
            feedback=message.feedback,
            previous_diff=message.previous_diff,
            list_workspace_files=lambda: sorted(files),
            read_file=lambda rel: _read_given(files, rel),
        )

    async def _send(self, running: _Running, answer: ResultMessage) -> None:
        message = running.message

        async def send() -> None:
            await self._client.xadd(self._names.results(message.host), entry_fields(answer))
            await self._client.xack(running.stream, StreamNames.GROUP, running.entry_id)
            await self._client.xdel(running.stream, running.entry_id)

        await self._transport(send)

    async def _release(self, running: _Running, reason: str) -> None:
        message = running.message
        self.released += 1
        release = ReleaseMessage(
            v=WIRE_VERSION,
            task_id=message.task_id,
            token=message.token,
            worker=self.name,
            reason=reason,
        )

        async def send() -> None:
            await self._client.xadd(self._names.results(message.host), entry_fields(release))

        await self._transport(send)

    # --- heartbeat --------------------------------------------------------------------------

    async def _heartbeat_loop(self, lease_s: float) -> None:
        while not self._closed:
            try:
                await self._beat()
            except TRANSPORT_ERRORS as exc:
                await self._wait_out(exc)
            leases = [r.message.lease_s for r in self._running.values()] or [lease_s]
            await asyncio.sleep(max(0.05, min(leases) / 4))

    async def _beat(self) -> None:
        for running in list(self._running.values()):
            claimed = await self._client.xclaim(
                running.stream,
                StreamNames.GROUP,
                running.consumer,
                0,
                [running.entry_id],
                justid=True,
            )
            if not claimed and not running.lost:  # acknowledged by the host: it took it back
                running.lost = True
                if running.task is not None:
                    running.task.cancel()
        beat = Heartbeat(
            v=WIRE_VERSION,
            worker=self.name,
            kinds=self.kinds,
            slots=self.slots,
            busy=tuple(r.message.task_id for r in self._running.values()),
            ts=time.time(),
        )
        await self._client.hset(self._names.workers, self.name, encode_message(beat))

    async def _forget_heartbeat(self) -> None:
        try:
            await self._client.hdel(self._names.workers, self.name)
        except TRANSPORT_ERRORS as exc:
            log.info("could not remove this worker's heartbeat: %s", exc)

    # --- a lost Redis -----------------------------------------------------------------------

    async def _transport(self, action: Callable[[], Awaitable[T]]) -> T:
        while True:
            try:
                return await action()
            except TRANSPORT_ERRORS as exc:
                if "NOGROUP" in str(exc):
                    await self._ensure_groups_quietly()
                    continue
                await self._wait_out(exc)

    async def _ensure_groups_quietly(self) -> None:
        try:
            await self._ensure_groups()
        except TRANSPORT_ERRORS as exc:
            await self._wait_out(exc)

    async def _wait_out(self, exc: BaseException) -> None:
        if not self._down:
            self._down = True
            log.error("lost Redis at %s: %s; reconnecting", self.where, exc)
        attempt = 0
        while not self._closed:
            await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
            attempt += 1
            try:
                await self._client.ping()
            except TRANSPORT_ERRORS:
                continue
            self._back()
            return

    def _back(self) -> None:
        if self._down:
            self._down = False
            log.warning("Redis at %s is back", self.where)


def _read_given(files: Mapping[str, FileVersion], rel: str) -> FileVersion:
    found = files.get(rel)
    if found is None:
        raise AgentFailure(f"{rel} was not sent with the task (a remote agent reads only those)")
    return found

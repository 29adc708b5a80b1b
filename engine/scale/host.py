"""The host side of scale-out: remote worker slots whose agents run in worker processes.

Owns `RemoteHost`: the dispatcher's remote slots (`slots`, serving the configured kinds), the
agent factory that gives those slots a `RemoteAgent` (`agents`), and the transport of each
attempt — its snapshots put as blobs, its `TaskMessage` added to the stream of its kind, its
result read from this host's results stream. A `RemoteAgent` is an ordinary `Agent` to the
`AttemptLoop`: its Mutations are applied through the same leases, CRDT, checks and recovery
ladder as a local agent's, and a remote failure, a timeout or a cancellation ends the attempt
the way a local one does. Owns the fencing tokens: every issue of an attempt gets the next
number for its task, and a result (or release) whose token is not the current one is
rejected and recorded (`scale.result_rejected`), so an edit is applied at most once. Owns the
reclaimer: an entry a worker took and stopped heartbeating for `lease_s` is claimed back
(XAUTOCLAIM), acknowledged and issued again under a new token (`scale.reclaimed`). Owns the
recovery from a lost Redis: the loops log one clear error, reconnect with backoff, re-create
the consumer groups, and re-issue every attempt whose entry Redis no longer holds. Owns the
ledger's mirror: every event is also appended to a bounded stream (XADD MAXLEN ~).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from delegation_machine.engine.agents.base import Agent, AgentFailure, AgentResult, AgentWork
from delegation_machine.engine.agents.factory import AgentFactory
from delegation_machine.engine.config import ScaleConfig
from delegation_machine.engine.ledger import Ledger
from delegation_machine.engine.protocol import Event
from delegation_machine.engine.scale.blobs import BlobStore
from delegation_machine.engine.scale.connection import (
    ScaleError,
    StreamNames,
    check_connection,
    connect,
    redacted_url,
    resolve_url,
)
from delegation_machine.engine.scale.wire import (
    WIRE_VERSION,
    BlobRef,
    ReleaseMessage,
    ResultMessage,
    TaskMessage,
    WireError,
    decode_entry,
    entry_fields,
    stream_entries,
)
from delegation_machine.engine.schedule.dispatch import WorkerSpec

log = logging.getLogger(__name__)

T = TypeVar("T")

# The workspace's tool configuration a worker needs to run ruff (and pytest settings) as the
# host would: sent with every task as blobs, when the workspace has them at its root.
CONFIG_FILES = ("pyproject.toml", "ruff.toml", ".ruff.toml", "setup.cfg")
RESULT_BLOCK_MS = 1000
BACKOFF_S = (0.1, 0.25, 0.5, 1.0, 2.0)
MIRROR_BUFFER = 50_000  # events held for the mirror while Redis is away; older ones dropped
# Any Redis fault in a loop (connection lost, LOADING after a restart, ...) is an outage:
# logged once, waited out, repaired; never a dead loop.
TRANSPORT_ERRORS = (RedisError, OSError)


class _Pending:
    """One attempt out on the stream, waiting for its result."""

    def __init__(self, message: TaskMessage, texts: list[str], future: asyncio.Future[Any]):
        self.message = message
        self.texts = texts  # the blobs' texts, put again if Redis lost them
        self.future: asyncio.Future[AgentResult] = future
        self.entry_id: bytes | None = None
        self.issued_at = time.monotonic()
        self.issues = 0


class RemoteHost:
    """The host's end of the transport (one per swarm with `[scale] redis`)."""

    def __init__(
        self,
        settings: ScaleConfig,
        *,
        root: Path,
        ledger: Ledger,
        url: str | None = None,
        environ: Mapping[str, str] | None = None,
        host_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.url = resolve_url(url or settings.redis or None, environ)
        self.where = redacted_url(self.url)
        self.names = StreamNames(settings.namespace)
        self.host_id = host_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._root = root
        self._ledger = ledger
        self._environ = environ
        self._client: aioredis.Redis | None = None
        self._blobs: BlobStore | None = None
        self._tokens: dict[str, int] = {}  # task id -> the current fencing token
        self._pending: dict[str, _Pending] = {}  # task id -> its attempt out on the stream
        self._tasks: list[asyncio.Task[None]] = []
        self._mirror: deque[Event] = deque(maxlen=MIRROR_BUFFER)
        self._mirror_wake = asyncio.Event()
        self._mirror_dropped = 0
        self._unsubscribe: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._down_since: float | None = None
        self._recovered = asyncio.Event()
        self._closing = False  # the loops end at their next turn (a cancelled Redis command
        # may come back without raising CancelledError, so cancelling alone is not enough)
        self.published = 0
        self.results = 0
        self.rejected = 0
        self.reclaimed = 0

    # --- wiring -----------------------------------------------------------------------------

    def slots(self) -> list[WorkerSpec]:
        """The dispatcher's remote slots: `slots` of them, each serving the remote kinds."""
        kinds = frozenset(self.settings.kinds)
        return [
            WorkerSpec(worker_id=f"remote-{n}", kind="builtin", serves=kinds)
            for n in range(1, self.settings.slots + 1)
        ]

    def agents(self, local: AgentFactory) -> AgentFactory:
        """`local` with the remote slots' agents running on the workers."""
        return RemoteAgents(local, self, {spec.worker_id for spec in self.slots()})

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise ScaleError("the remote host is not started")
        return self._client

    async def start(self) -> None:
        """Connect (a clear `ScaleError` when Redis refuses), make the groups, start the loops."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        # One connection per attempt in flight (at most one per slot), the loops' and spare.
        self._client = connect(self.url, self._environ, connections=self.settings.slots * 2 + 16)
        try:
            await check_connection(self._client, self.url)
            await self._ensure_groups()
        except BaseException:
            await self._client.aclose()
            self._client = None
            raise
        self._blobs = BlobStore(self._client, self.names)
        self._unsubscribe = self._ledger.subscribe(self._on_event)
        self._recovered.set()
        for name, loop in (
            ("results", self._read_results),
            ("reclaim", self._reclaim_loop),
            ("mirror", self._mirror_loop),
        ):
            self._tasks.append(asyncio.create_task(loop(), name=f"scale:{name}"))
        self._ledger.record(
            "scale.started",
            redis=self.where,
            host=self.host_id,
            namespace=self.names.namespace,
            kinds=list(self.settings.kinds),
            slots=self.settings.slots,
        )

    async def aclose(self) -> None:
        self._closing = True
        self._mirror_wake.set()
        self._recovered.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(AgentFailure("the host is stopping"))
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=RESULT_BLOCK_MS / 1000 + 2)
        self._tasks.clear()
        try:  # the loops are stopped: the last events go out from here alone
            await asyncio.wait_for(self._flush_mirror(), 10)
        except (*TRANSPORT_ERRORS, TimeoutError) as exc:
            log.warning(
                "%d ledger event(s) not mirrored to %s: %s", len(self._mirror), self.where, exc
            )
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _ensure_groups(self) -> None:
        for kind in self.settings.kinds:
            try:
                await self.client.xgroup_create(
                    self.names.tasks(kind), StreamNames.GROUP, id="0", mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    # --- one attempt ------------------------------------------------------------------------

    async def run_attempt(self, agent_id: str, kind: str, work: AgentWork) -> AgentResult:
        """Send one attempt to the workers of `kind`; its result, or `AgentFailure`."""
        task_id = work.task_id
        files = sorted(work.files.items())
        config = self._config_texts()
        texts = [version.text for _, version in files] + [text for _, text in config]
        refs = [BlobRef(rel, version.version, "") for rel, version in files]
        refs += [BlobRef(rel, 0, "") for rel, _ in config]
        message = TaskMessage(
            v=WIRE_VERSION,
            task_id=task_id,
            token=0,
            kind=kind,
            agent_id=agent_id,
            host=self.host_id,
            package=work.package,
            request=work.request,
            files=tuple(refs[: len(files)]),
            config_files=tuple(refs[len(files) :]),
            arguments=dict(work.arguments),
            feedback=tuple(work.feedback),
            previous_diff=work.previous_diff,
            lease_s=self.settings.lease_s,
        )
        future: asyncio.Future[AgentResult] = asyncio.get_running_loop().create_future()
        pending = _Pending(message, texts, future)
        self._pending[task_id] = pending
        try:
            async with asyncio.timeout(self.settings.task_timeout_s):
                await self._redis("publishing task " + task_id, lambda: self._issue(pending))
                return await future
        except TimeoutError:
            raise AgentFailure(
                f"no remote worker finished task {task_id} in {self.settings.task_timeout_s:g} s"
            ) from None
        finally:
            if self._pending.get(task_id) is pending:
                del self._pending[task_id]
                self._tokens[task_id] = self._tokens.get(task_id, 0) + 1  # late results: stale
                if pending.entry_id is not None and not future.done():
                    self._spawn_forget(pending)

    async def _issue(self, pending: _Pending) -> None:
        """Put the blobs (once) and add the attempt to its kind's stream under a new token."""
        assert self._blobs is not None
        message = pending.message
        digests = await self._blobs.put_many(pending.texts)
        refs = [
            msgspec.structs.replace(ref, digest=digest)
            for ref, digest in zip((*message.files, *message.config_files), digests, strict=True)
        ]
        token = self.next_token(message.task_id)
        message = msgspec.structs.replace(
            message,
            token=token,
            files=tuple(refs[: len(message.files)]),
            config_files=tuple(refs[len(message.files) :]),
        )
        pending.message = message
        entry = await self.client.xadd(self.names.tasks(message.kind), entry_fields(message))
        pending.entry_id = entry if isinstance(entry, bytes) else str(entry).encode()
        pending.issues += 1
        pending.issued_at = time.monotonic()
        self.published += 1
        self._ledger.record(
            "scale.issued",
            task_id=message.task_id,
            agent_id=message.agent_id,
            token=token,
            kind=message.kind,
            files=[ref.path for ref in message.files],
        )

    def next_token(self, task_id: str) -> int:
        """The task's next fencing token (every issue takes one; the old ones are stale)."""
        token = self._tokens.get(task_id, 0) + 1
        self._tokens[task_id] = token
        return token

    async def _reissue(self, pending: _Pending, why: str) -> None:
        """Retire the attempt's entry and issue it again under a new token."""
        old_token, old_entry = pending.message.token, pending.entry_id
        if old_entry is not None:
            stream = self.names.tasks(pending.message.kind)
            await self.client.xack(stream, StreamNames.GROUP, old_entry)
            await self.client.xdel(stream, old_entry)
        await self._issue(pending)
        self._ledger.record(
            why,
            task_id=pending.message.task_id,
            old_token=old_token,
            token=pending.message.token,
        )

    def _spawn_forget(self, pending: _Pending) -> None:
        """An attempt given up on (timeout, cancel): drop its entry if it was never taken."""

        async def forget() -> None:
            if pending.entry_id is None or self._client is None:
                return
            try:
                await self.client.xdel(self.names.tasks(pending.message.kind), pending.entry_id)
            except TRANSPORT_ERRORS as exc:
                log.info("could not drop the entry of %s: %s", pending.message.task_id, exc)

        self._tasks.append(asyncio.create_task(forget(), name="scale:forget"))

    def _config_texts(self) -> list[tuple[str, str]]:
        found = []
        for name in CONFIG_FILES:
            path = self._root / name
            if path.is_file():
                try:
                    found.append((name, path.read_text(encoding="utf-8")))
                except (OSError, UnicodeDecodeError) as exc:
                    log.warning("%s not sent to the workers: %s", name, exc)
        return found

    # --- results ----------------------------------------------------------------------------

    async def _read_results(self) -> None:
        stream = self.names.results(self.host_id)
        last = b"0-0"
        while not self._closing:
            try:
                answer: Any = await self.client.xread(
                    {stream: last}, count=100, block=RESULT_BLOCK_MS
                )
            except TRANSPORT_ERRORS as exc:
                await self._outage(exc)
                last = b"0-0"  # processed entries are deleted: what is left is unread
                continue
            self._back_up()
            for _, entry_id, fields in stream_entries(answer):
                last = entry_id
                self._on_result_entry(entry_id, fields)
                await self._redis("dropping a read result", functools.partial(self._xdel, entry_id))

    async def _xdel(self, entry_id: bytes) -> None:
        await self.client.xdel(self.names.results(self.host_id), entry_id)

    def _on_result_entry(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        try:
            message = decode_entry(fields)
        except WireError as exc:
            self._reject(None, f"malformed result entry {entry_id!r}: {exc}")
            return
        if isinstance(message, TaskMessage):
            self._reject(message.task_id, "a task message on the results stream")
            return
        pending = self._pending.get(message.task_id)
        current = pending.message.token if pending is not None else None
        if pending is None or message.token != current:
            self._reject(
                message.task_id,
                f"stale fencing token {message.token} from {message.worker} "
                f"(current: {current if current is not None else 'none, the attempt ended'})",
            )
            return
        if isinstance(message, ReleaseMessage):
            self._ledger.record(
                "scale.released",
                task_id=message.task_id,
                token=message.token,
                worker=message.worker,
                reason=message.reason,
            )
            self._tasks.append(
                asyncio.create_task(self._release(pending), name="scale:reissue-released")
            )
            return
        self._resolve(pending, message)

    async def _release(self, pending: _Pending) -> None:
        await self._redis(
            "re-issuing a released task", lambda: self._reissue(pending, "scale.reissued")
        )

    def _resolve(self, pending: _Pending, message: ResultMessage) -> None:
        task = pending.message
        given = {ref.path for ref in task.files}
        foreign = [
            m
            for m in message.mutations
            if m.task_id != task.task_id or m.agent_id != task.agent_id or m.path not in given
        ]
        self.results += 1
        self._ledger.record(
            "scale.result",
            task_id=task.task_id,
            agent_id=task.agent_id,
            token=message.token,
            worker=message.worker,
            mutations=len(message.mutations),
            error=message.error,
            elapsed_s=round(message.elapsed_s, 4),
            round_trip_s=round(time.monotonic() - pending.issued_at, 4),
        )
        if pending.future.done():
            return
        if foreign:
            what = ", ".join(f"{m.path} (as {m.agent_id}/{m.task_id})" for m in foreign[:5])
            self._reject(task.task_id, f"result from {message.worker} edits what it was not given")
            pending.future.set_exception(
                AgentFailure(f"worker {message.worker} returned edits it was not given: {what}")
            )
        elif message.error is not None:
            pending.future.set_exception(
                AgentFailure(f"on worker {message.worker}: {message.error}")
            )
        else:
            pending.future.set_result(
                AgentResult(tuple(message.mutations), message.usage, message.notes)
            )

    def _reject(self, task_id: str | None, reason: str) -> None:
        self.rejected += 1
        log.warning("rejected from the stream: %s", reason)
        self._ledger.record("scale.result_rejected", task_id=task_id, reason=reason)

    # --- reclaiming -------------------------------------------------------------------------

    async def _reclaim_loop(self) -> None:
        period = max(0.05, min(self.settings.lease_s / 3, 5.0))
        while not self._closing:
            await asyncio.sleep(period)
            await self._recovered.wait()
            if self._closing:
                return
            try:
                await self.reclaim_once()
            except TRANSPORT_ERRORS as exc:
                await self._outage(exc)

    async def reclaim_once(self) -> int:
        """Claim back entries idle past the lease (their worker died) and re-issue them."""
        consumer = f"host:{self.host_id}"
        min_idle = int(self.settings.lease_s * 1000)
        count = 0
        for kind in self.settings.kinds:
            stream = self.names.tasks(kind)
            start: bytes | str = "0-0"
            while True:
                answer: Any = await self.client.xautoclaim(
                    stream, StreamNames.GROUP, consumer, min_idle, start_id=start, count=100
                )
                start, claimed = answer[0], answer[1]
                for entry_id, fields in claimed:
                    count += await self._reclaimed(stream, bytes(entry_id), dict(fields or {}))
                if start in (b"0-0", "0-0"):
                    break
        return count

    async def _reclaimed(self, stream: str, entry_id: bytes, fields: dict[bytes, bytes]) -> int:
        try:
            message = decode_entry(fields)
        except WireError as exc:  # the workers reject these; one left behind is dropped here
            message = None
            self._reject(None, f"malformed task entry {entry_id!r} reclaimed: {exc}")
        pending = self._pending.get(message.task_id) if isinstance(message, TaskMessage) else None
        if pending is None or pending.entry_id != entry_id:
            await self.client.xack(stream, StreamNames.GROUP, entry_id)
            await self.client.xdel(stream, entry_id)
            return 0
        self.reclaimed += 1
        log.warning(
            "task %s: its worker stopped answering for %.1f s; issuing it again",
            pending.message.task_id,
            self.settings.lease_s,
        )
        await self._reissue(pending, "scale.reclaimed")
        return 1

    # --- a lost Redis -----------------------------------------------------------------------

    async def _redis(self, what: str, action: Callable[[], Awaitable[T]]) -> T:
        """Run `action`, waiting out a Redis outage (the loops reconnect)."""
        while True:
            try:
                return await action()
            except TRANSPORT_ERRORS as exc:
                if self._closing:
                    raise AgentFailure(f"{what}: the host is stopping") from None
                log.warning("%s: Redis at %s unreachable (%s); retrying", what, self.where, exc)
                await self._outage(exc)

    async def _outage(self, exc: BaseException) -> None:
        """Note an outage (one clear error), wait for Redis to answer again, then repair."""
        if self._down_since is None:
            self._mark_down(exc)
        attempt = 0
        while not self._closing:
            await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
            attempt += 1
            try:
                await self.client.ping()
                await self._repair()
                return
            except TRANSPORT_ERRORS as again:
                if self._down_since is None:
                    self._mark_down(again)

    def _mark_down(self, exc: BaseException) -> None:
        self._down_since = time.monotonic()
        self._recovered.clear()
        log.error("lost Redis at %s: %s; reconnecting", self.where, exc)
        self._ledger.record("scale.redis_lost", redis=self.where, error=str(exc)[:500])

    async def _repair(self) -> None:
        if self._down_since is None:
            return
        down_s = time.monotonic() - self._down_since
        self._down_since = None
        await self._ensure_groups()
        reissued = []
        for pending in list(self._pending.values()):
            if pending.entry_id is None or pending.future.done():
                continue
            stream = self.names.tasks(pending.message.kind)
            held = await self.client.xrange(stream, pending.entry_id, pending.entry_id)
            if not held:  # Redis lost it (restarted without persistence): issue it again
                await self._reissue(pending, "scale.reissued")
                reissued.append(pending.message.task_id)
        log.warning("Redis at %s is back after %.1f s", self.where, down_s)
        self._ledger.record(
            "scale.redis_back", redis=self.where, down_s=round(down_s, 3), reissued=reissued
        )
        self._recovered.set()
        self._mirror_wake.set()

    def _back_up(self) -> None:
        if self._down_since is not None:
            self._tasks.append(asyncio.create_task(self._repair(), name="scale:repair"))

    # --- the ledger's mirror ----------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if len(self._mirror) == self._mirror.maxlen:
            self._mirror_dropped += 1
        self._mirror.append(event)
        if threading.get_ident() == self._loop_thread:
            self._mirror_wake.set()
        elif self._loop is not None:
            self._loop.call_soon_threadsafe(self._mirror_wake.set)

    async def _mirror_loop(self) -> None:
        while not self._closing:
            await self._mirror_wake.wait()
            self._mirror_wake.clear()
            await self._recovered.wait()
            if self._closing:
                return  # aclose sends what is left
            try:
                await self._flush_mirror()
            except TRANSPORT_ERRORS as exc:
                await self._outage(exc)
                self._mirror_wake.set()

    async def _flush_mirror(self) -> None:
        if self._client is None:
            return
        while self._mirror:
            batch = [self._mirror[i] for i in range(min(500, len(self._mirror)))]
            pipe = self.client.pipeline(transaction=False)
            for event in batch:
                pipe.xadd(
                    self.names.events,
                    {b"e": msgspec.json.encode(event)},
                    maxlen=self.settings.events_max,
                    approximate=True,
                )
            await pipe.execute()
            for _ in batch:
                self._mirror.popleft()


class RemoteAgent:
    """An agent whose runs happen on a remote worker; to the attempt loop, just an agent."""

    def __init__(self, agent_id: str, kind: str, host: RemoteHost) -> None:
        self.agent_id = agent_id
        self.kind = kind
        self._host = host

    async def run(self, work: AgentWork) -> AgentResult:
        return await self._host.run_attempt(self.agent_id, self.kind, work)


class RemoteAgents:
    """An `AgentFactory`: the remote slots' agents are `RemoteAgent`s, the rest `local`'s."""

    def __init__(self, local: AgentFactory, host: RemoteHost, remote_slots: set[str]) -> None:
        self._local = local
        self._host = host
        self._remote_slots = remote_slots
        self._remote_ids: set[str] = set()

    def agent_id(self, kind: str, worker_id: str) -> str:
        agent_id = self._local.agent_id(kind, worker_id)
        if worker_id in self._remote_slots:
            self._remote_ids.add(agent_id)
        return agent_id

    def replacement_id(self, kind: str, replacing: str) -> str:
        return self._local.replacement_id(kind, replacing)

    def create(self, kind: str, agent_id: str) -> Agent:
        if agent_id in self._remote_ids and kind in self._host.settings.kinds:
            return RemoteAgent(agent_id, kind, self._host)
        return self._local.create(kind, agent_id)

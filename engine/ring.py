"""A Disruptor-style ring buffer: pre-allocated power-of-two slots, sequences and barriers.

Owns the slots, the producer cursor and one sequence per consumer. Producers claim sequences
(one at a time or a batch of n; a lock only in "multi" mode), write the slots, then publish.
Consumers read through barriers: everything published and already released by the consumers
they trail (`after`). Invariant: a slot is never overwritten before every attached consumer has
released it; `try_publish` raises `RingFull` instead. Waiting goes through a `WaitStrategy`.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, Literal, Protocol, TypeVar, cast

import msgspec

T = TypeVar("T")

ProducerMode = Literal["single", "multi"]
SCAN_CHUNK = 64
YIELDS_BEFORE_PARKING = 4  # BlockingWaitStrategy: CPU yields before a thread parks  # availability entries compared at once when a consumer looks for events


class RingError(Exception):
    """Base class of the ring's typed errors."""


class RingFull(RingError):
    """No room: the slowest consumer has not released the slot the claim would reuse."""


class RingClosed(RingError):
    """The ring was closed: no more publishing, and this consumer has drained everything."""


class RingBroken(RingError):
    """The ring was aborted (or every consumer detached): pending work will never arrive."""


# --- wait strategies ------------------------------------------------------------------------


class WaitStrategy(Protocol):
    """How a consumer waits for events, and a producer for room.

    `signal_all` is called after every publish, release, close and abort; it must be cheap
    when nobody waits. `wait_sync` returns False on timeout.
    """

    def signal_all(self) -> None: ...

    async def wait_async(self, ready: Callable[[], bool]) -> None: ...

    def wait_sync(self, ready: Callable[[], bool], timeout: float | None = None) -> bool: ...


class BlockingWaitStrategy:
    """Parks waiters: asyncio futures for coroutines, a `threading.Condition` for threads.

    Safe across threads: a signal from another thread resolves asyncio waiters through
    `call_soon_threadsafe`. Signalling costs one attribute test when nobody waits.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._thread_waiters = 0
        self._futures: list[asyncio.Future[None]] = []

    def signal_all(self) -> None:
        if self._futures:
            self._wake_futures()
        if self._thread_waiters:
            with self._condition:
                self._condition.notify_all()

    def _wake_futures(self) -> None:
        futures, self._futures = self._futures, []
        running = _running_loop()
        for future in futures:
            loop = future.get_loop()
            if loop is running:
                _resolve(future)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, future)

    async def wait_async(self, ready: Callable[[], bool]) -> None:
        loop = asyncio.get_running_loop()
        while not ready():
            future: asyncio.Future[None] = loop.create_future()
            self._futures.append(future)
            # Re-test after registering: a signal between the first test and the append
            # would otherwise be lost.
            if ready():
                return
            await future

    def wait_sync(self, ready: Callable[[], bool], timeout: float | None = None) -> bool:
        # Yield a few times before parking: a producer usually publishes again within one
        # time slice, and parking costs both sides a lock round trip.
        for _ in range(YIELDS_BEFORE_PARKING):
            if ready():
                return True
            os.sched_yield()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._condition:
            self._thread_waiters += 1
            try:
                while not ready():
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._condition.wait(remaining)
                return True
            finally:
                self._thread_waiters -= 1


class YieldingWaitStrategy:
    """Spins `spin_tries` times, then yields the CPU (`os.sched_yield`) between tests.

    For threads that want low latency without burning a core. Asyncio waiters yield to the
    event loop (`asyncio.sleep(0)`) between tests.
    """

    def __init__(self, spin_tries: int = 100) -> None:
        self.spin_tries = spin_tries

    def signal_all(self) -> None:
        return None

    async def wait_async(self, ready: Callable[[], bool]) -> None:
        while not ready():
            await asyncio.sleep(0)

    def wait_sync(self, ready: Callable[[], bool], timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        tries = 0
        while not ready():
            tries += 1
            if tries > self.spin_tries:
                os.sched_yield()
                if deadline is not None and time.monotonic() >= deadline:
                    return False
        return True


class BusySpinWaitStrategy:
    """Tests the condition in a tight loop: lowest latency, one core per waiting thread.

    Only sensible for threads pinned to spare cores. Asyncio waiters cannot spin without
    starving their loop, so they yield to it between tests.
    """

    def signal_all(self) -> None:
        return None

    async def wait_async(self, ready: Callable[[], bool]) -> None:
        while not ready():
            await asyncio.sleep(0)

    def wait_sync(self, ready: Callable[[], bool], timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        spins = 0
        while not ready():
            spins += 1
            if deadline is not None and spins % 1024 == 0 and time.monotonic() >= deadline:
                return False
        return True


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# --- statistics -----------------------------------------------------------------------------


class ConsumerStatistics(msgspec.Struct, frozen=True):
    name: str
    sequence: int  # last released sequence (-1 before the first)
    lag: int  # published events this consumer has not released yet
    after: tuple[str, ...]
    detached: bool
    waits: int  # times it found nothing to read and waited


class RingStatistics(msgspec.Struct, frozen=True):
    capacity: int
    producer: str
    wait_strategy: str
    claimed: int  # highest claimed sequence (-1 before the first)
    published: int  # highest sequence below which everything is published
    free_slots: int
    consumers: tuple[ConsumerStatistics, ...]
    closed: bool
    broken: str | None
    producer_waits: int  # times a publisher found the ring full and waited


# --- the ring -------------------------------------------------------------------------------


class RingBuffer(Generic[T]):
    """Fixed-capacity ring of pre-allocated slots with single- or multi-producer claim.

    Parameters
    ----------
    capacity:
        Number of slots; a power of two.
    producer:
        "single" when one thread publishes (no lock; any number of coroutines of one event
        loop count as one, since claim, write and commit never yield); "multi" otherwise.
    wait_strategy:
        How consumers wait for events and producers for room; `BlockingWaitStrategy` serves
        asyncio tasks and threads alike.
    """

    def __init__(
        self,
        capacity: int,
        producer: ProducerMode = "multi",
        wait_strategy: WaitStrategy | None = None,
    ) -> None:
        if capacity < 1 or capacity & (capacity - 1):
            raise ValueError(f"ring capacity must be a power of two, got {capacity}")
        if producer not in ("single", "multi"):
            raise ValueError(f"producer must be 'single' or 'multi', got {producer!r}")
        self.capacity = capacity
        self.producer: ProducerMode = producer
        self._mask = capacity - 1
        # Pre-allocated; a slot holds None only before its first publish, never when read.
        self._slots: list[T] = cast("list[T]", [None] * capacity)
        # Multi mode: the sequence last published into each slot (Disruptor's availability
        # buffer), so consumers can tell a published slot from a merely claimed one.
        self._available: list[int] = [-1] * capacity
        self._claimed = -1
        self._published = -1  # everything <= this is published (exact in single mode)
        self._claim_lock = threading.Lock()
        self._gating_cache = -1  # a lower bound of the slowest consumer's sequence
        self._consumers: list[Consumer[T]] = []
        self._had_consumer = False
        self._producer_halted = False  # closed, aborted or deserted: claims take the slow path
        self._closed_at: int | None = None
        self._broken: str | None = None
        self._producer_waits = 0  # times a publisher found the ring full and waited
        self.wait_strategy: WaitStrategy = wait_strategy or BlockingWaitStrategy()

    # -- producer side ---------------------------------------------------------------------

    def try_publish(self, value: T) -> int:
        """Publish one value without waiting; returns its sequence or raises `RingFull`."""
        lo, _ = self._claim(1)
        self._slots[lo & self._mask] = value
        self._commit(lo, lo)
        return lo

    async def publish(self, value: T) -> int:
        """Publish one value, waiting (asyncio) for room; returns its sequence."""
        if self.producer == "single" and not self._producer_halted:
            # Inlined claim and commit: this is the per-event hot path of a lone producer.
            hi = self._claimed + 1
            if hi - self.capacity <= self._gating_cache:
                self._slots[hi & self._mask] = value
                self._claimed = self._published = hi
                self.wait_strategy.signal_all()
                return hi
        try:
            lo, _ = self._claim(1)  # the common case needs no second coroutine
        except RingFull:
            lo, _ = await self._claim_async(1)
        self._slots[lo & self._mask] = value
        self._commit(lo, lo)
        return lo

    def publish_blocking(self, value: T, timeout: float | None = None) -> int:
        """Publish one value from a thread, waiting for room; raises `RingFull` on timeout."""
        lo, _ = self._claim_sync(1, timeout)
        self._slots[lo & self._mask] = value
        self._commit(lo, lo)
        return lo

    def try_publish_batch(self, values: Sequence[T]) -> range:
        """Claim len(values) consecutive sequences at once and publish them; never waits."""
        if not values:
            return range(0)
        lo, hi = self._claim(len(values))
        self._write_range(lo, values)
        self._commit(lo, hi)
        return range(lo, hi + 1)

    async def publish_batch(self, values: Sequence[T]) -> range:
        """Claim len(values) consecutive sequences, waiting (asyncio) for room, and publish."""
        if not values:
            return range(0)
        lo, hi = await self._claim_async(len(values))
        self._write_range(lo, values)
        self._commit(lo, hi)
        return range(lo, hi + 1)

    def publish_batch_blocking(self, values: Sequence[T], timeout: float | None = None) -> range:
        """Thread version of `publish_batch`; raises `RingFull` on timeout."""
        if not values:
            return range(0)
        lo, hi = self._claim_sync(len(values), timeout)
        self._write_range(lo, values)
        self._commit(lo, hi)
        return range(lo, hi + 1)

    def close(self) -> None:
        """Refuse further claims; consumers drain what was claimed, then get `RingClosed`."""
        with self._claim_lock:
            if self._closed_at is None:
                self._closed_at = self._claimed
            self._producer_halted = True
        self.wait_strategy.signal_all()

    def abort(self, reason: str) -> None:
        """Break the ring: every producer and consumer call now raises `RingBroken(reason)`."""
        if self._broken is None:
            self._broken = reason
        self._producer_halted = True
        self.wait_strategy.signal_all()

    @property
    def closed(self) -> bool:
        return self._closed_at is not None

    def _write_range(self, lo: int, values: Sequence[T]) -> None:
        start = lo & self._mask
        end = start + len(values)
        if end <= self.capacity:
            self._slots[start:end] = values
        else:
            split = self.capacity - start
            self._slots[start:] = values[:split]
            self._slots[: end - self.capacity] = values[split:]

    def _claim(self, count: int) -> tuple[int, int]:
        if count > self.capacity:
            raise ValueError(f"cannot claim {count} sequences in a ring of {self.capacity}")
        if self.producer == "single":
            return self._claim_unlocked(count)
        with self._claim_lock:
            return self._claim_unlocked(count)

    def _claim_unlocked(self, count: int) -> tuple[int, int]:
        if self._producer_halted:
            self._raise_if_halted_for_producer()
        hi = self._claimed + count
        wrap_point = hi - self.capacity
        if wrap_point > self._gating_cache:
            self._gating_cache = self._slowest_consumer()
            if wrap_point > self._gating_cache:
                raise RingFull(
                    f"ring full: claiming up to sequence {hi} needs the slowest consumer "
                    f"past {wrap_point}, it is at {self._gating_cache}"
                )
        lo = self._claimed + 1
        self._claimed = hi
        return lo, hi

    def _raise_if_halted_for_producer(self) -> None:
        if self._broken is not None:
            raise RingBroken(self._broken)
        if self._closed_at is not None:
            raise RingClosed("ring is closed: no more publishing")
        if self._had_consumer and not any(not c.detached for c in self._consumers):
            raise RingBroken("every consumer has detached")

    def _has_room(self, count: int) -> bool:
        if self._broken is not None or self._closed_at is not None:
            return True  # wake so the claim raises
        return self._claimed + count - self.capacity <= self._slowest_consumer()

    async def _claim_async(self, count: int) -> tuple[int, int]:
        while True:
            try:
                return self._claim(count)
            except RingFull:
                self._producer_waits += 1
                await self.wait_strategy.wait_async(lambda: self._has_room(count))

    def _claim_sync(self, count: int, timeout: float | None) -> tuple[int, int]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return self._claim(count)
            except RingFull:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise
                self._producer_waits += 1
                self.wait_strategy.wait_sync(lambda: self._has_room(count), remaining)

    def _commit(self, lo: int, hi: int) -> None:
        if self.producer == "single":
            self._published = hi
        else:
            self._mark_available(lo, hi)
        self.wait_strategy.signal_all()

    def _mark_available(self, lo: int, hi: int) -> None:
        start, end = lo & self._mask, (hi & self._mask) + 1
        if hi - lo + 1 == end - start:
            self._available[start:end] = range(lo, hi + 1)
        else:
            split = lo + (self.capacity - start)
            self._available[start:] = range(lo, split)
            self._available[:end] = range(split, hi + 1)

    def _slowest_consumer(self) -> int:
        sequences = [c.sequence for c in self._consumers if not c.detached]
        return min(sequences) if sequences else self._claimed

    # -- consumer side ---------------------------------------------------------------------

    def add_consumer(self, name: str, after: Sequence[Consumer[T]] = ()) -> Consumer[T]:
        """Add a consumer that reads only what every consumer in `after` has released.

        A new consumer starts at the current cursor: it sees events published from now on.
        """
        for dependency in after:
            if dependency.ring is not self:
                raise ValueError(f"consumer {dependency.name!r} belongs to another ring")
        if any(c.name == name for c in self._consumers):
            raise ValueError(f"a consumer named {name!r} already exists on this ring")
        with self._claim_lock:
            consumer = Consumer(self, name, tuple(after), start=self._claimed)
            self._consumers.append(consumer)
            self._had_consumer = True
            # A ring deserted by its consumers works again once a new one joins.
            self._producer_halted = self._closed_at is not None or self._broken is not None
        return consumer

    def highest_published(self, lower: int, upper: int) -> int:
        """The highest sequence s in [lower - 1, upper] with every sequence <= s published."""
        if self.producer == "single":
            return min(self._published, upper)
        start = max(lower, self._published + 1)
        sequence = self._scan_available(start, upper)
        highest = sequence - 1
        if highest > self._published and start == self._published + 1:
            # A hint only: a stale write makes the next scan longer, never wrong, because a
            # published sequence stays published until every consumer has passed it.
            self._published = highest
        return min(highest, upper) if highest >= lower - 1 else lower - 1

    def _scan_available(self, start: int, upper: int) -> int:
        """The first sequence in [start, upper + 1] that is not yet published."""
        available, mask, capacity = self._available, self._mask, self.capacity
        sequence = start
        # Compare whole chunks at C speed; fall back to one-by-one inside the failing chunk.
        while sequence <= upper:
            chunk_end = min(
                upper + 1, sequence + SCAN_CHUNK, sequence - (sequence & mask) + capacity
            )
            index = sequence & mask
            if available[index : index + chunk_end - sequence] != list(range(sequence, chunk_end)):
                break
            sequence = chunk_end
        while sequence <= upper and available[sequence & mask] == sequence:
            sequence += 1
        return sequence

    def _published_cursor(self) -> int:
        if self.producer == "single":
            return self._published
        return self.highest_published(self._published + 1, self._claimed)

    def read_slots(self, lo: int, hi: int) -> list[T]:
        """The values of sequences lo..hi inclusive (caller guarantees they are readable)."""
        start, end = lo & self._mask, (hi & self._mask) + 1
        slots = self._slots
        if hi - lo + 1 == end - start:
            return slots[start:end]
        return slots[start:] + slots[:end]

    def statistics(self) -> RingStatistics:
        published = self._published_cursor()
        slowest = self._slowest_consumer() if self._consumers else self._claimed
        consumers = tuple(
            ConsumerStatistics(
                name=c.name,
                sequence=c.sequence,
                lag=published - c.sequence,
                after=tuple(d.name for d in c.after),
                detached=c.detached,
                waits=c.waits,
            )
            for c in self._consumers
        )
        return RingStatistics(
            capacity=self.capacity,
            producer=self.producer,
            wait_strategy=type(self.wait_strategy).__name__,
            claimed=self._claimed,
            published=published,
            free_slots=self.capacity - (self._claimed - slowest),
            consumers=consumers,
            closed=self.closed,
            broken=self._broken,
            producer_waits=self._producer_waits,
        )


class SequenceBarrier(Generic[T]):
    """What a consumer may read: published events its dependencies have all released.

    With no dependencies it tracks the producer cursor (unicast, multicast); with one, the
    consumer trails it (pipeline); with several, it joins them (diamond).
    """

    def __init__(self, ring: RingBuffer[T], dependencies: tuple[Consumer[T], ...]) -> None:
        self.ring = ring
        self.dependencies = dependencies

    def highest_readable(self, next_sequence: int) -> int:
        """The highest sequence readable now (next_sequence - 1 when nothing is)."""
        ring = self.ring
        upper = ring._claimed
        for dependency in self.dependencies:
            if dependency.sequence < upper:
                upper = dependency.sequence
        return ring.highest_published(next_sequence, upper)


class Consumer(Generic[T]):
    """One reader of a ring with its own sequence; created by `RingBuffer.add_consumer`.

    `sequence` is the last released sequence. A batch handed out by `next_batch` is released
    (the sequence advanced) by the next call, by `release()`, or by `detach()`.
    """

    def __init__(
        self, ring: RingBuffer[T], name: str, after: tuple[Consumer[T], ...], start: int
    ) -> None:
        self.ring = ring
        self.name = name
        self.after = after
        self.barrier = SequenceBarrier(ring, after)
        self.sequence = start
        self.detached = False
        self.waits = 0  # times this consumer found nothing and waited
        self._held = start  # end of the batch handed out, not yet released

    def release(self) -> None:
        """Release the batch handed out last, letting producers reuse its slots."""
        if self._held != self.sequence:
            self.sequence = self._held
            self.ring.wait_strategy.signal_all()

    def detach(self) -> None:
        """Stop gating the producers; if every consumer detaches, producers get RingBroken."""
        self.release()
        self.detached = True
        ring = self.ring
        if all(c.detached for c in ring._consumers):
            ring._producer_halted = True
        ring.wait_strategy.signal_all()

    def _limit(self) -> int:
        """The highest sequence this consumer may read now."""
        return self.barrier.highest_readable(self.sequence + 1)

    def _take(self) -> list[tuple[int, T]]:
        """Everything readable now (releasing the previous batch first); may be empty."""
        self.release()
        ring = self.ring
        if ring._broken is not None:
            raise RingBroken(ring._broken)
        lo = self.sequence + 1
        hi = self._limit()
        if hi < lo:
            closed_at = ring._closed_at
            if closed_at is not None and self.sequence >= closed_at:
                raise RingClosed(f"ring closed and consumer {self.name!r} has drained it")
            return []
        self._held = hi
        return list(zip(range(lo, hi + 1), ring.read_slots(lo, hi), strict=True))

    def _can_take(self) -> bool:
        ring = self.ring
        if ring._broken is not None:
            return True
        if self._limit() > self.sequence:
            return True
        closed_at = ring._closed_at
        return closed_at is not None and self.sequence >= closed_at

    def try_next_batch(self) -> list[tuple[int, T]]:
        """Release the previous batch and return everything readable now, possibly nothing."""
        return self._take()

    async def next_batch(self) -> list[tuple[int, T]]:
        """Release the previous batch and wait (asyncio) for at least one event.

        Returns every readable (sequence, value) pair; raises `RingClosed` once the ring is
        closed and drained, `RingBroken` if it was aborted.
        """
        batch = self._take()
        while not batch:
            self.waits += 1
            await self.ring.wait_strategy.wait_async(self._can_take)
            batch = self._take()
        return batch

    def next_batch_blocking(self, timeout: float | None = None) -> list[tuple[int, T]]:
        """Thread version of `next_batch`; returns [] if `timeout` passes with nothing."""
        batch = self._take()
        if batch:
            return batch
        self.waits += 1
        if not self.ring.wait_strategy.wait_sync(self._can_take, timeout):
            return []
        return self._take()


def drain(consumer: Consumer[T]) -> Iterable[tuple[int, T]]:
    """Every event readable right now, releasing as it goes (handy for tests and shutdown)."""
    while True:
        try:
            batch = consumer.try_next_batch()
        except RingClosed:
            return
        if not batch:
            consumer.release()
            return
        yield from batch

"""Property tests: a slot is never overwritten before every gating consumer has read it.

One state machine explores interleavings of claims, reads and releases in one thread (every
timing the scheduler could produce, reduced to an order); a second test runs real producer and
consumer threads with hypothesis-chosen spin delays and checks what each consumer saw.
"""

from __future__ import annotations

import threading

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from delegation_machine.engine.ring import (
    BlockingWaitStrategy,
    Consumer,
    RingBuffer,
    RingFull,
    YieldingWaitStrategy,
)

# Each consumer's `after` list: indices of earlier consumers (unicast, pipeline, multicast,
# diamond and a deeper mixed graph).
TOPOLOGIES = [
    [[]],
    [[], [0], [1]],
    [[], [], []],
    [[], [], [0, 1]],
    [[], [0], [0], [1, 2], []],
]


class RingModel(RuleBasedStateMachine):
    """The ring against a model: published values are their own sequence numbers."""

    ring: RingBuffer[int]
    consumers: list[Consumer[int]]

    @initialize(
        capacity=st.sampled_from([1, 2, 4, 8]),
        mode=st.sampled_from(["single", "multi"]),
        topology=st.sampled_from(TOPOLOGIES),
    )
    def build(self, capacity: int, mode: str, topology: list[list[int]]) -> None:
        self.ring = RingBuffer[int](capacity, producer=mode)  # type: ignore[arg-type]
        self.consumers = []
        for index, after in enumerate(topology):
            deps = [self.consumers[i] for i in after]
            self.consumers.append(self.ring.add_consumer(f"c{index}", after=deps))
        self.topology = topology
        self.published = 0
        self.read_upto = [-1] * len(topology)  # highest sequence handed to each consumer
        self.released = [-1] * len(topology)

    @rule(count=st.integers(min_value=1, max_value=8))
    def publish(self, count: int) -> None:
        count = min(count, self.ring.capacity)
        values = list(range(self.published, self.published + count))
        fits = self.published + count - 1 - self.ring.capacity <= min(self.released)
        try:
            claimed = self.ring.try_publish_batch(values)
        except RingFull:
            assert not fits, "refused a claim that had room"
            return
        assert fits, "accepted a claim that overwrites an unread slot"
        assert claimed == range(self.published, self.published + count)
        self.published += count

    @rule(index=st.integers(min_value=0, max_value=4))
    def take(self, index: int) -> None:
        index %= len(self.consumers)
        self.released[index] = self.read_upto[index]
        batch = self.consumers[index].try_next_batch()
        limit = min([self.published - 1] + [self.released[d] for d in self.topology[index]])
        expected = list(range(self.read_upto[index] + 1, limit + 1))
        assert [seq for seq, _ in batch] == expected
        assert [value for _, value in batch] == expected
        if batch:
            self.read_upto[index] = batch[-1][0]

    @precondition(lambda self: hasattr(self, "consumers"))
    @rule(index=st.integers(min_value=0, max_value=4))
    def release(self, index: int) -> None:
        index %= len(self.consumers)
        self.consumers[index].release()
        self.released[index] = self.read_upto[index]

    @invariant()
    def unreleased_slots_still_hold_their_values(self) -> None:
        if not hasattr(self, "consumers"):
            return
        for consumer in self.consumers:
            assert consumer.sequence in self.released
            lo, hi = consumer.sequence + 1, self.published - 1
            if hi >= lo:
                assert self.ring.read_slots(lo, hi) == list(range(lo, hi + 1))

    @invariant()
    def statistics_agree(self) -> None:
        if not hasattr(self, "consumers"):
            return
        stats = self.ring.statistics()
        assert stats.published == self.published - 1
        assert stats.free_slots == self.ring.capacity - (self.published - 1 - min(self.released))


TestRingModel = RingModel.TestCase
TestRingModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def _spin(iterations: int) -> None:
    # Burn a little CPU to shift the threads' relative timing; no sleeping in tests.
    total = 0
    for i in range(iterations):
        total += i


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    capacity=st.sampled_from([2, 4, 16]),
    topology=st.sampled_from(TOPOLOGIES),
    producer_batches=st.lists(
        st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=40),
        min_size=1,
        max_size=3,
    ),
    producer_spin=st.integers(min_value=0, max_value=300),
    consumer_spin=st.lists(st.integers(min_value=0, max_value=300), min_size=5, max_size=5),
    yielding=st.booleans(),
)
def test_threads_never_read_an_overwritten_slot(
    capacity: int,
    topology: list[list[int]],
    producer_batches: list[list[int]],
    producer_spin: int,
    consumer_spin: list[int],
    yielding: bool,
) -> None:
    strategy = YieldingWaitStrategy(spin_tries=20) if yielding else BlockingWaitStrategy()
    ring = RingBuffer[tuple[int, int]](capacity, producer="multi", wait_strategy=strategy)
    consumers: list[Consumer[tuple[int, int]]] = []
    for index, after in enumerate(topology):
        consumers.append(ring.add_consumer(f"c{index}", [consumers[i] for i in after]))
    published: dict[int, tuple[int, int]] = {}
    published_lock = threading.Lock()
    total = sum(min(n, capacity) for batches in producer_batches for n in batches)
    seen: list[list[tuple[int, tuple[int, int]]]] = [[] for _ in consumers]
    errors: list[BaseException] = []

    def produce(producer: int, batches: list[int]) -> None:
        counter = 0
        for size in batches:
            values = [(producer, counter + i) for i in range(min(size, capacity))]
            counter += len(values)
            claimed = ring.publish_batch_blocking(values, timeout=30)
            with published_lock:
                published.update(zip(claimed, values, strict=True))
            _spin(producer_spin)

    def consume(index: int) -> None:
        try:
            while len(seen[index]) < total:
                batch = consumers[index].next_batch_blocking(timeout=30)
                assert batch, f"consumer {index} starved"
                seen[index].extend(batch)
                _spin(consumer_spin[index])
            consumers[index].release()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(len(consumers))]
    threads += [
        threading.Thread(target=produce, args=(p, batches))
        for p, batches in enumerate(producer_batches)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(published) == total
    for observed in seen:
        assert [seq for seq, _ in observed] == list(range(total))
        # A value published later into the same slot would differ from what was published
        # at this sequence.
        assert all(published[seq] == value for seq, value in observed)

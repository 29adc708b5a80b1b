"""RingBuffer: claims, batches, back-pressure, halting, topologies, statistics."""

from __future__ import annotations

import asyncio
import threading

import msgspec
import pytest

from delegation_machine.engine.ring import (
    BlockingWaitStrategy,
    BusySpinWaitStrategy,
    RingBroken,
    RingBuffer,
    RingClosed,
    RingFull,
    YieldingWaitStrategy,
    drain,
)


def values(batch: list[tuple[int, object]]) -> list[object]:
    return [value for _, value in batch]


@pytest.mark.parametrize("capacity", [0, 3, 6, 100, -4])
def test_capacity_must_be_power_of_two(capacity: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        RingBuffer[int](capacity)


def test_unknown_producer_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="producer"):
        RingBuffer[int](8, producer="many")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["single", "multi"])
async def test_batch_holds_everything_published_and_releases_on_next_call(mode: str) -> None:
    ring = RingBuffer[str](8, producer=mode)  # type: ignore[arg-type]
    consumer = ring.add_consumer("c")
    assert ring.try_publish("a") == 0
    assert ring.try_publish_batch(["b", "c"]) == range(1, 3)
    batch = await consumer.next_batch()
    assert batch == [(0, "a"), (1, "b"), (2, "c")]
    # Not released until the next call: the consumer still gates those slots.
    assert consumer.sequence == -1
    ring.try_publish("d")
    assert await consumer.next_batch() == [(3, "d")]
    assert consumer.sequence == 2


@pytest.mark.parametrize("mode", ["single", "multi"])
def test_try_publish_raises_ring_full_until_the_consumer_releases(mode: str) -> None:
    ring = RingBuffer[int](4, producer=mode)  # type: ignore[arg-type]
    consumer = ring.add_consumer("slow")
    ring.try_publish_batch([0, 1, 2, 3])
    with pytest.raises(RingFull, match="slowest consumer"):
        ring.try_publish(4)
    with pytest.raises(RingFull):
        ring.try_publish_batch([4])
    assert values(consumer.try_next_batch()) == [0, 1, 2, 3]
    with pytest.raises(RingFull):  # handed out but not released yet
        ring.try_publish(4)
    consumer.release()
    assert ring.try_publish_batch([4, 5, 6]) == range(4, 7)
    assert values(consumer.try_next_batch()) == [4, 5, 6]


def test_batch_larger_than_capacity_is_refused() -> None:
    ring = RingBuffer[int](4)
    ring.add_consumer("c")
    with pytest.raises(ValueError, match="cannot claim 5"):
        ring.try_publish_batch([1, 2, 3, 4, 5])


@pytest.mark.parametrize("mode", ["single", "multi"])
def test_batches_wrap_around_the_end_of_the_slots(mode: str) -> None:
    ring = RingBuffer[int](8, producer=mode)  # type: ignore[arg-type]
    consumer = ring.add_consumer("c")
    seen: list[int] = []
    for start in range(0, 60, 5):
        ring.try_publish_batch(list(range(start, start + 5)))
        seen.extend(values(consumer.try_next_batch()))
        consumer.release()
    assert seen == list(range(60))


async def test_async_publish_waits_for_room() -> None:
    ring = RingBuffer[int](2)
    consumer = ring.add_consumer("c")
    await ring.publish_batch([0, 1])
    blocked = asyncio.create_task(ring.publish(2))
    await asyncio.sleep(0)
    assert not blocked.done()
    assert values(await consumer.next_batch()) == [0, 1]
    assert not blocked.done()
    consumer.release()
    assert await blocked == 2
    assert ring.statistics().producer_waits == 1
    assert values(await consumer.next_batch()) == [2]


async def test_consumer_waits_for_a_publish() -> None:
    ring = RingBuffer[str](8, producer="single")
    consumer = ring.add_consumer("c")
    pending = asyncio.create_task(consumer.next_batch())
    await asyncio.sleep(0)
    assert not pending.done()
    await ring.publish("x")
    assert await pending == [(0, "x")]
    assert ring.statistics().consumers[0].waits == 1


async def test_close_lets_consumers_drain_then_raises_closed() -> None:
    ring = RingBuffer[int](8)
    first = ring.add_consumer("first")
    second = ring.add_consumer("second", after=[first])
    ring.try_publish_batch([1, 2])
    ring.close()
    with pytest.raises(RingClosed):
        ring.try_publish(3)
    with pytest.raises(RingClosed):
        await ring.publish(3)
    assert values(await first.next_batch()) == [1, 2]
    with pytest.raises(RingClosed, match="drained"):
        await first.next_batch()
    assert values(await second.next_batch()) == [1, 2]
    with pytest.raises(RingClosed):
        await second.next_batch()


async def test_close_wakes_a_waiting_consumer() -> None:
    ring = RingBuffer[int](8)
    consumer = ring.add_consumer("c")
    pending = asyncio.create_task(consumer.next_batch())
    await asyncio.sleep(0)
    ring.close()
    with pytest.raises(RingClosed):
        await pending


async def test_abort_breaks_waiting_consumers_and_producers() -> None:
    ring = RingBuffer[int](2)
    consumer = ring.add_consumer("c")
    idle = ring.add_consumer("idle-but-unrelated")
    ring.try_publish_batch([1, 2])
    waiting_producer = asyncio.create_task(ring.publish(3))
    await asyncio.sleep(0)
    ring.abort("planner crashed")
    with pytest.raises(RingBroken, match="planner crashed"):
        await waiting_producer
    with pytest.raises(RingBroken, match="planner crashed"):
        await consumer.next_batch()
    with pytest.raises(RingBroken):
        idle.try_next_batch()
    with pytest.raises(RingBroken):
        ring.try_publish(4)


def test_producer_gets_broken_when_every_consumer_detached() -> None:
    ring = RingBuffer[int](4)
    a = ring.add_consumer("a")
    b = ring.add_consumer("b")
    ring.try_publish(1)
    a.detach()
    ring.try_publish(2)  # b still reads
    b.detach()
    with pytest.raises(RingBroken, match="detached"):
        ring.try_publish(3)


def test_detached_consumer_no_longer_gates() -> None:
    ring = RingBuffer[int](2)
    fast = ring.add_consumer("fast")
    stuck = ring.add_consumer("stuck")
    ring.try_publish_batch([1, 2])
    drained = list(drain(fast))
    assert [v for _, v in drained] == [1, 2]
    with pytest.raises(RingFull):
        ring.try_publish(3)
    stuck.detach()
    assert ring.try_publish(3) == 2


def test_consumer_names_are_unique_and_dependencies_same_ring() -> None:
    ring = RingBuffer[int](4)
    other = RingBuffer[int](4)
    ring.add_consumer("a")
    with pytest.raises(ValueError, match="already exists"):
        ring.add_consumer("a")
    foreign = other.add_consumer("x")
    with pytest.raises(ValueError, match="another ring"):
        ring.add_consumer("b", after=[foreign])


def test_new_consumer_starts_at_the_cursor() -> None:
    ring = RingBuffer[int](4)
    early = ring.add_consumer("early")
    ring.try_publish_batch([1, 2])
    late = ring.add_consumer("late")
    ring.try_publish(3)
    assert values(late.try_next_batch()) == [3]
    assert values(early.try_next_batch()) == [1, 2, 3]


def test_pipeline_consumers_see_only_what_upstream_released() -> None:
    ring = RingBuffer[int](8)
    parse = ring.add_consumer("parse")
    check = ring.add_consumer("check", after=[parse])
    record = ring.add_consumer("record", after=[check])
    ring.try_publish_batch([1, 2, 3])
    assert check.try_next_batch() == []
    assert values(parse.try_next_batch()) == [1, 2, 3]
    assert check.try_next_batch() == []  # parse holds the batch until it releases
    parse.release()
    assert values(check.try_next_batch()) == [1, 2, 3]
    assert record.try_next_batch() == []
    check.release()
    assert values(record.try_next_batch()) == [1, 2, 3]


def test_diamond_join_waits_for_both_branches() -> None:
    ring = RingBuffer[int](8)
    left = ring.add_consumer("left")
    right = ring.add_consumer("right")
    join = ring.add_consumer("join", after=[left, right])
    ring.try_publish_batch([1, 2, 3, 4])
    left.try_next_batch()
    left.release()
    assert join.try_next_batch() == []
    right.try_next_batch()
    assert join.try_next_batch() == []
    right.release()
    assert values(join.try_next_batch()) == [1, 2, 3, 4]


def test_multicast_every_consumer_sees_every_event() -> None:
    ring = RingBuffer[int](16, producer="single")
    consumers = [ring.add_consumer(f"c{i}") for i in range(3)]
    ring.try_publish_batch(list(range(10)))
    for consumer in consumers:
        assert values(consumer.try_next_batch()) == list(range(10))


def test_statistics_report_lag_and_free_slots() -> None:
    ring = RingBuffer[int](8, producer="single")
    a = ring.add_consumer("a")
    ring.add_consumer("b", after=[a])
    ring.try_publish_batch([1, 2, 3])
    a.try_next_batch()
    a.release()
    stats = ring.statistics()
    assert stats.capacity == 8
    assert stats.producer == "single"
    assert stats.claimed == 2
    assert stats.published == 2
    assert stats.free_slots == 5  # b has released nothing
    by_name = {c.name: c for c in stats.consumers}
    assert by_name["a"].lag == 0
    assert by_name["b"].lag == 3
    assert by_name["b"].after == ("a",)
    assert stats.wait_strategy == "BlockingWaitStrategy"
    assert msgspec.json.decode(msgspec.json.encode(stats))["free_slots"] == 5
    with pytest.raises(AttributeError):
        stats.capacity = 4  # type: ignore[misc]


@pytest.mark.parametrize(
    ("strategy", "per_producer"),
    # Spinning threads hold the GIL until the interpreter switches them out, so the
    # spinning strategies get less work to stay quick on two cores.
    [
        (BlockingWaitStrategy(), 2_000),
        (YieldingWaitStrategy(10), 200),
        (BusySpinWaitStrategy(), 100),
    ],
    ids=["blocking", "yielding", "busy-spin"],
)
def test_threads_sequencer_three_producers_one_consumer(
    strategy: object, per_producer: int
) -> None:
    ring = RingBuffer[tuple[int, int]](64, producer="multi", wait_strategy=strategy)  # type: ignore[arg-type]
    consumer = ring.add_consumer("c")

    def produce(producer: int) -> None:
        for i in range(0, per_producer, 10):
            ring.publish_batch_blocking([(producer, j) for j in range(i, i + 10)], timeout=30)

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(3)]
    for thread in threads:
        thread.start()
    received: list[tuple[int, tuple[int, int]]] = []
    while len(received) < 3 * per_producer:
        batch = consumer.next_batch_blocking(timeout=30)
        assert batch, "consumer timed out"
        received.extend(batch)
    for thread in threads:
        thread.join(timeout=30)
    assert [seq for seq, _ in received] == list(range(3 * per_producer))
    for producer in range(3):
        mine = [j for _, (p, j) in received if p == producer]
        assert mine == list(range(per_producer))


def test_blocking_publish_times_out_with_ring_full() -> None:
    ring = RingBuffer[int](2)
    ring.add_consumer("never-reads")
    ring.publish_batch_blocking([1, 2])
    with pytest.raises(RingFull):
        ring.publish_blocking(3, timeout=0.01)


def test_blocking_read_times_out_empty() -> None:
    ring = RingBuffer[int](2)
    consumer = ring.add_consumer("c")
    assert consumer.next_batch_blocking(timeout=0.01) == []


async def test_asyncio_consumer_woken_by_a_producer_thread() -> None:
    ring = RingBuffer[int](8)
    consumer = ring.add_consumer("loop")
    pending = asyncio.create_task(consumer.next_batch())
    await asyncio.sleep(0)
    producer = threading.Thread(target=ring.publish_batch_blocking, args=([7, 8],))
    producer.start()
    batch = await asyncio.wait_for(pending, timeout=30)
    producer.join()
    assert values(batch)[0] == 7


def test_a_deserted_ring_works_again_when_a_consumer_joins() -> None:
    ring = RingBuffer[int](4)
    ring.add_consumer("first").detach()
    with pytest.raises(RingBroken):
        ring.try_publish(1)
    late = ring.add_consumer("second")
    assert ring.try_publish(2) == 0
    assert values(late.try_next_batch()) == [2]

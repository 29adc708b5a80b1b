"""Ring throughput (events/s) per Disruptor topology against queue.Queue, asyncio.Queue, deque.

Topologies: unicast 1P-1C, sequencer 3P-1C, multicast 1P-3C, pipeline 1P-3C (chained) and
diamond 1P-3C (two branches joined), threads with the blocking wait strategy; plus an asyncio
producer/consumer pair in one loop. Each baseline moves the same events through the same shape
in the same run. Medians over repeats. Writes benchmarks/results/ring_throughput.json.
Run: .venv/bin/python benchmarks/ring_throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import queue
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from delegation_machine.engine.ring import (
    BlockingWaitStrategy,
    Consumer,
    RingBuffer,
    YieldingWaitStrategy,
)

RESULTS = Path(__file__).parent / "results" / "ring_throughput.json"
CAPACITY = 1024
BATCH = 256
DONE = None  # end-of-stream marker for the queue baselines


def run_threads(targets: list[Callable[[], None]]) -> float:
    threads = [threading.Thread(target=t) for t in targets]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


# --- ring topologies (threads) --------------------------------------------------------------


def ring_producer(
    ring: RingBuffer[int], events: int, batch: int, first: int = 0
) -> Callable[[], None]:
    def produce() -> None:
        if batch == 1:
            for value in range(first, first + events):
                ring.publish_blocking(value)
            return
        for lo in range(first, first + events, batch):
            ring.publish_batch_blocking(range(lo, min(lo + batch, first + events)))  # type: ignore[arg-type]

    return produce


def ring_reader(consumer: Consumer[int], total: int) -> Callable[[], None]:
    def consume() -> None:
        seen = 0
        checksum = 0
        while seen < total:
            batch = consumer.next_batch_blocking()
            seen += len(batch)
            checksum += batch[-1][1]
        consumer.release()

    return consume


def ring_topology(shape: str, events: int, batch: int, strategy: str = "blocking") -> float:
    wait = BlockingWaitStrategy() if strategy == "blocking" else YieldingWaitStrategy()
    producers = 3 if shape == "sequencer" else 1
    mode = "multi" if producers > 1 else "single"
    ring = RingBuffer[int](CAPACITY, producer=mode, wait_strategy=wait)  # type: ignore[arg-type]
    consumers: list[Consumer[int]] = []
    if shape in ("unicast", "sequencer"):
        consumers.append(ring.add_consumer("c"))
    elif shape == "multicast":
        consumers += [ring.add_consumer(f"c{i}") for i in range(3)]
    elif shape == "pipeline":
        first = ring.add_consumer("c1")
        second = ring.add_consumer("c2", after=[first])
        consumers += [first, second, ring.add_consumer("c3", after=[second])]
    elif shape == "diamond":
        left, right = ring.add_consumer("left"), ring.add_consumer("right")
        consumers += [left, right, ring.add_consumer("join", after=[left, right])]
    per_producer = events // producers
    total = per_producer * producers
    targets = [ring_reader(c, total) for c in consumers]
    targets += [
        ring_producer(ring, per_producer, batch, first=p * per_producer) for p in range(producers)
    ]
    return total / run_threads(targets)


# --- queue.Queue baselines (same shapes) ----------------------------------------------------


def queue_topology(shape: str, events: int) -> float:
    producers = 3 if shape == "sequencer" else 1
    per_producer = events // producers
    total = per_producer * producers
    targets: list[Callable[[], None]] = []

    def pump(source: queue.Queue[Any], sinks: list[queue.Queue[Any]], ends: int) -> None:
        finished = 0
        while finished < ends:
            item = source.get()
            if item is DONE:
                finished += 1
            for sink in sinks:
                sink.put(item)

    def feed(sinks: list[queue.Queue[Any]]) -> Callable[[], None]:
        def produce() -> None:
            for value in range(per_producer):
                for sink in sinks:
                    sink.put(value)
            for sink in sinks:
                sink.put(DONE)

        return produce

    if shape in ("unicast", "sequencer"):
        q: queue.Queue[Any] = queue.Queue(CAPACITY)
        targets = [lambda: pump(q, [], producers)] + [feed([q]) for _ in range(producers)]
    elif shape == "multicast":
        qs: list[queue.Queue[Any]] = [queue.Queue(CAPACITY) for _ in range(3)]
        targets = [lambda s=s: pump(s, [], 1) for s in qs] + [feed(qs)]
    elif shape == "pipeline":
        q1, q2, q3 = (queue.Queue(CAPACITY) for _ in range(3))  # type: ignore[var-annotated]
        targets = [
            lambda: pump(q1, [q2], 1),
            lambda: pump(q2, [q3], 1),
            lambda: pump(q3, [], 1),
            feed([q1]),
        ]
    elif shape == "diamond":
        left, right, join_l, join_r = (queue.Queue(CAPACITY) for _ in range(4))  # type: ignore[var-annotated]

        def join() -> None:
            while True:
                a, _ = join_l.get(), join_r.get()
                if a is DONE:
                    return

        targets = [
            lambda: pump(left, [join_l], 1),
            lambda: pump(right, [join_r], 1),
            join,
            feed([left, right]),
        ]
    return total / run_threads(targets)


def deque_unicast(events: int) -> float:
    """collections.deque with a polling consumer (append/popleft are atomic under the GIL)."""
    items: deque[int | None] = deque()

    def produce() -> None:
        for value in range(events):
            while len(items) >= CAPACITY:
                os.sched_yield()
            items.append(value)
        items.append(None)

    def consume() -> None:
        while True:
            try:
                item = items.popleft()
            except IndexError:
                os.sched_yield()
                continue
            if item is None:
                return

    return events / run_threads([consume, produce])


# --- asyncio ----------------------------------------------------------------------------------


async def ring_asyncio(events: int, batch: int) -> float:
    ring = RingBuffer[int](CAPACITY, producer="single")
    consumer = ring.add_consumer("c")

    async def produce() -> None:
        if batch == 1:
            for value in range(events):
                await ring.publish(value)
        else:
            for lo in range(0, events, batch):
                await ring.publish_batch(range(lo, min(lo + batch, events)))  # type: ignore[arg-type]
        ring.close()

    async def consume() -> None:
        try:
            while True:
                await consumer.next_batch()
        except Exception:
            return

    start = time.perf_counter()
    await asyncio.gather(consume(), produce())
    return events / (time.perf_counter() - start)


async def asyncio_queue(events: int) -> float:
    q: asyncio.Queue[int | None] = asyncio.Queue(CAPACITY)

    async def produce() -> None:
        for value in range(events):
            await q.put(value)
        await q.put(None)

    async def consume() -> None:
        while await q.get() is not None:
            pass

    start = time.perf_counter()
    await asyncio.gather(consume(), produce())
    return events / (time.perf_counter() - start)


def summary(rates: list[float]) -> dict[str, Any]:
    return {
        "median_events_per_s": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "samples": len(rates),
    }


def paired(measures: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run every measure once per round, interleaved, so load spikes hit all of them alike."""
    rates: dict[str, list[float]] = {name: [] for name in measures}
    for _ in range(repeats):
        for name, measure in measures.items():
            rates[name].append(measure())
    return rates


def ratio(rates: dict[str, list[float]], numerator: str, denominator: str) -> float:
    """Median of the per-round ratios (robust to rounds slowed down by other load)."""
    return statistics.median(
        a / b for a, b in zip(rates[numerator], rates[denominator], strict=True)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    ring_events = 200_000 if args.quick else 400_000
    queue_events = 30_000 if args.quick else 60_000
    rows: list[dict[str, Any]] = []

    for shape in ("unicast", "sequencer", "multicast", "pipeline", "diamond"):
        measures: dict[str, Callable[[], float]] = {
            "ring_batch_256": lambda s=shape: ring_topology(s, ring_events, BATCH),  # type: ignore[misc]
            "ring_batch_1": lambda s=shape: ring_topology(s, queue_events, 1),  # type: ignore[misc]
            "queue.Queue": lambda s=shape: queue_topology(s, queue_events),  # type: ignore[misc]
        }
        if shape == "unicast":
            measures["collections.deque"] = lambda: deque_unicast(queue_events)
            measures["ring_batch_256_yielding"] = lambda: ring_topology(
                "unicast", ring_events, BATCH, "yielding"
            )
        rates = paired(measures, repeats)
        row: dict[str, Any] = {"topology": shape}
        row.update({name: summary(values) for name, values in rates.items()})
        row["ratio_batched_vs_queue"] = ratio(rates, "ring_batch_256", "queue.Queue")
        row["ratio_single_vs_queue"] = ratio(rates, "ring_batch_1", "queue.Queue")
        if shape == "unicast":
            row["ratio_batched_vs_deque"] = ratio(rates, "ring_batch_256", "collections.deque")
        rows.append(row)

    aio_rates = paired(
        {
            "ring_publish_1": lambda: asyncio.run(ring_asyncio(ring_events, 1)),
            "ring_publish_batch_256": lambda: asyncio.run(ring_asyncio(ring_events, BATCH)),
            "asyncio.Queue": lambda: asyncio.run(asyncio_queue(queue_events)),
        },
        repeats,
    )
    aio: dict[str, Any] = {"topology": "asyncio unicast 1P-1C"}
    aio.update({name: summary(values) for name, values in aio_rates.items()})
    aio["ratio_single_vs_asyncio_queue"] = ratio(aio_rates, "ring_publish_1", "asyncio.Queue")
    aio["ratio_batched_vs_asyncio_queue"] = ratio(
        aio_rates, "ring_publish_batch_256", "asyncio.Queue"
    )

    def rate(row: dict[str, Any], name: str) -> str:
        return f"{row[name]['median_events_per_s']:,.0f}"

    print(
        f"{'topology':<11} {'ring b=256':>11} {'ring b=1':>10} {'queue.Queue':>12}"
        f" {'b=256/Queue':>12} {'b=1/Queue':>10}"
    )
    for row in rows:
        print(
            f"{row['topology']:<11} {rate(row, 'ring_batch_256'):>11} "
            f"{rate(row, 'ring_batch_1'):>10} {rate(row, 'queue.Queue'):>12} "
            f"{row['ratio_batched_vs_queue']:>11.1f}x {row['ratio_single_vs_queue']:>9.1f}x"
        )
    unicast = rows[0]
    print(
        f"unicast: deque (polling) {rate(unicast, 'collections.deque')} events/s, ring b=256 / "
        f"deque {unicast['ratio_batched_vs_deque']:.1f}x; yielding strategy "
        f"{rate(unicast, 'ring_batch_256_yielding')} events/s"
    )
    print(
        f"asyncio: ring publish {rate(aio, 'ring_publish_1')}, ring publish_batch "
        f"{rate(aio, 'ring_publish_batch_256')}, asyncio.Queue {rate(aio, 'asyncio.Queue')} "
        f"events/s ({aio['ratio_single_vs_asyncio_queue']:.1f}x, "
        f"{aio['ratio_batched_vs_asyncio_queue']:.1f}x)"
    )
    targets = {
        "unicast_batched_vs_queue_ge_10x": unicast["ratio_batched_vs_queue"] >= 10,
        "asyncio_batched_vs_asyncio_queue_ge_3x": aio["ratio_batched_vs_asyncio_queue"] >= 3,
        "asyncio_single_publish_vs_asyncio_queue_ge_3x": aio["ratio_single_vs_asyncio_queue"] >= 3,
    }
    print("targets:", targets)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "figure": "ring_throughput",
                "python": platform.python_version(),
                "cpu_count": os.cpu_count(),
                "quick": args.quick,
                "repeats": repeats,
                "capacity": CAPACITY,
                "batch": BATCH,
                "ring_events": ring_events,
                "baseline_events": queue_events,
                "ratios": "median of per-round ratios; rounds run every variant back to back",
                "threads": rows,
                "asyncio": aio,
                "targets_met": targets,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

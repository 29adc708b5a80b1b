"""Tomasulo-style issue: reservation stations, operand tags, renaming, a common data bus.

Owns two things built on the same rule (an operation waits on the *producers* its sources named
when it issued, never on register names): `OperandTracker`, the register-status table and
station operand fields the live Dispatcher uses (tasks as operations, files/symbols as tags),
and `simulate`, a cycle-level simulator following Hennessy & Patterson's conventions.
Renaming removes WAR and WAW hazards: a later writer of a tag never delays an earlier reader.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class OperandTracker(Generic[K]):
    """Register status plus the operand fields of every occupied reservation station.

    `issue` records which unfinished producer each source tag names (Qj/Qk) and makes the
    operation the latest producer of its destinations (renaming). `broadcast` is the common
    data bus: the finished operation's waiters lose that dependency. A tag whose latest
    producer failed is *poisoned* until a later producer of it succeeds.
    """

    def __init__(self) -> None:
        self._latest_producer: dict[str, K] = {}  # tag -> unfinished producer (register status)
        self._poisoned: dict[str, K] = {}  # tag -> the failed producer it last came from
        self._waiting_on: dict[K, set[K]] = {}  # station entry -> producers still awaited
        self._waiters_of: dict[K, list[K]] = {}  # producer -> station entries awaiting it
        self._destinations: dict[K, tuple[str, ...]] = {}

    def issue(
        self, operation: K, sources: Iterable[str], destinations: Iterable[str]
    ) -> tuple[frozenset[K], dict[str, K]]:
        """Issue `operation`; returns (producers it waits on, poisoned source tags -> culprit).

        Sources with no unfinished producer are ready at once (their value is "in the register
        file"). When the poisoned map is non-empty the caller should not run the operation.
        """
        pending: set[K] = set()
        poisoned: dict[str, K] = {}
        for tag in sources:
            producer = self._latest_producer.get(tag)
            if producer is not None and producer != operation:
                pending.add(producer)
            elif tag in self._poisoned:
                poisoned[tag] = self._poisoned[tag]
        self._waiting_on[operation] = pending
        for producer in pending:
            self._waiters_of.setdefault(producer, []).append(operation)
        outputs = tuple(destinations)
        self._destinations[operation] = outputs
        for tag in outputs:
            self._latest_producer[tag] = operation
        return frozenset(pending), poisoned

    def pending(self, operation: K) -> frozenset[K]:
        return frozenset(self._waiting_on.get(operation, ()))

    def is_ready(self, operation: K) -> bool:
        return not self._waiting_on.get(operation)

    def waiting(self) -> dict[K, frozenset[K]]:
        """Every station entry still waiting on at least one producer."""
        return {op: frozenset(p) for op, p in self._waiting_on.items() if p}

    def broadcast(self, operation: K) -> list[K]:
        """`operation` wrote its result: returns the station entries that became ready."""
        self._retire(operation, failed=False)
        ready: list[K] = []
        for waiter in self._waiters_of.pop(operation, []):
            pending = self._waiting_on.get(waiter)
            if pending is None:
                continue  # cancelled meanwhile
            pending.discard(operation)
            if not pending:
                ready.append(waiter)
        return ready

    def fail(self, operation: K) -> list[K]:
        """`operation` failed or was cancelled: returns the entries that waited on it (the
        caller cancels them and fails them in turn); its destination tags become poisoned."""
        self._retire(operation, failed=True)
        dependents = [w for w in self._waiters_of.pop(operation, []) if w in self._waiting_on]
        return dependents

    def drop_dependency(self, waiter: K, producer: K) -> bool:
        """`waiter` no longer waits on the failed `producer` (its old value stands); True when
        that leaves it ready."""
        pending = self._waiting_on.get(waiter)
        if pending is None:
            return False
        pending.discard(producer)
        return not pending

    def _retire(self, operation: K, *, failed: bool) -> None:
        waited = self._waiting_on.pop(operation, set())
        for producer in waited:
            waiters = self._waiters_of.get(producer)
            if waiters and operation in waiters:
                waiters.remove(operation)
        for tag in self._destinations.pop(operation, ()):
            if self._latest_producer.get(tag) == operation:
                del self._latest_producer[tag]
                if failed:
                    self._poisoned[tag] = operation
                else:
                    self._poisoned.pop(tag, None)

    def producer_of(self, tag: str) -> K | None:
        return self._latest_producer.get(tag)


# --- cycle-level simulator ------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """One instruction: `opcode` selects the unit and latency; tags are register names."""

    opcode: str
    destination: str | None
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class OperationTiming:
    """H&P's table row: issue, first and last execution cycle, write-result cycle."""

    operation: Operation
    issue: int
    execution_start: int
    execution_complete: int
    write_result: int


@dataclass
class _InFlight:
    operation: Operation
    unit: str
    issue: int
    producers: tuple[int, ...]  # indices of the producers named at issue (renamed sources)
    start: int | None = None
    complete: int | None = None
    write: int | None = None


class SimulationError(ValueError):
    """The machine description cannot run the program (unknown opcode, no stations)."""


def simulate(
    operations: Sequence[Operation],
    *,
    unit_of: Mapping[str, str],
    stations: Mapping[str, int],
    latencies: Mapping[str, int],
    units: Mapping[str, int] | None = None,
    max_cycles: int = 1_000_000,
) -> list[OperationTiming]:
    """Run `operations` through a Tomasulo machine; cycles are numbered from 1.

    Conventions (Hennessy & Patterson): one issue per cycle, in order, when the unit has a free
    reservation station; execution starts the cycle after the operation issued and after the
    last operand was broadcast; it takes `latencies[opcode]` cycles; the result is written
    (one common-data-bus broadcast per cycle, oldest first) the cycle after execution
    completes at the earliest. A station is freed by the write and reusable the next cycle.
    `units[unit]` limits how many operations of a unit execute at once (default: no limit).
    """
    _check_machine(operations, unit_of, stations, latencies)
    flights: list[_InFlight] = []
    latest_writer: dict[str, int] = {}  # register status: tag -> index of latest issuer
    next_issue = 0
    cycle = 0
    while next_issue < len(operations) or any(f.write is None for f in flights):
        cycle += 1
        if cycle > max_cycles:
            raise SimulationError(f"no progress after {max_cycles} cycles")
        _write_stage(flights, cycle)
        _execute_stage(flights, cycle, latencies, units)
        if next_issue < len(operations) and _station_free(
            flights, unit_of[operations[next_issue].opcode], stations, cycle
        ):
            operation = operations[next_issue]
            producers = tuple(latest_writer[s] for s in operation.sources if s in latest_writer)
            flights.append(_InFlight(operation, unit_of[operation.opcode], cycle, producers))
            if operation.destination is not None:
                latest_writer[operation.destination] = next_issue
            next_issue += 1
    return [
        OperationTiming(f.operation, f.issue, f.start or 0, f.complete or 0, f.write or 0)
        for f in flights
    ]


def _check_machine(
    operations: Sequence[Operation],
    unit_of: Mapping[str, str],
    stations: Mapping[str, int],
    latencies: Mapping[str, int],
) -> None:
    for index, operation in enumerate(operations):
        unit = unit_of.get(operation.opcode)
        if unit is None:
            raise SimulationError(f"operation {index} ({operation.opcode}): no unit for opcode")
        if stations.get(unit, 0) < 1:
            raise SimulationError(
                f"operation {index} ({operation.opcode}): unit {unit!r} has no stations"
            )
        if latencies.get(operation.opcode, 0) < 1:
            raise SimulationError(f"operation {index} ({operation.opcode}): latency must be >= 1")


def _write_stage(flights: list[_InFlight], cycle: int) -> None:
    # One broadcast per cycle on the common data bus, the oldest finished operation first.
    for flight in flights:
        if flight.write is None and flight.complete is not None and flight.complete < cycle:
            flight.write = cycle
            return


def _execute_stage(
    flights: list[_InFlight],
    cycle: int,
    latencies: Mapping[str, int],
    units: Mapping[str, int] | None,
) -> None:
    busy: dict[str, int] = {}
    for flight in flights:
        if flight.start is not None and flight.complete is not None and flight.complete >= cycle:
            busy[flight.unit] = busy.get(flight.unit, 0) + 1
    for flight in flights:
        if flight.start is not None or flight.issue >= cycle:
            continue
        if not all(_written_before(flights[p], cycle) for p in flight.producers):
            continue
        if units is not None and busy.get(flight.unit, 0) >= units.get(flight.unit, 1):
            continue
        flight.start = cycle
        flight.complete = cycle + latencies[flight.operation.opcode] - 1
        busy[flight.unit] = busy.get(flight.unit, 0) + 1


def _written_before(producer: _InFlight, cycle: int) -> bool:
    return producer.write is not None and producer.write < cycle


def _station_free(
    flights: list[_InFlight], unit: str, stations: Mapping[str, int], cycle: int
) -> bool:
    occupied = sum(1 for f in flights if f.unit == unit and (f.write is None or f.write >= cycle))
    return occupied < stations[unit]

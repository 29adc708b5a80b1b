"""Tomasulo: the Hennessy & Patterson example, renaming, the bus, stations; OperandTracker."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delegation_machine.engine.schedule.tomasulo import (
    OperandTracker,
    Operation,
    SimulationError,
    simulate,
)

UNIT_OF = {"L.D": "load", "MUL.D": "mult", "DIV.D": "mult", "SUB.D": "add", "ADD.D": "add"}
STATIONS = {"load": 3, "add": 3, "mult": 2}
LATENCIES = {"L.D": 2, "MUL.D": 10, "DIV.D": 40, "SUB.D": 2, "ADD.D": 2}

# Hennessy & Patterson's Tomasulo example (as in the Berkeley CS252 lecture tables).
HP_PROGRAM = [
    Operation("L.D", "F6", ("R2",)),
    Operation("L.D", "F2", ("R3",)),
    Operation("MUL.D", "F0", ("F2", "F4")),
    Operation("SUB.D", "F8", ("F6", "F2")),
    Operation("DIV.D", "F10", ("F0", "F6")),
    Operation("ADD.D", "F6", ("F8", "F2")),
]


def rows(timings: list) -> list[tuple[int, int, int, int]]:  # type: ignore[type-arg]
    return [(t.issue, t.execution_start, t.execution_complete, t.write_result) for t in timings]


def test_hennessy_patterson_example() -> None:
    timings = simulate(HP_PROGRAM, unit_of=UNIT_OF, stations=STATIONS, latencies=LATENCIES)
    assert rows(timings) == [
        (1, 2, 3, 4),  # L.D F6
        (2, 3, 4, 5),  # L.D F2
        (3, 6, 15, 16),  # MUL.D waits for F2 (written in 5)
        (4, 6, 7, 8),  # SUB.D
        (5, 17, 56, 57),  # DIV.D waits for F0 (written in 16)
        (6, 9, 10, 11),  # ADD.D: writes F6 long before DIV.D ends (WAR removed)
    ]


def test_war_hazard_removed_reader_keeps_the_old_producer() -> None:
    # DIV.D reads F6 from the first L.D; the later ADD.D that writes F6 cannot delay or
    # corrupt it: DIV.D's operand names the L.D's station, not the register.
    timings = simulate(HP_PROGRAM, unit_of=UNIT_OF, stations=STATIONS, latencies=LATENCIES)
    assert timings[5].write_result < timings[4].execution_start


def test_waw_hazard_removed_reader_waits_only_for_the_latest_writer() -> None:
    program = [
        Operation("DIV.D", "F0", ("F2", "F4")),  # slow write of F0
        Operation("ADD.D", "F0", ("F2", "F4")),  # fast write of F0 (renames F0)
        Operation("SUB.D", "F8", ("F0", "F2")),  # must use the ADD.D result
    ]
    timings = simulate(program, unit_of=UNIT_OF, stations=STATIONS, latencies=LATENCIES)
    div, add, sub = timings
    assert add.write_result < div.write_result
    assert sub.execution_start == add.write_result + 1


def test_one_broadcast_per_cycle_oldest_first() -> None:
    program = [
        Operation("ADD.D", "F1", ()),
        Operation("SUB.D", "F2", ()),
    ]
    latencies = {"ADD.D": 3, "SUB.D": 2}
    # Both complete in cycle 4; the older one takes the bus in 5, the other waits for 6.
    timings = simulate(program, unit_of=UNIT_OF, stations=STATIONS, latencies=latencies)
    assert [t.execution_complete for t in timings] == [4, 4]
    assert [t.write_result for t in timings] == [5, 6]


def test_full_stations_stall_issue_in_order() -> None:
    program = [
        Operation("MUL.D", "F0", ()),
        Operation("MUL.D", "F2", ()),
        Operation("MUL.D", "F4", ()),  # no free mult station until the first writes
        Operation("ADD.D", "F6", ()),  # in-order issue: stuck behind the third MUL.D
    ]
    timings = simulate(program, unit_of=UNIT_OF, stations=STATIONS, latencies=LATENCIES)
    first, _, third, add = timings
    assert first.write_result == 12  # issue 1, execute 2..11, write 12
    assert third.issue == first.write_result + 1
    assert add.issue == third.issue + 1


def test_functional_unit_limit_serialises_execution() -> None:
    program = [Operation("ADD.D", "F1", ()), Operation("ADD.D", "F2", ())]
    free = simulate(program, unit_of=UNIT_OF, stations=STATIONS, latencies=LATENCIES)
    one_adder = simulate(
        program, unit_of=UNIT_OF, stations=STATIONS, latencies=LATENCIES, units={"add": 1}
    )
    assert [t.execution_start for t in free] == [2, 3]
    assert [t.execution_start for t in one_adder] == [2, 4]


def test_machine_errors_name_the_operation() -> None:
    with pytest.raises(SimulationError, match=r"operation 1 \(FOO\)"):
        simulate(
            [HP_PROGRAM[0], Operation("FOO", None)],
            unit_of=UNIT_OF,
            stations=STATIONS,
            latencies=LATENCIES,
        )
    with pytest.raises(SimulationError, match="no stations"):
        simulate(HP_PROGRAM, unit_of=UNIT_OF, stations={"load": 1}, latencies=LATENCIES)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(sorted(UNIT_OF)),
            st.sampled_from(["F0", "F2", "F4", "F6"]),
            st.lists(st.sampled_from(["F0", "F2", "F4", "F6", "R1"]), max_size=2),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_simulation_respects_dataflow_and_conventions(
    program: list[tuple[str, str, list[str]]],
) -> None:
    operations = [Operation(op, dest, tuple(src)) for op, dest, src in program]
    timings = simulate(operations, unit_of=UNIT_OF, stations=STATIONS, latencies=LATENCIES)
    issues = [t.issue for t in timings]
    assert issues == sorted(set(issues))  # in order, one per cycle
    writes = [t.write_result for t in timings]
    assert len(set(writes)) == len(writes)  # one broadcast per cycle
    latest: dict[str, int] = {}
    for index, (operation, timing) in enumerate(zip(operations, timings, strict=True)):
        assert timing.execution_start > timing.issue
        duration = timing.execution_complete - timing.execution_start + 1
        assert duration == LATENCIES[operation.opcode]
        assert timing.write_result > timing.execution_complete
        for source in operation.sources:
            if source in latest:
                assert timing.execution_start > timings[latest[source]].write_result
        latest[operation.destination or ""] = index


def test_tracker_waits_on_producers_and_renames() -> None:
    tracker: OperandTracker[str] = OperandTracker()
    assert tracker.issue("edit", ["file:a"], ["file:a"]) == (frozenset(), {})
    pending, _ = tracker.issue("fmt", ["file:a"], ["file:a"])
    assert pending == {"edit"}
    pending, _ = tracker.issue("check", ["file:a"], [])
    assert pending == {"fmt"}  # the latest writer, not the first one
    assert tracker.producer_of("file:a") == "fmt"
    assert tracker.broadcast("edit") == ["fmt"]
    assert tracker.is_ready("fmt")
    assert tracker.waiting() == {"check": frozenset({"fmt"})}
    assert tracker.broadcast("fmt") == ["check"]
    assert tracker.producer_of("file:a") is None


def test_tracker_poisons_tags_of_failed_producers_until_rewritten() -> None:
    tracker: OperandTracker[str] = OperandTracker()
    tracker.issue("edit", [], ["file:a"])
    tracker.issue("reader", ["file:a"], [])
    assert tracker.fail("edit") == ["reader"]
    _, poisoned = tracker.issue("late", ["file:a"], [])
    assert poisoned == {"file:a": "edit"}
    tracker.issue("rewrite", [], ["file:a"])
    tracker.broadcast("rewrite")
    assert tracker.issue("after-rewrite", ["file:a"], []) == (frozenset(), {})

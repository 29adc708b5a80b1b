"""Throughput of the CodeCRDT layer against raw pycrdt inserts, measured in the same run.

Baseline: one pycrdt transaction per single insert into a Text (byte offsets, no observer).
Project: `WorkspaceState.apply_mutation` per edit (lease check, rebase, code point -> UTF-8
conversion, one transaction, delta -> code-point edits, version history, undo tracking,
subscriber fan-out); once with a lease taken per edit, once with the journal on disk.
Medians over repeats. Writes benchmarks/results/crdt_throughput.json.

    .venv/bin/python benchmarks/crdt_throughput.py [--edits 4000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pycrdt import Doc, Text

from delegation_machine.engine.protocol import Mutation, TextEdit
from delegation_machine.engine.state import WorkspaceState

RESULTS = Path(__file__).parent / "results" / "crdt_throughput.json"
SOURCES = {
    "ascii": "".join(f"def f{n}(x):\n    return x + {n}  # hello\n" for n in range(200)),
    "non-ascii": "".join(f"def f{n}(x):\n    return x + {n}  # héllo\n" for n in range(200)),
}


def positions(count: int, length: int) -> list[int]:
    # deterministic spread of positions over the file
    return [(n * 7919) % max(1, length) for n in range(count)]


def raw_pycrdt(edits: int, source: str) -> float:
    doc: Doc = Doc()
    text = doc.get("content", type=Text)
    with doc.transaction():
        text.insert(0, source)
    spots = positions(edits, len(source))
    start = time.perf_counter()
    for spot in spots:
        with doc.transaction(origin="agent"):
            text.insert(spot, "x")  # byte offsets: the baseline does no conversion
    return time.perf_counter() - start


def codecrdt(edits: int, source: str, *, lease_per_edit: bool, persist: bool) -> float:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "m.py").write_text(source, encoding="utf-8")
        state = WorkspaceState(root, persist=persist)
        seen: list[int] = []
        state.subscribe(lambda change: seen.append(change.version))
        _, version = state.read("m.py")
        spots = positions(edits, len(source))
        holder = "agent:a1/task:t1"
        lease = state.lease_files(["m.py"], holder)
        start = time.perf_counter()
        for spot in spots:
            if lease_per_edit:
                lease = state.lease_files(["m.py"], holder)
            applied = state.apply_mutation(
                Mutation("t1", "a1", "m.py", version, (TextEdit(spot, spot, "x"),)), lease
            )
            version = applied.version
            if lease_per_edit:
                state.release(lease)
        elapsed = time.perf_counter() - start
        assert len(seen) == edits
        return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    edits, repeats = args.edits, args.repeats

    variants: dict[str, Callable[[str], float]] = {
        "raw pycrdt insert (baseline)": lambda src: raw_pycrdt(edits, src),
        "CodeCRDT apply_mutation": lambda src: codecrdt(
            edits, src, lease_per_edit=False, persist=False
        ),
        "CodeCRDT lease+apply+release": lambda src: codecrdt(
            edits, src, lease_per_edit=True, persist=False
        ),
        "CodeCRDT + journal on disk": lambda src: codecrdt(
            edits, src, lease_per_edit=False, persist=True
        ),
    }
    results: dict[str, dict[str, dict[str, float]]] = {}
    print(f"{'source':10} {'variant':30} {'edits/s':>10} {'median s':>9} {'x raw':>7}")
    for source_name, source in SOURCES.items():
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(repeats):  # interleaved, so machine noise hits every variant alike
            for name, run in variants.items():
                times[name].append(run(source))
        baseline = statistics.median(times["raw pycrdt insert (baseline)"])
        results[source_name] = {}
        for name, samples in times.items():
            median = statistics.median(samples)
            row = {
                "edits_per_s": edits / median,
                "median_s": median,
                "overhead_vs_raw": median / baseline,
                "samples": len(samples),
            }
            results[source_name][name] = row
            print(
                f"{source_name:10} {name:30} {row['edits_per_s']:10.0f} {median:9.4f} "
                f"{row['overhead_vs_raw']:7.2f}"
            )
    payload = {
        "figure": "crdt_throughput",
        "edits_per_run": edits,
        "repeats": repeats,
        "file_chars": {name: len(source) for name, source in SOURCES.items()},
        "results": results,
        "target": "CodeCRDT apply_mutation overhead <= 2x raw pycrdt",
        "target_met": {
            name: rows["CodeCRDT apply_mutation"]["overhead_vs_raw"] <= 2.0
            for name, rows in results.items()
        },
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

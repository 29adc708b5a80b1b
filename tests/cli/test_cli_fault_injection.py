"""Issue 18's fault-injection suite: `run --task fix` killed with SIGKILL at random points.

A copy of part of samples/inventory (fixable files and the tests that import them, so the
checks start semgrep and pytest children) is fixed by the real command line, which is killed
with kill -9 at a random moment after a random number of its progress lines (past the first
burst of "queued" and "waiting"), KILLS times over, then let finish.
After every kill: no process the run had started survives it, the ledger passes
`PRAGMA integrity_check`, and every file a task had verified holds its fixed text (no lost
edit). The next run names the interrupted plan and the ledger records it abandoned. At the
end every file equals its original or its fixed version and parses (no torn file), no
`.dm-tmp` file and no shadow copy is left, and nothing was written to the temp folder the
runs were given (TMPDIR). The seed is printed; DM_FAULT_SEED reproduces a run.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import random
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "inventory"
CLI = [sys.executable, "-m", "delegation_machine.server"]
COPIED = (
    "pyproject.toml",
    "inventory/__init__.py",
    "inventory/auth.py",
    "inventory/config.py",
    "inventory/models.py",
    "inventory/money.py",
    "inventory/storage.py",
    "tests/conftest.py",
    "tests/test_auth.py",
    "tests/test_storage.py",
)
KILLS = 6
MAX_LINES_BEFORE_KILL = 12  # a fix of these files prints about 20 lines past the first burst
MAX_JITTER_S = 1.5
CHILDREN_GONE_WITHIN_S = 10.0
RUN_TIMEOUT_S = 240.0


def copy_sample(target: Path) -> dict[str, str]:
    for rel in COPIED:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SAMPLE / rel, target / rel)
    return {rel: (target / rel).read_text() for rel in COPIED if rel.endswith(".py")}


def descendants(pid: int) -> set[int]:
    """Every process below `pid` now (children, their children...), by /proc parent links."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def wait_until_gone(pids: set[int]) -> set[int]:
    """The pids still alive after the kernel had `CHILDREN_GONE_WITHIN_S` to deliver the
    parent-death signal: each exit is waited for on its pidfd (readable once the process has
    terminated, reaped or not), so nothing is waited for when they are gone at once."""
    watched: dict[int, int] = {}  # pidfd -> pid
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            watched[os.pidfd_open(pid)] = pid
    poller = select.poll()  # not select(): a test run may hold descriptors above 1024
    for fd in watched:
        poller.register(fd, select.POLLIN)
    try:
        deadline = time.monotonic() + CHILDREN_GONE_WITHIN_S
        while watched and (remaining := deadline - time.monotonic()) > 0:
            for fd, _ in poller.poll(remaining * 1000):
                poller.unregister(fd)
                os.close(fd)
                del watched[fd]
        return set(watched.values())
    finally:
        for fd in watched:
            os.close(fd)


def ledger_rows(workspace: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(workspace / ".delegation" / "ledger.sqlite3")) as db:
        return db.execute(sql, args).fetchall()


def verified_files(workspace: Path) -> set[str]:
    """The files changed by every task the ledger shows verified (written before it says so)."""
    verified = {
        task_id
        for (task_id,) in ledger_rows(
            workspace,
            "SELECT task_id FROM events WHERE kind = 'task.state' "
            "AND json_extract(payload, '$.state') = 'verified'",
        )
    }
    files: set[str] = set()
    for task_id, payload in ledger_rows(
        workspace, "SELECT task_id, payload FROM events WHERE kind = 'agent.result'"
    ):
        if task_id in verified:
            files.update(m["path"] for m in json.loads(str(payload)).get("mutations", ()))
    return files


def unfinished_plans(workspace: Path) -> set[str]:
    rows = ledger_rows(
        workspace,
        "SELECT task_id FROM events WHERE kind = 'plan.submitted' AND task_id NOT IN "
        "(SELECT task_id FROM events WHERE kind IN ('plan.finished', 'plan.abandoned') "
        "AND task_id IS NOT NULL)",
    )
    return {str(plan_id) for (plan_id,) in rows}


def _work_lines(lines: list[str]) -> int:
    """Progress lines past the first burst (every task queued, then waiting): a task started,
    was checked or finished, each one a moment with agents and checks at work."""
    return sum(1 for line in lines if line.split()[3:4] not in (["queued"], ["waiting"]))


def start_fix(workspace: Path, temp: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "TMPDIR": str(temp), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [*CLI, "run", str(workspace), "--task", "fix"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def test_kill_9_at_random_points_of_a_fix_run_loses_and_leaks_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("DM_FAULT_SEED", random.randrange(1 << 30)))
    print(f"fault-injection seed {seed} (DM_FAULT_SEED={seed} reproduces it)")
    chance = random.Random(seed)
    workspace = tmp_path / "inventory"
    originals = copy_sample(workspace)
    temp = tmp_path / "system-temp"
    temp.mkdir()
    snapshots: list[tuple[dict[str, str], set[str]]] = []  # disk after a kill, verified files
    interrupted_reported = 0
    children_killed = 0
    previous_unfinished: set[str] = set()
    for kill in range(KILLS):
        run = start_fix(workspace, temp)
        assert run.stdout is not None
        lines: list[str] = []
        try:
            wanted = chance.randint(1, MAX_LINES_BEFORE_KILL)
            while _work_lines(lines) < wanted and (line := run.stdout.readline()):
                lines.append(line)
            time.sleep(chance.uniform(0.0, MAX_JITTER_S))  # the kill lands between two lines
            children = descendants(run.pid)
            run.send_signal(signal.SIGKILL)
            run.wait(timeout=30)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
        survivors = wait_until_gone(children)
        for pid in survivors:  # never leave them running, even when the test fails
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert survivors == set(), (kill, seed, survivors)
        children_killed += len(children)
        output = "".join(lines)
        assert "Traceback" not in output, output
        for plan_id in previous_unfinished:  # the run after a kill names what it interrupted
            assert f"Plan {plan_id}" in output and "was interrupted" in output, (seed, output)
            interrupted_reported += 1
        assert ledger_rows(workspace, "PRAGMA integrity_check") == [("ok",)]
        previous_unfinished = unfinished_plans(workspace)
        snapshots.append((_python_texts(workspace), verified_files(workspace)))
    final = start_fix(workspace, temp)
    rest, _ = final.communicate(timeout=RUN_TIMEOUT_S)
    assert final.returncode in (0, 1), rest
    for plan_id in previous_unfinished:
        assert f"Plan {plan_id}" in rest and "was interrupted" in rest, (seed, rest)
        interrupted_reported += 1
    abandoned = {
        str(plan_id)
        for (plan_id,) in ledger_rows(
            workspace, "SELECT task_id FROM events WHERE kind = 'plan.abandoned'"
        )
    }
    assert unfinished_plans(workspace) == set()  # every interrupted plan ended explicitly
    assert len(abandoned) == interrupted_reported
    assert interrupted_reported >= 1, seed  # the kills did land in the middle of plans
    assert children_killed >= 1, seed  # and while the run had children (semgrep, pytest)
    print(
        f"{KILLS} kills, {children_killed} child processes gone with them, "
        f"{interrupted_reported} interrupted plans reported and abandoned"
    )
    fixed = _python_texts(workspace)
    assert any(fixed[rel] != originals[rel] for rel in originals)  # the fix did its work
    for rel, text in fixed.items():
        ast.parse(text, filename=rel)  # no torn file
    for disk, verified in snapshots:
        for rel, text in disk.items():
            assert text in (originals[rel], fixed[rel]), (seed, rel)  # original or fixed
        for rel in verified:
            assert disk[rel] == fixed[rel], (seed, rel)  # a verified edit is never lost
    leftovers = [p for p in workspace.rglob("*.dm-tmp")]
    assert leftovers == [], leftovers
    scratch = workspace / ".delegation" / "tmp"
    assert not scratch.exists() or list(scratch.iterdir()) == []
    assert list(temp.iterdir()) == []  # nothing in the temp folder the runs were given


def _python_texts(workspace: Path) -> dict[str, str]:
    return {
        path.relative_to(workspace).as_posix(): path.read_text()
        for path in workspace.rglob("*.py")
        if ".delegation" not in path.parts and "__pycache__" not in path.parts
    }

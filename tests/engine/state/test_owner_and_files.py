"""Issue 18, findings 6, 7 and 10 at the state layer: one owner per workspace across processes,
only regular files read (FIFOs, devices and symlink loops refused with a reason, never a hang
or a crash), and what a killed owner left behind (temp files, shadow copies, interrupted plans)
found and cleaned on the next start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from delegation_machine.engine.ledger import Ledger
from delegation_machine.engine.memory.symbols import SymbolIndex
from delegation_machine.engine.memory.workspace_index import WorkspaceIndex
from delegation_machine.engine.protocol import Mutation, TextEdit
from delegation_machine.engine.schedule.interrupted import abandon_interrupted
from delegation_machine.engine.state import FileRefused, PathRefused, WorkspaceState
from delegation_machine.engine.state.files import Unreadable, list_files, read_regular_file
from delegation_machine.engine.state.owner import WorkspaceBusy, read_owner
from delegation_machine.engine.state.scratch import scratch_folder
from delegation_machine.engine.supervise.sandbox import ShadowWorkspace

CLAIM_IN_CHILD = """
import sys
from pathlib import Path
from delegation_machine.engine.state import WorkspaceState
from delegation_machine.engine.state.owner import WorkspaceBusy
state = WorkspaceState(Path(sys.argv[1]))
try:
    state.claim_owner("second-process")
except WorkspaceBusy as exc:
    print("BUSY", exc.reason)
    sys.exit(3)
print("OWNER")
if len(sys.argv) > 2:
    sys.stdout.flush()
    sys.stdin.read()  # hold the lock until the test closes stdin or kills us
"""


def claim_in_child(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CLAIM_IN_CHILD, str(root)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def finishes_within(seconds: float, action: Callable[[], object]) -> object:
    """Run `action` in a thread; fail (instead of hanging the suite) if it blocks."""
    outcome: list[object] = []

    def target() -> None:
        try:
            outcome.append(action())
        except BaseException as exc:  # the caller asserts on the exception
            outcome.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"blocked for more than {seconds} s"
    return outcome[0]


def special_workspace(root: Path) -> Path:
    """A workspace with one good file and every kind of entry that is not a regular file."""
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "good.py").write_text("def good():\n    return 1\n")
    os.mkfifo(root / "pkg" / "pipe.py")
    os.symlink("loop_b.py", root / "pkg" / "loop_a.py")
    os.symlink("loop_a.py", root / "pkg" / "loop_b.py")
    os.symlink("missing.py", root / "pkg" / "dangling.py")
    os.symlink("/dev/zero", root / "pkg" / "zero.py")
    os.symlink("/etc/hostname", root / "pkg" / "outside.py")
    (root / "pkg" / "folder.py").mkdir()
    os.symlink("..", root / "pkg" / "up")  # a folder loop: never entered
    return root


# --- finding 6: one owner per workspace -----------------------------------------------------


def test_a_second_process_is_refused_with_a_message_naming_the_owner(workspace: Path) -> None:
    state = WorkspaceState(workspace)
    state.claim_owner("delegation-machine run ws --task fix")
    try:
        second = claim_in_child(workspace)
        assert second.returncode == 3, second.stdout + second.stderr
        assert f"process {os.getpid()}" in second.stdout
        assert "delegation-machine run ws --task fix" in second.stdout
        assert read_owner(workspace / ".delegation")["pid"] == os.getpid()
    finally:
        state.release_owner()
    assert claim_in_child(workspace).returncode == 0  # released: the next one owns it


def test_the_lock_is_refused_in_the_same_process_too(workspace: Path) -> None:
    first, second = WorkspaceState(workspace), WorkspaceState(workspace)
    first.claim_owner()
    try:
        with pytest.raises(WorkspaceBusy, match=f"process {os.getpid()}"):
            second.claim_owner()
    finally:
        first.release_owner()
    second.claim_owner()
    second.release_owner()


def test_an_owner_killed_with_sigkill_frees_the_workspace(workspace: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", CLAIM_IN_CHILD, str(workspace), "hold"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "OWNER"  # the readiness signal
        with pytest.raises(WorkspaceBusy, match=f"process {holder.pid}"):
            WorkspaceState(workspace).claim_owner()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    state = WorkspaceState(workspace)
    state.claim_owner()  # the kernel dropped the dead owner's lock
    state.release_owner()


# --- finding 7: only regular files are read --------------------------------------------------


def test_special_files_and_symlink_loops_are_refused_with_a_reason(tmp_path: Path) -> None:
    root = special_workspace(tmp_path / "ws")
    state = WorkspaceState(root)
    reasons = {}
    for name in ("pipe.py", "folder.py", "dangling.py"):
        refused = finishes_within(10, lambda name=name: state.read(f"pkg/{name}"))
        assert isinstance(refused, FileRefused), (name, refused)
        reasons[name] = refused.reason
    assert "FIFO" in reasons["pipe.py"]
    assert "folder" in reasons["folder.py"]
    assert "no such file" in reasons["dangling.py"]
    loop = finishes_within(10, lambda: state.read("pkg/loop_a.py"))
    assert isinstance(loop, PathRefused) and "symlink loop" in loop.reason
    with pytest.raises(PathRefused, match="outside the workspace"):
        state.read("pkg/zero.py")
    device = finishes_within(10, lambda: read_regular_file(Path("/dev/zero"), max_bytes=10))
    assert isinstance(device, Unreadable) and "character device" in device.reason
    assert state.read("pkg/good.py")[0].startswith("def good")


def test_the_symbol_index_skips_special_files_and_loops_and_says_why(tmp_path: Path) -> None:
    root = special_workspace(tmp_path / "ws")
    index = SymbolIndex(root)
    finishes_within(30, index.build)
    assert index.files() == ["pkg/good.py"]
    skipped = {s.path: s.reason for s in index.skipped}
    assert "FIFO" in skipped["pkg/pipe.py"]
    assert "symlink loop" in skipped["pkg/loop_a.py"]
    assert "symlink loop" in skipped["pkg/loop_b.py"]
    assert "outside" in skipped["pkg/zero.py"]
    assert index.occurrences("good")  # the rest of the workspace is indexed


def test_the_workspace_listing_reports_what_it_leaves_out(tmp_path: Path) -> None:
    root = special_workspace(tmp_path / "ws")
    warnings: list[str] = []
    index = WorkspaceIndex(root, warn=warnings.append)
    assert finishes_within(10, index.files) == ["pkg/good.py"]  # before the build: a walk
    assert len(warnings) == 1
    for name in ("pipe.py (a FIFO", "loop_a.py (a symlink loop", "zero.py (a character"):
        assert name in warnings[0]
    found, skipped = list_files(root, skipped_folders=(), wanted=lambda rel: True)
    assert found == ["pkg/good.py"]
    assert {s.path for s in skipped} >= {"pkg/pipe.py", "pkg/outside.py", "pkg/dangling.py"}


def test_a_file_growing_past_the_limit_while_read_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.py"
    big.write_bytes(b"x" * 2048)
    with pytest.raises(Unreadable, match="over the limit"):
        read_regular_file(big, max_bytes=1024)
    assert read_regular_file(big, max_bytes=4096) == b"x" * 2048


# --- finding 10: what a killed owner left behind --------------------------------------------


def test_claiming_removes_temp_files_and_shadow_copies_of_a_dead_owner(workspace: Path) -> None:
    stale_write = workspace / "pkg" / ".mod.py.abc123.dm-tmp"
    stale_write.write_text("half a file")
    unrelated = workspace / "pkg" / "notes.dm-tmp.txt"
    unrelated.write_text("the user's")
    stale_copy = workspace / ".delegation" / "tmp" / "dm-shadow-old" / "workspace"
    stale_copy.mkdir(parents=True)
    (stale_copy / "secret.py").write_text("source")
    state = WorkspaceState(workspace)
    removed = state.claim_owner()
    try:
        assert "pkg/.mod.py.abc123.dm-tmp" in removed
        assert ".delegation/tmp/dm-shadow-old" in removed
        assert not stale_write.exists() and not stale_copy.exists()
        assert unrelated.exists()
        with ShadowWorkspace.materialise({"a.py": "x = 1\n"}) as shadow:
            assert shadow.root.is_relative_to(workspace / ".delegation" / "tmp")
    finally:
        state.release_owner()
    assert scratch_folder() is None or not scratch_folder().is_relative_to(workspace)


def test_an_interrupted_plan_is_abandoned_and_its_unverified_edits_undone(
    workspace: Path,
) -> None:
    ledger = Ledger(workspace / ".delegation" / "ledger.sqlite3")
    state = WorkspaceState(workspace)
    tasks = [{"task_id": "p1.1"}, {"task_id": "p1.2"}]
    ledger.record("plan.submitted", task_id="p1", kind="fix", instruction="fix", tasks=tasks)
    ledger.record("task.state", task_id="p1.1", state="verified")
    ledger.record("task.state", task_id="p1.2", state="checking")
    ledger.record("plan.submitted", task_id="p2", kind="format", instruction="format", tasks=[])
    ledger.record("plan.finished", task_id="p2", state="verified")
    original, version = state.read("pkg/mod.py")
    for task, text in (("p1.1", "# verified\n"), ("p1.2", "# unverified\n")):
        lease = state.lease_files(["pkg/mod.py"], task)
        state.apply_mutation(
            Mutation(task, "a1", "pkg/mod.py", version, (TextEdit(0, 0, text),)), lease
        )
        state.release(lease)
        version = state.read("pkg/mod.py")[1]
    state.close()  # the process dies here: the journal holds both edits, the disk neither

    restarted = WorkspaceState(workspace)
    restarted.claim_owner()
    try:
        restarted.restore_from_journal()
        assert "# unverified" in restarted.read("pkg/mod.py")[0]
        found = abandon_interrupted(ledger, restarted)
        assert [p.plan_id for p in found] == ["p1"]
        assert found[0].kept_tasks == ("p1.1",) and found[0].undone_tasks == ("p1.2",)
        assert "interrupted" in found[0].message() and "pkg/mod.py" in found[0].message()
        assert restarted.read("pkg/mod.py")[0] == "# verified\n" + original
        assert abandon_interrupted(ledger, restarted) == []  # abandoned once, explicitly
        (event,) = ledger.events(kinds=["plan.abandoned"])
        assert event.task_id == "p1" and event.payload["undone_tasks"] == ["p1.2"]
    finally:
        restarted.release_owner()
        ledger.close()

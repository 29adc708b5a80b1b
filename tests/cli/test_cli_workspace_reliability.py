"""Issue 18, findings 6, 7 and 9 through the real command line: two processes on one workspace
(the second is refused, naming the first, and nothing is lost), and a workspace full of entries
that are not regular text files (each named with its reason; no hang, no traceback, no
"internal error")."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from delegation_machine.engine.state.owner import read_owner

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "delegation_machine.server"]
SAMPLE = ROOT / "samples" / "inventory" / "inventory"


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def fixable_workspace(root: Path, names: tuple[str, ...] = ("auth.py", "config.py")) -> Path:
    (root / "inventory").mkdir(parents=True)
    for name in ("__init__.py", *names):
        shutil.copyfile(SAMPLE / name, root / "inventory" / name)
    return root


def test_a_second_run_on_a_busy_workspace_is_refused_naming_the_first(tmp_path: Path) -> None:
    workspace = fixable_workspace(tmp_path / "ws")
    before = (workspace / "inventory" / "auth.py").read_text()
    first = subprocess.Popen(
        [*CLI, "run", str(workspace), "--task", "fix"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert first.stdout is not None
        first.stdout.readline()  # the first progress line: its swarm is started, so it owns
        owner = read_owner(workspace / ".delegation")
        assert owner.get("pid") == first.pid, owner
        second = run_cli(
            "run", str(workspace), "--task", "rename new_session_token make_session_token"
        )
        assert second.returncode == 3, second.stdout + second.stderr
        assert f"in use by process {first.pid}" in second.stderr
        assert "--task fix" in second.stderr  # the owner's command line
        assert "Traceback" not in second.stderr
        rest, _ = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, rest
    fixed = (workspace / "inventory" / "auth.py").read_text()
    assert fixed != before and "SystemRandom" in fixed  # the fix was not overwritten
    renamed = run_cli(
        "run", str(workspace), "--task", "rename new_session_token make_session_token"
    )
    assert renamed.returncode == 0, renamed.stdout + renamed.stderr  # free again: it runs
    text = (workspace / "inventory" / "auth.py").read_text()
    assert "def make_session_token" in text and "SystemRandom" in text  # both changes, none lost


def bad_content_workspace(root: Path) -> Path:
    workspace = fixable_workspace(root, ("config.py",))
    package = workspace / "inventory"
    os.mkfifo(package / "pipe.py")
    os.symlink("loop_b.py", package / "loop_a.py")
    os.symlink("loop_a.py", package / "loop_b.py")
    (package / "binary.py").write_bytes(b"x = 1\x00\x01\x02")
    (package / "latin1.py").write_bytes(b"name = '\xe9t\xe9'\n")
    return workspace


REASONS = {
    "pipe.py": "FIFO",
    "loop_a.py": "symlink loop",
    "loop_b.py": "symlink loop",
    "binary.py": "binary file",
    "latin1.py": "not UTF-8",
}


def test_check_names_every_file_it_refused_and_why(tmp_path: Path) -> None:
    workspace = bad_content_workspace(tmp_path / "ws")
    result = run_cli("run", str(workspace), "--task", "check", "--json", timeout=240)
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "internal error" not in output, output
    report = json.loads(result.stdout)
    (task,) = report["tasks"]  # verified, or failed by config.py's finding: never an error
    assert task["state"] in ("verified", "failed"), task
    for name in ("binary.py", "latin1.py"):  # planned, then refused when read: named in it
        assert f"inventory/{name} ({REASONS[name]}" in task["message"], task["message"]
    text = run_cli("run", str(workspace), "--task", "check", timeout=240)
    for name, reason in REASONS.items():  # in the terminal, every left-out file is named
        line = next((s for s in text.stdout.splitlines() if f"inventory/{name}" in s), "")
        assert reason in line, (name, text.stdout)


def test_fix_on_bad_content_reports_each_file_with_its_reason(tmp_path: Path) -> None:
    workspace = bad_content_workspace(tmp_path / "ws")
    result = run_cli("run", str(workspace), "--task", "fix", "--json", timeout=240)
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "internal error" not in output, output
    report = json.loads(result.stdout)
    assert result.returncode == 1  # the unreadable files could not be fixed: said, per file
    by_file = {
        task["message"].split(":")[1].strip(): task
        for task in report["tasks"]
        if task["state"] == "failed"
    }
    assert set(by_file) == {"inventory/binary.py", "inventory/latin1.py"}, report["tasks"]
    for rel, task in by_file.items():
        assert (
            task["message"].startswith("refused: ")
            and REASONS[rel.split("/")[1]] in task["message"]
        )
    fixed = [t for t in report["tasks"] if t["state"] == "verified"]
    assert fixed, report["tasks"]  # the good files were still fixed
    assert "yaml.safe_load" in (workspace / "inventory" / "config.py").read_text()


def test_a_file_that_does_not_parse_is_never_reported_verified(tmp_path: Path) -> None:
    workspace = fixable_workspace(tmp_path / "ws", ("config.py",))
    broken = workspace / "inventory" / "broken.py"
    broken.write_text("import random\n\ndef token(:\n    return random.random()\n")
    before = broken.read_text()
    result = run_cli("run", str(workspace), "--task", "fix", "--json", timeout=240)
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "internal error" not in output, output
    assert result.returncode == 1, output
    failed_tasks = [t for t in json.loads(result.stdout)["tasks"] if t["state"] == "failed"]
    assert len(failed_tasks) == 1, result.stdout
    (failed,) = failed_tasks
    assert "inventory/broken.py (line 3" in failed["message"], failed
    assert "does not parse" in failed["message"]
    assert broken.read_text() == before  # nothing written to the file it could not verify
    assert "yaml.safe_load" in (workspace / "inventory" / "config.py").read_text()
    check = run_cli("run", str(workspace), "--task", "check", "--json", timeout=240)
    (task,) = json.loads(check.stdout)["tasks"]
    assert "does not parse: inventory/broken.py (line 3" in task["message"], task


def test_index_and_rename_survive_fifos_and_symlink_loops(tmp_path: Path) -> None:
    workspace = bad_content_workspace(tmp_path / "ws")
    index = run_cli("index", str(workspace), "--json", timeout=60)  # a FIFO never blocks it
    assert index.returncode == 0, index.stderr
    skipped = {s["path"]: s["reason"] for s in json.loads(index.stdout)["skipped"]}
    for name in ("pipe.py", "loop_a.py", "loop_b.py", "binary.py", "latin1.py"):
        assert REASONS[name].split()[0] in skipped[f"inventory/{name}"], skipped
    renamed = run_cli("run", str(workspace), "--task", "rename load_settings read_settings")
    assert renamed.returncode == 0, renamed.stdout + renamed.stderr  # the loop broke nothing
    assert "def read_settings" in (workspace / "inventory" / "config.py").read_text()


def test_a_clean_fix_run_leaves_nothing_in_the_temp_folder(tmp_path: Path) -> None:
    workspace = fixable_workspace(tmp_path / "ws")
    temp = tmp_path / "empty-temp"
    temp.mkdir()
    result = subprocess.run(
        [*CLI, "run", str(workspace), "--task", "fix"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TMPDIR": str(temp)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SystemRandom" in (workspace / "inventory" / "auth.py").read_text()
    assert list(temp.iterdir()) == []  # no shadow copy, no tool's cache, nothing
    assert list((workspace / ".delegation" / "tmp").iterdir()) == []  # removed after use
    assert list(workspace.rglob("*.dm-tmp")) == []

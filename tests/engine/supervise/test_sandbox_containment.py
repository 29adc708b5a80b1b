"""Issue 18, finding 11: what a hostile test can no longer do from inside the sandbox.

Real children under `run_sandboxed` (and real pytest under `AffectedTests`): no capability and
no root-only file when the parent is root, private temp folders, a child that called
`setsid()` killed with the run, and one slow test failing alone at its own deadline while the
others' results are kept.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest

from delegation_machine.engine.supervise.affected import AffectedTests
from delegation_machine.engine.supervise.sandbox import (
    SandboxLimits,
    detect_isolation,
    hand_to_sandbox,
    run_sandboxed,
)

from .conftest import write

SUPPORT = detect_isolation()
needs_private_views = pytest.mark.skipif(not SUPPORT.private_views, reason=SUPPORT.reason)
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="the capability drop is for a root parent"
)
LIMITS = SandboxLimits(timeout_s=30, cpu_s=30, max_processes=64)

PROBE_ROOT_FILES = """
import os, sys
def attempt(label, action):
    try:
        print(label, "read", action())
    except OSError as exc:
        print(label, "refused", exc.errno)
attempt("shadow", lambda: len(open("/etc/shadow", "rb").read(1)))
attempt("secret", lambda: open(sys.argv[1]).read())
attempt("listing", lambda: os.path.basename(sys.argv[1]) in os.listdir("/root"))
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print("caps", status["CapEff"].strip(), status["CapPrm"].strip(), status["CapBnd"].strip())
"""


@needs_root
async def test_a_root_parents_child_has_no_capability_and_reads_no_root_only_file(
    tmp_path: Path,
) -> None:
    secret = Path("/root") / f".dm-secret-{uuid.uuid4().hex}"
    secret.write_text("root only")
    secret.chmod(0o600)
    try:
        hand_to_sandbox(tmp_path)
        result = await run_sandboxed(
            [sys.executable, "-c", PROBE_ROOT_FILES, str(secret)], cwd=tmp_path, limits=LIMITS
        )
    finally:
        secret.unlink()
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    if Path("/etc/shadow").exists():
        assert lines["shadow"].startswith("refused"), result.stdout
    assert lines["secret"].startswith("refused"), result.stdout  # root's home is closed
    assert lines["listing"] in ("read False", "refused 13"), result.stdout  # or hidden
    assert lines["caps"] == "0000000000000000 0000000000000000 0000000000000000", result.stdout


@needs_private_views
async def test_writes_to_the_shared_temp_folders_stay_private_to_the_run(tmp_path: Path) -> None:
    name = f"dm-escape-{uuid.uuid4().hex}"
    targets = [Path(folder) / name for folder in ("/tmp", "/var/tmp", "/dev/shm")]
    code = (
        "import sys\n"
        "for target in sys.argv[1:]:\n"
        "    open(target, 'w').write('escaped')\n"
        "    print(open(target).read())\n"
    )
    hand_to_sandbox(tmp_path)
    result = await run_sandboxed(
        [sys.executable, "-c", code, *map(str, targets)], cwd=tmp_path, limits=LIMITS
    )
    assert result.returncode == 0, result.stderr
    assert result.private_tmp
    assert result.stdout.split() == ["escaped"] * 3  # the child could write: redirected
    assert [t for t in targets if t.exists()] == []  # and nothing reached the real folders


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _killed(pids: list[int]) -> list[int]:
    """`pids`, each killed so that a failing test leaves nothing behind."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


async def test_a_child_that_called_setsid_does_not_outlive_the_run(tmp_path: Path) -> None:
    marker = f"dm-escapee-{uuid.uuid4().hex}"
    escapee = f"import os, time; os.setsid(); print(1, flush=True); time.sleep(600)  # {marker}"
    code = (
        "import subprocess, sys\n"
        f"child = subprocess.Popen([sys.executable, '-c', {escapee!r}], stdout=subprocess.PIPE)\n"
        "child.stdout.readline()  # it has left the process group\n"
        "print('started')\n"
    )
    hand_to_sandbox(tmp_path)
    result = await run_sandboxed([sys.executable, "-c", code], cwd=tmp_path, limits=LIMITS)
    assert result.returncode == 0 and "started" in result.stdout, result.stderr
    assert _killed(_processes_with(marker)) == []


async def test_a_setsid_child_is_killed_when_the_run_times_out(tmp_path: Path) -> None:
    marker = f"dm-escapee-{uuid.uuid4().hex}"
    escapee = f"import os, time; os.setsid(); print(1, flush=True); time.sleep(600)  # {marker}"
    code = (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', {escapee!r}], stdout=subprocess.PIPE)\n"
        "child.stdout.readline()  # it has left the process group\n"
        "print('started', flush=True)\n"
        "time.sleep(600)\n"
    )
    hand_to_sandbox(tmp_path)
    limits = SandboxLimits(timeout_s=3, max_processes=64)
    result = await run_sandboxed([sys.executable, "-c", code], cwd=tmp_path, limits=limits)
    assert result.timed_out
    assert _killed(_processes_with(marker)) == []


SLOW_SUITE = {
    "calc.py": "def add(a, b):\n    return a + b\n",
    "tests/test_calc.py": (
        "import time\n\nfrom calc import add\n\n\n"
        "def test_adds():\n    assert add(1, 2) == 3\n\n\n"
        "def test_never_returns():\n    time.sleep(600)\n\n\n"
        "def test_broken():\n    assert add(1, 1) == 3\n"
    ),
}


async def test_one_slow_test_fails_alone_and_the_others_results_are_kept(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    write(root, SLOW_SUITE)
    runner = AffectedTests(root, timeout_s=60, per_test_timeout_s=2)
    started = time.monotonic()
    verdict = await runner.run(dict(SLOW_SUITE), ["calc.py"])
    elapsed = time.monotonic() - started
    assert verdict.kind == "failed", verdict
    by_test = {f.code: f.message for f in verdict.findings}
    assert set(by_test) == {
        "test:tests/test_calc.py::test_never_returns",
        "test:tests/test_calc.py::test_broken",
    }, by_test
    assert "timed out after 2 s" in by_test["test:tests/test_calc.py::test_never_returns"]
    assert elapsed < 40  # the slow test was stopped at its deadline, not the run's

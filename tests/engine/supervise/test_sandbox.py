"""The sandbox: shadow copies, scrubbed environment, limits, timeouts and isolation."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from delegation_machine.engine.supervise.sandbox import (
    SandboxLimits,
    ShadowWorkspace,
    detect_isolation,
    hand_to_sandbox,
    run_sandboxed,
    scrub_environment,
)

from .conftest import write

SUPPORT = detect_isolation()
needs_namespaces = pytest.mark.skipif(not SUPPORT.namespaces, reason=SUPPORT.reason)
needs_read_only = pytest.mark.skipif(not SUPPORT.read_only_mounts, reason=SUPPORT.reason)
needs_nproc = pytest.mark.skipif(not SUPPORT.process_limit_enforced, reason=SUPPORT.reason)

FAST = SandboxLimits(timeout_s=20, cpu_s=20, max_processes=64)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_scrubbed_environment_keeps_no_secrets() -> None:
    environ = {
        "PATH": "/usr/bin",
        "OPENAI_API_KEY": "sk-1",
        "GITHUB_TOKEN": "ghp",
        "DB_PASSWORD": "pw",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_ACCESS_KEY_ID": "y",
        "HF_TOKEN": "z",
        "HOME": "/root",
        "UNRELATED": "1",
    }
    scrubbed = scrub_environment(environ, {"PYTHONPATH": "/s", "EXTRA_API_KEY": "leak"})
    assert scrubbed == {"PATH": "/usr/bin", "PYTHONPATH": "/s"}


async def test_child_sees_no_api_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-secret")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-secret")
    result = await run_sandboxed(
        python("import os; print(repr(dict(os.environ)))"), cwd=tmp_path, limits=FAST
    )
    assert result.ok, result.stderr
    assert "secret" not in result.stdout and "PATH" in result.stdout


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    code = (
        "import os, signal\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        f"    open({str(pid_file)!r}, 'w').write(os.readlink('/proc/self'))\n"  # outside its PID namespace
        "    signal.pause()\n"
        "signal.pause()\n"
    )
    limits = SandboxLimits(timeout_s=1.0, max_processes=64)
    hand_to_sandbox(tmp_path)
    result = await run_sandboxed(python(code), cwd=tmp_path, limits=limits)
    assert result.timed_out and not result.ok
    assert result.returncode is not None and result.returncode < 0
    grandchild = int(pid_file.read_text())
    assert _gone_or_zombie(grandchild)


def _gone_or_zombie(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return status.rsplit(")", 1)[1].split()[0] in ("Z", "X")


@needs_nproc
async def test_fork_bomb_hits_the_process_limit(tmp_path: Path) -> None:
    code = (
        "import os, signal\n"
        "forked = 0\n"
        "try:\n"
        "    while True:\n"
        "        if os.fork() == 0:\n"
        "            signal.pause()\n"
        "        forked += 1\n"
        "except OSError as exc:\n"
        "    print('stopped after', forked, type(exc).__name__)\n"
    )
    limits = SandboxLimits(timeout_s=20, max_processes=16)
    result = await run_sandboxed(python(code), cwd=tmp_path, limits=limits)
    assert not result.timed_out
    assert result.stdout.startswith("stopped after"), result.stderr
    assert int(result.stdout.split()[2]) < 16


async def test_output_is_capped(tmp_path: Path) -> None:
    limits = SandboxLimits(timeout_s=20, output_bytes=1000)
    result = await run_sandboxed(
        python("import sys; sys.stdout.write('x' * 3_000_000)"), cwd=tmp_path, limits=limits
    )
    assert result.returncode == 0
    assert result.output_truncated and len(result.stdout) == 1000


async def test_file_size_limit(tmp_path: Path) -> None:
    limits = SandboxLimits(timeout_s=20, file_size_bytes=10_000)
    code = "open('big', 'wb').write(b'x' * 100_000)"
    hand_to_sandbox(tmp_path)
    result = await run_sandboxed(python(code), cwd=tmp_path, limits=limits)
    assert result.returncode != 0
    assert (tmp_path / "big").stat().st_size <= 10_000


async def test_cpu_limit_stops_a_busy_loop(tmp_path: Path) -> None:
    limits = SandboxLimits(timeout_s=30, cpu_s=1)
    result = await run_sandboxed(python("while True: pass"), cwd=tmp_path, limits=limits)
    assert not result.timed_out
    assert result.returncode is not None and result.returncode < 0  # SIGXCPU / SIGKILL


@needs_namespaces
async def test_no_network(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        code = (
            "import socket\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=5)\n"
            "    print('connected')\n"
            "except OSError as exc:\n"
            "    print('refused', exc)\n"
        )
        result = await run_sandboxed(python(code), cwd=tmp_path, limits=FAST)
    assert result.network_isolated
    assert result.stdout.startswith("refused"), result.stdout + result.stderr


@needs_read_only
async def test_protected_workspace_is_read_only(tmp_path: Path) -> None:
    user_root = tmp_path / "user"
    user_root.mkdir()
    write(user_root, {"keep.py": "x = 1\n"})
    code = f"open({str(user_root / 'keep.py')!r}, 'w').write('pwned')\n"
    limits = SandboxLimits(timeout_s=20, protect_paths=(str(user_root),))
    hand_to_sandbox(tmp_path)  # the child may write the file; only the mount stops it
    result = await run_sandboxed(python(code), cwd=tmp_path, limits=limits)
    assert result.paths_protected
    assert result.returncode != 0 and "Read-only file system" in result.stderr
    assert (user_root / "keep.py").read_text() == "x = 1\n"


def test_shadow_copy_overlays_texts_and_leaves_the_workspace_alone(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    write(
        root,
        {
            "pkg/a.py": "on disk\n",
            "pkg/b.py": "untouched\n",
            ".git/config": "[core]\n",
            ".venv/lib/x.py": "venv\n",
            "data/table.csv": "1,2\n",
        },
    )
    shadow = ShadowWorkspace.materialise({"pkg/a.py": "crdt state\n"}, source_root=root)
    try:
        assert (shadow.root / "pkg/a.py").read_text() == "crdt state\n"
        assert (shadow.root / "pkg/b.py").read_text() == "untouched\n"
        assert (shadow.root / "data/table.csv").exists()
        assert not (shadow.root / ".git").exists() and not (shadow.root / ".venv").exists()
        assert shadow.relative(shadow.root / "pkg/a.py") == "pkg/a.py"
        with pytest.raises(ValueError, match="escapes"):
            shadow.path_of("../outside.py")
    finally:
        shadow.cleanup()
    assert (root / "pkg/a.py").read_text() == "on disk\n"
    assert not shadow.root.exists()


def test_shadow_refuses_texts_that_escape(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="escapes"):
        ShadowWorkspace.materialise({"../../etc/evil.py": "x"})


async def test_a_program_that_cannot_start_is_reported(tmp_path: Path) -> None:
    result = await run_sandboxed([str(tmp_path / "missing-binary")], cwd=tmp_path)
    assert result.returncode is None and result.start_error and not result.ok

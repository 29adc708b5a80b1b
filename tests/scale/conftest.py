"""A real redis-server on a free loopback port and real `delegation-machine worker` processes.

`redis_server` starts Debian's redis-server (installed by the test set-up when missing) with no
persistence, so a restart loses everything, the hardest case for the host; it is ready when it
printed that it accepts connections and answered PING. `start_worker` runs the real CLI.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.system_packages import install_debian_packages

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "inventory"
READY_TIMEOUT_S = 30
WORKER_COMMAND = [sys.executable, "-m", "delegation_machine.server", "worker"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_line(process: subprocess.Popen[str], needle: str, timeout_s: float) -> list[str]:
    """Read `process`'s output until a line contains `needle`; the lines read."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()  # blocks until a line or EOF
        if not line:
            raise AssertionError(f"exited ({process.wait()}) before {needle!r}:\n{''.join(lines)}")
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"no {needle!r} within {timeout_s} s:\n{''.join(lines)}")


class RedisServer:
    """One redis-server process on `port`; `restart()` stops it and starts a fresh one."""

    def __init__(self, folder: Path, *, password: str | None = None) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            install_debian_packages(["redis-server"])
            executable = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.executable = executable
        self.folder = folder
        self.port = free_port()
        self.password = password
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [self.executable, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        if self.password is not None:
            argv += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        wait_for_line(self.process, "Ready to accept connections", READY_TIMEOUT_S)
        client = redis.Redis(port=self.port, password=self.password)
        assert client.ping()
        client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Workers:
    """Worker processes started by a test, stopped (killed if need be) at its end."""

    def __init__(self) -> None:
        self.processes: dict[str, subprocess.Popen[str]] = {}

    def start(
        self,
        url: str,
        name: str,
        *,
        agents: int = 1,
        kinds: str = "fix,format",
        env: dict[str, str] | None = None,
        extra: tuple[str, ...] = (),
        wait: bool = True,
    ) -> subprocess.Popen[str]:
        argv = [*WORKER_COMMAND, "--redis", url, "--name", name, "--agents", str(agents)]
        argv += ["--kinds", kinds, *extra]
        process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
        )
        self.processes[name] = process
        if wait:
            wait_for_line(process, f"worker {name} serving", READY_TIMEOUT_S)
        return process

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def workers() -> Iterator[Workers]:
    started = Workers()
    try:
        yield started
    finally:
        started.stop_all()


def copy_sample(destination: Path) -> Path:
    workspace = destination / "inventory"
    shutil.copytree(SAMPLE, workspace, ignore=shutil.ignore_patterns(".delegation", "__pycache__"))
    return workspace

"""A byte-level LSP client for the real server process, for tests that send bad input.

pytest-lsp frames every message correctly, so it cannot send a wrong `Content-Length` or
LF-only headers. `RawServer` starts `delegation-machine serve` as a subprocess, writes any
bytes to its stdin, and reads its stdout with a strict frame parser on a thread, so a test
can wait for the answer to one request id (or for a notification) with a deadline, and tell
a server that answers, one that exited, and one that went deaf apart.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SERVER_COMMAND = [sys.executable, "-m", "delegation_machine.server", "serve"]


def frame(message: dict[str, Any] | bytes) -> bytes:
    body = message if isinstance(message, bytes) else json.dumps(message).encode("utf-8")
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def request(msg_id: int | str, method: str, params: Any = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def notification(method: str, params: Any = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return message


def initialize_params(root: Path, **extra: Any) -> dict[str, Any]:
    return {
        "processId": os.getpid(),
        "rootUri": root.as_uri(),
        "capabilities": extra.pop("capabilities", {}),
        **extra,
    }


class ServerExited(Exception):
    """The server process ended while a test waited for an answer."""


class RawServer:
    """One server subprocess; messages it sends are collected in arrival order."""

    def __init__(
        self,
        workspace: Path,
        *,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        answers: dict[str, Any] | None = None,
    ) -> None:
        """`answers`: the result to send back for each request the server makes of the client
        (e.g. `window/workDoneProgress/create`), at once; others stay unanswered."""
        self.workspace = workspace
        self.answers = answers or {}
        self.process = subprocess.Popen(
            [*SERVER_COMMAND, *args],
            cwd=workspace,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Condition()
        self._write_lock = threading.Lock()
        self._stderr: list[bytes] = []
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._err_reader.start()
        self._next_id = 1000

    # --- writing ----------------------------------------------------------------------------

    def send_bytes(self, data: bytes) -> bool:
        """Write raw bytes; False if the server has closed its stdin (it exited)."""
        assert self.process.stdin is not None
        with self._write_lock:  # the reader thread answers the server's requests too
            try:
                self.process.stdin.write(data)
                self.process.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                return False
        return True

    def send(self, message: dict[str, Any]) -> bool:
        return self.send_bytes(frame(message))

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def call(self, method: str, params: Any = None, *, timeout: float = 30) -> dict[str, Any]:
        """Send a well-formed request and wait for its response (result or error)."""
        msg_id = self.new_id()
        self.send(request(msg_id, method, params))
        return self.wait_response(msg_id, timeout=timeout)

    def initialize(self, **extra: Any) -> dict[str, Any]:
        response = self.call("initialize", initialize_params(self.workspace, **extra))
        self.send(notification("initialized", {}))
        return response

    # --- reading ----------------------------------------------------------------------------

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], *, timeout: float = 30
    ) -> dict[str, Any]:
        """The first message (already received or arriving) that satisfies `predicate`.
        Raises ServerExited if the server ends first, TimeoutError if none comes in time."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for message in self.messages:
                    if predicate(message):
                        return message
                if self._reader_done:
                    raise ServerExited(f"server exited with {self.process.poll()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("no matching message from the server in time")
                self._lock.wait(remaining)

    def wait_response(self, msg_id: int | str, *, timeout: float = 30) -> dict[str, Any]:
        return self.wait_for(
            lambda m: m.get("id") == msg_id and ("result" in m or "error" in m), timeout=timeout
        )

    def notifications(self, method: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.messages if m.get("method") == method and "id" not in m]

    def requests_from_server(self, method: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.messages if m.get("method") == method and "id" in m]

    @property
    def stderr_text(self) -> str:
        with self._lock:
            return b"".join(self._stderr).decode("utf-8", "replace")

    _reader_done = False

    def _read_stdout(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        try:
            while True:
                length = None
                while True:
                    line = stream.readline()
                    if not line:
                        return
                    if line in (b"\r\n", b"\n"):
                        break
                    name, _, value = line.decode("ascii").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if length is None:
                    raise AssertionError("the server sent a frame without Content-Length")
                body = stream.read(length)
                if len(body) < length:
                    return
                message = json.loads(body)
                with self._lock:
                    self.messages.append(message)
                    self._lock.notify_all()
                method = message.get("method")
                if "id" in message and method in self.answers:
                    self.send(
                        {"jsonrpc": "2.0", "id": message["id"], "result": self.answers[method]}
                    )
        finally:
            with self._lock:
                self._reader_done = True
                self._lock.notify_all()

    def _read_stderr(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        for line in iter(stream.readline, b""):
            with self._lock:
                self._stderr.append(line)

    # --- ending -----------------------------------------------------------------------------

    def shutdown(self, *, timeout: float = 30) -> int:
        """shutdown + exit, then wait for the process; returns its exit status."""
        if self.process.poll() is None:
            with contextlib.suppress(TimeoutError, ServerExited):
                self.call("shutdown", timeout=timeout)
            self.send(notification("exit"))
        return self.wait_exit(timeout=timeout)

    def wait_exit(self, *, timeout: float = 30) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._reader.join(timeout=5)
        self._err_reader.join(timeout=5)

"""A warm semgrep: one long-lived `semgrep lsp` process that keeps the rules loaded.

Owns the worker process, its JSON-RPC connection and a private mirror folder (semgrep's
language server scans files on disk, so each scan writes the texts to a fresh sub-folder of
the mirror, announces them with didCreateFiles/didOpen, collects publishDiagnostics for exactly
those URIs, then deletes them; fresh URIs make a late diagnostic of an older scan harmless).
The same scan serves the fix agents: `autofixes` also asks for each file's code actions, whose
"Apply autofix" edits are the rules' fixes, so fixing a file costs no semgrep start-up. The
worker remembers its answer per (path, text) for as long as its rules stay loaded (a new rule
set is a new worker), so a text the fix agent scanned is not scanned again as the change's
baseline, nor a file the change left alone. Invariant: anything unexpected raises `WorkerUnavailable`; the caller then falls back to the
batch CLI scan, so a warm-path failure can never turn into "passed".
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import os
import re
import shutil
import signal
from collections import OrderedDict
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from delegation_machine.engine.protocol import Finding, Point, Severity, Span
from delegation_machine.engine.state.scratch import make_scratch_dir
from delegation_machine.engine.supervise.sandbox import (
    ContainmentPlan,
    SandboxLimits,
    detect_isolation,
    scrub_environment,
)

log = logging.getLogger(__name__)

_LSP_SEVERITY: dict[int, Severity] = {1: "error", 2: "warning", 3: "information", 4: "hint"}
# The title semgrep's language server gives the code action that applies a rule's fix.
# A scan's time limit grows with the files it holds (a plan's batch is hundreds of files).
SCAN_SECONDS_PER_FILE = 0.25
# Answers remembered per (path, text): a diagnostics list is small; a plan's batches and their
# baseline scans ask about a few thousand texts.
ANSWERS_KEPT = 8192
_AUTOFIX_TITLE = re.compile(r"Semgrep\((.+)\): Apply autofix")


@dataclass(frozen=True)
class SemgrepResult:
    """One match with its fix: `start_byte`/`end_byte` index the UTF-8 bytes of the text."""

    path: str
    rule_id: str
    line: int
    start_byte: int
    end_byte: int
    message: str
    fix: str | None


class WorkerUnavailable(RuntimeError):
    """The warm worker cannot answer this scan (not running, crashed, timed out)."""


class WorkerState(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    ERRORED = "errored"
    EXITED = "exited"


class RuleTraits:
    """Per rule id: severity and whether it has a fix (the LSP does not report either)."""

    def __init__(self, severity: dict[str, Severity], fixable: set[str]) -> None:
        self.severity = severity
        self.fixable = fixable

    @classmethod
    def read(cls, rule_files: Sequence[Path], severity_of: Mapping[str, str]) -> RuleTraits:
        severity: dict[str, Severity] = {}
        fixable: set[str] = set()
        try:
            from ruamel.yaml import YAML  # the `checks` extra: semgrep ships ruamel.yaml
        except ImportError:
            return cls(severity, fixable)
        loader = YAML(typ="safe")
        for path in rule_files:
            try:
                document = loader.load(path.read_text(encoding="utf-8"))
            except Exception:  # a broken file is reported by the batch validation
                continue
            for rule in (document or {}).get("rules", []) if isinstance(document, dict) else []:
                if not isinstance(rule, dict) or "id" not in rule:
                    continue
                rule_id = str(rule["id"])
                level = severity_of.get(str(rule.get("severity", "WARNING")).upper(), "warning")
                severity[rule_id] = level  # type: ignore[assignment]
                if "fix" in rule or "fix-regex" in rule or "fix_regex" in rule:
                    fixable.add(rule_id)
        return cls(severity, fixable)


class _Connection:
    """JSON-RPC 2.0 over the worker's stdio (Content-Length framing)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self._stdin = proc.stdin
        self._stdout = proc.stdout
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._diagnostics: dict[str, asyncio.Future[list[dict[str, Any]]]] = {}
        self.rules_refreshed = asyncio.Event()

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode("utf-8")
        self._stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    async def request(self, method: str, params: Any) -> Any:
        self._next_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = future
        self.send({"id": self._next_id, "method": method, "params": params})
        await self._stdin.drain()
        return await future

    def notify(self, method: str, params: Any) -> None:
        self.send({"method": method, "params": params})

    def expect_diagnostics(self, uri: str) -> asyncio.Future[list[dict[str, Any]]]:
        future: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._diagnostics[uri] = future
        return future

    def forget(self, uri: str) -> None:
        self._diagnostics.pop(uri, None)

    async def read_forever(self) -> None:
        """Dispatch messages until the worker closes its stdout; then fail every waiter."""
        try:
            while (message := await self._read_message()) is not None:
                self._dispatch(message)
        finally:
            failure = WorkerUnavailable("semgrep lsp exited")
            for future in [*self._pending.values(), *self._diagnostics.values()]:
                if not future.done():
                    future.set_exception(failure)

    async def _read_message(self) -> dict[str, Any] | None:
        length = None
        while True:
            line = await self._stdout.readline()
            if not line:
                return None
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("ascii", errors="replace").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length is None:
            return None
        decoded: dict[str, Any] = json.loads(await self._stdout.readexactly(length))
        return decoded

    def _dispatch(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method is None:
            future = self._pending.pop(int(message.get("id", -1)), None)
            if future is not None and not future.done():
                if "error" in message:
                    future.set_exception(WorkerUnavailable(str(message["error"])))
                else:
                    future.set_result(message.get("result"))
        elif "id" in message:
            # Server-to-client requests (progress tokens, configuration): answer null.
            self.send({"id": message["id"], "result": None})
        elif method == "textDocument/publishDiagnostics":
            params = message.get("params", {})
            future_diagnostics = self._diagnostics.pop(params.get("uri", ""), None)
            if future_diagnostics is not None and not future_diagnostics.done():
                future_diagnostics.set_result(list(params.get("diagnostics", [])))
        elif method == "semgrep/rulesRefreshed":
            self.rules_refreshed.set()


@dataclass(frozen=True)
class _Answer:
    """The worker's diagnostics for one text and (None: not asked) its autofix edits."""

    diagnostics: list[dict[str, Any]]
    actions: list[dict[str, Any]] | None


class SemgrepWorker:
    """The warm worker. `serve()` is the body a Supervisor runs; `scan()` is called by checks."""

    def __init__(
        self,
        executable: str,
        rules_folder: Path,
        config_names: Sequence[str],
        traits: RuleTraits,
        *,
        scan_timeout_s: float = 30.0,
        start_timeout_s: float = 60.0,
    ) -> None:
        self.executable = executable
        self.rules_folder = rules_folder
        self.config_names = tuple(config_names)
        self.traits = traits
        self.scan_timeout_s = scan_timeout_s
        self.start_timeout_s = start_timeout_s
        self.state = WorkerState.STOPPED
        self.scans = 0
        self.pid: int | None = None
        self.failure = ""  # set when the worker gave up for good (e.g. invalid rules)
        self._given_up = asyncio.Event()
        self._ready = asyncio.Event()
        self._lock = asyncio.Lock()
        self._connection: _Connection | None = None
        self._mirror: Path | None = None
        # What the worker answered per (path, text): the fix agent's scan of a file and the
        # supervisor's baseline scan of the same text ask the same question once.
        self._answers: OrderedDict[tuple[str, str], _Answer] = OrderedDict()

    async def serve(self, gate: Awaitable[bool] | None = None) -> None:
        """Start `semgrep lsp`, then run until it exits (raising, so a supervisor restarts it).

        With a `gate` the worker is ready only once the gate says True (the rules passed a
        validation that runs while the worker starts); False ends it, unready."""
        self.state = WorkerState.STARTING
        scratch = make_scratch_dir("dm-semgrep-worker-")  # mirror/ and home/, removed together
        self._mirror = scratch / "mirror"
        self._mirror.mkdir()
        # Without a .semgrepignore at its root semgrep applies its default ignores (tests/,
        # test/, node_modules/, …) and the worker would skip every test file in silence; an
        # empty one scans exactly the files announced, as the batch CLI scans its targets.
        (self._mirror / ".semgrepignore").write_text("", encoding="utf-8")
        proc = await self._spawn(self._mirror)
        self.pid = proc.pid
        connection = _Connection(proc)
        reader = asyncio.ensure_future(connection.read_forever())
        try:
            async with asyncio.timeout(self.start_timeout_s):
                await self._initialize(connection, self._mirror)
            if gate is not None and not await gate:
                raise WorkerUnavailable(self.failure or "the rules failed validation")
            self._connection = connection
            self.state = WorkerState.RUNNING
            self._ready.set()
            await reader
            self.state = WorkerState.EXITED
            raise WorkerUnavailable(f"semgrep lsp exited with code {await proc.wait()}")
        except BaseException:
            if self.state is not WorkerState.EXITED:
                self.state = WorkerState.ERRORED
            raise
        finally:
            self._ready.clear()
            self._connection = None
            reader.cancel()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                await proc.wait()
            shutil.rmtree(scratch, ignore_errors=True)

    def give_up(self, reason: str) -> None:
        """Mark the worker unusable for good; scans fall back to the batch CLI."""
        self.state = WorkerState.ERRORED
        self.failure = reason
        self._given_up.set()

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait until ready (True), given up or `timeout_s` passed (False)."""
        ready = asyncio.ensure_future(self._ready.wait())
        given_up = asyncio.ensure_future(self._given_up.wait())
        try:
            await asyncio.wait(
                {ready, given_up}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready.cancel()
            given_up.cancel()
        return self._ready.is_set()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def scan(self, files: Mapping[str, str], paths: Sequence[str]) -> list[Finding]:
        """Findings for `paths`; raises WorkerUnavailable when the worker cannot answer."""
        diagnostics, _ = await self._exchange(files, paths, with_fixes=False)
        return [
            self._finding(rel, files[rel], diagnostic)
            for rel, found in diagnostics.items()
            for diagnostic in found
        ]

    async def autofixes(
        self, files: Mapping[str, str], paths: Sequence[str]
    ) -> list[SemgrepResult]:
        """Every match in `paths` with the rule's fix where it has one (the CLI's `--autofix`
        replacements, from the worker's code actions); raises WorkerUnavailable."""
        diagnostics, actions = await self._exchange(files, paths, with_fixes=True)
        results: list[SemgrepResult] = []
        for rel, found in diagnostics.items():
            data = files[rel].encode("utf-8")
            line_starts = _line_starts(data)
            fixes = _autofix_edits(actions.get(rel, []), line_starts, len(data))
            for diagnostic in found:
                rule_id = str(diagnostic.get("code", "unknown"))
                start = _byte_offset(diagnostic["range"]["start"], line_starts, len(data))
                end = _byte_offset(diagnostic["range"]["end"], line_starts, len(data))
                fix = fixes.pop((rule_id, start, end), None)
                message = str(diagnostic.get("message", "")).strip()
                line = int(diagnostic["range"]["start"]["line"]) + 1
                results.append(SemgrepResult(rel, rule_id, line, start, end, message, fix))
        return results

    async def _exchange(
        self, files: Mapping[str, str], paths: Sequence[str], *, with_fixes: bool
    ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
        if not self._ready.is_set():
            raise WorkerUnavailable(f"semgrep worker is {self.state.value}")
        diagnostics: dict[str, list[dict[str, Any]]] = {}
        actions: dict[str, list[dict[str, Any]]] = {}
        asked = []
        for rel in paths:
            known = self._answers.get((rel, files[rel]))
            if known is None or (with_fixes and known.actions is None):
                asked.append(rel)
                continue
            self._answers.move_to_end((rel, files[rel]))
            diagnostics[rel] = known.diagnostics
            if with_fixes and known.actions:
                actions[rel] = known.actions
        if not asked:
            return diagnostics, actions
        async with self._lock:
            connection, mirror = self._connection, self._mirror
            if connection is None or mirror is None:
                raise WorkerUnavailable("semgrep worker is not running")
            self.scans += 1
            folder = mirror / f"scan-{self.scans}"
            limit = self.scan_timeout_s + SCAN_SECONDS_PER_FILE * len(asked)
            try:
                async with asyncio.timeout(limit):
                    found, offered = await self._scan_in(
                        connection, folder, files, asked, with_fixes
                    )
            except TimeoutError as exc:
                raise WorkerUnavailable(f"semgrep worker timed out ({limit:g} s)") from exc
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        for rel in asked:
            answer = _Answer(found[rel], offered.get(rel, []) if with_fixes else None)
            self._remember((rel, files[rel]), answer)
        diagnostics.update(found)
        actions.update(offered)
        return diagnostics, actions

    def _remember(self, key: tuple[str, str], answer: _Answer) -> None:
        self._answers[key] = answer
        self._answers.move_to_end(key)
        while len(self._answers) > ANSWERS_KEPT:
            self._answers.popitem(last=False)

    async def _scan_in(
        self,
        connection: _Connection,
        folder: Path,
        files: Mapping[str, str],
        paths: Sequence[str],
        with_fixes: bool,
    ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
        """Per path its raw diagnostics and (`with_fixes`) the code actions offered on them."""
        uris: dict[str, str] = {}
        for rel in paths:
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(files[rel], encoding="utf-8", newline="")
            uris[rel] = target.as_uri()
        waiting = {rel: connection.expect_diagnostics(uri) for rel, uri in uris.items()}
        try:
            connection.notify(
                "workspace/didCreateFiles", {"files": [{"uri": u} for u in uris.values()]}
            )
            for rel, uri in uris.items():
                document = {"uri": uri, "languageId": "", "version": 1, "text": files[rel]}
                connection.notify("textDocument/didOpen", {"textDocument": document})
            diagnostics = {rel: await future for rel, future in waiting.items()}
            actions: dict[str, list[dict[str, Any]]] = {}
            for rel, found in diagnostics.items():
                if with_fixes and found:
                    actions[rel] = await self._code_actions(
                        connection, uris[rel], files[rel], found
                    )
            return diagnostics, actions
        finally:
            for future in waiting.values():  # the worker died: every wait failed, not one
                if future.done() and not future.cancelled():
                    future.exception()  # retrieved, so it is not logged when collected
                future.cancel()
            for uri in uris.values():
                connection.forget(uri)
                connection.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
            connection.notify(
                "workspace/didDeleteFiles", {"files": [{"uri": u} for u in uris.values()]}
            )

    async def _code_actions(
        self,
        connection: _Connection,
        uri: str,
        text: str,
        diagnostics: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        whole = {
            "start": {"line": 0, "character": 0},
            "end": {"line": text.count("\n") + 1, "character": 0},
        }
        answer = await connection.request(
            "textDocument/codeAction",
            {"textDocument": {"uri": uri}, "range": whole, "context": {"diagnostics": diagnostics}},
        )
        if not isinstance(answer, list):
            raise WorkerUnavailable(f"semgrep lsp answered codeAction with {type(answer).__name__}")
        edits: list[dict[str, Any]] = []
        for action in answer:
            title = str(action.get("title", "")) if isinstance(action, dict) else ""
            match = _AUTOFIX_TITLE.fullmatch(title)
            changes = action.get("edit", {}).get("changes", {}) if match else {}
            for edit in changes.get(uri, []):
                edits.append({"rule_id": match.group(1) if match else "", **edit})
        return edits

    def _finding(self, rel: str, text: str, diagnostic: Mapping[str, Any]) -> Finding:
        rule_id = str(diagnostic.get("code", "unknown"))
        lines = text.split("\n")
        start = _point(diagnostic["range"]["start"], lines)
        end = _point(diagnostic["range"]["end"], lines)
        default = _LSP_SEVERITY.get(int(diagnostic.get("severity", 2)), "warning")
        return Finding(
            path=rel,
            span=Span(start, end),
            message=str(diagnostic.get("message", "")).strip(),
            code=f"semgrep:{rule_id}",
            severity=self.traits.severity.get(rule_id, default),
            fix_available=rule_id in self.traits.fixable,
        )

    async def _spawn(self, mirror: Path) -> asyncio.subprocess.Process:
        home = mirror.parent / "home"
        home.mkdir(exist_ok=True)
        temp = mirror.parent / "tmp"  # semgrep's own temp files stay in the scratch folder
        temp.mkdir(exist_ok=True)
        env = {
            "HOME": str(home),
            "TMPDIR": str(temp),
            "SEMGREP_ENABLE_VERSION_CHECK": "0",
            "SEMGREP_SEND_METRICS": "off",
        }
        plan = ContainmentPlan(
            SandboxLimits(
                cpu_s=None,
                address_space_bytes=None,
                max_processes=None,
                reachable_paths=(str(mirror.parent), str(self.rules_folder)),
            ),
            namespaces=detect_isolation().namespaces,
            views=detect_isolation().private_views,
            cwd=self.rules_folder,
        )
        return await asyncio.create_subprocess_exec(
            self.executable,
            "lsp",
            cwd=self.rules_folder,
            env=scrub_environment(os.environ, env),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=plan.apply_in_child,
            start_new_session=True,
        )

    async def _initialize(self, connection: _Connection, mirror: Path) -> None:
        configs = [str(self.rules_folder / name) for name in self.config_names]
        options = {
            "scan": {
                "configuration": configs,
                "exclude": [],
                "include": [],
                "jobs": 1,
                "maxMemory": 0,
                "maxTargetBytes": 5_000_000,
                "onlyGitDirty": False,
                "ci": False,
            },
            "metrics": {"enabled": False},
            "doHover": False,
        }
        await connection.request(
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": mirror.as_uri(),
                "capabilities": {},
                "workspaceFolders": [{"uri": mirror.as_uri(), "name": "mirror"}],
                "initializationOptions": options,
            },
        )
        connection.notify("initialized", {})
        await connection.rules_refreshed.wait()


def _point(position: Mapping[str, Any], lines: list[str]) -> Point:
    """semgrep lsp reports UTF-8 byte columns; the engine counts code points."""
    line = int(position["line"])
    byte_column = int(position["character"])
    if line >= len(lines):
        return Point(line, 0)
    encoded = lines[line].encode("utf-8")
    return Point(line, len(encoded[:byte_column].decode("utf-8", errors="replace")))


def _line_starts(data: bytes) -> list[int]:
    starts = [0]
    position = data.find(b"\n")
    while position != -1:
        starts.append(position + 1)
        position = data.find(b"\n", position + 1)
    return starts


def _byte_offset(position: Mapping[str, Any], line_starts: list[int], size: int) -> int:
    """semgrep lsp positions count UTF-8 bytes within the line: the offset into the bytes."""
    line = int(position["line"])
    if line >= len(line_starts):
        return size
    return min(line_starts[line] + int(position["character"]), size)


def _autofix_edits(
    edits: Sequence[Mapping[str, Any]], line_starts: list[int], size: int
) -> dict[tuple[str, int, int], str]:
    """(rule id, start byte, end byte) -> the replacement the rule's fix puts there."""
    fixes: dict[tuple[str, int, int], str] = {}
    for edit in edits:
        start = _byte_offset(edit["range"]["start"], line_starts, size)
        end = _byte_offset(edit["range"]["end"], line_starts, size)
        fixes[(str(edit["rule_id"]), start, end)] = str(edit.get("newText", ""))
    return fixes

"""Semgrep as a check: one batched, offline scan of a shadow copy with local rules only.

Owns the prepared rules folder (the bundled rules, the user's `.delegation/semgrep/*.yaml` and
configured paths, copied flat so rule ids carry no folder prefix; re-prepared only when a rule
file changes) and the mapping of semgrep's JSON (byte offsets) to findings in code points.
Invariant: a scan that did not complete yields a Verdict of kind "error", never "passed".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from delegation_machine.engine.protocol import Finding, Point, Severity, Span, Verdict
from delegation_machine.engine.state.scratch import make_scratch_dir
from delegation_machine.engine.supervise.sandbox import (
    SandboxLimits,
    SandboxResult,
    ShadowWorkspace,
    run_sandboxed,
)
from delegation_machine.engine.supervise.semgrep_worker import (
    RuleTraits,
    SemgrepResult,
    SemgrepWorker,
    WorkerUnavailable,
)
from delegation_machine.engine.supervise.supervisor import ChildShutdown, ChildSpec, Supervisor

log = logging.getLogger(__name__)

BUNDLED_RULES = Path(__file__).resolve().parent.parent / "rules" / "semgrep"
USER_RULES = Path(".delegation") / "semgrep"
SEVERITY_OF = {
    "ERROR": "error",
    "CRITICAL": "error",
    "HIGH": "error",
    "WARNING": "warning",
    "MEDIUM": "warning",
    "INFO": "information",
    "LOW": "information",
    "INVENTORY": "hint",
    "EXPERIMENT": "hint",
}
SEVERITY_RANK: dict[str, int] = {"error": 3, "warning": 2, "information": 1, "hint": 0}
# Exit codes of a completed scan (1: findings with --error); anything else is a failure.
COMPLETED_EXIT_CODES = (0, 1)


def semgrep_executable() -> str | None:
    """The semgrep beside this interpreter (the venv), else the one on PATH."""
    beside = Path(sys.executable).parent / "semgrep"
    if beside.exists():
        return str(beside)
    return shutil.which("semgrep")


def rule_files(root: Path, extra: Sequence[Path] | None) -> list[Path]:
    """Bundled rules, then the user's, then configured files or folders (yaml only), deduplicated."""
    sources = [BUNDLED_RULES, root / USER_RULES, *(extra or ())]
    found: dict[Path, Path] = {}  # resolved -> as given; a rule file given twice runs once
    for source in sources:
        candidates = (
            sorted([*source.glob("*.yaml"), *source.glob("*.yml")]) if source.is_dir() else [source]
        )
        for candidate in candidates:
            if candidate.is_file():
                found.setdefault(candidate.resolve(), candidate)
    return list(found.values())


class PreparedRules:
    """A flat folder holding copies of the rule files; semgrep runs with it as its cwd."""

    def __init__(self, root: Path, extra: Sequence[Path] | None) -> None:
        self._root = root
        self._extra = list(extra or ())
        self._fingerprint: tuple[tuple[str, float, int], ...] | None = None
        self._folder: Path | None = None  # made on first use: by then the scratch folder is set
        self.config_names: list[str] = []
        self.version = 0  # bumped whenever the rule files are re-copied

    @property
    def folder(self) -> Path:
        if self._folder is None:
            self._folder = make_scratch_dir("dm-semgrep-rules-")
        return self._folder

    def refresh(self) -> list[str]:
        """Re-copy the rules if any file was added, removed or changed; return config names."""
        files = rule_files(self._root, self._extra)
        fingerprint = tuple((str(f), f.stat().st_mtime, f.stat().st_size) for f in files)
        if fingerprint == self._fingerprint:
            return self.config_names
        for old in self.folder.iterdir():
            old.unlink()
        names = []
        for index, source in enumerate(files):
            name = f"{index:03d}-{source.name}"
            shutil.copyfile(source, self.folder / name)
            names.append(name)
        self._fingerprint = fingerprint
        self.config_names = names
        self.version += 1
        return names

    def close(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


class SemgrepScanner:
    """Scans changed files: through the warm worker when it is ready, else one batched CLI run.

    With `warm=True` a Supervisor keeps one `semgrep lsp` worker alive (restarted on a crash,
    replaced when the rule files change, after the rules passed one batch validation scan); a
    scan that arrives while the worker is starting waits for it rather than paying a cold
    semgrep start of its own. The fix agents share the worker through `autofix_matches`.
    """

    def __init__(
        self,
        root: Path,
        *,
        rule_paths: Sequence[Path] | None = None,
        timeout_s: float = 60.0,
        executable: str | None = None,
        warm: bool = False,
    ) -> None:
        self.rules = PreparedRules(root, rule_paths)
        self.timeout_s = timeout_s
        self.executable = executable if executable is not None else semgrep_executable()
        self.warm = warm
        self.warm_scans = 0
        self.batch_scans = 0
        self._worker: SemgrepWorker | None = None
        self._worker_rules_version = -1
        self._validated_version = -1
        self._supervision: asyncio.Task[None] | None = None
        self._first_start: tuple[SemgrepWorker, asyncio.Future[bool]] | None = None

    async def scan(
        self,
        files: Mapping[str, str],
        paths: Sequence[str],
        *,
        task_id: str | None = None,
        fail_at: Severity = "error",
    ) -> Verdict:
        started = time.monotonic()
        scanned = tuple(p for p in paths if p in files)

        def verdict(kind: Any, findings: tuple[Finding, ...] = (), reason: str = "") -> Verdict:
            return Verdict(
                check="semgrep",
                kind=kind,
                findings=findings,
                reason=reason,
                task_id=task_id,
                paths=scanned,
                duration_s=time.monotonic() - started,
            )

        if self.executable is None:
            return verdict("error", reason="semgrep is not installed (pip install semgrep)")
        configs = self.rules.refresh()
        if not configs:
            return verdict("error", reason="no semgrep rule files found")
        if not scanned:
            return verdict("passed")
        warm = await self._warm_scan(files, scanned, configs) if self.warm else None
        outcome = warm if warm is not None else await self._batch_scan(files, scanned, configs)
        if isinstance(outcome, str):
            return verdict("error", reason=outcome)
        threshold = SEVERITY_RANK[fail_at]
        failing = any(SEVERITY_RANK[f.severity] >= threshold for f in outcome)
        return verdict("failed" if failing else "passed", tuple(outcome))

    async def _batch_scan(
        self, files: Mapping[str, str], scanned: Sequence[str], configs: Sequence[str]
    ) -> list[Finding] | str:
        self.batch_scans += 1
        with ShadowWorkspace.materialise({p: files[p] for p in scanned}) as shadow:
            result = await self._run(shadow, scanned, configs)
            return _parse_output(result, shadow, files)

    async def _warm_scan(
        self, files: Mapping[str, str], scanned: Sequence[str], configs: Sequence[str]
    ) -> list[Finding] | None:
        """The warm worker's findings, or None to fall back to a batch scan."""
        worker = await self._ready_worker(configs)
        if worker is None:
            return None
        try:
            findings = await worker.scan(files, scanned)
        except WorkerUnavailable as exc:
            log.warning("semgrep worker unavailable, falling back to a batch scan: %s", exc)
            return None
        self.warm_scans += 1
        return findings

    async def autofix_matches(self, texts: Mapping[str, str]) -> list[SemgrepResult] | None:
        """Every match in `texts` with its rule's fix, from the warm worker with these rules;
        None when the warm path cannot answer (the caller scans with the CLI instead)."""
        configs = self.rules.refresh()
        if not self.warm or not configs:
            return None
        worker = await self._ready_worker(configs)
        if worker is None:
            return None
        try:
            matches = await worker.autofixes(texts, list(texts))
        except WorkerUnavailable as exc:
            log.warning("semgrep worker unavailable, fixing with a batch scan: %s", exc)
            return None
        self.warm_scans += 1
        return matches

    def rule_files(self) -> list[Path]:
        """The prepared rule files (bundled, the workspace's and configured ones)."""
        return [self.rules.folder / name for name in self.rules.refresh()]

    async def _ready_worker(self, configs: Sequence[str]) -> SemgrepWorker | None:
        """The worker for these rules once it is ready; None when it cannot be (given up,
        supervision ended, or not ready within its start timeout)."""
        worker = self._current_worker(configs)
        if worker is None:
            return None
        if worker.ready:
            return worker
        if self._supervision is None or self._supervision.done():
            return None
        # Everyone waits for the worker's first start together, once: after that (it came up
        # and went down, or never came up) a scan does not wait but runs the batch CLI.
        if self._first_start is None or self._first_start[0] is not worker:
            waiting = asyncio.ensure_future(worker.wait_ready(worker.start_timeout_s))
            self._first_start = (worker, waiting)
        started = self._first_start[1]
        if started.done():
            return None
        try:
            ready = await asyncio.shield(started)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if started.cancelled() and current is not None and not current.cancelling():
                return None  # the rules changed or the scanner closed while it started
            raise
        return worker if ready else None

    def _current_worker(self, configs: Sequence[str]) -> SemgrepWorker | None:
        """The worker for the current rules; (re)starts its supervisor when rules changed."""
        if self.executable is None:
            return None
        if self._worker is not None and self._worker_rules_version == self.rules.version:
            return self._worker
        self._stop_supervision()
        traits = RuleTraits.read([self.rules.folder / name for name in configs], SEVERITY_OF)
        worker = SemgrepWorker(self.executable, self.rules.folder, configs, traits)
        self._worker, self._worker_rules_version = worker, self.rules.version
        supervisor = Supervisor(
            "semgrep-worker",
            [
                ChildSpec(
                    "semgrep-lsp",
                    self._validated_serve,
                    restart="transient",
                    args=(worker, tuple(configs)),
                )
            ],
            intensity=3,
            period_s=60.0,
        )
        self._supervision = asyncio.get_running_loop().create_task(
            supervisor.run(), name="semgrep-worker-supervisor"
        )
        self._supervision.add_done_callback(_log_supervision_end)
        return worker

    async def _validated_serve(self, worker: SemgrepWorker, configs: tuple[str, ...]) -> None:
        # semgrep lsp skips a broken rule file silently; the CLI reports it. Validate once per
        # rule set, while the worker starts (the two cold starts overlap), and let no scan
        # through before it passed; a rule set that fails is final (no restart, batch scans
        # report it).
        if self._validated_version == self.rules.version:
            await worker.serve()
            return
        validation = asyncio.ensure_future(self._validate(worker, configs))
        try:
            await worker.serve(gate=validation)
        except WorkerUnavailable:
            if worker.failure:
                raise ChildShutdown(worker.failure) from None
            raise
        finally:
            validation.cancel()

    async def _validate(self, worker: SemgrepWorker, configs: tuple[str, ...]) -> bool:
        outcome = await self._batch_scan({"probe.py": "pass\n"}, ["probe.py"], configs)
        if isinstance(outcome, str):
            worker.give_up(f"rules failed validation: {outcome}")
            return False
        self._validated_version = self.rules.version
        return True

    async def warm_up(self, timeout_s: float = 120.0) -> bool:
        """Start the warm worker now and wait until it is ready (False: it is not)."""
        configs = self.rules.refresh()
        if not self.warm or not configs:
            return False
        worker = self._current_worker(configs)
        return worker is not None and await worker.wait_ready(timeout_s)

    def _stop_supervision(self) -> None:
        if self._supervision is not None and not self._supervision.done():
            self._supervision.cancel()
        self._supervision = None
        self._worker = None
        if self._first_start is not None:
            self._first_start[1].cancel()  # a no-op once it finished
            self._first_start = None

    async def aclose(self) -> None:
        task = self._supervision
        self._stop_supervision()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.rules.close()

    async def _run(
        self, shadow: ShadowWorkspace, scanned: Sequence[str], configs: Sequence[str]
    ) -> SandboxResult:
        assert self.executable is not None
        argv = [self.executable, "scan", "--disable-version-check", "--metrics=off", "--json"]
        argv += ["--quiet", "--no-git-ignore", "--oss-only"]
        for name in configs:
            argv += ["--config", name]
        argv += [str(shadow.path_of(p)) for p in scanned]
        home = shadow.root.parent / "home"
        home.mkdir(exist_ok=True)
        temp = shadow.root.parent / "tmp"  # semgrep's own temp files stay in the shadow
        temp.mkdir(exist_ok=True)
        limits = SandboxLimits(
            timeout_s=self.timeout_s,
            cpu_s=None,
            address_space_bytes=None,  # semgrep-core reserves large virtual areas
            max_processes=None,
            output_bytes=32 << 20,
            reachable_paths=(str(shadow.base), str(self.rules.folder)),
        )
        env = {
            "HOME": str(home),
            "TMPDIR": str(temp),
            "SEMGREP_ENABLE_VERSION_CHECK": "0",
            "SEMGREP_SEND_METRICS": "off",
            "PYTHONIOENCODING": "utf-8",
        }
        return await run_sandboxed(argv, cwd=self.rules.folder, limits=limits, env=env)

    def close(self) -> None:
        """Synchronous close: cancels the worker's supervisor (its finally kills the process)."""
        self._stop_supervision()
        self.rules.close()


def _log_supervision_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("semgrep worker supervisor stopped: %r", task.exception())


def _parse_output(
    result: SandboxResult, shadow: ShadowWorkspace, files: Mapping[str, str]
) -> list[Finding] | str:
    """Findings from semgrep's JSON, or the reason the scan failed."""
    if result.start_error:
        return f"semgrep could not start: {result.start_error}"
    if result.timed_out:
        return f"semgrep timed out after {result.duration_s:.1f} s"
    if result.output_truncated:
        return "semgrep output exceeded the sandbox's output cap"
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        tail = (result.stderr or result.stdout)[-400:].strip()
        return f"semgrep failed (exit {result.returncode}) without a JSON report: {tail}"
    fatal = [e for e in report.get("errors", []) if e.get("level") == "error"]
    if result.returncode not in COMPLETED_EXIT_CODES or fatal:
        messages = "; ".join(str(e.get("message", e))[:300] for e in fatal) or "no detail"
        return f"semgrep failed (exit {result.returncode}): {messages}"
    findings = []
    for item in report.get("results", []):
        rel = shadow.relative(item["path"])
        findings.append(_finding(rel, item, files[rel]))
    return findings


def _finding(rel: str, item: Mapping[str, Any], text: str) -> Finding:
    extra = item.get("extra", {})
    encoded = text.encode("utf-8")
    span = Span(
        _point_at(encoded, int(item["start"]["offset"])),
        _point_at(encoded, int(item["end"]["offset"])),
    )
    severity = SEVERITY_OF.get(str(extra.get("severity", "WARNING")).upper(), "warning")
    return Finding(
        path=rel,
        span=span,
        message=str(extra.get("message", "")).strip(),
        code=f"semgrep:{item['check_id']}",
        severity=severity,  # type: ignore[arg-type]
        fix_available="fix" in extra or "fix_regex" in extra,
    )


def _point_at(encoded: bytes, byte_offset: int) -> Point:
    """The (line, code-point column) of a UTF-8 byte offset."""
    before = encoded[:byte_offset]
    line = before.count(b"\n")
    line_start = before.rfind(b"\n") + 1
    return Point(line, len(before[line_start:].decode("utf-8", errors="replace")))

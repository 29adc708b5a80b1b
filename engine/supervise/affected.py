"""The tests affected by a change, selected through the Python import graph and run sandboxed.

Owns the import graph of the workspace's Python files (a networkx DiGraph importer -> imported,
built from the CRDT texts where given, else from disk; parsed imports are cached by text) and
the pytest run on a shadow copy, with the user's workspace mounted read-only where possible.
Invariant: a test run that did not complete (timeout, crash, no report) is kind "error".
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import os
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import msgspec
import networkx as nx

from delegation_machine.engine.protocol import Finding, Point, Span, Verdict
from delegation_machine.engine.state.files import Unreadable, read_regular_file
from delegation_machine.engine.supervise.per_test_deadline import install_deadline_plugin
from delegation_machine.engine.supervise.python_parse import parse_python
from delegation_machine.engine.supervise.sandbox import (
    SKIPPED_FOLDERS,
    SandboxLimits,
    SandboxResult,
    ShadowWorkspace,
    hand_to_sandbox,
    run_sandboxed,
)

# pytest exit codes: 0 passed, 1 some failed, 5 nothing collected; others mean no verdict.
PYTEST_COMPLETED = (0, 1, 5)
PYTEST_NOT_COLLECTED = (2, 4, 5)  # collection errors, a node id not found, nothing collected
MAX_IMPORT_SCAN_BYTES = 5_000_000  # larger files are not read for their imports


def is_test_file(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def module_names(rel: str) -> list[str]:
    """Dotted names a file can be imported as (with and without a leading `src.`)."""
    if not rel.endswith(".py"):
        return []
    parts = rel[:-3].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if not parts:
        return []
    names = [".".join(parts)]
    if parts[0] == "src" and len(parts) > 1:
        names.append(".".join(parts[1:]))
    return names


def imported_modules(rel: str, text: str) -> set[str]:
    """Every dotted name the file imports, relative imports resolved; empty if unparsable."""
    tree = parse_python(text)
    if tree is None:
        return set()
    package = rel[:-3].split("/")[:-1] if rel.endswith(".py") else []
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(node, package)
            if base is None:
                continue
            if base:
                found.add(base)
            found.update(f"{base}.{a.name}" if base else a.name for a in node.names)
    return found


def _resolve_from(node: ast.ImportFrom, package: list[str]) -> str | None:
    if node.level == 0:
        return node.module or ""
    if node.level - 1 > len(package):
        return None
    anchor = package[: len(package) - (node.level - 1)]
    return ".".join([*anchor, *([node.module] if node.module else [])])


class ImportGraph:
    """Files -> files they import; rebuilt per query from cached per-file import sets."""

    def __init__(self) -> None:
        self._imports_cache: dict[tuple[str, str], set[str]] = {}

    def build(self, texts: Mapping[str, str]) -> nx.DiGraph:
        by_module: dict[str, str] = {}
        for rel in texts:
            for name in module_names(rel):
                by_module.setdefault(name, rel)
        graph = nx.DiGraph()
        graph.add_nodes_from(texts)
        for rel, text in texts.items():
            for name in self._imports(rel, text):
                target = _longest_known_prefix(name, by_module)
                if target is not None and target != rel:
                    graph.add_edge(rel, target)
        return graph

    def _imports(self, rel: str, text: str) -> set[str]:
        key = (rel, hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest())
        cached = self._imports_cache.get(key)
        if cached is None:
            cached = imported_modules(rel, text)
            self._imports_cache[key] = cached
        return cached


def _longest_known_prefix(name: str, by_module: Mapping[str, str]) -> str | None:
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        found = by_module.get(".".join(parts[:end]))
        if found is not None:
            return found
    return None


def affected_tests(graph: nx.DiGraph, changed: Iterable[str]) -> list[str]:
    """Test files that are changed, import a changed file (transitively), or sit below a
    changed conftest.py."""
    changed = [p for p in changed if p in graph]
    selected = {p for p in changed if is_test_file(p)}
    for test in (n for n in graph.nodes if is_test_file(n)):
        reached = nx.descendants(graph, test)
        if any(p in reached for p in changed):
            selected.add(test)
    for conftest in (p for p in changed if p.rsplit("/", 1)[-1] == "conftest.py"):
        folder = conftest.rsplit("/", 1)[0] + "/" if "/" in conftest else ""
        selected.update(n for n in graph.nodes if is_test_file(n) and n.startswith(folder))
    return sorted(selected)


def python_texts(root: Path, files: Mapping[str, str]) -> dict[str, str]:
    """Every .py file of the workspace (skipping caches and venvs), overlaid with `files`."""
    texts: dict[str, str] = {}
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [d for d in subfolders if d not in SKIPPED_FOLDERS]
        for name in names:
            if not name.endswith(".py"):
                continue
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            try:  # never opens a FIFO or a device (the index reports them)
                texts[rel] = read_regular_file(path, max_bytes=MAX_IMPORT_SCAN_BYTES).decode()
            except (Unreadable, UnicodeDecodeError):
                continue
    texts.update({rel: text for rel, text in files.items() if rel.endswith(".py")})
    return texts


class AffectedTests:
    """Selects and runs the tests a change can break."""

    def __init__(
        self,
        root: Path,
        *,
        timeout_s: float = 120.0,
        per_test_timeout_s: float = 30.0,
        limits: SandboxLimits | None = None,
    ) -> None:
        self.root = root
        self.graph = ImportGraph()
        self.limits = limits or SandboxLimits(timeout_s=timeout_s, cpu_s=int(timeout_s) + 5)
        self.per_test_timeout_s = per_test_timeout_s  # one slow test fails alone, at this

    def select(self, files: Mapping[str, str], changed: Sequence[str]) -> list[str]:
        graph = self.graph.build(python_texts(self.root, files))
        return affected_tests(graph, changed)

    async def run(
        self, files: Mapping[str, str], changed: Sequence[str], *, task_id: str | None = None
    ) -> Verdict:
        started = time.monotonic()
        tests = await asyncio.to_thread(self.select, files, changed)

        def verdict(kind: str, findings: tuple[Finding, ...] = (), reason: str = "") -> Verdict:
            return Verdict(
                check="tests",
                kind=kind,  # type: ignore[arg-type]
                findings=findings,
                reason=reason,
                task_id=task_id,
                paths=tuple(tests),
                duration_s=time.monotonic() - started,
            )

        if not tests:
            return verdict("passed", reason="no test imports the changed files")
        shadow = await asyncio.to_thread(ShadowWorkspace.materialise, files, source_root=self.root)
        try:
            result = await self._run_pytest(shadow, tests)
            outcome = _outcome(result, shadow)
        finally:
            shadow.cleanup()
        if isinstance(outcome, str):
            return verdict("error", reason=outcome)
        return verdict("failed" if outcome else "passed", tuple(outcome))

    async def run_named(
        self,
        files: Mapping[str, str],
        tests: Sequence[str],
        *,
        task_id: str | None = None,
        measure: Sequence[str] = (),
    ) -> tuple[Verdict, dict[str, set[int]]]:
        """Run exactly `tests` (node ids or test files) on `files` in the sandbox; with
        `measure`, also the 1-based lines of those files the run executed (coverage.py)."""
        started = time.monotonic()
        shadow = await asyncio.to_thread(ShadowWorkspace.materialise, files, source_root=self.root)
        try:
            data_file = shadow.root.parent / "coverage.data"
            launcher: tuple[str, ...] = ("-m", "pytest")
            if measure:
                sources = ",".join(str(shadow.path_of(rel)) for rel in measure)
                launcher = ("-m", "coverage", "run", f"--data-file={data_file}")
                launcher += (f"--include={sources}", "-m", "pytest")
            result = await self._run_pytest(shadow, tests, launcher=launcher)
            outcome = _outcome(result, shadow)
            if result.returncode in PYTEST_NOT_COLLECTED and not result.timed_out:
                # Named tests that did not run (not found, nothing collected, an import error
                # while collecting) are failures of those tests, not a check that could not run.
                report = shadow.root.parent / "pytest-report.xml"
                tail = (result.stdout + result.stderr)[-300:].strip()
                outcome = (_failures(report) if report.exists() else []) or [
                    Finding(
                        path=tests[0].split("::")[0] if tests else "",
                        span=Span(Point(0, 0), Point(0, 0)),
                        message=f"not collected by pytest (exit {result.returncode}): {tail}",
                        code="test:not-collected",
                    )
                ]
            executed = _executed_lines(data_file, shadow, measure) if measure else {}
        finally:
            shadow.cleanup()
        kind: str = "error" if isinstance(outcome, str) else ("failed" if outcome else "passed")
        verdict = Verdict(
            check="tests",
            kind=kind,  # type: ignore[arg-type]
            findings=() if isinstance(outcome, str) else tuple(outcome),
            reason=outcome if isinstance(outcome, str) else "",
            task_id=task_id,
            paths=tuple(tests),
            duration_s=time.monotonic() - started,
        )
        return verdict, executed

    async def _run_pytest(
        self,
        shadow: ShadowWorkspace,
        tests: Sequence[str],
        *,
        launcher: Sequence[str] = ("-m", "pytest"),
    ) -> SandboxResult:
        report = shadow.root.parent / "pytest-report.xml"
        home = shadow.root.parent / "home"
        temp = shadow.root.parent / "tmp"
        home.mkdir(exist_ok=True)
        temp.mkdir(exist_ok=True)
        argv = [sys.executable, *launcher, "-q", "-p", "no:cacheprovider"]
        argv += ["-o", "junit_family=xunit1", f"--junitxml={report}", "--rootdir", "."]
        # An explicit basetemp: pytest's default one checks that the owner is getuid(), which
        # differs when a root parent runs tests with an unprivileged real uid (see sandbox).
        argv += [f"--basetemp={temp / 'pytest'}"]
        plugin_args, plugin_env = install_deadline_plugin(
            shadow.base / "plugins", self.per_test_timeout_s
        )
        argv += plugin_args
        hand_to_sandbox(shadow.root.parent)
        argv += list(tests)
        env = {
            "HOME": str(home),
            "TMPDIR": str(temp),
            **plugin_env,
            "PYTHONPATH": f"{shadow.root}{os.pathsep}{plugin_env['PYTHONPATH']}",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0",
        }
        limits = _with_protected(self.limits, self.root)
        limits = msgspec.structs.replace(limits, reachable_paths=(str(shadow.base),))
        return await run_sandboxed(argv, cwd=shadow.root, limits=limits, env=env)


def _executed_lines(
    data_file: Path, shadow: ShadowWorkspace, measured: Sequence[str]
) -> dict[str, set[int]]:
    """The lines coverage.py recorded per measured file (empty when nothing ran)."""
    import coverage  # the `checks` extra; imported only when new tests are measured

    if not data_file.exists():
        return {}
    data = coverage.CoverageData(basename=str(data_file))
    data.read()
    executed = {}
    for rel in measured:
        lines = data.lines(str(shadow.path_of(rel)))
        if lines:
            executed[rel] = set(lines)
    return executed


def _with_protected(limits: SandboxLimits, root: Path) -> SandboxLimits:
    return msgspec.structs.replace(limits, protect_paths=(*limits.protect_paths, str(root)))


def _outcome(result: SandboxResult, shadow: ShadowWorkspace) -> list[Finding] | str:
    if result.start_error:
        return f"pytest could not start: {result.start_error}"
    if result.timed_out:
        return f"tests timed out after {result.duration_s:.1f} s; their process group was killed"
    report = shadow.root.parent / "pytest-report.xml"
    if result.returncode not in PYTEST_COMPLETED or not report.exists():
        tail = (result.stdout + result.stderr)[-600:].strip()
        return f"pytest did not complete (exit {result.returncode}): {tail}"
    return _failures(report)


def _failures(report: Path) -> list[Finding]:
    findings = []
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is None:
            continue
        path = case.get("file") or ""
        line = int(case.get("line") or 0)
        node_id = _node_id(path, case.get("classname") or "", case.get("name") or "")
        message = (problem.get("message") or problem.tag).strip().splitlines()[0][:300]
        span = Span(Point(line, 0), Point(line + 1, 0))
        findings.append(
            Finding(path=path, span=span, message=f"{node_id}: {message}", code=f"test:{node_id}")
        )
    return findings


def _node_id(path: str, classname: str, name: str) -> str:
    module = path[:-3].replace("/", ".") if path.endswith(".py") else ""
    inner = classname[len(module) + 1 :] if module and classname.startswith(module + ".") else ""
    parts = [path or classname, *([inner] if inner else []), name]
    return "::".join(parts)

"""semgrep's autofixes as a text-to-text function over a set of file texts.

Owns the two ways to find the matches and their fixes — the supervisor's warm `semgrep lsp`
worker (`shared_fix_scan`, the swarm's way: no semgrep start-up per task) or one CLI scan of a
private temporary copy (`scan_texts`, never the workspace) — and splicing each fix over its
match. semgrep reports UTF-8 byte offsets,
so fixes are spliced into the encoded bytes and the result decoded again; callers diff the
texts to get code-point edits. Overlapping fixes are never spliced together: the later one
waits for the next pass, which scans the already-fixed text again.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from delegation_machine.engine.agents.base import AgentFailure
from delegation_machine.engine.agents.builtin.tools import last_lines, locate_tool, run_tool
from delegation_machine.engine.rules import bundled_rule_id, bundled_semgrep_rules
from delegation_machine.engine.state.scratch import scratch_folder
from delegation_machine.engine.supervise.semgrep import SemgrepScanner
from delegation_machine.engine.supervise.semgrep_worker import SemgrepResult

SEMGREP_OFFLINE_ENV = {"SEMGREP_ENABLE_VERSION_CHECK": "0", "SEMGREP_SEND_METRICS": "off"}
MAX_FIX_PASSES = 3

# Every match (with its fix, if the rule has one) in the given texts, keyed by relative path.
ScanTexts = Callable[[Mapping[str, str]], Awaitable[list[SemgrepResult]]]


@dataclass
class FixOutcome:
    """The fixed texts, the rule ids applied per file and the findings left without a fix."""

    texts: dict[str, str]
    applied: dict[str, list[str]] = field(default_factory=dict)
    unfixable: list[SemgrepResult] = field(default_factory=list)
    scans: int = 0


def _private_target(folder: Path, rel: str) -> Path:
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts:
        raise AgentFailure(f"refusing path {rel!r}: paths must stay inside the workspace")
    return folder.joinpath(*pure.parts)


def _parse_report(stdout: str) -> list[SemgrepResult]:
    try:
        report: dict[str, Any] = json.loads(stdout)
    except json.JSONDecodeError as exc:
        raise AgentFailure(f"semgrep printed no JSON report ({exc})") from None
    results = []
    for raw in report.get("results", []):
        fix = raw.get("extra", {}).get("fix")
        results.append(
            SemgrepResult(
                path=PurePosixPath(raw["path"]).as_posix(),
                rule_id=bundled_rule_id(raw["check_id"]),
                line=int(raw["start"]["line"]),
                start_byte=int(raw["start"]["offset"]),
                end_byte=int(raw["end"]["offset"]),
                message=str(raw.get("extra", {}).get("message", "")),
                fix=fix if isinstance(fix, str) else None,
            )
        )
    return results


async def scan_texts(
    texts: Mapping[str, str],
    *,
    rule_paths: Sequence[Path] | None = None,
    timeout_s: float = 180.0,
) -> list[SemgrepResult]:
    """Scan the texts (keyed by workspace-relative path) in a private temporary copy."""
    if not texts:
        return []
    configs = [str(path) for path in (rule_paths or bundled_semgrep_rules())]
    with tempfile.TemporaryDirectory(prefix="dm-fix-", dir=scratch_folder()) as folder:
        for rel, text in texts.items():
            target = _private_target(Path(folder), rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(text.encode("utf-8"))
        argv = [locate_tool("semgrep"), "scan", "--json", "--quiet", "--metrics=off"]
        argv += ["--disable-version-check", "--no-git-ignore"]
        for config in configs:
            argv += ["--config", config]
        argv += ["--", *texts]
        done = await run_tool(argv, cwd=Path(folder), env=SEMGREP_OFFLINE_ENV, timeout_s=timeout_s)
    if done.returncode != 0:
        raise AgentFailure(f"semgrep failed (exit {done.returncode}): {last_lines(done.stderr)}")
    return _parse_report(done.stdout)


def splice_fixes(text: str, results: Sequence[SemgrepResult]) -> tuple[str, list[str], bool]:
    """Apply the non-overlapping fixes; returns (text, rule ids applied, whether any waited)."""
    data = text.encode("utf-8")
    chosen: list[SemgrepResult] = []
    waited = False
    for result in sorted(results, key=lambda r: (r.start_byte, r.end_byte)):
        if result.fix is None:
            continue
        if not 0 <= result.start_byte <= result.end_byte <= len(data):
            raise AgentFailure(f"semgrep reported a match outside {result.path}")
        if chosen and result.start_byte < chosen[-1].end_byte:
            waited = True
            continue
        chosen.append(result)
    for result in reversed(chosen):
        replacement = result.fix.encode("utf-8") if result.fix is not None else b""
        data = data[: result.start_byte] + replacement + data[result.end_byte :]
    return data.decode("utf-8"), [result.rule_id for result in chosen], waited


def cli_fix_scan(rule_paths: Sequence[Path] | None = None, timeout_s: float = 180.0) -> ScanTexts:
    """Scanning with one semgrep CLI run per call (the rules given, else the bundled ones)."""

    async def scan(texts: Mapping[str, str]) -> list[SemgrepResult]:
        return await scan_texts(texts, rule_paths=rule_paths, timeout_s=timeout_s)

    return scan


def shared_fix_scan(scanner: SemgrepScanner, timeout_s: float = 180.0) -> ScanTexts:
    """Scanning through `scanner`'s warm worker, with its rules; when the worker cannot answer
    (not installed, crashed, rules it refused) one CLI run with the same rules does."""

    async def scan(texts: Mapping[str, str]) -> list[SemgrepResult]:
        warm = await scanner.autofix_matches(texts)
        if warm is not None:
            return warm
        return await scan_texts(texts, rule_paths=scanner.rule_files(), timeout_s=timeout_s)

    return scan


async def apply_semgrep_fixes(texts: Mapping[str, str], scan: ScanTexts) -> FixOutcome:
    """Scan, splice every available fix, and rescan files whose fixes overlapped."""
    outcome = FixOutcome(texts=dict(texts))
    pending = dict(texts)
    for _ in range(MAX_FIX_PASSES):
        results = await scan(pending)
        outcome.scans += 1
        by_path: dict[str, list[SemgrepResult]] = {}
        for result in results:
            by_path.setdefault(result.path, []).append(result)
        rescan: dict[str, str] = {}
        for rel, found in by_path.items():
            if outcome.scans == 1:
                outcome.unfixable.extend(r for r in found if r.fix is None)
            fixed, applied, waited = splice_fixes(pending[rel], found)
            outcome.texts[rel] = fixed
            outcome.applied.setdefault(rel, []).extend(applied)
            if waited:
                rescan[rel] = fixed
        if not rescan:
            break
        pending = rescan
    return outcome

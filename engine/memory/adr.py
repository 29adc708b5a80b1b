"""Decision records (the judicial loop): what failed, what fixed it, and where it applies.

Owns `<workspace>/.delegation/adr/NNNN-title.md`. When a task's verdicts failed and a later
change passed, `record_resolution` writes one record (context, decision, consequences, files,
symbols); `relevant_records(paths)` finds the records for files a new task touches (the same
file first, then the same folder/module) so they can go into its shared prefix. Records are
plain Markdown a person can read and edit; two writers never share a number.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

import msgspec

from delegation_machine.engine.protocol import Verdict

_FIELD = re.compile(r"^- (?P<key>[A-Za-z ]+): ?(?P<value>.*)$")
_NAME = re.compile(r"^(?P<number>\d{4})-(?P<slug>[a-z0-9\-]+)\.md$")
_MAX_FINDINGS = 5


class DecisionRecord(msgspec.Struct, frozen=True):
    number: int
    title: str
    task_id: str
    date: str
    context: str
    decision: str
    consequences: str
    files: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()
    failed_checks: tuple[str, ...] = ()
    path: str = ""  # workspace-relative path of the Markdown file

    def render(self) -> str:
        lines = [
            f"# {self.number:04d}. {self.title}",
            "",
            "- Status: accepted",
            f"- Task: {self.task_id}",
            f"- Date: {self.date}",
            f"- Files: {', '.join(self.files)}",
            f"- Symbols: {', '.join(self.symbols)}",
            f"- Failed checks: {', '.join(self.failed_checks)}",
            "",
            "## Context",
            "",
            self.context.strip(),
            "",
            "## Decision",
            "",
            self.decision.strip(),
            "",
            "## Consequences",
            "",
            self.consequences.strip(),
            "",
        ]
        return "\n".join(lines)

    def summary(self) -> str:
        """A short form for an agent's shared prefix."""
        return (
            f"ADR {self.number:04d} {self.title} (files: {', '.join(self.files)}): "
            f"{self.decision.strip().splitlines()[0] if self.decision.strip() else ''}"
        )


def slugify(text: str, limit: int = 50) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return (slug[:limit].rstrip("-") or "decision") if slug else "decision"


def _describe_failure(verdict: Verdict) -> list[str]:
    lines = [
        f"- `{verdict.check}` {verdict.kind}" + (f": {verdict.reason}" if verdict.reason else "")
    ]
    for finding in verdict.findings[:_MAX_FINDINGS]:
        line = finding.span.start.line + 1
        lines.append(f"  - {finding.code} at {finding.path}:{line}: {finding.message}")
    if len(verdict.findings) > _MAX_FINDINGS:
        lines.append(f"  - ... {len(verdict.findings) - _MAX_FINDINGS} more findings")
    return lines


def _check_names(verdicts: Sequence[Verdict]) -> tuple[str, ...]:
    names: list[str] = []
    for verdict in verdicts:
        codes = [finding.code for finding in verdict.findings] or [verdict.check]
        names.extend(code for code in codes if code not in names)
    return tuple(names)


class DecisionRecords:
    """The workspace's decision records, one Markdown file each."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.directory = self.root / ".delegation" / "adr"
        self._lock = threading.Lock()

    def all(self) -> list[DecisionRecord]:
        """Every readable record, by number. Files that do not parse are skipped."""
        if not self.directory.is_dir():
            return []
        records: list[DecisionRecord] = []
        for path in sorted(self.directory.iterdir()):
            match = _NAME.match(path.name)
            if match is None:
                continue
            record = self._parse(path, int(match.group("number")))
            if record is not None:
                records.append(record)
        return records

    def record_resolution(
        self,
        task_id: str,
        failed_verdicts: Sequence[Verdict],
        passing_change_summary: str,
        paths: Iterable[str],
        symbols: Iterable[str] = (),
        *,
        title: str | None = None,
    ) -> DecisionRecord:
        """Write the record for a failure that a later change fixed; returns it."""
        failures = [v for v in failed_verdicts if not v.passed]
        if not failures:
            raise ValueError("record_resolution needs at least one failed verdict")
        files = tuple(dict.fromkeys(paths))
        summary = passing_change_summary.strip() or "(no summary given)"
        heading = title or f"Fix {', '.join(_check_names(failures)[:2])} in {', '.join(files[:2])}"
        context = "\n".join(
            [
                f"Task `{task_id}` changed {', '.join(files) or 'the workspace'}; "
                f"{len(failures)} check(s) failed:",
                "",
                *[line for verdict in failures for line in _describe_failure(verdict)],
            ]
        )
        consequences = (
            f"Later tasks that touch {', '.join(files) or 'these files'} (or their folders) get "
            f"this record in their shared prefix. The checks "
            f"{', '.join(f'`{c}`' for c in _check_names(failures))} must keep passing."
        )
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            number = self._next_number()
            while True:
                name = f"{number:04d}-{slugify(heading)}.md"
                record = DecisionRecord(
                    number=number,
                    title=heading,
                    task_id=task_id,
                    date=time.strftime("%Y-%m-%d", time.gmtime()),
                    context=context,
                    decision=summary,
                    consequences=consequences,
                    files=files,
                    symbols=tuple(dict.fromkeys(symbols)),
                    failed_checks=_check_names(failures),
                    path=f".delegation/adr/{name}",
                )
                try:
                    with (self.directory / name).open("x", encoding="utf-8") as handle:
                        handle.write(record.render())
                except FileExistsError:
                    number += 1  # another writer took this number: never reuse one
                    continue
                return record

    def relevant_records(self, paths: Iterable[str]) -> list[DecisionRecord]:
        """Records about these files first, then records about files in the same folders."""
        wanted = list(dict.fromkeys(paths))
        folders = {PurePosixPath(p).parent for p in wanted}
        exact: list[DecisionRecord] = []
        nearby: list[DecisionRecord] = []
        for record in self.all():
            if any(path in record.files for path in wanted):
                exact.append(record)
            elif any(PurePosixPath(f).parent in folders for f in record.files):
                nearby.append(record)
        exact.sort(key=lambda r: -r.number)
        nearby.sort(key=lambda r: -r.number)
        return exact + nearby

    def prefix_text(self, paths: Iterable[str], limit: int = 5) -> str:
        """Deterministic text for an agent's shared prefix (same paths, same text)."""
        records = self.relevant_records(paths)[:limit]
        if not records:
            return ""
        lines = ["Decision records for these files:"]
        lines.extend(f"- {record.summary()}" for record in records)
        return "\n".join(lines) + "\n"

    def _next_number(self) -> int:
        numbers = [
            int(match.group("number"))
            for match in (_NAME.match(p.name) for p in self.directory.iterdir())
            if match is not None
        ]
        return max(numbers, default=0) + 1

    def _parse(self, path: Path, number: int) -> DecisionRecord | None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        title_match = re.match(r"#\s*\d+\.\s*(.*)", text)
        fields: dict[str, str] = {}
        for line in text.splitlines():
            match = _FIELD.match(line)
            if match and match.group("key") not in fields:
                fields[match.group("key")] = match.group("value").strip()
        sections = _sections(text)

        def split(key: str) -> tuple[str, ...]:
            return tuple(v.strip() for v in fields.get(key, "").split(",") if v.strip())

        return DecisionRecord(
            number=number,
            title=title_match.group(1).strip() if title_match else path.stem,
            task_id=fields.get("Task", ""),
            date=fields.get("Date", ""),
            context=sections.get("Context", ""),
            decision=sections.get("Decision", ""),
            consequences=sections.get("Consequences", ""),
            files=split("Files"),
            symbols=split("Symbols"),
            failed_checks=split("Failed checks"),
            path=path.relative_to(self.root).as_posix(),
        )


def _sections(text: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip() for name, lines in sections.items()}

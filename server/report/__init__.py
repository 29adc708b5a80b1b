"""The picture of a run: one self-contained HTML page drawn from a workspace's ledger.

`write_run_report(ledger_path, out, plan_ids)` is the one entry point (`ledger report`,
`run --report`, `demo`): it reads the plans' events (server/report/timeline.py), draws the
page (server/report/page.py) and writes it atomically. Every refusal is a `ReportError`
whose text is one line a person can act on; nothing is written then.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from delegation_machine.server.report.page import render_page
from delegation_machine.server.report.timeline import (
    ReportError,
    RunTimeline,
    open_ledger,
    read_run,
)

__all__ = ["ReportError", "RunTimeline", "read_run_timeline", "render_page", "write_run_report"]


def read_run_timeline(ledger_path: Path, plan_ids: Sequence[str] | None = None) -> RunTimeline:
    """The timeline of `plan_ids` in the ledger file (default: the latest swarm session's)."""
    ledger = open_ledger(Path(ledger_path))
    try:
        return read_run(ledger, plan_ids)
    finally:
        ledger.close()


def write_run_report(ledger_path: Path, out: Path, plan_ids: Sequence[str] | None = None) -> Path:
    """Write the HTML report of `plan_ids` (default: the latest swarm session's plans) to
    `out`, creating its folder; returns the absolute path written."""
    page = render_page(read_run_timeline(ledger_path, plan_ids))
    target = Path(out).absolute()
    if target.is_dir():
        raise ReportError(f"{target}: is a folder; name the .html file to write")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
        )
    except OSError as exc:
        raise ReportError(f"{target}: cannot write the report there ({exc.strerror})") from exc
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(page)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise ReportError(f"{target}: cannot write the report there ({exc.strerror})") from exc
    return target

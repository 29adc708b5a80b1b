"""Latency from an agent's committed edit to `workspace/applyEdit` received by an LSP client.

A real pygls server (this file with --serve: WorkspaceState + EditBridge behind didOpen and
didChange) commits agent mutations at a fixed rate for a fixed time; a pytest-lsp client
applies every applyEdit to its buffer and echoes it as didChange, like an editor. Each edit
carries its commit time (CLOCK_MONOTONIC is shared by processes on one host), so the client
measures commit -> received. Baseline in the same run: the same server sending one applyEdit
per edit straight away, with no CRDT and no bridge. Writes benchmarks/results/crdt_apply_latency.json.

    .venv/bin/python benchmarks/crdt_apply_latency.py [--seconds 10] [--rates 100 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls import uris
from pygls.lsp.server import LanguageServer
from pygls.workspace import PositionCodec, TextDocument

from delegation_machine.engine.protocol import Mutation, TextEdit
from delegation_machine.engine.state import WorkspaceState
from delegation_machine.server.edit_bridge import EditBridge

RESULTS = Path(__file__).parent / "results" / "crdt_apply_latency.json"
PATH = "bench.py"
LINES = 200
RUN = "bench.run"
WARMUP_S = 0.5  # stamps of the warm-up start with "w" and are not counted
STAMP = re.compile(r"e(\d+)@(\d+)")


def initial_text() -> str:
    return "".join(f"line_{n} = 0\n" for n in range(LINES))


# --- the server ---------------------------------------------------------------------------------


def build_server() -> LanguageServer:
    server = LanguageServer("crdt-bench", "0.1")
    session: dict[str, Any] = {}

    def bridge() -> EditBridge:
        if "bridge" not in session:
            root = Path(uris.to_fs_path(server.workspace.root_uri) or ".")
            state = session["state"] = WorkspaceState(root, persist=False)
            session["bridge"] = EditBridge(
                server.workspace_apply_edit_async,
                state,
                lambda rel: uris.from_fs_path(str(root / rel)) or "",
                server.workspace.position_encoding,
            )
            state.subscribe(session["bridge"].on_text_changed)
        found: EditBridge = session["bridge"]
        return found

    def shared() -> WorkspaceState:
        bridge()
        state: WorkspaceState = session["state"]
        return state

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: LanguageServer, params: types.DidOpenTextDocumentParams) -> None:
        document = params.text_document
        rel = shared().resolve(uris.to_fs_path(document.uri) or "")
        bridge().on_did_open(rel, document.text, document.version)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: LanguageServer, params: types.DidChangeTextDocumentParams) -> None:
        document = params.text_document
        rel = shared().resolve(uris.to_fs_path(document.uri) or "")
        bridge().on_did_change(rel, params.content_changes, document.version)

    @server.command(RUN)
    async def run(ls: LanguageServer, args: dict[str, Any]) -> dict[str, Any]:
        if args["mode"] == "baseline":
            return await drive_baseline(ls, args)
        return await drive_agents(bridge(), shared(), args)

    return server


async def paced(rate: float, seconds: float) -> Any:
    """Yield the sequence numbers due so far, at `rate` per second for `seconds`."""
    total = int(rate * seconds)
    start = time.monotonic()
    sent = 0
    while sent < total:
        due = min(total, int((time.monotonic() - start) * rate) + 1)
        while sent < due:
            yield sent
            sent += 1
        await asyncio.sleep(max(0.0, start + sent / rate - time.monotonic()))


def line_edit(text: str, line: int, payload: str) -> TextEdit:
    """Replace the value on `line` (`line_N = <value>`)."""
    head = f"line_{line} = "
    start = 0 if text.startswith(head) else text.index("\n" + head) + 1
    value_start = start + len(head)
    value_end = text.index("\n", value_start)
    return TextEdit(value_start, value_end, payload)


async def drive_agents(
    bridge: EditBridge, state: WorkspaceState, args: dict[str, Any]
) -> dict[str, Any]:
    agents = int(args.get("agents", 1))
    agent_lines = LINES - 1 if args.get("keep_last_line") else LINES
    commit_ns: list[int] = []
    async for n in paced(float(args["rate"]), float(args["seconds"]) + WARMUP_S):
        k = n % agents
        text, version = state.read(PATH)
        warm = n < float(args["rate"]) * WARMUP_S
        stamp = f"{'w' if warm else 'e'}{n}@{time.monotonic_ns()}"
        # round robin over the lines: a stamp is only overwritten LINES edits later; the last
        # line may be kept for the user (keystroke_race.py types there)
        edit = line_edit(text, n % agent_lines, repr(stamp))
        lease = state.lease_files([PATH], f"agent:a{k}/task:t{k}", ttl_s=60)
        state.apply_mutation(Mutation(f"t{k}", f"a{k}", PATH, version, (edit,)), lease)
        state.release(lease)
        commit_ns.append(time.monotonic_ns())
    await bridge.wait_idle()
    return {
        "edits": len(commit_ns) - int(float(args["rate"]) * WARMUP_S),
        "sent": bridge.statistics.sent,
        "refused": bridge.statistics.refused,
        "echoes": bridge.statistics.echoes,
        "user_changes": bridge.statistics.user_changes,
        "text": state.read(PATH)[0],
    }


async def drive_baseline(ls: LanguageServer, args: dict[str, Any]) -> dict[str, Any]:
    """No CRDT, no bridge: one applyEdit per edit, fired as soon as it is due."""
    uri = args["uri"]
    pending: set[asyncio.Task[Any]] = set()
    count = 0
    async for n in paced(float(args["rate"]), float(args["seconds"]) + WARMUP_S):
        warm = n < float(args["rate"]) * WARMUP_S
        stamp = f"{'w' if warm else 'e'}{n}@{time.monotonic_ns()}"
        # an empty edit: the client only reads the stamp in the label (pure transport cost)
        edit = types.TextEdit(
            range=types.Range(types.Position(0, 0), types.Position(0, 0)), new_text=""
        )
        params = types.ApplyWorkspaceEditParams(
            edit=types.WorkspaceEdit(changes={uri: [edit]}), label=stamp
        )
        task = asyncio.ensure_future(ls.workspace_apply_edit_async(params))
        pending.add(task)
        task.add_done_callback(pending.discard)
        count += 1
    await asyncio.gather(*pending)
    return {"edits": count - int(float(args["rate"]) * WARMUP_S), "sent": count}


# --- the client ---------------------------------------------------------------------------------


@dataclass
class Received:
    latencies_ms: list[float] = field(default_factory=list)
    apply_edits: int = 0


class BenchEditor:
    """The client's buffer: applies applyEdit like an editor, echoes it as didChange."""

    def __init__(self, client: Any, uri: str, text: str, encoding: str) -> None:
        self.client = client
        self.document = TextDocument(uri, text, version=1, position_codec=PositionCodec(encoding))
        self.received = Received()
        self.seen: set[int] = set()

    def on_apply_edit(
        self, params: types.ApplyWorkspaceEditParams
    ) -> types.ApplyWorkspaceEditResult:
        now = time.monotonic_ns()
        self.received.apply_edits += 1
        if params.edit.changes is not None:  # the baseline: only the stamp in the label counts
            self.record(params.label or "", now)
            return types.ApplyWorkspaceEditResult(applied=True)
        assert params.edit.document_changes is not None
        (document_edit,) = params.edit.document_changes
        assert isinstance(document_edit, types.TextDocumentEdit)
        if document_edit.text_document.version != self.document.version:
            return types.ApplyWorkspaceEditResult(applied=False)
        edits = sorted(
            document_edit.edits,
            key=lambda e: (e.range.start.line, e.range.start.character),
            reverse=True,
        )
        self.send(
            [types.TextDocumentContentChangePartial(range=e.range, text=e.new_text) for e in edits]
        )
        self.record(self.document.source, now)  # stamps now visible in the buffer
        return types.ApplyWorkspaceEditResult(applied=True)

    def record(self, text: str, now_ns: int) -> None:
        for match in STAMP.finditer(text):
            number = int(match.group(1))
            if number not in self.seen:  # a re-derived edit may carry a stamp again
                self.seen.add(number)
                self.received.latencies_ms.append((now_ns - int(match.group(2))) / 1e6)

    def send(self, changes: list[types.TextDocumentContentChangePartial]) -> None:
        for change in changes:
            self.document.apply_change(change)
        self.document.version = (self.document.version or 0) + 1
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(
                    uri=self.document.uri, version=self.document.version
                ),
                content_changes=changes,
            )
        )


async def start_session(root: Path, text: str) -> tuple[Any, BenchEditor]:
    from pytest_lsp import ClientServerConfig, client_capabilities

    (root / PATH).write_text(text)
    config = ClientServerConfig(
        server_command=[sys.executable, str(Path(__file__).resolve()), "--serve"]
    )
    client = await config.start()
    result = await client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"), root_uri=root.as_uri()
        )
    )
    encoding = str(getattr(result.capabilities.position_encoding, "value", None) or "utf-16")
    uri = (root / PATH).as_uri()
    editor = BenchEditor(client, uri, text, encoding)
    client.feature(types.WORKSPACE_APPLY_EDIT)(lambda params: editor.on_apply_edit(params))
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "python", 1, text))
    )
    return client, editor


async def stop_session(client: Any) -> None:
    await client.shutdown_session()
    await client.stop()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def measure(mode: str, rate: float, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        client, editor = await start_session(Path(folder), initial_text())
        try:
            summary = await client.workspace_execute_command_async(
                types.ExecuteCommandParams(
                    command=RUN,
                    arguments=[
                        {"mode": mode, "rate": rate, "seconds": seconds, "uri": editor.document.uri}
                    ],
                )
            )
        finally:
            await stop_session(client)
    latencies = editor.received.latencies_ms
    row = {
        "mode": mode,
        "rate_per_s": rate,
        "seconds": seconds,
        "edits_committed": summary["edits"],
        "edits_received": len(latencies),
        "apply_edit_requests": editor.received.apply_edits,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies) if latencies else float("nan"),
        "median_ms": statistics.median(latencies) if latencies else float("nan"),
    }
    if mode == "codecrdt":
        row["converged"] = summary["text"] == editor.document.source
        row["refused"] = summary["refused"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rates", type=float, nargs="+", default=[100.0, 1000.0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        build_server().start_io()
        return
    rows = []
    print(f"{'variant':28} {'rate/s':>7} {'edits':>6} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for rate in args.rates:
        for mode in ("baseline", "codecrdt"):
            row = asyncio.run(measure(mode, rate, args.seconds))
            rows.append(row)
            name = "direct applyEdit (baseline)" if mode == "baseline" else "CodeCRDT + EditBridge"
            print(
                f"{name:28} {rate:7.0f} {row['edits_received']:6d} {row['apply_edit_requests']:8d} "
                f"{row['p50_ms']:8.2f} {row['p99_ms']:8.2f}"
            )
    target_rows = [r for r in rows if r["mode"] == "codecrdt" and r["rate_per_s"] >= 1000]
    payload = {
        "figure": "crdt_apply_latency",
        "rows": rows,
        "target": "p99 <= 20 ms at 1,000 edits/s sustained for 10 s",
        "target_met": bool(target_rows) and all(r["p99_ms"] <= 20 for r in target_rows),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

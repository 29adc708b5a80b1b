"""A user typing at 20 keystrokes/s into a file that 4 agents edit: no keystroke may be lost.

Uses the real pygls server of crdt_apply_latency.py (WorkspaceState + EditBridge) and a
pytest-lsp client that types unique characters at the end of its own line, 50 ms apart, while
4 agents replace values on the other lines (25 edits/s each). Checked: every keystroke is in
the server's text and in the client's buffer, and both are equal. Measured: the latency of the
agents' edits to the client's buffer with and without the typing, in the same run; the p99
difference is the delay keystrokes add to pending agent edits. Writes
benchmarks/results/keystroke_race.json.

    .venv/bin/python benchmarks/keystroke_race.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

from lsprotocol import types

sys.path.insert(0, str(Path(__file__).parent))
from crdt_apply_latency import (
    LINES,
    RUN,
    BenchEditor,
    initial_text,
    percentile,
    start_session,
    stop_session,
)

RESULTS = Path(__file__).parent / "results" / "keystroke_race.json"
AGENTS = 4
AGENT_RATE = 25.0  # edits per second per agent
KEYSTROKES_PER_S = 20.0
USER_LINE = f"line_{LINES - 1} = 0"


async def type_keys(editor: BenchEditor, seconds: float, typed: list[str]) -> None:
    """Type one unique character every 50 ms at the end of the user's line."""
    fresh = (chr(0x4E00 + n) for n in range(100_000))
    loop = asyncio.get_running_loop()
    start = loop.time()
    count = int(seconds * KEYSTROKES_PER_S)
    for n in range(count):
        await asyncio.sleep(max(0.0, start + n / KEYSTROKES_PER_S - loop.time()))
        text = editor.document.source
        end_of_line = text.index("\n", text.index(USER_LINE))
        position = editor.document.client_position_at_offset(end_of_line)
        char = next(fresh)
        typed.append(char)
        editor.send(
            [
                types.TextDocumentContentChangePartial(
                    range=types.Range(position, position), text=char
                )
            ]
        )


async def race(seconds: float, with_typing: bool) -> dict[str, Any]:
    typed: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        client, editor = await start_session(Path(folder), initial_text())
        try:
            run = client.workspace_execute_command_async(
                types.ExecuteCommandParams(
                    command=RUN,
                    arguments=[
                        {
                            "mode": "codecrdt",
                            "rate": AGENTS * AGENT_RATE,
                            "seconds": seconds,
                            "agents": AGENTS,
                            "keep_last_line": True,
                        }
                    ],
                )
            )
            if with_typing:
                summary, _ = await asyncio.gather(run, type_keys(editor, seconds, typed))
                # a last round trip so the server has seen every keystroke and settled
                summary = await client.workspace_execute_command_async(
                    types.ExecuteCommandParams(
                        command=RUN, arguments=[{"mode": "codecrdt", "rate": 1, "seconds": 0}]
                    )
                )
            else:
                summary = await run
        finally:
            await stop_session(client)
    server_text: str = summary["text"]
    latencies = editor.received.latencies_ms
    lost_server = [c for c in typed if c not in server_text]
    lost_client = [c for c in typed if c not in editor.document.source]
    return {
        "with_typing": with_typing,
        "keystrokes": len(typed),
        "lost_keystrokes_server": len(lost_server),
        "lost_keystrokes_client": len(lost_client),
        "converged": server_text == editor.document.source,
        "agent_edits_received": len(latencies),
        "apply_edit_requests": editor.received.apply_edits,
        "refused_apply_edits": summary["refused"],
        "agent_edit_p50_ms": percentile(latencies, 0.5),
        "agent_edit_p99_ms": percentile(latencies, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    quiet = asyncio.run(race(args.seconds, with_typing=False))
    typing = asyncio.run(race(args.seconds, with_typing=True))
    print(
        f"{'run':22} {'keys':>5} {'lost':>5} {'conv':>5} {'agent p50':>10} {'agent p99':>10} {'refused':>8}"
    )
    for name, row in (("agents only (baseline)", quiet), ("agents + user typing", typing)):
        lost = row["lost_keystrokes_server"] + row["lost_keystrokes_client"]
        print(
            f"{name:22} {row['keystrokes']:5d} {lost:5d} {row['converged']!s:>5} "
            f"{row['agent_edit_p50_ms']:10.2f} {row['agent_edit_p99_ms']:10.2f} "
            f"{row['refused_apply_edits']:8d}"
        )
    added_p99 = typing["agent_edit_p99_ms"] - quiet["agent_edit_p99_ms"]
    print(f"p99 delay added to agent edits by typing: {added_p99:.2f} ms")
    payload = {
        "figure": "keystroke_race",
        "agents": AGENTS,
        "agent_edits_per_s": AGENT_RATE,
        "keystrokes_per_s": KEYSTROKES_PER_S,
        "seconds": args.seconds,
        "baseline": quiet,
        "with_typing": typing,
        "p99_delay_added_ms": added_p99,
        "target": "zero lost keystrokes",
        "target_met": typing["lost_keystrokes_server"] == 0
        and typing["lost_keystrokes_client"] == 0
        and typing["converged"],
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

"""Observation masking on a replayed 50-turn agent trajectory: tokens saved, prefix reuse kept.

A 50-turn trajectory of tool calls over the Django corpus (read a file, grep a name, run the
tests) is recorded as "agent.turn" events in a real ledger, then replayed from it with
`TimeTravel`. For each model call the prompt is the system text, the task and every earlier
turn, rendered as chat and counted with the project's tokenizer; a radix tree over every prompt
sent counts what a prefix cache (vLLM-style, 16-token blocks) could reuse. Policies, same run:
no masking (the baseline), a sliding window of 10 turns, and the stepped window (10 turns,
boundary moved every 10 or 5 turns) that this project uses.

    .venv/bin/python benchmarks/observation_masking.py [--turns 50]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from index_speed import obtain_corpus

from delegation_machine.engine.inference.radix import PrefixAccounting
from delegation_machine.engine.inference.tokens import ApproxTokenizer, ChatTurnText, render_chat
from delegation_machine.engine.ledger import Ledger
from delegation_machine.engine.memory.timetravel import TimeTravel, turn_event
from delegation_machine.engine.memory.working import ObservationMasker, Turn

TOKENIZER = ApproxTokenizer()
SYSTEM = (
    "You are a coding agent working inside a language server. Use the tools to read files, "
    "search the code and run the tests; propose edits as JSON. Keep changes small.\n" * 6
)
TASK = "Fix the failing test in django/utils/text.py: `Truncator.words` drops the ellipsis."


def tool_outputs(corpus: Path, turns: int, seed: int) -> list[tuple[str, str, str]]:
    """(assistant text, tool name, tool output) for each turn, deterministic for a seed."""
    rng = random.Random(seed)
    files = sorted(p for p in corpus.rglob("*.py") if p.stat().st_size > 4000)
    names = ["truncate", "Truncator", "words", "ellipsis", "format_html", "slugify", "escape"]
    steps: list[tuple[str, str, str]] = []
    for turn in range(1, turns + 1):
        kind = ("read_file", "grep", "read_file", "run_tests")[turn % 4]
        if kind == "read_file":
            path = rng.choice(files)
            lines = path.read_text(encoding="utf-8").split("\n")
            start = rng.randrange(0, max(1, len(lines) - 120))
            count = rng.randrange(60, 140)
            rel = path.relative_to(corpus.parent).as_posix()
            output = "\n".join(lines[start : start + count])
            steps.append(
                (f'{{"tool": "read_file", "path": "{rel}", "start": {start}}}', kind, output)
            )
        elif kind == "grep":
            name = rng.choice(names)
            hits = []
            for path in rng.sample(files, 40):
                for row, line in enumerate(path.read_text(encoding="utf-8").split("\n")):
                    if name in line:
                        hits.append(f"{path.relative_to(corpus.parent)}:{row + 1}: {line.strip()}")
            steps.append((f'{{"tool": "grep", "pattern": "{name}"}}', kind, "\n".join(hits[:40])))
        else:
            failed = rng.random() < 0.6
            lines = [f"tests/utils_tests/test_text.py::test_case_{i} PASSED" for i in range(25)]
            if failed:
                lines.append("FAILED tests/utils_tests/test_text.py::test_truncate_words")
                lines.append("AssertionError: 'The quick brown…' != 'The quick brown'")
            lines.append(f"{25} passed, {1 if failed else 0} failed in 0.8{turn % 10}s")
            steps.append(
                ('{"tool": "run_tests", "path": "tests/utils_tests"}', kind, "\n".join(lines))
            )
    return steps


def record_and_replay(steps: list[tuple[str, str, str]], folder: Path) -> list[Turn]:
    """Write the trajectory to a ledger, then read it back as it was at the last step."""
    ledger = Ledger(folder / ".delegation" / "ledger.sqlite3")
    for number, (assistant, tool, output) in enumerate(steps, start=1):
        ledger.append(
            turn_event(
                task_id="t1",
                agent_id="a1",
                turn=number,
                role="assistant",
                content=assistant,
                tokens=TOKENIZER.count(assistant),
            )
        )
        ledger.append(
            turn_event(
                task_id="t1",
                agent_id="a1",
                turn=number,
                role="tool",
                content=output,
                tool=tool,
                tokens=TOKENIZER.count(output),
            )
        )
    state = TimeTravel(ledger).agent_at("a1")
    ledger.close()
    return [
        Turn(t.turn, "assistant" if t.role == "assistant" else "tool", t.content or "", t.tool)
        for t in state.turns
    ]


def run_policy(transcript: list[Turn], window: int | None, step: int) -> dict[str, Any]:
    accounting = PrefixAccounting(block_size=16)
    masker = ObservationMasker(window=window or 0, step=step)
    prompt_tokens = reusable = 0
    last_turn = max(t.turn for t in transcript)
    for current in range(1, last_turn + 1):
        visible = [t for t in transcript if t.turn < current]
        if window is not None:
            visible = masker.view(visible, current - 1)
        messages = [ChatTurnText("system", SYSTEM), ChatTurnText("user", TASK)]
        messages += [ChatTurnText(t.role, t.content) for t in visible]
        observed = accounting.observe(TOKENIZER.encode(render_chat(messages)))
        prompt_tokens += observed.prompt_tokens
        reusable += observed.reusable_tokens
    return {
        "prompt_tokens": prompt_tokens,
        "reusable_prefix_tokens": reusable,
        "uncached_tokens": prompt_tokens - reusable,
        "prefix_reuse_ratio": round(reusable / prompt_tokens, 4),
        "calls": last_turn,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "observation_masking.json",
    )
    args = parser.parse_args()
    steps = tool_outputs(obtain_corpus(), args.turns, args.seed)
    with tempfile.TemporaryDirectory() as folder:
        transcript = record_and_replay(steps, Path(folder))
    policies = {
        "none (baseline)": run_policy(transcript, None, 1),
        "sliding window 10": run_policy(transcript, 10, 1),
        "stepped window 10, step 5": run_policy(transcript, 10, 5),
        "stepped window 10, step 10": run_policy(transcript, 10, 10),
    }
    base = policies["none (baseline)"]
    for figures in policies.values():
        figures["tokens_saved_vs_none"] = round(
            1 - figures["prompt_tokens"] / base["prompt_tokens"], 4
        )
    # The engine default (ObservationMasker(window=10, step=5)) is the one held to the target.
    stepped, sliding = policies["stepped window 10, step 5"], policies["sliding window 10"]
    result = {
        "figure": "observation_masking",
        "trajectory": f"{args.turns} turns replayed from the ledger (read_file, grep, run_tests)",
        "policies": policies,
        "stepped_vs_sliding_uncached_ratio": round(
            stepped["uncached_tokens"] / sliding["uncached_tokens"], 3
        ),
        "targets": {
            "tokens_saved_min": 0.5,
            "met_tokens_saved": stepped["tokens_saved_vs_none"] >= 0.5,
            "met_prefix_reuse_kept": stepped["prefix_reuse_ratio"] > sliding["prefix_reuse_ratio"],
        },
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"{args.turns}-turn trajectory replayed from the ledger; 16-token prefix-cache blocks")
    print(f"{'policy':<28}{'prompt tok':>12}{'saved':>8}{'reused':>9}{'uncached tok':>14}")
    for name, f in policies.items():
        print(
            f"{name:<28}{f['prompt_tokens']:>12,}{f['tokens_saved_vs_none']:>8.1%}"
            f"{f['prefix_reuse_ratio']:>9.1%}{f['uncached_tokens']:>14,}"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

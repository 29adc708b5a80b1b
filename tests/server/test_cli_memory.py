"""The memory subcommands: index, map, funnel, ask and ledger, run through the real parser."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from delegation_machine.engine.ledger import Ledger
from delegation_machine.engine.memory.timetravel import turn_event
from delegation_machine.engine.protocol import Event
from delegation_machine.server.cli import main

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "memory_repo"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    target = tmp_path / "repo"
    shutil.copytree(FIXTURE, target)
    return target


def test_index_json_reports_files_and_names(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", str(repo), "--json", "--name", "total_price"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["files"] == 8
    assert report["languages"]["python"] == 4
    kinds = sorted(o["kind"] for o in report["names"]["total_price"])
    assert kinds == ["definition", "import", "import", "reference", "reference"]


def test_index_refuses_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_map_fits_the_budget_and_honours_focus(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["map", str(repo), "--tokens", "50", "--focus", "web/app.ts", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tokens"] <= 50
    assert "formatPrice" in report["text"]
    assert main(["map", str(repo), "--focus", "missing.py"]) == 2
    assert "not indexed: missing.py" in capsys.readouterr().err


def test_funnel_prints_pruned_text(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pricing = str(repo / "shop" / "pricing.py")
    assert main(["funnel", pricing, "--hint", "_round_cents", "--tokens", "120"]) == 0
    captured = capsys.readouterr()
    assert "def _round_cents(amount: float) -> float:" in captured.out
    assert "lines omitted" in captured.out and "budget 120" in captured.err
    assert main(["funnel", pricing, "--hint", "round cents", "--tokens", "120", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["token_budget"] == 120 and report["output_tokens"] <= 120
    assert main(["funnel", pricing, "--hint", "x", "--tokens", "0"]) == 2
    assert "budget must be positive" in capsys.readouterr().err
    assert main(["funnel", str(repo / "README.md"), "--hint", "x"]) == 2
    assert "no grammar" in capsys.readouterr().err


def test_ask_routes_to_the_graph(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", str(repo), "who calls total_price?", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["route"] == "graph" and answer["kind"] == "callers"
    assert [h["path"] for h in answer["hits"]] == [
        "shop/cart.py",
        "shop/cart.py",
        "shop/report.py",
    ]
    assert main(["ask", str(repo), "what depends on the pricing module", "--no-vectors"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "route: graph (dependents: shop/pricing.py)"
    assert sorted(line.split(":")[0] for line in printed[1:]) == [
        "shop/__init__.py",
        "shop/cart.py",
        "shop/report.py",
    ]


def test_ledger_show_replay_and_fork(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = Ledger(tmp_path / ".delegation" / "ledger.sqlite3")
    ledger.append(
        Event(kind="file.loaded", payload={"path": "a.py", "text": "x = 1\n", "version": 0})
    )
    step = ledger.append(
        Event(
            kind="file.changed",
            payload={
                "path": "a.py",
                "origin": "agent:a1/task:t1",
                "edits": [[4, 5, "2"]],
                "version": 1,
            },
            task_id="t1",
            agent_id="a1",
        )
    ).seq
    ledger.append(turn_event(task_id="t1", agent_id="a1", turn=1, role="assistant", content="go"))
    ledger.append(
        Event(
            kind="file.changed",
            payload={"path": "a.py", "origin": "user", "edits": [[4, 5, "3"]], "version": 2},
        )
    )
    ledger.close()
    workspace = ["--workspace", str(tmp_path)]
    assert main(["ledger", "show", *workspace]) == 0
    shown = capsys.readouterr().out
    assert "file.changed" in shown and "agent.turn" in shown and "edits=1" in shown
    assert main(["ledger", "replay", "--step", str(step), "--file", "a.py", *workspace]) == 0
    assert capsys.readouterr().out == "x = 2\n"
    assert main(["ledger", "replay", "--json", *workspace]) == 0
    replay = json.loads(capsys.readouterr().out)
    assert replay["workspace"]["files"]["a.py"]["text"] == "x = 3\n"
    assert [a["agent_id"] for a in replay["agents"]] == ["a1"]
    assert main(["ledger", "fork", "t1", "--step", str(step), "--new-task", "t2", *workspace]) == 0
    assert "forked t2 from t1" in capsys.readouterr().out
    assert main(["ledger", "show", "--workspace", str(tmp_path / "none")]) == 2


def test_console_script_runs_index() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "delegation_machine.server", "index", str(FIXTURE), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["files"] == 8

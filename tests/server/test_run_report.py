"""The run report, built from the ledger of real runs of `delegation-machine run`.

A built-in run (format every file, then a rename that waits on the formatted files) on two
workers, and a model run against the scripted OpenAI-compatible server (a real local HTTP
server), each on a scratch copy of samples/inventory. The timeline read back must agree with
what the run printed; the page must draw one lane per worker, one bar per task, the critical
path found independently here, and the verdicts; `ledger report` refuses bad input with one
line and exit code 2, writing nothing.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from delegation_machine.engine.inference.scripted import (
    RecordedRequest,
    ScriptedServer,
    ScriptedTurn,
)
from delegation_machine.engine.ledger import Ledger
from delegation_machine.engine.plan.graph import TaskSpec
from delegation_machine.engine.protocol import DelegationRequest, TaskState
from delegation_machine.engine.schedule.board import TaskBoard
from delegation_machine.server.report import read_run_timeline, write_run_report

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "delegation_machine.server"]
RENAME = "rename calc_total compute_order_total"
TARGET = "inventory/money.py"
SIGNATURE = 'def format_money(amount: Decimal, currency: str = "EUR") -> str:\n'
DOCSTRING = '    """The amount with two decimals and thousands separators, then the currency."""\n'


@dataclass(frozen=True)
class Run:
    workspace: Path
    ledger: Path
    printed: dict  # the run's --json report


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600)


def scratch_sample(parent: Path) -> Path:
    workspace = parent / "inventory"
    shutil.copytree(
        ROOT / "samples" / "inventory",
        workspace,
        ignore=shutil.ignore_patterns(".delegation", "__pycache__"),
    )
    return workspace


def run_tasks(workspace: Path, *args: str) -> Run:
    result = run_cli("run", str(workspace), *args, "--json")
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return Run(workspace, workspace / ".delegation" / "ledger.sqlite3", json.loads(result.stdout))


@pytest.fixture(scope="module")
def builtin_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    workspace = scratch_sample(tmp_path_factory.mktemp("builtin-run"))
    return run_tasks(workspace, "--task", "format", "--task", RENAME, "--agents", "2")


class Elements(HTMLParser):
    """Every start tag of the page with its attributes, and the text inside <title> tags."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.titles: list[str] = []
        self._in_title = False
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.titles.append(data)

    def having(self, tag: str, css_class: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and css_class in a.get("class", "").split()]


def longest_chain_s(durations: dict[str, float], depends_on: dict[str, tuple[str, ...]]) -> float:
    """The longest path through the dependency DAG by duration (tasks in topological order)."""
    finish: dict[str, float] = {}
    for task_id, duration in durations.items():
        finish[task_id] = duration + max((finish[d] for d in depends_on[task_id]), default=0.0)
    return max(finish.values(), default=0.0)


def test_the_timeline_has_a_lane_per_worker_and_each_task_as_the_run_reported_it(
    builtin_run: Run,
) -> None:
    timeline = read_run_timeline(builtin_run.ledger)
    assert timeline.lanes == ("worker-1", "worker-2")
    printed = {t["task_id"]: t for t in builtin_run.printed["tasks"]}
    assert {t.task_id: t.outcome for t in timeline.tasks} == {
        task_id: task["state"] for task_id, task in printed.items()
    }
    assert [p.kind for p in timeline.plans] == ["format", "rename"]
    for task in timeline.tasks:
        assert task.started and task.finish_s is not None and task.finish_s >= task.start_s
        assert task.worker in timeline.lanes
        assert task.agent == printed[task.task_id]["agent"]
        assert task.agent.endswith(f"@{task.worker}")  # built-in agents: no recovery here
        assert sorted(task.changed) == sorted(printed[task.task_id]["files"])
        assert [c.check for c in task.checks] == [
            v.split(":")[0] for v in printed[task.task_id]["verdicts"]
        ]
    # One worker never runs two tasks at once.
    for worker in timeline.lanes:
        spans = sorted((t.start_s, t.finish_s) for t in timeline.tasks if t.worker == worker)
        assert all(a[1] <= b[0] + 1e-3 for a, b in itertools.pairwise(spans))
    assert timeline.makespan_s >= max(t.finish_s or 0 for t in timeline.tasks)
    assert not timeline.used_a_model


def test_the_critical_path_is_the_longest_chain_of_tasks_waiting_on_each_other(
    builtin_run: Run,
) -> None:
    timeline = read_run_timeline(builtin_run.ledger)
    rename = next(t for t in timeline.tasks if t.kind == "rename")
    formats = {t.task_id: t for t in timeline.tasks if t.kind == "format"}
    # The rename edits files the format tasks write: it depends on exactly those tasks.
    assert rename.depends_on and set(rename.depends_on) <= set(formats)
    assert {formats[d].paths[0] for d in rename.depends_on} == {
        tag.removeprefix("file:") for tag in _rename_inputs(builtin_run)
    }
    durations = {t.task_id: t.duration_s for t in timeline.tasks}
    depends_on = {t.task_id: t.depends_on for t in timeline.tasks}
    slowest = max(rename.depends_on, key=lambda d: durations[d])
    assert timeline.critical_path == (slowest, rename.task_id)
    assert timeline.critical_path_s == pytest.approx(longest_chain_s(durations, depends_on))
    assert {t.task_id for t in timeline.tasks if t.critical} == set(timeline.critical_path)


def _rename_inputs(run: Run) -> list[str]:
    result = run_cli("ledger", "show", "--workspace", str(run.workspace), "--json")
    events = json.loads(result.stdout)
    submitted = [e for e in events if e["kind"] == "plan.submitted"]
    rename_plan = next(e for e in submitted if e["payload"]["kind"] == "rename")
    return list(rename_plan["payload"]["tasks"][0]["inputs"])


def test_the_page_draws_each_worker_each_task_and_each_verdict(
    builtin_run: Run, tmp_path: Path
) -> None:
    timeline = read_run_timeline(builtin_run.ledger)
    out = write_run_report(builtin_run.ledger, tmp_path / "nested" / "report.html")
    assert out == (tmp_path / "nested" / "report.html").absolute()
    page = out.read_text(encoding="utf-8")
    elements = Elements(page)
    lanes = elements.having("g", "lane")
    assert [lane["data-worker"] for lane in lanes] == list(timeline.lanes)
    bars = elements.having("g", "bar")
    assert sorted(b["data-task"] for b in bars) == sorted(t.task_id for t in timeline.tasks)
    by_id = {t.task_id: t for t in timeline.tasks}
    for bar in bars:
        task = by_id[bar["data-task"]]
        assert f"outcome-{task.outcome}" in bar["class"].split()
        assert bar["data-worker"] == task.worker
    critical = [b["data-task"] for b in elements.having("g", "critical")]
    assert sorted(critical) == sorted(timeline.critical_path)
    assert len(elements.having("path", "critical-link")) == 1
    rows = [a for t, a in elements.tags if t == "tr" and "data-task" in a]
    assert [r["data-task"] for r in rows] == [t.task_id for t in timeline.tasks]
    assert [r["data-outcome"] for r in rows] == [t.outcome for t in timeline.tasks]
    checks = [a for t, a in elements.tags if t == "span" and "data-check" in a]
    assert len(checks) == sum(len(t.checks) for t in timeline.tasks)
    # Each bar's tooltip names the task, its kind, files, outcome and duration.
    for task in timeline.tasks:
        tooltip = next(t for t in elements.titles if t.startswith(f"{task.task_id} ("))
        assert f"({task.kind})" in tooltip and task.outcome in tooltip
        assert all(path in tooltip for path in task.paths)
        assert f"duration: {task.duration_s:.2f} s" in tooltip
    # No model: no token columns, and the page says why.
    headings = [a.get("data-key") for t, a in elements.tags if t == "th"]
    assert "tokens" not in headings and 'id="no-model"' in page


def test_the_page_needs_no_network(builtin_run: Run, tmp_path: Path) -> None:
    page = write_run_report(builtin_run.ledger, tmp_path / "report.html").read_text()
    assert re.findall(r"https?://[^\s\"'<>]+", page) == ["http://www.w3.org/2000/svg"]
    for outside in ("<link", " src=", "@import", "url("):
        assert outside not in page
    assert page.count("<script>") == 1 and page.count("<style>") == 1


def test_ledger_report_pictures_the_plans_asked_for_and_replay_still_works(
    builtin_run: Run, tmp_path: Path
) -> None:
    rename_plan = next(t["plan_id"] for t in builtin_run.printed["tasks"] if t["kind"] == "rename")
    out = tmp_path / "rename.html"
    result = run_cli(
        "ledger", "report", "--workspace", str(builtin_run.workspace), "--plan", rename_plan,
        "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"run report: {out}"
    elements = Elements(out.read_text())
    assert [b["data-task"] for b in elements.having("g", "bar")] == [f"{rename_plan}.1"]
    assert [a["data-plan"] for t, a in elements.tags if t == "tr" and "data-plan" in a] == [
        rename_plan
    ]
    replay = run_cli("ledger", "replay", "--workspace", str(builtin_run.workspace), "--json")
    assert replay.returncode == 0, replay.stderr
    assert TARGET in json.loads(replay.stdout)["workspace"]["files"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--workspace", "{empty}", "--out", "{out}"], "no ledger there"),
        (["--workspace", "{ws}", "--plan", "t-nosuch", "--out", "{out}"], "no plan 't-nosuch'"),
        (["--workspace", "{ws}", "--out", "{file}/report.html"], "cannot write the report"),
        (["--workspace", "{ws}", "--out", "{empty}"], "is a folder"),
        (["--workspace", "{ws}"], "needs --out"),
    ],
    ids=["no-ledger", "unknown-plan", "unwritable", "a-folder", "no-out"],
)
def test_bad_input_is_one_clear_line_and_exit_code_2(
    builtin_run: Run, tmp_path: Path, arguments: list[str], message: str
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "a-file").write_text("not a folder\n")
    places = {
        "empty": str(tmp_path / "empty"),
        "out": str(tmp_path / "out.html"),
        "ws": str(builtin_run.workspace),
        "file": str(tmp_path / "a-file"),
    }
    result = run_cli("ledger", "report", *(a.format(**places) for a in arguments))
    assert result.returncode == 2
    assert result.stdout == "" and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert lines[0].startswith("delegation-machine ledger report: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "empty"]
    assert list((tmp_path / "empty").iterdir()) == []  # no ledger created by looking for one


def test_a_failed_supervisor_check_is_drawn_on_the_worker_that_ran_it(tmp_path: Path) -> None:
    # The sample keeps findings on purpose: a `check` over it fails, listing them.
    run = run_tasks(scratch_sample(tmp_path), "--task", "check", "--agents", "3")
    timeline = read_run_timeline(run.ledger)
    (task,) = timeline.tasks
    assert (task.kind, task.outcome, task.agent) == ("check", "failed", "builtin:supervisor")
    # The lane is the worker slot from the ledger, not something read out of the agent id.
    assert timeline.lanes == ("worker-1", "worker-2", "worker-3") and task.worker in timeline.lanes
    semgrep = next(c for c in task.checks if c.check == "semgrep")
    assert semgrep.result == "failed" and semgrep.new and "semgrep:dm-" in semgrep.detail
    assert timeline.critical_path == (task.task_id,)
    page = write_run_report(run.ledger, tmp_path / "check.html").read_text()
    elements = Elements(page)
    (bar,) = elements.having("g", "bar")
    assert bar["class"].split() == ["bar", "outcome-failed", "critical"]
    assert bar["data-worker"] == task.worker
    failed = [a for t, a in elements.tags if t == "span" and a.get("data-result") == "failed"]
    assert [a["data-check"] for a in failed] == [
        c.check for c in task.checks if c.result == "failed"
    ]
    assert all("check-failed" in a["class"].split() for a in failed)


def test_the_latest_session_is_the_default_and_interrupted_work_is_named(tmp_path: Path) -> None:
    """Events written by the engine's own task board, as an older ledger without the worker
    field, then a process that stopped mid-plan (its plan abandoned on the next start)."""
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    board = TaskBoard(ledger)
    ledger.record("swarm.started", workspace=str(tmp_path), workers=["worker-1"])
    board.add_plan("p1", DelegationRequest(instruction="fix"), "fix", [fix_spec("p1", 0)])
    board.start("p1.0", "builtin:fix@worker-1")
    board.finish("p1.0", TaskState.VERIFIED, "1 file(s) changed")
    ledger.record("swarm.started", workspace=str(tmp_path), workers=["worker-1", "worker-2"])
    board.add_plan(
        "p2", DelegationRequest(instruction="fix"), "fix", [fix_spec("p2", n) for n in range(3)]
    )
    board.start("p2.0", "builtin:fix@worker-2")
    board.finish("p2.0", TaskState.NO_CHANGE, "no change")
    board.finish("p2.1", TaskState.CANCELLED, "cancelled while waiting")
    board.start("p2.2", "builtin:fix@worker-1")
    ledger.record("plan.abandoned", task_id="p2", reason="interrupted")
    ledger.close()

    timeline = read_run_timeline(tmp_path / "ledger.sqlite3")
    assert [p.plan_id for p in timeline.plans] == ["p2"]
    assert [p.state for p in timeline.plans] == ["interrupted"]
    assert timeline.lanes == ("worker-1", "worker-2")
    got = {t.task_id: (t.outcome, t.worker, t.started) for t in timeline.tasks}
    assert got == {
        "p2.0": ("no-change", "worker-2", True),  # the worker from the agent id's suffix
        "p2.1": ("cancelled", None, False),
        "p2.2": ("interrupted", "worker-1", True),
    }
    page = write_run_report(tmp_path / "ledger.sqlite3", tmp_path / "r.html").read_text()
    elements = Elements(page)
    assert sorted(b["data-task"] for b in elements.having("g", "bar")) == ["p2.0", "p2.2"]
    assert "1 task(s) never reached a worker: p2.1 (cancelled)" in page
    both = read_run_timeline(tmp_path / "ledger.sqlite3", ["p1", "p2"])
    assert [t.task_id for t in both.tasks] == ["p1.0", "p2.0", "p2.1", "p2.2"]


def fix_spec(plan_id: str, n: int) -> TaskSpec:
    path = f"inventory/m{n}.py"
    return TaskSpec(
        task_id=f"{plan_id}.{n}", kind="fix", plan_id=plan_id, paths=(path,),
        inputs=(f"file:{path}",), outputs=(f"file:{path}",),
    )  # fmt: skip


AGENT_TURNS = [
    ScriptedTurn(content=json.dumps({"tool": "read_file", "path": TARGET})),
    ScriptedTurn(
        content=json.dumps(
            {
                "tool": "propose_edit",
                "path": TARGET,
                "old": SIGNATURE,
                "new": SIGNATURE + DOCSTRING,
                "description": "document format_money",
                "uses": [1],
            }
        )
    ),
    ScriptedTurn(content=json.dumps({"tool": "finish", "summary": "documented", "uses": [2]})),
]


def agent_then_refuse(seen: RecordedRequest) -> ScriptedTurn:
    """The agent's turns by its trace length; anything else (a planner, a reviewer) refused."""
    if "# Task " not in json.dumps(seen.body["messages"]):
        return ScriptedTurn(status=400, error="this script answers only the agent")
    steps_so_far = len(re.findall(r"^%\d+ = ", seen.body["messages"][-1]["content"], re.M))
    return AGENT_TURNS[min(steps_so_far, len(AGENT_TURNS) - 1)]


@pytest.fixture
def model_run(tmp_path: Path) -> Iterator[Run]:
    workspace = scratch_sample(tmp_path)
    server = ScriptedServer(agent_then_refuse).start()
    (workspace / ".delegation").mkdir()
    (workspace / ".delegation" / "config.toml").write_text(
        f'[inference]\nprovider = "scripted"\nbase_url = "{server.base_url}"\nmodel = "m"\n'
    )
    try:
        yield run_tasks(workspace, "--task", "document this function", "--file", TARGET)
    finally:
        server.stop()


def test_a_model_run_shows_tokens_per_agent_and_per_task(model_run: Run, tmp_path: Path) -> None:
    timeline = read_run_timeline(model_run.ledger)
    model_tasks = [t for t in timeline.tasks if t.tokens.total]
    assert [t.kind for t in model_tasks] == ["llm"]
    task = model_tasks[0]
    assert task.tokens.prompt > 0 and task.tokens.output > 0
    printed = next(t for t in model_run.printed["tasks"] if t["task_id"] == task.task_id)
    assert task.tokens.total == printed["tokens"]
    page = write_run_report(model_run.ledger, tmp_path / "model.html").read_text()
    elements = Elements(page)
    headings = [a.get("data-key") for t, a in elements.tags if t == "th"]
    assert "tokens" in headings and 'id="no-model"' not in page
    row = re.search(rf'<tr [^>]*data-task="{re.escape(task.task_id)}".*?</tr>', page)
    assert row is not None and f">{task.tokens.total:,}</td>" in row.group(0)
    agent_row = re.search(rf'<tr data-agent="{re.escape(task.agent or "")}">.*?</tr>', page)
    assert agent_row is not None and f">{task.tokens.total:,}</td>" in agent_row.group(0)

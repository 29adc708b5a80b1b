"""The run report as one self-contained HTML page, drawn from a `RunTimeline`.

Owns `render_page`. The page needs no network and no script to be read: the Gantt chart is
SVG built here (one lane per worker, one bar per task that a worker took, coloured by
outcome, the critical path outlined and linked), and the plan, agent and verdict tables are
plain HTML. The inline script only adds interaction: hovering a bar or a row highlights both,
clicking a column heading sorts the table, and `#sort=KEY` (or `#sort=-KEY`, descending) in
the address sorts the verdict table when the page loads. Every text is HTML-escaped.
"""

from __future__ import annotations

import datetime
import itertools
import math
from html import escape

from delegation_machine.server.report.timeline import (
    CheckResult,
    RunTimeline,
    TaskTimeline,
    Tokens,
)

OUTCOME_COLOURS = {
    "verified": "#2e9d58",
    "accepted": "#1d6b3d",
    "done": "#3b9fa8",
    "no-change": "#8fa3bb",
    "held": "#e3a229",
    "failed": "#d64545",
    "escalated": "#8e5cc7",
    "rejected": "#9e2f50",
    "cancelled": "#b9b9b9",
    "interrupted": "#a5672e",
    "unfinished": "#6f6f6f",
}
LABEL_WIDTH = 150
CHART_WIDTH = 920
LANE_HEIGHT = 30
BAR_HEIGHT = 18
AXIS_HEIGHT = 26
MIN_BAR_WIDTH = 2.0
TICK_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
TARGET_TICKS = 10

_CSS = """
:root { --ink: #1e2430; --muted: #5f6b7a; --rule: #d9dee5; --lane: #f4f6f9; --hl: #ffe9a8; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
  margin: 24px auto; max-width: 1120px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.meta { color: var(--muted); margin: 0; font-size: 13px; word-break: break-all; }
.figures { display: flex; flex-wrap: wrap; gap: 10px; margin: 16px 0; padding: 0; list-style: none; }
.figures li { border: 1px solid var(--rule); border-radius: 6px; padding: 6px 12px; }
.figures b { display: block; font-size: 18px; }
.legend { display: flex; flex-wrap: wrap; gap: 14px; margin: 6px 0 8px; padding: 0; list-style: none;
  font-size: 13px; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px;
  vertical-align: -1px; margin-right: 4px; }
.swatch.critical-mark { background: none; border: 2.5px solid var(--ink); }
svg#gantt { width: 100%; height: auto; display: block; font-size: 12px; }
svg#gantt .lane rect { fill: var(--lane); } svg#gantt .lane text { fill: var(--ink); }
svg#gantt .tick line { stroke: var(--rule); } svg#gantt .tick text { fill: var(--muted); }
svg#gantt .bar rect { stroke: #fff; stroke-width: 1; cursor: pointer; }
svg#gantt .bar.critical rect { stroke: var(--ink); stroke-width: 2.5; }
svg#gantt .bar.hl rect { stroke: #000; stroke-width: 3; filter: brightness(1.12); }
svg#gantt .critical-link { fill: none; stroke: var(--ink); stroke-width: 1.5;
  stroke-dasharray: 4 3; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--rule);
  vertical-align: top; }
th { background: var(--lane); position: sticky; top: 0; white-space: nowrap; }
table.sortable th { cursor: pointer; user-select: none; }
th[data-dir="asc"]::after { content: " \\25B2"; } th[data-dir="desc"]::after { content: " \\25BC"; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.hl td { background: var(--hl); }
tr.critical td:first-child { box-shadow: inset 3px 0 0 var(--ink); }
.outcome { display: inline-block; padding: 0 6px; border-radius: 3px; color: #fff;
  font-size: 12px; white-space: nowrap; }
.check { margin: 0 8px 2px 0; }
td.task, td.worker { white-space: nowrap; }
td.files code, .detail { overflow-wrap: anywhere; }
.wide { overflow-x: auto; }
.check-passed::before { content: "\\2713 "; color: #2e9d58; }
.check-failed::before { content: "\\2717 "; color: #d64545; }
.check-error::before { content: "? "; color: #8e5cc7; }
.check-baseline::before { content: "\\2717 "; color: #e3a229; }
.detail { color: var(--muted); } .none { color: var(--muted); }
.note { color: var(--muted); font-size: 13px; }
code { font-size: 12px; }
"""

_SCRIPT = """
(function () {
  "use strict";
  var rows = {}, bars = {};
  document.querySelectorAll("#verdicts tbody tr").forEach(function (r) { rows[r.dataset.task] = r; });
  document.querySelectorAll("#gantt .bar").forEach(function (b) { bars[b.dataset.task] = b; });
  function highlight(id, on) {
    if (rows[id]) rows[id].classList.toggle("hl", on);
    if (bars[id]) bars[id].classList.toggle("hl", on);
  }
  function hover(element, id) {
    element.addEventListener("mouseenter", function () { highlight(id, true); });
    element.addEventListener("mouseleave", function () { highlight(id, false); });
  }
  Object.keys(bars).forEach(function (id) {
    hover(bars[id], id);
    bars[id].addEventListener("click", function () {
      if (rows[id]) rows[id].scrollIntoView({ block: "center" });
    });
  });
  Object.keys(rows).forEach(function (id) { hover(rows[id], id); });
  function cellValue(row, index) {
    var cell = row.cells[index];
    var text = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
    var number = Number(text);
    return text !== "" && !isNaN(number) ? number : text;
  }
  function sortBy(table, index, direction) {
    var body = table.tBodies[0];
    var sorted = Array.prototype.slice.call(body.rows);
    sorted.sort(function (a, b) {
      var x = cellValue(a, index), y = cellValue(b, index);
      var order = typeof x === "number" && typeof y === "number" ? x - y
        : String(x).localeCompare(String(y), undefined, { numeric: true });
      return direction === "asc" ? order : -order;
    });
    sorted.forEach(function (row) { body.appendChild(row); });
    table.querySelectorAll("th").forEach(function (th) { delete th.dataset.dir; });
    table.tHead.rows[0].cells[index].dataset.dir = direction;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      th.addEventListener("click", function () {
        sortBy(table, index, th.dataset.dir === "asc" ? "desc" : "asc");
      });
    });
  });
  var wanted = /(?:^#|&)sort=(-?)([\\w-]+)/.exec(location.hash);
  var verdicts = document.getElementById("verdicts");
  if (wanted && verdicts) {
    var heading = verdicts.querySelector('th[data-key="' + wanted[2] + '"]');
    if (heading) sortBy(verdicts, heading.cellIndex, wanted[1] ? "desc" : "asc");
  }
  document.documentElement.dataset.interactive = "ready";
})();
"""


def render_page(run: RunTimeline, *, generated: datetime.datetime | None = None) -> str:
    """The whole page: a header with the run's figures, the schedule, tokens, verdicts."""
    when = (generated or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%d %H:%M:%S UTC")
    started = datetime.datetime.fromtimestamp(run.start_ts, datetime.UTC)
    title = f"Run report: {', '.join(p.kind for p in run.plans)}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{_CSS}{_outcome_css()}</style></head><body>",
        f"<header><h1>{escape(title)}</h1>",
        f'<p class="meta">workspace <code>{escape(run.workspace or "?")}</code> · ledger '
        f"<code>{escape(run.ledger)}</code></p>",
        f'<p class="meta">run started {started:%Y-%m-%d %H:%M:%S} UTC · page written {when}</p>',
        "</header>",
        _figures(run),
        _plans_table(run),
        _schedule(run),
        _tokens(run),
        _verdicts(run),
        f"<script>{_SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


# --- header -----------------------------------------------------------------------------------


def _figures(run: RunTimeline) -> str:
    counts: dict[str, int] = {}
    for task in run.tasks:
        counts[task.outcome] = counts.get(task.outcome, 0) + 1
    busy = sum(t.duration_s for t in run.tasks)
    capacity = run.makespan_s * max(1, len(run.lanes))
    figures = [
        ("tasks", str(len(run.tasks))),
        ("wall time", _seconds(run.makespan_s)),
        ("critical path", _seconds(run.critical_path_s)),
        ("workers", str(len(run.lanes))),
        ("workers busy", f"{100 * busy / capacity:.0f} %" if capacity > 0 else "—"),
        ("tokens", f"{run.tokens.total:,}" if run.used_a_model else "— (no model)"),
    ]
    figures += [(outcome, str(n)) for outcome, n in sorted(counts.items())]
    items = "".join(f"<li><b>{escape(v)}</b>{escape(k)}</li>" for k, v in figures)
    return f'<ul class="figures" id="figures">{items}</ul>'


def _plans_table(run: RunTimeline) -> str:
    rows = "".join(
        f'<tr data-plan="{escape(p.plan_id)}"><td><code>{escape(p.plan_id)}</code></td>'
        f"<td>{escape(p.kind)}</td><td>{escape(p.instruction)}</td>"
        f"<td>{_outcome_badge(p.state)}</td><td class=num>{p.tasks}</td>"
        f"<td class=num>{_seconds(p.submitted_s)}</td>"
        f"<td class=num>{_seconds(p.finished_s) if p.finished_s is not None else '—'}</td></tr>"
        for p in run.plans
    )
    return (
        '<h2>Plans</h2><table id="plans"><thead><tr><th>plan</th><th>kind</th>'
        "<th>instruction</th><th>outcome</th><th class=num>tasks</th>"
        "<th class=num>submitted</th><th class=num>finished</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


# --- the Gantt chart --------------------------------------------------------------------------


def _schedule(run: RunTimeline) -> str:
    present = sorted({t.outcome for t in run.tasks}, key=_outcome_order)
    legend = "".join(
        f'<li><span class="swatch outcome-{escape(o)}"></span>{escape(o)}</li>' for o in present
    )
    legend += '<li><span class="swatch critical-mark"></span>critical path</li>'
    never = [t for t in run.tasks if not t.started]
    note = ""
    if never:
        listed = ", ".join(f"{t.task_id} ({t.outcome})" for t in never[:20])
        more = f" and {len(never) - 20} more" if len(never) > 20 else ""
        note = (
            f'<p class="note" id="never-started">{len(never)} task(s) never reached a worker: '
            f"{escape(listed)}{more}.</p>"
        )
    path = " → ".join(run.critical_path) or "none (no task ran)"
    return (
        "<section><h2>Schedule</h2>"
        f'<ul class="legend">{legend}</ul>{_gantt(run)}{note}'
        f'<p class="note" id="critical-path">Critical path ({_seconds(run.critical_path_s)}): '
        f"{escape(path)}: the longest chain of tasks that wait on each other's files "
        "(their plan's tag dependencies), by measured duration.</p></section>"
    )


def _gantt(run: RunTimeline) -> str:
    span = max(run.makespan_s, 1e-3)
    scale = CHART_WIDTH / span
    lanes = list(run.lanes) or ["(no worker)"]
    height = AXIS_HEIGHT + LANE_HEIGHT * len(lanes) + 4
    width = LABEL_WIDTH + CHART_WIDTH + 10
    lane_of = {w: i for i, w in enumerate(lanes)}
    out = [
        f'<svg id="gantt" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="schedule of the run">'
    ]
    for i, worker in enumerate(lanes):
        top = AXIS_HEIGHT + i * LANE_HEIGHT
        out.append(
            f'<g class="lane" data-worker="{escape(worker)}">'
            f'<rect x="0" y="{top + 1}" width="{width}" height="{LANE_HEIGHT - 2}"/>'
            f'<text x="8" y="{top + LANE_HEIGHT / 2 + 4}">{escape(worker)}</text></g>'
        )
    out.extend(_ticks(span, scale, height))
    centres: dict[str, tuple[float, float, float]] = {}
    for task in run.tasks:
        if not task.started or task.worker not in lane_of:
            continue
        start = task.start_s or 0.0
        finish = task.finish_s if task.finish_s is not None else span
        x = LABEL_WIDTH + start * scale
        w = max(MIN_BAR_WIDTH, (finish - start) * scale)
        y = AXIS_HEIGHT + lane_of[task.worker] * LANE_HEIGHT + (LANE_HEIGHT - BAR_HEIGHT) / 2
        centres[task.task_id] = (x, x + w, y + BAR_HEIGHT / 2)
        classes = f"bar outcome-{task.outcome}" + (" critical" if task.critical else "")
        out.append(
            f'<g class="{escape(classes)}" data-task="{escape(task.task_id)}" '
            f'data-outcome="{escape(task.outcome)}" data-worker="{escape(task.worker)}">'
            f"<title>{escape(_tooltip(task))}</title>"
            f'<rect x="{x:.2f}" y="{y:.2f}" width="{w:.2f}" height="{BAR_HEIGHT}" rx="2"/></g>'
        )
    links = [centres[t] for t in run.critical_path if t in centres]
    # From the end of each critical task to the start of the next one (which waited on it).
    segments = " ".join(
        f"M{end:.2f},{y:.2f} L{start:.2f},{y_next:.2f}"
        for (_, end, y), (start, _, y_next) in itertools.pairwise(links)
    )
    if segments:
        out.append(f'<path class="critical-link" d="{segments}"/>')
    out.append("</svg>")
    return "".join(out)


def _ticks(span: float, scale: float, height: int) -> list[str]:
    step = next((s for s in TICK_STEPS if span / s <= TARGET_TICKS), TICK_STEPS[-1])
    ticks = []
    for n in range(math.floor(span / step) + 1):
        at = n * step
        x = LABEL_WIDTH + at * scale
        label = f"{at:g} s" if step < 60 else f"{at / 60:g} min"
        ticks.append(
            f'<g class="tick"><line x1="{x:.2f}" y1="{AXIS_HEIGHT - 4}" x2="{x:.2f}" '
            f'y2="{height}"/><text x="{x:.2f}" y="{AXIS_HEIGHT - 8}" '
            f'text-anchor="middle">{escape(label)}</text></g>'
        )
    return ticks


def _tooltip(task: TaskTimeline) -> str:
    lines = [
        f"{task.task_id} ({task.kind})",
        f"files: {', '.join(task.paths) or '—'}",
        f"outcome: {task.outcome}",
        f"duration: {task.duration_s:.2f} s (from {task.start_s or 0:.2f} s"
        + (f" to {task.finish_s:.2f} s)" if task.finish_s is not None else ", not finished)"),
        f"{task.worker} · {task.agent or '—'}",
    ]
    if task.changed:
        lines.append(f"changed: {', '.join(task.changed)}")
    if task.tokens.total:
        lines.append(f"tokens: {task.tokens.total:,}")
    if task.critical:
        lines.append("on the critical path")
    return "\n".join(lines)


# --- tables -----------------------------------------------------------------------------------


def _tokens(run: RunTimeline) -> str:
    model = run.used_a_model
    head = "<th>agent</th><th class=num>tasks</th><th class=num>busy</th>"
    if model:
        head += (
            "<th class=num>prompt</th><th class=num>cached</th><th class=num>output</th>"
            "<th class=num>tokens</th>"
        )
    rows = []
    for agent in run.agents:
        cells = (
            f"<td><code>{escape(agent.agent)}</code></td><td class=num>{agent.tasks}</td>"
            f'<td class=num data-sort="{agent.busy_s:.6f}">{_seconds(agent.busy_s)}</td>'
        )
        if model:
            cells += _token_cells(agent.tokens)
        rows.append(f'<tr data-agent="{escape(agent.agent)}">{cells}</tr>')
    note = (
        ""
        if model
        else '<p class="note" id="no-model">No model was used in this run: the built-in '
        "agents spend no tokens, so the token columns are left out.</p>"
    )
    return (
        f'<section><h2>Agents and tokens</h2>{note}<table id="agents" class="sortable">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def _token_cells(tokens: Tokens) -> str:
    if not tokens.total:
        return "<td class=num>—</td>" * 4
    return "".join(
        f"<td class=num>{n:,}</td>"
        for n in (tokens.prompt, tokens.cached, tokens.output, tokens.total)
    )


def _verdicts(run: RunTimeline) -> str:
    model = run.used_a_model
    keys = [
        ("task", "task", ""),
        ("kind", "kind", ""),
        ("worker", "worker", ""),
        ("files", "files", ""),
        ("outcome", "outcome", ""),
        ("checks", "checks", ""),
        ("attempts", "attempts", "num"),
        ("start", "start", "num"),
        ("duration", "duration", "num"),
    ]
    if model:
        keys.append(("tokens", "tokens", "num"))
    head = "".join(
        f'<th data-key="{k}"{f" class={c}" if c else ""}>{escape(label)}</th>'
        for k, label, c in keys
    )
    rows = "".join(_verdict_row(t, model) for t in run.tasks)
    return (
        f'<section><h2>Verdicts</h2><div class="wide"><table id="verdicts" class="sortable">'
        f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div></section>"
    )


def _verdict_row(task: TaskTimeline, model: bool) -> str:
    files = "<br>".join(
        f"<code>{escape(p)}</code>{' (changed)' if p in task.changed else ''}" for p in task.paths
    )
    extra = [p for p in task.changed if p not in task.paths]
    if extra:
        files += "<br>" if files else ""
        files += "<br>".join(f"<code>{escape(p)}</code> (changed)" for p in extra)
    checks = " ".join(_check(c) for c in task.checks) or '<span class="none">—</span>'
    start = task.start_s
    cells = [
        f'<td class="task"><code>{escape(task.task_id)}</code></td>',
        f"<td>{escape(task.kind)}</td>",
        f'<td class="worker">{escape(task.worker or "—")}</td>',
        f'<td class="files">{files or "—"}</td>',
        f'<td data-sort="{escape(task.outcome)}">{_outcome_badge(task.outcome)}</td>',
        f"<td>{checks}</td>",
        f"<td class=num>{task.attempts}</td>",
        f'<td class=num data-sort="{start if start is not None else -1:.6f}">'
        f"{_seconds(start) if start is not None else '—'}</td>",
        f'<td class=num data-sort="{task.duration_s:.6f}">'
        f"{_seconds(task.duration_s) if task.started else '—'}</td>",
    ]
    if model:
        cells.append(
            f'<td class=num data-sort="{task.tokens.total}">'
            f"{f'{task.tokens.total:,}' if task.tokens.total else '—'}</td>"
        )
    classes = f"outcome-row-{task.outcome}" + (" critical" if task.critical else "")
    return (
        f'<tr class="{escape(classes)}" data-task="{escape(task.task_id)}" '
        f'data-outcome="{escape(task.outcome)}">{"".join(cells)}</tr>'
    )


def _check(check: CheckResult) -> str:
    """A check and its result. What a check the task failed found is shown; a finding the
    code had before the task is marked "as before", and the reason of either is hover text."""
    shown = "" if check.result == "passed" else check.detail
    if not check.new:
        shown = "as before"
    detail = f' <span class="detail">({escape(shown)})</span>' if shown else ""
    hover = f' title="{escape(check.detail)}"' if check.detail and shown != check.detail else ""
    result = check.result if check.new else "baseline"
    return (
        f'<span class="check check-{escape(result)}" data-check="{escape(check.check)}" '
        f'data-result="{escape(check.result)}"{hover}>{escape(check.check)}{detail}</span>'
    )


# --- helpers ----------------------------------------------------------------------------------


def _outcome_badge(outcome: str) -> str:
    return f'<span class="outcome outcome-{escape(outcome)}">{escape(outcome)}</span>'


def _outcome_order(outcome: str) -> int:
    order = list(OUTCOME_COLOURS)
    return order.index(outcome) if outcome in order else len(order)


def _outcome_css() -> str:
    rules = []
    for outcome, colour in OUTCOME_COLOURS.items():
        rules.append(
            f".bar.outcome-{outcome} rect {{ fill: {colour}; }} "
            f".swatch.outcome-{outcome}, .outcome.outcome-{outcome} {{ background: {colour}; }}"
        )
    return "\n".join(rules)


def _seconds(value: float) -> str:
    if value >= 120:
        return f"{value / 60:.1f} min"
    return f"{value:.2f} s"

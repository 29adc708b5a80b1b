"""The run report opened in a real browser: Debian's Chromium, headless.

A real `delegation-machine run` (format every file, then a rename waiting on the formatted
files, on two workers) writes its ledger; `ledger report` draws the page; Chromium loads it
from disk and dumps the DOM after the page's script ran (`--dump-dom`), and takes screenshots
with the script and without it. The DOM must hold one lane per worker, one bar per task, the
critical path's bars marked and the verdict rows (sorted by the script when the address asks
for it); both screenshots must show each outcome's colour. They and the page are kept under
tests/artifacts/run-report/ (ignored by git) for a person to look at.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from delegation_machine.server.report import read_run_timeline
from delegation_machine.server.report.page import OUTCOME_COLOURS
from delegation_machine.server.report.timeline import RunTimeline

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "delegation_machine.server"]
ARTIFACTS = ROOT / "tests" / "artifacts" / "run-report"
WINDOW = (1280, 1500)
HEADLESS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--force-color-profile=srgb"]


@dataclass(frozen=True)
class Report:
    page: Path
    timeline: RunTimeline
    workers: int
    tasks: int


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    workspace = tmp_path_factory.mktemp("report-run") / "inventory"
    shutil.copytree(
        ROOT / "samples" / "inventory",
        workspace,
        ignore=shutil.ignore_patterns(".delegation", "__pycache__"),
    )
    rename = "rename calc_total compute_order_total"
    run = subprocess.run(
        [*CLI, "run", str(workspace), "-t", "format", "-t", rename, "--agents", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode in (0, 1), run.stdout + run.stderr
    printed = json.loads(run.stdout)
    page = workspace.parent / "report.html"
    made = subprocess.run(
        [*CLI, "ledger", "report", "--workspace", str(workspace), "--out", str(page)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    ledger = workspace / ".delegation" / "ledger.sqlite3"
    return Report(page, read_run_timeline(ledger), workers=2, tasks=len(printed["tasks"]))


class Dom(HTMLParser):
    """The dumped DOM's elements: (tag, attributes), in document order."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def with_class(self, tag: str, css_class: str) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == tag and css_class in a.get("class", "").split()]

    def verdict_rows(self) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == "tr" and "data-task" in a]


def browse(chromium: str, profile: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [chromium, *HEADLESS, f"--user-data-dir={profile}", *arguments]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def assert_draws_the_run(dom: Dom, report: Report) -> None:
    lanes = dom.with_class("g", "lane")
    assert len(lanes) == report.workers == len(report.timeline.lanes)
    bars = dom.with_class("g", "bar")
    assert len(bars) == report.tasks
    assert {b["data-worker"] for b in bars} == {lane["data-worker"] for lane in lanes}
    marked = [b["data-task"] for b in dom.with_class("g", "critical")]
    assert report.timeline.critical_path and sorted(marked) == sorted(report.timeline.critical_path)
    assert len(dom.verdict_rows()) == report.tasks


def test_chromium_renders_the_schedule_and_the_script_sorts_the_verdicts(
    chromium: str, report: Report, tmp_path: Path
) -> None:
    url = report.page.as_uri() + "#sort=-duration"
    dom = Dom(browse(chromium, tmp_path / "profile", "--dump-dom", url).stdout)
    assert_draws_the_run(dom, report)
    html = next(a for t, a in dom.elements if t == "html")
    assert html.get("data-interactive") == "ready"  # the page's script ran without an error
    durations = {t.task_id: t.duration_s for t in report.timeline.tasks}
    shown = [durations[r["data-task"]] for r in dom.verdict_rows()]
    assert shown == sorted(shown, reverse=True)
    assert shown != [t.duration_s for t in report.timeline.tasks]  # the script moved rows
    screenshot = take_screenshot(chromium, tmp_path / "profile-shot", report, "report.png")
    shutil.copyfile(report.page, ARTIFACTS / "report.html")
    assert_outcome_colours_on_screen(screenshot, report)


def test_the_page_draws_the_same_without_its_script(
    chromium: str, report: Report, tmp_path: Path
) -> None:
    """The chart is SVG in the file itself: with scripts blocked it is all there and drawn."""
    profile = profile_without_scripts(tmp_path / "profile")
    url = report.page.as_uri() + "#sort=-duration"
    dom = Dom(browse(chromium, profile, "--dump-dom", url).stdout)
    assert_draws_the_run(dom, report)
    html = next(a for t, a in dom.elements if t == "html")
    assert "data-interactive" not in html  # the script did not run, and nothing is missing
    assert [r["data-task"] for r in dom.verdict_rows()] == [
        t.task_id for t in report.timeline.tasks
    ]
    screenshot = take_screenshot(chromium, profile, report, "report-without-script.png")
    assert_outcome_colours_on_screen(screenshot, report)


def profile_without_scripts(profile: Path) -> Path:
    """A Chromium profile whose content settings block JavaScript on every page."""
    (profile / "Default").mkdir(parents=True)
    blocked = {"profile": {"default_content_setting_values": {"javascript": 2}}}
    (profile / "Default" / "Preferences").write_text(json.dumps(blocked))
    return profile


def take_screenshot(
    chromium: str, profile: Path, report: Report, name: str, *arguments: str
) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / name
    screenshot.unlink(missing_ok=True)
    browse(
        chromium,
        profile,
        *arguments,
        f"--screenshot={screenshot}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--hide-scrollbars",
        report.page.as_uri(),
    )
    print(f"run report screenshot: {screenshot}")
    return screenshot


def assert_outcome_colours_on_screen(screenshot: Path, report: Report) -> None:
    width, height, pixels = decode_png(screenshot.read_bytes())
    assert (width, height) == WINDOW
    for outcome in {t.outcome for t in report.timeline.tasks}:  # each outcome's bars, drawn
        colour = bytes.fromhex(OUTCOME_COLOURS[outcome].removeprefix("#"))
        assert pixels.count(colour) >= 200, f"no {outcome} bars ({colour.hex()}) on screen"


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and every pixel's RGB of an 8-bit RGB or RGBA, non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, idat, header = 8, b"", b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, header
    channels = 3 if colour_type == 2 else 4
    stride = width * channels
    raw = zlib.decompress(idat)
    previous = bytearray(stride)
    pixels: list[bytes] = []
    for row in range(height):
        start = row * (stride + 1)
        line = bytearray(raw[start + 1 : start + 1 + stride])
        unfilter(raw[start], line, previous, channels)
        pixels.extend(bytes(line[i : i + 3]) for i in range(0, stride, channels))
        previous = line
    return width, height, pixels


def unfilter(kind: int, line: bytearray, previous: bytearray, step: int) -> None:
    """Undo one scanline's PNG filter in place (None, Sub, Up, Average, Paeth)."""
    for i in range(len(line)):
        left = line[i - step] if i >= step else 0
        up = previous[i]
        corner = previous[i - step] if i >= step else 0
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + up) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            estimate = left + up - corner
            distances = (abs(estimate - left), abs(estimate - up), abs(estimate - corner))
            nearest = (left, up, corner)[distances.index(min(distances))]
            line[i] = (line[i] + nearest) & 0xFF

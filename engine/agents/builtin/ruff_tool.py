"""ruff as a text-to-text function: safe lint fixes and formatting of file texts.

Owns the ruff command lines. One text goes through stdin: ruff finds the workspace's own
configuration from `--stdin-filename` (run with the workspace root as cwd), so the user's rule
selection, line length and exclusions apply. Many texts go through one ruff run over a private
copy (`ruff_texts`): the texts and the workspace's ruff configuration files along their paths
(`pyproject.toml`, `ruff.toml`, `.ruff.toml`) are written at the same relative places in a
scratch folder, every other entry of the folders on the way linked to the workspace's own (so
ruff sees the same modules when it sorts imports), so ruff resolves the same settings and
exclusions, and one process start serves
the whole batch instead of one per file (a process start costs more than formatting a file).
A configuration that reaches outside its own file (`extend`) cannot be copied faithfully, so
such a workspace is served file by file through stdin. Only safe fixes: `--unsafe-fixes` is
never passed (a workspace may opt in through its own config).
"""

from __future__ import annotations

import os
import re
import shutil
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from delegation_machine.engine.agents.base import AgentFailure
from delegation_machine.engine.agents.builtin.tools import last_lines, locate_tool, run_tool
from delegation_machine.engine.config import STATE_DIR_NAME
from delegation_machine.engine.state.scratch import make_scratch_dir

RuffMode = Literal["format", "fix"]
RUFF_CONFIG_NAMES = ("pyproject.toml", "ruff.toml", ".ruff.toml")
# Paths per ruff run: far below any command-line limit, and a run stays a few seconds long.
MAX_FILES_PER_RUN = 400
_ARGS: dict[RuffMode, list[str]] = {
    "format": ["format", "--no-cache", "--force-exclude"],
    "fix": ["check", "--fix-only", "--exit-zero", "--no-cache", "--force-exclude"],
}
_PARSE_FAILURE = re.compile(
    r"^error: Failed to parse (?P<path>.+?):(?P<line>\d+):\d+: (?P<why>.*)$"
)


class UnparsableFile(AgentFailure):
    """The file is not valid Python, so a tool refused it; `path` names it."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"{path} is not valid Python, so it was left unchanged: {detail}")
        self.path = path


@dataclass
class RuffOutput:
    """Per relative path ruff's output text, or (`unparsable`) why ruff could not parse it."""

    texts: dict[str, str] = field(default_factory=dict)
    unparsable: dict[str, UnparsableFile] = field(default_factory=dict)
    runs: int = 0  # ruff processes started


async def ruff_safe_fixes(text: str, rel: str, root: Path, timeout_s: float = 60.0) -> str:
    """`text` with ruff's safe fixes applied (the workspace's rule selection)."""
    argv = [locate_tool("ruff"), *_ARGS["fix"], "--stdin-filename", rel, "-"]
    done = await run_tool(argv, cwd=root, stdin_text=text, timeout_s=timeout_s)
    if done.returncode != 0:
        raise AgentFailure(f"ruff check failed on {rel}: {last_lines(done.stderr)}")
    # ruff echoes excluded files unchanged, so an empty answer means "everything was removed".
    return done.stdout


async def ruff_format(text: str, rel: str, root: Path, timeout_s: float = 60.0) -> str:
    """`text` formatted by `ruff format` with the workspace's settings."""
    argv = [locate_tool("ruff"), *_ARGS["format"], "--stdin-filename", rel, "-"]
    done = await run_tool(argv, cwd=root, stdin_text=text, timeout_s=timeout_s)
    if done.returncode == 2 and "parse" in done.stderr.lower():
        raise UnparsableFile(rel, last_lines(done.stderr, 2))
    if done.returncode != 0:
        raise AgentFailure(f"ruff format failed on {rel}: {last_lines(done.stderr)}")
    return done.stdout


async def ruff_texts(
    mode: RuffMode, texts: Mapping[str, str], root: Path, timeout_s: float = 60.0
) -> RuffOutput:
    """ruff's formatting (`format`) or safe fixes (`fix`) of every text, keyed like `texts`
    (workspace-relative paths); a text ruff cannot parse is in `unparsable`, not `texts`."""
    output = RuffOutput()
    configs = _config_files(root, texts)
    if len(texts) == 1 or configs is None:
        for rel, text in texts.items():
            output.runs += 1
            try:
                if mode == "format":
                    output.texts[rel] = await ruff_format(text, rel, root, timeout_s)
                else:
                    output.texts[rel] = await ruff_safe_fixes(text, rel, root, timeout_s)
            except UnparsableFile as exc:
                output.unparsable[rel] = exc
        return output
    names = list(texts)
    for start in range(0, len(names), MAX_FILES_PER_RUN):
        part = {rel: texts[rel] for rel in names[start : start + MAX_FILES_PER_RUN]}
        await _ruff_in_copy(mode, part, configs, root, timeout_s, output)
    return output


async def _ruff_in_copy(
    mode: RuffMode,
    texts: Mapping[str, str],
    configs: list[str],
    root: Path,
    timeout_s: float,
    output: RuffOutput,
) -> None:
    folder = make_scratch_dir("dm-ruff-")
    try:
        _mirror_around(folder, root, texts)
        for rel in configs:
            shutil.copyfile(root / rel, _inside(folder, rel))
        for rel, text in texts.items():
            _inside(folder, rel).write_bytes(text.encode("utf-8"))
        argv = [locate_tool("ruff"), *_ARGS[mode], "--", *texts]
        done = await run_tool(argv, cwd=folder, timeout_s=timeout_s)
        output.runs += 1
        refused: dict[str, UnparsableFile] = {}
        for line in done.stderr.splitlines():
            failure = _PARSE_FAILURE.match(line.strip())
            if failure is not None and failure["path"] in texts:
                where = f"line {failure['line']}: {failure['why']}"
                refused[failure["path"]] = UnparsableFile(failure["path"], where)
        # exit 2 with only parse failures: the other files were still formatted
        if done.returncode != 0 and not (done.returncode == 2 and refused):
            raise AgentFailure(f"ruff {mode} failed: {last_lines(done.stderr)}")
        for rel in texts:
            if rel in refused:
                output.unparsable[rel] = refused[rel]
            else:
                output.texts[rel] = _inside(folder, rel).read_bytes().decode("utf-8")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _mirror_around(folder: Path, root: Path, texts: Mapping[str, str]) -> None:
    """The folders along the texts' paths, made real in `folder`, with every other entry of
    them linked to the workspace's own: ruff decides what is first-party (and so how imports
    sort) by which modules exist, so the copy must show the modules the batch does not hold.
    ruff only reads and writes the paths it is given, never what the links point to; the
    configuration files are copied instead (linked, ruff would resolve them to the workspace
    and match its exclusions against the wrong root)."""
    folders = {PurePosixPath()}
    for rel in texts:
        _inside(folder, rel)  # refuses a path outside the workspace before anything is made
        folders.update(PurePosixPath(rel).parents)
    for inner in sorted(folders):
        (folder / inner).mkdir(parents=True, exist_ok=True)
    for inner in folders:
        try:
            entries = list(os.scandir(root / inner))
        except OSError:  # a folder only the texts have (new files): nothing to show beside
            continue
        for entry in entries:
            beside = inner / entry.name
            if (
                beside in folders
                or beside.as_posix() in texts
                or entry.name in RUFF_CONFIG_NAMES
                or beside.as_posix() == STATE_DIR_NAME
            ):
                continue
            os.symlink(entry.path, folder / beside)


def _inside(folder: Path, rel: str) -> Path:
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise AgentFailure(f"refusing path {rel!r}: paths must stay inside the workspace")
    return folder.joinpath(*pure.parts)


def _config_files(root: Path, texts: Mapping[str, str]) -> list[str] | None:
    """The workspace's ruff configuration files along the texts' paths (relative), or None
    when one of them cannot be copied faithfully (it extends another file, or is not TOML:
    ruff itself then reports it, through the per-file path)."""
    folders = {PurePosixPath()}
    for rel in texts:
        parents = PurePosixPath(rel).parents
        folders.update(parents)
    found = []
    for folder in sorted(folders):
        for name in RUFF_CONFIG_NAMES:
            candidate = root / folder / name
            if not candidate.is_file():
                continue
            try:
                data = tomllib.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                return None
            settings = data.get("tool", {}).get("ruff", {}) if name == "pyproject.toml" else data
            if isinstance(settings, dict) and "extend" in settings:
                return None
            found.append((folder / name).as_posix())
    return found

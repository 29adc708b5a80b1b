"""The LLM agent's tools and the action schema the model must answer in.

Owns the `AgentAction` tagged union (read_symbol, read_file, search_symbols, search, recall,
propose_edit, run_checks, finish), its JSON schema for guided decoding, and `AgentToolbox`,
which executes actions against the agent's snapshot. A whole-file read larger than the funnel
budget goes through the context funnel with the task's goal as hint; `search` goes through the
retrieval router (the graph for structural questions, BM25 and vectors for the rest); `recall`
pages a masked tool output back in from working memory. Invariants: tools read only the
snapshot given in `AgentWork` (or `work.read_file`), edits go to private working copies and
leave the toolbox only as Mutations against the snapshot's versions; no tool writes a file.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any, Union

import msgspec

from delegation_machine.engine.agents.base import AgentWork, FileVersion, edits_from_texts
from delegation_machine.engine.inference.tokens import ApproxTokenizer
from delegation_machine.engine.memory.funnel import ChunkScorer, funnel
from delegation_machine.engine.memory.graph import RepoGraph
from delegation_machine.engine.memory.occurrence import SymbolOccurrence
from delegation_machine.engine.memory.parsing import language_for_path
from delegation_machine.engine.memory.repomap import build_repo_map
from delegation_machine.engine.memory.retrieval import RetrievalRouter, answer_lines
from delegation_machine.engine.memory.symbols import SymbolIndex
from delegation_machine.engine.memory.working import EpisodicStore, PageNotFound
from delegation_machine.engine.protocol import Mutation, Verdict
from delegation_machine.engine.state.types import StateError

MAX_OBSERVATION_CHARS = 6000


# Every string and array the model writes is bounded, so guided decoding cannot ramble and a
# reply that exceeds a bound fails the gate naming the field (decision 130).
MAX_THOUGHT_CHARS = 400
MAX_NAME_CHARS = 200
MAX_PATH_CHARS = 300
MAX_QUESTION_CHARS = 400
MAX_EDIT_CHARS = 4000  # `old` and `new` of one edit; larger changes are several edits
MAX_SUMMARY_CHARS = 1000
MAX_USES = 16

Thought = Annotated[str, msgspec.Meta(max_length=MAX_THOUGHT_CHARS)]
Name = Annotated[str, msgspec.Meta(max_length=MAX_NAME_CHARS)]
WorkspacePath = Annotated[str, msgspec.Meta(max_length=MAX_PATH_CHARS)]
Question = Annotated[str, msgspec.Meta(max_length=MAX_QUESTION_CHARS)]
EditText = Annotated[str, msgspec.Meta(max_length=MAX_EDIT_CHARS)]
Summary = Annotated[str, msgspec.Meta(max_length=MAX_SUMMARY_CHARS)]
Line = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
Limit = Annotated[int, msgspec.Meta(ge=1, le=50)]
StepUses = Annotated[
    tuple[Annotated[int, msgspec.Meta(ge=0)], ...], msgspec.Meta(max_length=MAX_USES)
]


class _Action(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="tool", forbid_unknown_fields=True
):
    thought: Thought = ""
    uses: StepUses = ()  # SSA: numbers of earlier steps this action relies on


class ReadSymbol(_Action, tag="read_symbol", frozen=True):
    """Read the definition(s) of a symbol (function, class, variable) by name."""

    name: Name


class ReadFile(_Action, tag="read_file", frozen=True):
    """Read lines [start_line, end_line] (1-based, inclusive) of a workspace file."""

    path: WorkspacePath
    start_line: Line = 1
    end_line: Line | None = None


class SearchSymbols(_Action, tag="search_symbols", frozen=True):
    """List symbols whose names contain `query` (case-insensitive), with where they are defined."""

    query: Name
    limit: Limit = 20


class Search(_Action, tag="search", frozen=True):
    """Ask about the code in words: "who calls f", "what depends on the storage module",
    "what does checkout import", "where is X defined", or describe what you look for."""

    question: Question
    limit: Limit = 10


class Recall(_Action, tag="recall", frozen=True):
    """Bring back in full a tool output shown as "[... output omitted ...; recall handle H]"."""

    handle: Name


class ProposeEdit(_Action, tag="propose_edit", frozen=True):
    """Replace the exact text `old` (must occur once) with `new` in `path`.

    An empty `old` on a file that does not exist creates it with `new`.
    """

    path: WorkspacePath
    old: EditText
    new: EditText
    description: Question = ""


class RunChecks(_Action, tag="run_checks", frozen=True):
    """Run the quick checks (syntax, semgrep) on the files edited so far."""


class Finish(_Action, tag="finish", frozen=True):
    """The task is done (or cannot be done): say what was changed and why."""

    summary: Summary


AgentAction = Union[  # noqa: UP007
    ReadSymbol, ReadFile, SearchSymbols, Search, Recall, ProposeEdit, RunChecks, Finish
]
ACTION_TYPES: tuple[type[_Action], ...] = (
    ReadSymbol,
    ReadFile,
    SearchSymbols,
    Search,
    Recall,
    ProposeEdit,
    RunChecks,
    Finish,
)


def action_schema() -> dict[str, Any]:
    return msgspec.json.schema(AgentAction)  # type: ignore[arg-type]


def tool_reference() -> str:
    """The tool list for the constitution: identical for every agent (part of the prefix)."""
    lines = ["Actions (reply with one JSON object; the `tool` field picks the action):"]
    for action in ACTION_TYPES:
        tag = action.__struct_config__.tag
        fields = [f for f in action.__struct_fields__ if f not in ("thought", "uses")]
        doc = " ".join((action.__doc__ or "").split())
        shape = ", ".join([f'"tool": "{tag}"', *(f'"{f}": ...' for f in fields)])
        lines.append(f"- {{{shape}}}: {doc}")
    lines.append(
        'Every action may carry "thought" (one sentence) and "uses": the numbers of earlier '
        "trace steps (%N) it relies on. Old outputs are shown as a placeholder with a recall "
        "handle (recall brings one back), or dropped when no step uses them."
    )
    return "\n".join(lines)


Checker = Callable[[Mapping[str, str], Sequence[str]], Awaitable[list[Verdict]]]


def _clip(text: str) -> str:
    if len(text) <= MAX_OBSERVATION_CHARS:
        return text
    return text[:MAX_OBSERVATION_CHARS] + f"\n… ({len(text) - MAX_OBSERVATION_CHARS} chars cut)"


def _numbered(text: str, start_line: int, end_line: int | None) -> str:
    lines = text.splitlines()
    first = max(1, start_line)
    last = min(len(lines), end_line if end_line is not None else len(lines))
    return "\n".join(f"{n:>5}  {lines[n - 1]}" for n in range(first, last + 1))


class AgentToolbox:
    """Executes actions for one agent run; owns that run's working copies."""

    def __init__(
        self,
        work: AgentWork,
        *,
        checker: Checker | None = None,
        memory: EpisodicStore | None = None,
        scorer: ChunkScorer | None = None,
    ) -> None:
        self.work = work
        self.checker = checker
        self.memory = memory  # where masked tool outputs wait for `recall`
        self.scorer = scorer  # MiniLM for the funnel, when the embeddings extra is wanted
        self._router: RetrievalRouter | None = None
        self._base: dict[str, FileVersion] = dict(work.files)
        self._working: dict[str, str] = {}
        self._descriptions: dict[str, list[str]] = {}
        self.tool_calls = 0
        self.last_verdicts: list[Verdict] = []

    # --- reading ------------------------------------------------------------------------------

    def base_file(self, path: str) -> FileVersion | None:
        found = self._base.get(path)
        if found is None and self.work.read_file is not None:
            try:
                found = self.work.read_file(path)
            except StateError:  # outside the workspace, binary, huge: as good as absent
                return None
            if found is not None:
                self._base[path] = found
        return found

    def current_text(self, path: str) -> str | None:
        if path in self._working:
            return self._working[path]
        base = self.base_file(path)
        return base.text if base else None

    async def execute(self, action: _Action) -> str:
        self.tool_calls += 1
        if isinstance(action, ReadSymbol):
            return _clip(self.read_symbol(action.name))
        if isinstance(action, ReadFile):
            return _clip(self.read_file(action.path, action.start_line, action.end_line))
        if isinstance(action, SearchSymbols):
            return _clip(self.search_symbols(action.query, action.limit))
        if isinstance(action, Search):
            return _clip(self.search(action.question, action.limit))
        if isinstance(action, Recall):
            return _clip(self.recall(action.handle))
        if isinstance(action, ProposeEdit):
            return self.propose_edit(action.path, action.old, action.new, action.description)
        if isinstance(action, RunChecks):
            return _clip(await self.run_checks())
        return ""

    def read_file(self, path: str, start_line: int = 1, end_line: int | None = None) -> str:
        text = self.current_text(path)
        if text is None:
            return f"error: no file {path!r} in this task's snapshot"
        region = _funnel_region(path, text, start_line, end_line, self.work, self.scorer)
        return region if region is not None else _numbered(text, start_line, end_line)

    def search(self, question: str, limit: int = 10) -> str:
        """The retrieval router's answer: route, then one line per place."""
        index = self.work.index
        if index is None:
            return "no symbol index is available in this run; use read_file"
        if self._router is None or self._router.index is not index:
            self._router = RetrievalRouter(index, use_vectors=self.scorer is not None)
        return "\n".join(answer_lines(self._router.ask(question, limit=max(1, min(limit, 50)))))

    def recall(self, handle: str) -> str:
        """A masked tool output, whole again (it is masked again once it is old)."""
        if self.memory is None:
            return "error: working memory is off in this run; nothing was masked"
        try:
            page = self.memory.get(handle.strip())
        except PageNotFound:
            return f"error: no masked output has handle {handle!r}"
        return f"(recalled {page.source} output of step {page.turn})\n{page.content}"

    def read_symbol(self, name: str) -> str:
        index = self.work.index
        if index is None:
            return self._grep_definitions(name)
        definitions = index.definitions(name)
        if not definitions:
            return f"no definition of {name!r} found (try search_symbols)"
        parts = []
        for occurrence in definitions[:5]:
            text = self.current_text(occurrence.path)
            if text is None:
                continue
            start, end = _definition_lines(index, occurrence, text)
            parts.append(f"{occurrence.path}:{start}-{end}\n{_numbered(text, start, end)}")
        return "\n\n".join(parts) or f"definition of {name!r} is in a file this task cannot read"

    def _grep_definitions(self, name: str) -> str:
        hits = []
        for path, version in self._base.items():
            for number, line in enumerate(version.text.splitlines(), start=1):
                stripped = line.lstrip()
                if stripped.startswith((f"def {name}(", f"class {name}", f"async def {name}(")):
                    hits.append(f"{path}:{number}: {stripped}")
        return "\n".join(hits) or f"no definition of {name!r} found"

    def search_symbols(self, query: str, limit: int = 20) -> str:
        index = self.work.index
        if index is None:
            return "no symbol index is available in this run; use read_file"
        needle = query.lower()
        rows = []
        for name in sorted(n for n in index.names() if needle in n.lower()):
            for occurrence in index.definitions(name)[:3]:
                kind = occurrence.symbol_kind or "symbol"
                rows.append(f"{name} ({kind}) {occurrence.path}:{occurrence.span.start.line + 1}")
            if len(rows) >= limit:
                break
        return "\n".join(rows[:limit]) or f"no symbol matches {query!r}"

    # --- writing ------------------------------------------------------------------------------

    def propose_edit(self, path: str, old: str, new: str, description: str = "") -> str:
        if path.startswith("/") or ".." in path.split("/") or "\\" in path:
            return f"error: {path!r} is not a workspace-relative path"
        text = self.current_text(path)
        if text is None:
            if old:
                return f"error: no file {path!r}; to create it, give an empty `old`"
            updated = new
        else:
            count = text.count(old) if old else 0
            if count != 1:
                where = "does not occur" if count == 0 else f"occurs {count} times"
                return f"error: `old` {where} in {path}; quote a unique exact excerpt"
            updated = text.replace(old, new, 1)
        self._working[path] = updated
        self._descriptions.setdefault(path, []).append(description or "edit")
        return f"ok: {path} edited ({len(old)} chars replaced by {len(new)})"

    async def run_checks(self) -> str:
        changed = sorted(self._working)
        if not changed:
            return "nothing edited yet"
        if self.checker is None:
            return (
                "checks are not available in this run; the supervisor will check after you finish"
            )
        files = {p: self.current_text(p) or "" for p in changed}
        self.last_verdicts = await self.checker(files, changed)
        lines = []
        for verdict in self.last_verdicts:
            lines.append(f"{verdict.check}: {verdict.kind} {verdict.reason}".rstrip())
            for finding in verdict.findings[:10]:
                line = finding.span.start.line + 1
                lines.append(f"  {finding.path}:{line} {finding.code}: {finding.message}")
        return "\n".join(lines) or "no checks ran"

    def mutations(self, task_id: str, agent_id: str) -> tuple[Mutation, ...]:
        result = []
        for path in sorted(self._working):
            base = self.base_file(path)
            before, version = (base.text, base.version) if base else ("", 0)
            edits = edits_from_texts(before, self._working[path])
            if edits:
                description = "; ".join(self._descriptions.get(path, []))
                result.append(Mutation(task_id, agent_id, path, version, edits, description))
        return tuple(result)


def _definition_lines(
    index: SymbolIndex, occurrence: SymbolOccurrence, text: str
) -> tuple[int, int]:
    """1-based lines of the scope a definition opens, or a few lines around it."""
    line = occurrence.span.start.line + 1
    scopes = index.scopes(occurrence.path)
    data = text.encode("utf-8")
    name_byte = len(text[: occurrence.start].encode("utf-8"))
    for scope in scopes:
        if scope.name_start_byte == name_byte:
            start = data[: scope.start_byte].count(b"\n") + 1
            end = data[: scope.end_byte].count(b"\n") + 1
            return start, end
    return line, min(len(text.splitlines()), line + 20)


FUNNEL_TOKEN_BUDGET = 1600
_COUNT_TOKENS = ApproxTokenizer().count


def _funnel_region(
    path: str,
    text: str,
    start_line: int,
    end_line: int | None,
    work: AgentWork,
    scorer: ChunkScorer | None = None,
) -> str | None:
    """A whole file over FUNNEL_TOKEN_BUDGET tokens, read through the context funnel.

    The hint is the task's goal and instruction. Explicit line ranges are always read exactly;
    so are files that fit the budget and files of a language the funnel has no grammar for.
    A fault inside the funnel propagates: it is a bug to fix, not a reason to read less.
    """
    if end_line is not None or start_line > 1 or language_for_path(path) is None:
        return None
    if _COUNT_TOKENS(text) <= FUNNEL_TOKEN_BUDGET:
        return None
    goal = work.package.goal
    hint = " ".join([goal.text, *goal.symbols, work.package.manifest.instruction])
    result = funnel(text, hint, path=path, token_budget=FUNNEL_TOKEN_BUDGET, scorer=scorer)
    return (
        f"(context funnel: {result.omitted_lines} of {result.total_lines} lines omitted, "
        f"{result.output_tokens} of {result.input_tokens} tokens; read_file with "
        f"start_line/end_line shows any region exactly)\n{result.text}"
    )


REPO_MAP_TOKEN_BUDGET = 4096
# The repo map's share of a known context window: on a small model (2,048 tokens) the map is
# cut to what leaves room for the task and the reply, the same for every agent and the planner.
REPO_MAP_WINDOW_SHARE = 0.125


def repo_map_budget(window_tokens: int | None) -> int:
    """Tokens the repo map of the shared prefix may take in a window of `window_tokens`."""
    if window_tokens is None:
        return REPO_MAP_TOKEN_BUDGET
    return max(64, min(REPO_MAP_TOKEN_BUDGET, int(window_tokens * REPO_MAP_WINDOW_SHARE)))


def workspace_repo_map(
    index: SymbolIndex | None = None,
    workspace_files: Sequence[str] | None = None,
    max_lines: int = 400,
    token_budget: int = REPO_MAP_TOKEN_BUDGET,
) -> str:
    """A deterministic outline of the definitions per file: the repo map of the shared prefix.

    The planner and every agent call this with the same index at one workspace version, so
    they render the same bytes.
    """
    ranked = _ranked_repo_map(index, token_budget)
    if ranked is not None:
        return ranked
    lines: list[str] = []
    if index is not None:
        for path in sorted(index.files()):
            defs = [
                o
                for o in index.file_occurrences(path)
                if o.kind == "definition" and o.symbol_kind in ("function", "class", "method")
            ]
            lines.append(path)
            lines.extend(
                f"  {o.symbol_kind} {o.container + '.' if o.container else ''}{o.name} "
                f"(line {o.span.start.line + 1})"
                for o in defs
            )
    elif workspace_files is not None:
        lines.extend(sorted(workspace_files))
    else:
        # Never fall back to the task's own files: the map is part of the shared prefix.
        lines.append("(no repository map in this run)")
    total = len(lines)
    kept = min(total, max_lines)
    while kept > 0 and _COUNT_TOKENS("\n".join(lines[:kept])) > token_budget:
        kept = kept * 3 // 4  # a whole listing over the budget: keep its head
    if kept < total:
        lines = [*lines[:kept], f"… {total - kept} more lines"]
    return "\n".join(lines)


def _ranked_repo_map(index: SymbolIndex | None, token_budget: int) -> str | None:
    """The PageRank repo map with no focus (identical for every task); None when empty."""
    if index is None:
        return None
    built = build_repo_map(RepoGraph(index), focus=(), token_budget=token_budget)
    return built.text or None


def fallback_repo_map(work: AgentWork, token_budget: int = REPO_MAP_TOKEN_BUDGET) -> str:
    """The repo map for an agent run: from its index, else the workspace file list."""
    listing = work.list_workspace_files() if work.list_workspace_files is not None else None
    return workspace_repo_map(work.index, listing, token_budget=token_budget)

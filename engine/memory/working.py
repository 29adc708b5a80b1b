"""Working memory: an agent's context as pages under a token budget, with observation masking.

Owns one agent's resident pages, the episodic store that paged-out pages go to (each behind a
handle that brings it back), the 70% warning and the 100% flush, and observation masking:
tool outputs older than the last `window` turns become a placeholder naming their line count
and handle. The masking boundary moves in steps of `step` turns, so between steps the masked
prompt only grows at its end and a prefix cache keeps serving it. Before outputs are masked,
the key facts in them are appended to the task's MEMORY.md. Invariant: nothing is dropped;
every page-out is recoverable through its handle.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import msgspec

from delegation_machine.engine.inference.tokens import ApproxTokenizer

TokenCounter = Callable[[str], int]
_DEFAULT_COUNTER = ApproxTokenizer().count

PageKind = Literal["observation", "file", "note", "summary"]


class PageNotFound(KeyError):
    """No page with this handle was ever paged out to the store."""


class MemoryBudgetError(ValueError):
    """A page alone is larger than the whole budget; it cannot be paged in."""


class Page(msgspec.Struct, frozen=True):
    """One unit of context: a tool output, a file view, a note. `handle` names it forever."""

    handle: str
    source: str
    content: str
    tokens: int
    turn: int = 0
    kind: PageKind = "observation"

    @property
    def line_count(self) -> int:
        return self.content.count("\n") + (0 if self.content.endswith("\n") else 1)


class BudgetSignal(msgspec.Struct, frozen=True):
    """Said when usage crosses 70% ("warning") or reaches the budget ("flush")."""

    kind: Literal["warning", "flush"]
    used_tokens: int
    budget_tokens: int
    paged_out: tuple[str, ...] = ()


def page_handle(source: str, content: str, turn: int) -> str:
    digest = hashlib.sha256(f"{source}\0{turn}\0{content}".encode()).hexdigest()
    return f"pg-{digest[:16]}"


class EpisodicStore:
    """Where paged-out pages live: in memory, and as JSON files when given a directory."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self._pages: dict[str, Page] = {}
        self._lock = threading.Lock()

    def put(self, page: Page) -> str:
        with self._lock:
            self._pages[page.handle] = page
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            target = self.directory / f"{page.handle}.json"
            temporary = target.with_suffix(".tmp")
            temporary.write_bytes(msgspec.json.encode(page))
            temporary.replace(target)
        return page.handle

    def get(self, handle: str) -> Page:
        with self._lock:
            page = self._pages.get(handle)
        if page is not None:
            return page
        if self.directory is not None and re.fullmatch(r"pg-[0-9a-f]{16}", handle):
            path = self.directory / f"{handle}.json"
            if path.exists():
                return msgspec.json.decode(path.read_bytes(), type=Page)
        raise PageNotFound(handle)

    def __contains__(self, handle: object) -> bool:
        try:
            self.get(str(handle))
        except PageNotFound:
            return False
        return True


# --- key facts and MEMORY.md ------------------------------------------------------------------

_FACT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "failure",
        re.compile(r"\b(error|failed|failure|traceback|exception|fatal)\b", re.IGNORECASE),
    ),
    ("success", re.compile(r"\b(passed|succeeded|success|ok\b|done\b|fixed)", re.IGNORECASE)),
    (
        "configuration",
        re.compile(
            r"^\s*[\w.\-\[\]\"']+\s*[=:]\s*\S|\b[\w.\-]+\s*=\s*\S"
            r"|\b(config\w*|settings?|version|found|requires?)\b",
            re.IGNORECASE,
        ),
    ),
)
_FACTS_PER_PAGE = 4


class KeyFact(msgspec.Struct, frozen=True):
    kind: str
    text: str
    source: str
    turn: int


def key_facts(page: Page, limit: int = _FACTS_PER_PAGE) -> list[KeyFact]:
    """The lines of a page that record a failure, a success or a configuration found.

    At most two lines of each kind and `limit` in all, failures first.
    """
    facts: list[KeyFact] = []
    seen: set[str] = set()
    for kind, pattern in _FACT_PATTERNS:
        of_kind = 0
        for line in page.content.splitlines():
            text = line.strip()
            if of_kind == 2 or len(facts) == limit:
                break
            if text and text not in seen and pattern.search(text):
                seen.add(text)
                facts.append(KeyFact(kind, text[:200], page.source, page.turn))
                of_kind += 1
    return facts


def memory_file_path(workspace: Path, task_id: str) -> Path:
    """`<workspace>/.delegation/tasks/<task_id>/MEMORY.md`; the task id must be a plain name."""
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", task_id) or task_id in (".", ".."):
        raise ValueError(f"task id {task_id!r} cannot name a folder")
    return workspace / ".delegation" / "tasks" / task_id / "MEMORY.md"


def append_memory(path: Path, pages: Sequence[Page]) -> list[KeyFact]:
    """Pre-compaction flush: append the key facts of pages about to leave the context."""
    facts = [fact for page in pages for fact in key_facts(page)]
    if not pages:
        return facts
    path.parent.mkdir(parents=True, exist_ok=True)
    new_file = not path.exists()
    lines: list[str] = ["# Task memory", ""] if new_file else []
    for page in pages:
        page_facts = [f for f in facts if f.source == page.source and f.turn == page.turn]
        lines.append(f"## turn {page.turn}: {page.source} ({page.line_count} lines, {page.handle})")
        lines.extend(f"- {fact.kind}: {fact.text}" for fact in page_facts)
        if not page_facts:
            lines.append("- (no key facts)")
        lines.append("")
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return facts


# --- the paged context --------------------------------------------------------------------


class WorkingMemory:
    """One agent's context: resident pages within `budget_tokens`.

    `page_in` adds a page; crossing `warn_ratio` of the budget signals a warning, reaching the
    budget flushes: key facts go to MEMORY.md, then the oldest pages go to the store until
    usage is back under `warn_ratio`. `recall(handle)` pages one back in.
    """

    def __init__(
        self,
        budget_tokens: int,
        store: EpisodicStore | None = None,
        *,
        memory_file: Path | None = None,
        warn_ratio: float = 0.7,
        count_tokens: TokenCounter = _DEFAULT_COUNTER,
        on_signal: Callable[[BudgetSignal], None] | None = None,
    ) -> None:
        if budget_tokens <= 0:
            raise ValueError(f"budget_tokens must be positive, got {budget_tokens}")
        if not 0 < warn_ratio < 1:
            raise ValueError(f"warn_ratio must be in (0, 1), got {warn_ratio}")
        self.budget_tokens = budget_tokens
        self.store = store if store is not None else EpisodicStore()
        self.memory_file = memory_file
        self.warn_ratio = warn_ratio
        self.count_tokens = count_tokens
        self.on_signal = on_signal
        self._resident: dict[str, Page] = {}
        self._warned = False
        self.signals: list[BudgetSignal] = []

    @property
    def used_tokens(self) -> int:
        return sum(page.tokens for page in self._resident.values())

    def resident(self) -> list[Page]:
        """Pages in context, oldest first."""
        return list(self._resident.values())

    def page_in(
        self, content: str, source: str, *, turn: int = 0, kind: PageKind = "observation"
    ) -> Page:
        tokens = self.count_tokens(content)
        if tokens > self.budget_tokens:
            raise MemoryBudgetError(
                f"page from {source} is {tokens} tokens, more than the whole budget "
                f"({self.budget_tokens}); funnel or split it first"
            )
        page = Page(page_handle(source, content, turn), source, content, tokens, turn, kind)
        self._resident.pop(page.handle, None)
        self._resident[page.handle] = page
        self._check_budget(keep=page.handle)
        return page

    def page_out(self, handle: str) -> str:
        """Move a resident page to the store; returns the placeholder that stands for it."""
        page = self._resident.pop(handle, None)
        if page is None:
            raise PageNotFound(handle)
        self.store.put(page)
        if self.used_tokens < self.warn_ratio * self.budget_tokens:
            self._warned = False
        return placeholder(page)

    def recall(self, handle: str) -> Page:
        """Bring a paged-out page back into context (it may push older pages out)."""
        page = self.store.get(handle)
        return self.page_in(page.content, page.source, turn=page.turn, kind=page.kind)

    def _check_budget(self, keep: str) -> None:
        used = self.used_tokens
        if used >= self.budget_tokens:
            self._flush(keep)
        elif used >= self.warn_ratio * self.budget_tokens and not self._warned:
            self._warned = True
            self._signal(BudgetSignal("warning", used, self.budget_tokens))

    def _flush(self, keep: str) -> None:
        target = self.warn_ratio * self.budget_tokens
        victims: list[Page] = []
        used = self.used_tokens
        for page in list(self._resident.values()):
            if used < target:
                break
            if page.handle == keep:
                continue
            victims.append(page)
            used -= page.tokens
        if self.memory_file is not None:
            append_memory(self.memory_file, victims)
        for page in victims:
            self.page_out(page.handle)
        self._warned = self.used_tokens >= target
        self._signal(
            BudgetSignal(
                "flush", self.used_tokens, self.budget_tokens, tuple(p.handle for p in victims)
            )
        )

    def _signal(self, signal: BudgetSignal) -> None:
        self.signals.append(signal)
        if self.on_signal is not None:
            self.on_signal(signal)


def placeholder(page: Page) -> str:
    lines = page.line_count
    plural = "line" if lines == 1 else "lines"
    return f"[{page.source} output omitted: {lines} {plural}; recall handle {page.handle}]"


# --- observation masking -------------------------------------------------------------------


class Turn(msgspec.Struct, frozen=True):
    """One message of an agent transcript; tool outputs have role "tool"."""

    turn: int
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool: str | None = None


def mask_boundary(current_turn: int, window: int, step: int) -> int:
    """Tool outputs of turns below this are masked. step=1 is a sliding window.

    The stepped boundary only moves every `step` turns, and never past the sliding one.
    """
    if step < 1 or window < 0:
        raise ValueError(f"need step >= 1 and window >= 0, got step={step}, window={window}")
    sliding = current_turn - window + 1  # the last `window` turns stay: current included
    if sliding <= 0:
        return 0
    return (sliding // step) * step


class ObservationMasker:
    """Masks old tool outputs in a transcript; pages them to the store first.

    With a memory file, the key facts of every output about to be masked are appended to it
    (the pre-compaction flush) the first time the boundary passes it.
    """

    def __init__(
        self,
        *,
        window: int = 10,
        step: int = 5,
        store: EpisodicStore | None = None,
        memory_file: Path | None = None,
        count_tokens: TokenCounter = _DEFAULT_COUNTER,
    ) -> None:
        self.window = window
        self.step = step
        self.store = store if store is not None else EpisodicStore()
        self.memory_file = memory_file
        self.count_tokens = count_tokens
        self._masked: dict[str, str] = {}  # handle -> placeholder, for outputs masked so far

    @property
    def masked_count(self) -> int:
        return len(self._masked)

    def view(self, transcript: Sequence[Turn], current_turn: int) -> list[Turn]:
        """The transcript as the model sees it at `current_turn`."""
        boundary = mask_boundary(current_turn, self.window, self.step)
        newly: list[Page] = []
        result: list[Turn] = []
        for turn in transcript:
            if turn.role != "tool" or turn.turn >= boundary:
                result.append(turn)
                continue
            handle = page_handle(turn.tool or "tool", turn.content, turn.turn)
            text = self._masked.get(handle)
            if text is None:
                page = Page(
                    handle,
                    turn.tool or "tool",
                    turn.content,
                    self.count_tokens(turn.content),
                    turn.turn,
                )
                self.store.put(page)
                newly.append(page)
                text = placeholder(page)
                self._masked[handle] = text
            result.append(msgspec.structs.replace(turn, content=text))
        if newly and self.memory_file is not None:
            append_memory(self.memory_file, newly)
        return result

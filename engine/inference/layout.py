"""Prompt layout for a shared prefix: what every agent at one workspace version sends first.

Owns `SharedPrefix` (constitution, repo map at version V, decision records) and the two layouts:
`shared_layout` puts the prefix first and the task's delta last; `naive_layout` (the benchmark
baseline) puts each agent's own context first. Invariant: `SharedPrefix.render()` depends only
on its fields, never on the agent, task, time or dict order, so two agents at version V send
byte-identical prefixes; `PrefixCatalog` hands out one instance per version.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import msgspec

from delegation_machine.engine.inference.backend import ChatMessage

CONSTITUTION = """You are a coding agent in Delegation Machine, working inside a developer's editor.
Rules:
1. Work only on the task given in the last message; change nothing else.
2. Your edits are proposals: a supervisor parses and checks them, and the developer can reject
   each one. Never claim a check passed unless a tool said so.
3. Keep the developer's style: names, formatting, comments.
4. Every reply is exactly one JSON object that matches the action schema; no prose outside it.
"""


class SharedPrefix(msgspec.Struct, frozen=True):
    workspace_version: int
    constitution: str
    repo_map: str
    decision_records: tuple[str, ...] = ()

    def render(self) -> str:
        parts = [self.constitution.rstrip("\n"), f"# Workspace version {self.workspace_version}"]
        parts.append("# Repository map\n" + self.repo_map.rstrip("\n"))
        if self.decision_records:
            records = "\n\n".join(r.rstrip("\n") for r in self.decision_records)
            parts.append("# Decision records\n" + records)
        return "\n\n".join(parts) + "\n"


class PrefixCatalog:
    """One SharedPrefix per workspace version, so concurrent agents share the same bytes."""

    def __init__(self, keep_versions: int = 4) -> None:
        self._by_version: dict[tuple[str, int, str], SharedPrefix] = {}
        self._keep = keep_versions
        self._lock = threading.Lock()

    def prefix_for(
        self,
        workspace_version: int,
        *,
        constitution: str,
        repo_map: str | Callable[[], str],
        decision_records: Sequence[str] | Callable[[], Sequence[str]] = (),
        workspace: str = "",
    ) -> SharedPrefix:
        """The prefix at this version; `repo_map`/`decision_records` are computed on a miss only."""
        key = (workspace, workspace_version, constitution)
        with self._lock:
            found = self._by_version.get(key)
        if found is not None:
            return found
        map_text = repo_map() if callable(repo_map) else repo_map
        records = decision_records() if callable(decision_records) else decision_records
        made = SharedPrefix(workspace_version, constitution, map_text, tuple(records))
        with self._lock:
            # Another agent may have built it meanwhile: the first one stored wins, so every
            # agent at this version gets the same instance.
            found = self._by_version.setdefault(key, made)
            while len(self._by_version) > self._keep:
                self._by_version.pop(next(iter(self._by_version)))
            return found


def shared_layout(
    prefix: SharedPrefix, delta: str, trace: str | None = None
) -> tuple[ChatMessage, ...]:
    """Prefix (cache breakpoint) -> task delta -> reasoning trace. Only the tail varies."""
    messages = [ChatMessage("system", prefix.render(), cache_breakpoint=True)]
    messages.append(ChatMessage("user", delta))
    if trace:
        messages.append(ChatMessage("user", trace))
    return tuple(messages)


def naive_layout(
    prefix: SharedPrefix, delta: str, agent_id: str, trace: str | None = None
) -> tuple[ChatMessage, ...]:
    """Baseline: each agent's own full context, its task first, so no two prompts share a prefix."""
    system = (
        f"Agent {agent_id}. Task:\n{delta}\n\n"
        + prefix.constitution
        + "\n# Repository map\n"
        + prefix.repo_map
        + "\n# Decision records\n"
        + "\n\n".join(prefix.decision_records)
    )
    messages = [ChatMessage("system", system)]
    if trace:
        messages.append(ChatMessage("user", trace))
    return tuple(messages)


# --- fitting a prompt into the model's context window -------------------------------------

# Our token count approximates the server's tokenizer; this share of the window is kept free so
# that a prompt we count as fitting is not refused by the server for a few tokens.
CONTEXT_SLACK = 0.1
# The reply may take at most this share of the window, so a small window keeps room for the
# prompt; a reply that needs more hits the cap and the gate asks for a shorter one.
REPLY_SHARE = 0.25
OMITTED = "to fit the model's context window"


class PromptDoesNotFit(Exception):
    """The shared prefix, with the rest trimmed to markers, exceeds the usable window."""

    def __init__(self, minimum_tokens: int, limit: int, prefix_tokens: int) -> None:
        super().__init__(f"needs at least {minimum_tokens} tokens, {limit} are usable")
        self.minimum_tokens = minimum_tokens
        self.limit = limit
        self.prefix_tokens = prefix_tokens


MessageCounter = Callable[[ChatMessage], int]


class FittedPrompt(msgspec.Struct, frozen=True):
    messages: tuple[ChatMessage, ...]
    tokens: int  # counted with the session's tokenizer
    trimmed: tuple[int, ...] = ()  # indexes of the messages that were cut, in trim order


def reply_room(window: int, max_tokens: int) -> int:
    """The reply's room in a window: `max_tokens`, at most REPLY_SHARE of the window."""
    return max(1, min(max_tokens, int(window * REPLY_SHARE)))


def prompt_limit(window: int, reply_tokens: int) -> int:
    """Tokens the prompt may take: the window less the reply room and the counting slack."""
    return window - reply_tokens - int(window * CONTEXT_SLACK)


def trim_order(messages: Sequence[ChatMessage]) -> list[int]:
    """Which messages are cut first: the feedback of earlier attempts (every message after the
    task's delta), oldest first; then the delta. The shared prefix (every message up to the last
    cache breakpoint) is never cut here: it is sized to the window when it is built, so every
    agent still sends the same bytes.
    """
    split = _prefix_len(messages)
    history = list(range(split + 1, len(messages)))
    delta = [split] if split < len(messages) else []
    return history + delta


def _cut(message: ChatMessage, keep: int, *, keep_end: bool) -> ChatMessage:
    """`message` with all but `keep` characters replaced by a marker (the end or the start kept)."""
    content = message.content
    dropped = len(content) - keep
    if dropped <= 0:
        return message
    if keep == 0:
        text = f"[… {dropped} characters omitted {OMITTED} …]"
    elif keep_end:  # earlier attempts: their oldest part goes first
        text = f"[… {dropped} earlier characters omitted {OMITTED} …]\n" + content[dropped:]
    else:  # the delta and the prefix: their head (the task, the constitution) stays longest
        text = content[:keep] + f"\n[… {dropped} more characters omitted {OMITTED} …]"
    return msgspec.structs.replace(message, content=text)


def fit_messages(
    messages: Sequence[ChatMessage], *, limit: int, count: MessageCounter
) -> FittedPrompt:
    """The messages cut, in `trim_order`, until their count is at most `limit`.

    A message is cut only once every message before it in the trim order is down to its marker;
    the shared prefix is sent unchanged. Raises PromptDoesNotFit when the prefix with every
    other message reduced to its marker exceeds `limit`.
    """
    fitted = list(messages)
    sizes = [count(m) for m in fitted]
    total = sum(sizes)
    if total <= limit:
        return FittedPrompt(tuple(fitted), total)
    order = trim_order(fitted)
    history = set(order[:-1])
    trimmed: list[int] = []
    for index in order:
        original = fitted[index]
        keep_end = index in history
        rest = total - sizes[index]
        smallest = _cut(original, 0, keep_end=keep_end)
        if count(smallest) >= sizes[index]:  # shorter than its own marker: nothing to gain
            continue
        floor = count(smallest)
        trimmed.append(index)
        if rest + floor > limit:  # even its marker leaves too much: reduce it, go on
            fitted[index] = smallest
            sizes[index], total = floor, rest + floor
            continue
        low, high = 0, len(original.content)  # the most characters that still fit
        while low < high:
            middle = (low + high + 1) // 2
            if rest + count(_cut(original, middle, keep_end=keep_end)) <= limit:
                low = middle
            else:
                high = middle - 1
        fitted[index] = _cut(original, low, keep_end=keep_end)
        sizes[index] = count(fitted[index])
        total = rest + sizes[index]
        return FittedPrompt(tuple(fitted), total, tuple(trimmed))
    prefix_tokens = sum(sizes[: _prefix_len(messages)])
    raise PromptDoesNotFit(total, limit, prefix_tokens)


def _prefix_len(messages: Sequence[ChatMessage]) -> int:
    breakpoints = [n for n, m in enumerate(messages) if m.cache_breakpoint]
    return breakpoints[-1] + 1 if breakpoints else 0

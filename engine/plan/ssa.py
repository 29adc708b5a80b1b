"""SSA reasoning: an agent's reasoning steps as immutable numbered values with explicit uses.

Owns `Step` and `ReasoningTrace`. Each step is defined once (its number is its name) and may
use only steps defined before it, so the trace is a DAG in program order (static single
assignment). Before the trace is sent to the model again, steps that no root (the final answer,
the recent window, the proposed edits) depends on are pruned: dead-step elimination over the
use-def chains. Invariant: a pruned trace is closed under `uses` and keeps every root.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec


class SSAError(ValueError):
    """A step used a value that is not defined before it."""


class Step(msgspec.Struct, frozen=True):
    id: int
    kind: str  # "thought", a tool name, "observation", "answer", ...
    content: str
    uses: tuple[int, ...] = ()
    value: str = ""  # what the step produced (a tool's observation)


class ReasoningTrace:
    """Append-only: `add` defines a new step; existing steps never change."""

    def __init__(self, steps: Iterable[Step] = ()) -> None:
        self._steps: dict[int, Step] = {}
        for step in steps:
            self._define(step)

    def _define(self, step: Step) -> None:
        if step.id in self._steps:
            raise SSAError(f"step %{step.id} is defined twice")
        for used in step.uses:
            if used not in self._steps:
                raise SSAError(f"step %{step.id} uses %{used}, which is not defined before it")
        self._steps[step.id] = step

    def add(self, kind: str, content: str, *, uses: Iterable[int] = (), value: str = "") -> int:
        number = self.next_id
        self._define(Step(number, kind, content, tuple(dict.fromkeys(uses)), value))
        return number

    @property
    def next_id(self) -> int:
        return max(self._steps, default=0) + 1

    @property
    def steps(self) -> tuple[Step, ...]:
        return tuple(self._steps.values())

    def __len__(self) -> int:
        return len(self._steps)

    def __contains__(self, step_id: object) -> bool:
        return step_id in self._steps

    def step(self, step_id: int) -> Step:
        return self._steps[step_id]

    def live(self, roots: Iterable[int]) -> frozenset[int]:
        """Every step a root depends on, transitively, roots included."""
        seen: set[int] = set()
        stack = [r for r in roots if r in self._steps]
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            stack.extend(u for u in self._steps[current].uses if u not in seen)
        return frozenset(seen)

    def pruned(self, roots: Iterable[int]) -> ReasoningTrace:
        """A new trace with only the live steps; numbers are kept so uses stay valid."""
        keep = self.live(roots)
        return ReasoningTrace(s for s in self._steps.values() if s.id in keep)

    def default_roots(self, *, window: int = 3, pinned: Iterable[int] = ()) -> set[int]:
        """The last `window` steps plus `pinned` ones (e.g. steps that proposed edits)."""
        recent = list(self._steps)[-window:] if window > 0 else []
        return set(recent) | {p for p in pinned if p in self._steps}

    def render(self, max_value_chars: int = 4000) -> str:
        lines = []
        for step in self._steps.values():
            uses = f" uses {', '.join(f'%{u}' for u in step.uses)}" if step.uses else ""
            lines.append(f"%{step.id} = {step.kind}{uses}: {step.content}")
            if step.value:
                value = step.value
                if len(value) > max_value_chars:
                    value = (
                        value[:max_value_chars]
                        + f"\n… ({len(step.value) - max_value_chars} chars cut)"
                    )
                lines.append(_indent(value))
        return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("    " + line if line else "" for line in text.splitlines())

"""The token ledger: per task and agent, prompt/cached/uncached/output tokens and estimated cost.

Owns `TokenLedger` (thread-safe totals, a per-task hard budget, a snapshot for
`delegation.status` and the CLI) and `BudgetExceeded`. Billable tokens are uncached prompt
tokens plus output tokens; cached tokens count as cached only when the backend reported them
(the radix prediction is kept beside them, never substituted). Nothing here ever holds a secret:
entries carry numbers and ids only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import msgspec

from delegation_machine.engine.inference.backend import BackendUsage
from delegation_machine.engine.inference.radix import PrefixObservation


class TokenPrices(msgspec.Struct, frozen=True):
    """US dollars per 1,000 tokens."""

    prompt_per_1k: float = 0.0
    cached_per_1k: float = 0.0
    output_per_1k: float = 0.0

    def cost(self, uncached: int, cached: int, output: int) -> float:
        return (
            uncached * self.prompt_per_1k
            + cached * self.cached_per_1k
            + output * self.output_per_1k
        ) / 1000.0


class AgentTokens(msgspec.Struct, kw_only=True):
    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0  # as reported by the backend
    predicted_reusable_tokens: int = 0  # from the radix tree
    output_tokens: int = 0
    cost_usd: float = 0.0
    unreported_cache_requests: int = 0  # requests whose backend said nothing about caching

    @property
    def uncached_tokens(self) -> int:
        return self.prompt_tokens - self.cached_tokens

    @property
    def billable_tokens(self) -> int:
        return self.uncached_tokens + self.output_tokens

    def add(self, usage: BackendUsage, predicted: int, cost: float) -> None:
        self.requests += 1
        self.prompt_tokens += usage.prompt_tokens
        self.cached_tokens += usage.cached_tokens
        self.predicted_reusable_tokens += predicted
        self.output_tokens += usage.output_tokens
        self.cost_usd += cost
        if not usage.cached_reported:
            self.unreported_cache_requests += 1


class TaskTokens(msgspec.Struct, kw_only=True):
    budget_tokens: int
    agents: dict[str, AgentTokens] = {}

    def total(self) -> AgentTokens:
        total = AgentTokens()
        for entry in self.agents.values():
            total.requests += entry.requests
            total.prompt_tokens += entry.prompt_tokens
            total.cached_tokens += entry.cached_tokens
            total.predicted_reusable_tokens += entry.predicted_reusable_tokens
            total.output_tokens += entry.output_tokens
            total.cost_usd += entry.cost_usd
            total.unreported_cache_requests += entry.unreported_cache_requests
        return total


class TaskTokenSummary(msgspec.Struct, frozen=True):
    """What `delegation.status` shows per task."""

    task_id: str
    budget_tokens: int
    billable_tokens: int
    prompt_tokens: int
    cached_tokens: int
    uncached_tokens: int
    predicted_reusable_tokens: int
    output_tokens: int
    requests: int
    cost_usd: float
    agents: dict[str, AgentTokens]


class LedgerSnapshot(msgspec.Struct, frozen=True):
    tasks: tuple[TaskTokenSummary, ...]
    prompt_tokens: int
    cached_tokens: int
    output_tokens: int
    cost_usd: float


class BudgetExceeded(Exception):
    """A task would spend more tokens than its hard cap; the request was not sent."""

    def __init__(self, task_id: str, spent: int, needed: int, cap: int) -> None:
        super().__init__(
            f"task {task_id} stopped: its token budget is {cap} billable tokens, {spent} are "
            f"spent and the next request needs about {needed} more (raise "
            "inference.max_tokens_per_task to allow more)"
        )
        self.task_id = task_id
        self.spent = spent
        self.needed = needed
        self.cap = cap


UsageListener = Callable[[str, str, BackendUsage, PrefixObservation | None], None]


class TokenLedger:
    def __init__(
        self, *, prices: TokenPrices | None = None, max_tokens_per_task: int = 200_000
    ) -> None:
        self.prices = prices or TokenPrices()
        self.default_budget = max_tokens_per_task
        self._tasks: dict[str, TaskTokens] = {}
        self._lock = threading.Lock()
        self._listeners: list[UsageListener] = []

    def subscribe(self, listener: UsageListener) -> None:
        self._listeners.append(listener)

    def set_budget(self, task_id: str, tokens: int) -> None:
        with self._lock:
            self._task(task_id).budget_tokens = tokens

    def spent(self, task_id: str) -> int:
        with self._lock:
            task = self._tasks.get(task_id)
            return task.total().billable_tokens if task else 0

    def check_budget(self, task_id: str, needed: int) -> None:
        """Raise BudgetExceeded if spending `needed` more would cross the task's cap."""
        with self._lock:
            task = self._task(task_id)
            spent = task.total().billable_tokens
            if spent + needed > task.budget_tokens:
                raise BudgetExceeded(task_id, spent, needed, task.budget_tokens)

    def record(
        self,
        task_id: str,
        agent_id: str,
        usage: BackendUsage,
        predicted: PrefixObservation | None = None,
    ) -> None:
        cost = self.prices.cost(usage.uncached_tokens, usage.cached_tokens, usage.output_tokens)
        with self._lock:
            entry = self._task(task_id).agents.setdefault(agent_id, AgentTokens())
            entry.add(usage, predicted.reusable_tokens if predicted else 0, cost)
        for listener in self._listeners:
            listener(task_id, agent_id, usage, predicted)

    def task_summary(self, task_id: str) -> TaskTokenSummary:
        with self._lock:
            return self._summary(task_id, self._task(task_id))

    def snapshot(self) -> LedgerSnapshot:
        with self._lock:
            tasks = tuple(self._summary(tid, task) for tid, task in self._tasks.items())
        return LedgerSnapshot(
            tasks=tasks,
            prompt_tokens=sum(t.prompt_tokens for t in tasks),
            cached_tokens=sum(t.cached_tokens for t in tasks),
            output_tokens=sum(t.output_tokens for t in tasks),
            cost_usd=sum(t.cost_usd for t in tasks),
        )

    def _task(self, task_id: str) -> TaskTokens:
        task = self._tasks.get(task_id)
        if task is None:
            task = self._tasks[task_id] = TaskTokens(budget_tokens=self.default_budget)
        return task

    @staticmethod
    def _summary(task_id: str, task: TaskTokens) -> TaskTokenSummary:
        total = task.total()
        return TaskTokenSummary(
            task_id=task_id,
            budget_tokens=task.budget_tokens,
            billable_tokens=total.billable_tokens,
            prompt_tokens=total.prompt_tokens,
            cached_tokens=total.cached_tokens,
            uncached_tokens=total.uncached_tokens,
            predicted_reusable_tokens=total.predicted_reusable_tokens,
            output_tokens=total.output_tokens,
            requests=total.requests,
            cost_usd=round(total.cost_usd, 6),
            agents={k: msgspec.structs.replace(v) for k, v in task.agents.items()},
        )

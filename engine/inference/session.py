"""One inference session shared by every agent of a swarm: backend + radix accounting + ledger.

Owns the per-request bookkeeping around a `Backend`: before sending, the budget check (with the
radix tree's estimate of uncached tokens); after, the radix observation of the exact prompt and
the ledger entry comparing predicted reuse with what the backend reported. Sharing one session
is what makes the radix tree see every prompt sent.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from delegation_machine.engine.inference.accounting import TokenLedger
from delegation_machine.engine.inference.backend import (
    Backend,
    BackendUsage,
    ChatRequest,
    Completion,
    StreamDelta,
)
from delegation_machine.engine.inference.radix import PrefixAccounting, PrefixObservation
from delegation_machine.engine.inference.tokens import ApproxTokenizer, ChatTurnText, render_chat


class InferenceSession:
    def __init__(
        self,
        backend: Backend,
        *,
        ledger: TokenLedger | None = None,
        block_size: int = 16,
        tokenizer: ApproxTokenizer | None = None,
    ) -> None:
        self.backend = backend
        self.ledger = ledger or TokenLedger()
        self.accounting = PrefixAccounting(block_size)
        self.tokenizer = tokenizer or ApproxTokenizer()
        self.observations: list[PrefixObservation] = []
        self.backend_time_s = 0.0  # wall time spent awaiting the backend, all requests
        self._backend_time: dict[tuple[str | None, str | None], float] = {}

    def backend_time_for(self, task_id: str | None, agent_id: str | None) -> float:
        """Wall time awaiting the backend for one task and agent (concurrent agents apart)."""
        return self._backend_time.get((task_id, agent_id), 0.0)

    def _add_backend_time(self, request: ChatRequest, seconds: float) -> None:
        self.backend_time_s += seconds
        key = (request.task_id, request.agent_id)
        self._backend_time[key] = self._backend_time.get(key, 0.0) + seconds

    def prompt_tokens(self, request: ChatRequest) -> list[str]:
        turns = [ChatTurnText(m.role, m.content) for m in request.messages]
        return self.tokenizer.encode(render_chat(turns))

    def check_budget(self, request: ChatRequest, tokens: list[str]) -> None:
        if request.task_id is None:
            return
        estimate = self.accounting.peek(tokens)
        self.ledger.check_budget(request.task_id, estimate.uncached_tokens + request.max_tokens)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamDelta]:
        """Stream from the backend; the ledger entry is written when the stream ends."""
        tokens = self.prompt_tokens(request)
        self.check_budget(request, tokens)
        observation = self.accounting.observe(tokens)
        self.observations.append(observation)
        usage: BackendUsage | None = None
        stream = self.backend.stream(request)
        while True:
            started = time.perf_counter()
            try:
                delta = await anext(stream)
            except StopAsyncIteration:
                break
            finally:
                self._add_backend_time(request, time.perf_counter() - started)
            if delta.usage is not None:
                usage = delta.usage
            yield delta
        self._record(request, usage or BackendUsage(), observation)

    async def complete(self, request: ChatRequest) -> Completion:
        tokens = self.prompt_tokens(request)
        self.check_budget(request, tokens)
        observation = self.accounting.observe(tokens)
        self.observations.append(observation)
        started = time.perf_counter()
        try:
            completion = await self.backend.complete(request)
        finally:
            self._add_backend_time(request, time.perf_counter() - started)
        self._record(request, completion.usage, observation)
        return completion

    def _record(
        self, request: ChatRequest, usage: BackendUsage, observation: PrefixObservation
    ) -> None:
        if usage.prompt_tokens == 0:
            # The server reported no usage: count with our tokenizer, claim nothing cached.
            usage = BackendUsage(
                prompt_tokens=observation.prompt_tokens,
                output_tokens=usage.output_tokens,
                cached_reported=False,
            )
        self.ledger.record(
            request.task_id or "untracked", request.agent_id or "unknown", usage, observation
        )

    async def aclose(self) -> None:
        await self.backend.aclose()

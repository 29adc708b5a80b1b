"""One inference session shared by every agent of a swarm: backend + radix accounting + ledger.

Owns the per-request bookkeeping around a `Backend`: before sending, fitting the prompt into the
model's context window (learnt from the server, else `inference.context_window`) with room for
the reply, and the budget check (with the radix tree's estimate of uncached tokens); after, the
radix observation of the exact prompt and the ledger entry comparing predicted reuse with what
the backend reported. Sharing one session is what makes the radix tree see every prompt sent.
Invariant: a prompt that cannot fit is refused here with BackendContextOverflow, never sent.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator

import msgspec

from delegation_machine.engine.inference.accounting import TokenLedger
from delegation_machine.engine.inference.backend import (
    CONTEXT_HINT,
    Backend,
    BackendContextOverflow,
    BackendUsage,
    ChatMessage,
    ChatRequest,
    Completion,
    ContextWindow,
    ReportsContextWindow,
    StreamDelta,
)
from delegation_machine.engine.inference.layout import (
    CONTEXT_SLACK,
    PromptDoesNotFit,
    fit_messages,
    prompt_limit,
    reply_room,
)
from delegation_machine.engine.inference.radix import PrefixAccounting, PrefixObservation
from delegation_machine.engine.inference.tokens import ApproxTokenizer, ChatTurnText, render_chat

MAX_TOKEN_RATIO = 4.0
# How servers give the prompt's size when they refuse it: vLLM ("1071 in the messages", "your
# prompt contains 1071 input tokens"), llama.cpp ("request (2095 tokens) exceeds").
_SERVER_WINDOW = re.compile(r"maximum context length is (\d+)|context size \((\d+) tokens\)")
_SERVER_PROMPT_TOKENS = re.compile(
    r"(\d+) in the messages|contains (?:at least )?(\d+) input tokens|request \((\d+) tokens\)"
)


class InferenceSession:
    def __init__(
        self,
        backend: Backend,
        *,
        ledger: TokenLedger | None = None,
        block_size: int = 16,
        tokenizer: ApproxTokenizer | None = None,
        context_window: int | None = None,
    ) -> None:
        self.backend = backend
        self.configured_window = context_window  # inference.context_window
        self.trimmed_requests = 0  # requests whose tail was cut to fit the window
        # The server's prompt tokens per token we count, learnt from its usage reports (never
        # below 1): a model whose tokenizer makes more tokens gets its prompts fitted tighter.
        self.token_ratio = 1.0
        self.refused_window: ContextWindow | None = None  # the window a refusal named
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

    async def context_window(self) -> ContextWindow | None:
        """The window prompts are fitted to: what the server reports, else the configured one.

        When both are known the smaller wins (a llama.cpp slot, or a user keeping headroom). A
        server that reports none but gave it in a refusal ("maximum context length is N") is
        taken at its word. None: nothing is known, the prompt is sent as laid out and the
        server decides.
        """
        reported = None
        if isinstance(self.backend, ReportsContextWindow):
            reported = await self.backend.context_window()
        reported = reported or self.refused_window
        configured = self.configured_window
        if configured is None:
            return reported
        if reported is None or configured <= reported.tokens:
            return ContextWindow(configured, "inference.context_window")
        return reported

    def count_message(self, message: ChatMessage) -> int:
        return len(
            self.tokenizer.encode(render_chat([ChatTurnText(message.role, message.content)]))
        )

    async def fit(self, request: ChatRequest) -> ChatRequest:
        """`request` with its messages cut to fit the window with room for the reply.

        Raises BackendContextOverflow, before any request is sent, when it cannot fit.
        """
        window = await self.context_window()
        if window is None:
            return request
        reply = reply_room(window.tokens, request.max_tokens)
        limit = int(prompt_limit(window.tokens, reply) / self.token_ratio)
        try:
            fitted = fit_messages(request.messages, limit=limit, count=self.count_message)
        except PromptDoesNotFit as exc:
            ratio = self.token_ratio
            raise BackendContextOverflow(
                f"the prompt does not fit the model's context window of {window.tokens} tokens "
                f"({window.source}): even with the task and earlier attempts cut to markers it "
                f"needs about {int(exc.minimum_tokens * ratio)} tokens (the shared prefix "
                f"alone {int(exc.prefix_tokens * ratio)}), plus {reply} tokens of room for the "
                f"reply and {int(window.tokens * CONTEXT_SLACK)} of slack. Nothing was sent. "
                f"{CONTEXT_HINT}",
                provider=self.backend.provider,
            ) from None
        if fitted.trimmed:
            self.trimmed_requests += 1
            request = msgspec.structs.replace(request, messages=fitted.messages)
        if reply != request.max_tokens:
            request = msgspec.structs.replace(request, max_tokens=reply)
        return request

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
        request = await self.fit(request)
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
        """One completion of `request` fitted to the window.

        If the server still refuses it as too long (its tokenizer counts more than we do), the
        session learns by how much from the refusal and fits and sends it once more.
        """
        fitted = await self.fit(request)
        try:
            return await self._complete_fitted(fitted)
        except BackendContextOverflow as exc:
            if not await self._learn_from_refusal(fitted, exc):
                raise
            refusal = exc
        try:
            refitted = await self.fit(request)
        except BackendContextOverflow:
            raise refusal from None  # what the server said is what happened
        return await self._complete_fitted(refitted)

    async def _learn_from_refusal(self, sent: ChatRequest, refusal: BackendContextOverflow) -> bool:
        """Raise `token_ratio` after the server refused `sent` as too long; False: no use."""
        if refusal.status is None:
            return False  # our own refusal: nothing more to learn
        if await self.context_window() is None:
            said = _SERVER_WINDOW.search(str(refusal))
            told = next((int(g) for g in said.groups() if g), 0) if said else 0
            if told <= 0:
                return False  # nothing to fit to
            self.refused_window = ContextWindow(told, f"{self.backend.provider} server's refusal")
            return True
        ours = len(self.prompt_tokens(sent))
        match = _SERVER_PROMPT_TOKENS.search(str(refusal))
        told = next((int(g) for g in match.groups() if g), 0) if match else 0
        learnt = told / ours * 1.02 if ours else 0.0
        ratio = min(MAX_TOKEN_RATIO, max(learnt, self.token_ratio * 1.25))
        if ratio <= self.token_ratio:
            return False
        self.token_ratio = ratio
        return True

    async def _complete_fitted(self, request: ChatRequest) -> Completion:
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
        return msgspec.structs.replace(completion, max_tokens=request.max_tokens)

    def _record(
        self, request: ChatRequest, usage: BackendUsage, observation: PrefixObservation
    ) -> None:
        if usage.prompt_tokens > 0 and observation.prompt_tokens > 0:
            ratio = usage.prompt_tokens / observation.prompt_tokens
            self.token_ratio = min(MAX_TOKEN_RATIO, max(self.token_ratio, ratio))
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

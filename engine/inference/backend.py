"""The one async interface every inference backend implements, its wire types and errors.

Owns `Backend` (stream/complete/aclose), `ReportsContextWindow` and `ContextWindow`,
`ChatMessage`, `ChatRequest`, `Completion`, `BackendUsage`, the typed `BackendError` family,
secret redaction and the retry policy.
Invariants: an error message never contains a secret (every message passes `redact`); a
request is retried only on transient faults and only before its first streamed token.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec

Role = Literal["system", "user", "assistant"]


class ChatMessage(msgspec.Struct, frozen=True):
    role: Role
    content: str
    # True on the last message of the shared prefix: Anthropic gets a cache_control breakpoint.
    cache_breakpoint: bool = False


class ChatRequest(msgspec.Struct, frozen=True, kw_only=True):
    messages: tuple[ChatMessage, ...]
    max_tokens: int = 1024
    temperature: float = 0.0
    json_schema: dict[str, Any] | None = None  # guided decoding, where the backend has it
    schema_name: str = "response"
    task_id: str | None = None
    agent_id: str | None = None


class BackendUsage(msgspec.Struct, frozen=True):
    prompt_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    cached_reported: bool = False  # False: the server said nothing about cached tokens

    @property
    def uncached_tokens(self) -> int:
        return self.prompt_tokens - self.cached_tokens


class StreamDelta(msgspec.Struct, frozen=True):
    """One streamed piece: text, and on the last piece the usage and finish reason."""

    text: str = ""
    usage: BackendUsage | None = None
    finish_reason: str | None = None


class Completion(msgspec.Struct, frozen=True):
    text: str
    usage: BackendUsage
    finish_reason: str | None = None
    attempts: int = 1
    max_tokens: int | None = None  # the output cap the request was sent with, where known


class ContextWindow(msgspec.Struct, frozen=True):
    """The model's context length in tokens and where it was learnt (for messages)."""

    tokens: int
    source: str


@runtime_checkable
class ReportsContextWindow(Protocol):
    """A backend that can ask its server for the model's context length."""

    async def context_window(self) -> ContextWindow | None: ...


@runtime_checkable
class Backend(Protocol):
    provider: str
    model: str
    supports_guided_json: bool

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamDelta]: ...

    async def complete(self, request: ChatRequest) -> Completion: ...

    async def aclose(self) -> None: ...


# --- errors ---------------------------------------------------------------------------------


class BackendError(Exception):
    """The backend could not answer; `message` is safe to show (secrets redacted)."""

    retryable = False

    def __init__(self, message: str, *, provider: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status


class BackendUnavailable(BackendError):
    """Nothing answered at the address (connection refused, DNS, TLS)."""

    retryable = True


class BackendTimeout(BackendError):
    """The backend did not answer within `timeout_s`."""

    retryable = True


class BackendRateLimited(BackendError):
    """HTTP 429: the server asked us to slow down."""

    retryable = True


class BackendServerError(BackendError):
    """HTTP 5xx: a transient fault on the server."""

    retryable = True


class BackendRefused(BackendError):
    """HTTP 4xx other than 429: bad key, unknown model, request too large. Not retried."""


class BackendContextOverflow(BackendRefused):
    """The prompt and the reply do not fit the model's context window (before or after sending).

    Not retried: the same prompt would overflow again. The message says what to configure.
    """


class BackendProtocolError(BackendError):
    """The server answered something that is not the protocol we speak."""


class BackendStreamBroken(BackendServerError):
    """The stream stopped before the reply was complete (server killed, connection cut)."""


def failure_record(error: BackendError) -> dict[str, Any]:
    """What the ledger keeps about a model failure: its kind, where, and the (redacted) reason."""
    return {
        "error": type(error).__name__,
        "provider": error.provider,
        "status": error.status,
        "retryable": error.retryable,
        "reason": str(error),
    }


_REDACTED = "[redacted]"


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret (and its 'Bearer ' form) in `text`."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, _REDACTED)
    return text


# How servers word "the prompt does not fit": vLLM, llama.cpp, OpenAI, Anthropic, SGLang.
_OVERFLOW_WORDS = (
    "maximum context length",
    "context length",
    "context size",
    "context window",
    "prompt is too long",
    "too many tokens",
    "max_model_len",
)

CONTEXT_HINT = (
    "Raise the server's context (vLLM --max-model-len, llama.cpp -c per slot) and set "
    "inference.context_window to match, or lower inference.max_output_tokens."
)


def error_for_status(status: int, detail: str, *, where: str, provider: str) -> BackendError:
    excerpt = detail.strip().replace("\n", " ")[:300]
    if status in (400, 413, 422) and any(w in detail.lower() for w in _OVERFLOW_WORDS):
        return BackendContextOverflow(
            f"{where} refused the prompt as too long for the model's context window "
            f"(HTTP {status}): {excerpt}. {CONTEXT_HINT}",
            provider=provider,
            status=status,
        )
    if status == 429:
        return BackendRateLimited(
            f"{where} is rate limiting (HTTP 429): {excerpt}", provider=provider, status=status
        )
    if status >= 500:
        return BackendServerError(
            f"{where} failed (HTTP {status}): {excerpt}. See the model server's log",
            provider=provider,
            status=status,
        )
    hint = ""
    if status in (401, 403):
        hint = " Check that the environment variable named by api_key_env holds a valid key."
    elif status == 404:
        hint = " Check base_url and model."
    return BackendRefused(
        f"{where} refused the request (HTTP {status}): {excerpt}.{hint}",
        provider=provider,
        status=status,
    )


# --- retries --------------------------------------------------------------------------------

Sleep = Callable[[float], Awaitable[None]]


class RetryPolicy(msgspec.Struct, frozen=True):
    max_retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter exponential backoff for retry number `attempt` (1-based)."""
        ceiling = min(self.max_backoff_s, self.backoff_s * (2 ** (attempt - 1)))
        return rng.uniform(ceiling / 2, ceiling)


async def stream_with_retries(
    open_stream: Callable[[], AsyncIterator[StreamDelta]],
    policy: RetryPolicy,
    *,
    sleep: Sleep = asyncio.sleep,
    rng: random.Random | None = None,
    on_retry: Callable[[int, BackendError], None] | None = None,
) -> AsyncIterator[StreamDelta]:
    """Yield from `open_stream()`, reopening it on a transient error before the first delta."""
    rng = rng or random.Random(0)
    attempt = 0
    while True:
        started = False
        try:
            async for delta in open_stream():
                started = True
                yield delta
            return
        except BackendError as exc:
            if started or not exc.retryable or attempt >= policy.max_retries:
                raise
            attempt += 1
            if on_retry is not None:
                on_retry(attempt, exc)
            await sleep(policy.delay(attempt, rng))


async def complete_with_retries(
    attempt: Callable[[], Awaitable[Completion]],
    policy: RetryPolicy,
    *,
    sleep: Sleep = asyncio.sleep,
    rng: random.Random | None = None,
    on_retry: Callable[[int, BackendError], None] | None = None,
) -> Completion:
    """One whole completion, asked again on a transient error even after tokens arrived.

    Unlike `stream_with_retries`, nothing partial has been shown to anyone, so a stream the
    server broke off (killed, restarted) is simply asked again, with backoff.
    """
    rng = rng or random.Random(0)
    retry = 0
    while True:
        try:
            return await attempt()
        except BackendError as exc:
            if not exc.retryable or retry >= policy.max_retries:
                raise
            retry += 1
            if on_retry is not None:
                on_retry(retry, exc)
            await sleep(policy.delay(retry, rng))


async def collect(stream: AsyncIterator[StreamDelta]) -> Completion:
    parts: list[str] = []
    usage = BackendUsage()
    finish: str | None = None
    async for delta in stream:
        parts.append(delta.text)
        if delta.usage is not None:
            usage = delta.usage
        if delta.finish_reason is not None:
            finish = delta.finish_reason
    return Completion(text="".join(parts), usage=usage, finish_reason=finish)

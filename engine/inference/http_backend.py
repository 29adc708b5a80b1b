"""What the HTTP backends share: one client, counted retries, a streaming POST with typed errors.

Owns the mapping of transport failures to BackendTimeout / BackendUnavailable /
BackendServerError and of non-200 answers to `error_for_status`, with every secret redacted
from what is reported. Subclasses name the URL, headers and the stream parser.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx
import msgspec

from delegation_machine.engine.inference.backend import (
    BackendError,
    BackendServerError,
    BackendStreamBroken,
    BackendTimeout,
    BackendUnavailable,
    ChatRequest,
    Completion,
    RetryPolicy,
    Sleep,
    StreamDelta,
    collect,
    complete_with_retries,
    error_for_status,
    redact,
    stream_with_retries,
)

StreamParser = Callable[[httpx.Response, list[str]], AsyncIterator[StreamDelta]]


class HttpBackend:
    """Base of the OpenAI-compatible and Anthropic backends."""

    provider: str
    supports_guided_json = False

    def __init__(
        self,
        *,
        provider: str,
        model: str,
        base_url: str,
        api_key_env: str | None,
        timeout_s: float,
        connect_timeout_s: float,
        retry: RetryPolicy | None,
        sleep: Sleep | None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.provider = provider
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.retry = retry or RetryPolicy()
        self.retries_made = 0
        self._sleep = sleep
        self._rng = random.Random(0)
        self._timeout_s = timeout_s
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s), transport=transport
        )

    @property
    def where(self) -> str:
        return f"the {self.provider} backend at {self.base_url}"

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamDelta]:
        kwargs: dict[str, Any] = {"on_retry": self._count_retry, "rng": self._rng}
        if self._sleep is not None:
            kwargs["sleep"] = self._sleep
        return stream_with_retries(lambda: self._stream_once(request), self.retry, **kwargs)

    async def complete(self, request: ChatRequest) -> Completion:
        kwargs: dict[str, Any] = {"on_retry": self._count_retry, "rng": self._rng}
        if self._sleep is not None:
            kwargs["sleep"] = self._sleep
        before = self.retries_made
        completion = await complete_with_retries(
            lambda: collect(self._stream_once(request)), self.retry, **kwargs
        )
        return msgspec.structs.replace(completion, attempts=1 + self.retries_made - before)

    async def aclose(self) -> None:
        await self._client.aclose()

    def _count_retry(self, attempt: int, error: BackendError) -> None:
        self.retries_made += 1

    def _stream_once(self, request: ChatRequest) -> AsyncIterator[StreamDelta]:
        raise NotImplementedError

    async def _post_stream(
        self,
        url: str,
        body: Mapping[str, Any],
        headers: Mapping[str, str],
        secrets: list[str],
        parse: StreamParser,
        *,
        unreachable_hint: str = "",
    ) -> AsyncIterator[StreamDelta]:
        """POST `body`, stream the answer through `parse`, raise typed, redacted errors."""
        try:
            async with self._client.stream("POST", url, json=body, headers=headers) as response:
                if response.status_code != 200:
                    detail = (await response.aread()).decode("utf-8", "replace")
                    raise error_for_status(
                        response.status_code,
                        redact(detail, secrets),
                        where=self.where,
                        provider=self.provider,
                    )
                async for delta in parse(response, secrets):
                    yield delta
        except httpx.TimeoutException:
            raise BackendTimeout(
                f"{self.where} did not answer within {self._timeout_s:g} s; raise "
                "inference.timeout_s if the model is slow, or check the server's load",
                provider=self.provider,
            ) from None
        except httpx.ConnectError as exc:
            raise BackendUnavailable(
                f"{self.where} is not reachable: {redact(str(exc), secrets)}{unreachable_hint}",
                provider=self.provider,
            ) from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise BackendStreamBroken(
                f"{self.where} broke off its reply ({redact(str(exc), secrets) or 'connection closed'}); "
                "the model server may have stopped or crashed: see its log",
                provider=self.provider,
            ) from None
        except httpx.TransportError as exc:
            raise BackendServerError(
                f"{self.where} dropped the connection: {redact(str(exc), secrets)}",
                provider=self.provider,
            ) from None

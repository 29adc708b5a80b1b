"""OpenAI-compatible chat-completions backend over httpx (vLLM, SGLang, llama.cpp, Ollama, OpenAI).

Owns one `httpx.AsyncClient` per backend. Every request streams (SSE) so that cancellation
and the per-read timeout apply between tokens. Cached-token counts come from
`usage.prompt_tokens_details.cached_tokens` (vLLM, SGLang, OpenAI) or llama.cpp's
`timings.cache_n`. The API key is read from the environment at request time and redacted from
every error message.
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec

from delegation_machine.engine.inference.backend import (
    BackendError,
    BackendProtocolError,
    BackendRefused,
    BackendServerError,
    BackendTimeout,
    BackendUnavailable,
    BackendUsage,
    ChatRequest,
    Completion,
    RetryPolicy,
    Sleep,
    StreamDelta,
    collect,
    error_for_status,
    redact,
    stream_with_retries,
)


def read_api_key(api_key_env: str | None) -> str | None:
    """The key from the environment variable the configuration names (never the config itself)."""
    if not api_key_env:
        return None
    value = os.environ.get(api_key_env)
    if not value:
        raise BackendRefused(
            f"the environment variable {api_key_env} (named by inference.api_key_env) is not "
            "set; export it in the environment that starts the server"
        )
    return value


def parse_openai_usage(raw: dict[str, Any] | None, timings: dict[str, Any] | None) -> BackendUsage:
    raw = raw or {}
    details = raw.get("prompt_tokens_details") or {}
    cached: int | None = details.get("cached_tokens") if isinstance(details, dict) else None
    if cached is None and timings and isinstance(timings.get("cache_n"), int):
        cached = timings["cache_n"]
    return BackendUsage(
        prompt_tokens=int(raw.get("prompt_tokens") or 0),
        cached_tokens=int(cached or 0),
        output_tokens=int(raw.get("completion_tokens") or 0),
        cached_reported=cached is not None,
    )


class OpenAICompatibleBackend:
    """POST {base_url}/chat/completions with stream=true and include_usage."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        guided_json: bool = True,
        provider: str = "openai",
        sleep: Sleep | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.provider = provider
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.supports_guided_json = guided_json
        self.retry = retry or RetryPolicy()
        self.retries_made = 0
        self._sleep = sleep
        self._rng = random.Random(0)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            transport=transport,
        )
        self._timeout_s = timeout_s

    @property
    def where(self) -> str:
        return f"the {self.provider} backend at {self.base_url}"

    def request_body(self, request: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.json_schema is not None and self.supports_guided_json:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": request.schema_name, "schema": request.json_schema},
            }
        return body

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamDelta]:
        kwargs: dict[str, Any] = {"on_retry": self._count_retry, "rng": self._rng}
        if self._sleep is not None:
            kwargs["sleep"] = self._sleep
        return stream_with_retries(lambda: self._stream_once(request), self.retry, **kwargs)

    async def complete(self, request: ChatRequest) -> Completion:
        before = self.retries_made
        completion = await collect(self.stream(request))
        return msgspec.structs.replace(completion, attempts=1 + self.retries_made - before)

    async def aclose(self) -> None:
        await self._client.aclose()

    def _count_retry(self, attempt: int, error: BackendError) -> None:
        self.retries_made += 1

    async def _stream_once(self, request: ChatRequest) -> AsyncIterator[StreamDelta]:
        key = read_api_key(self.api_key_env)
        secrets = [key] if key else []
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        url = f"{self.base_url}/chat/completions"
        try:
            async with self._client.stream(
                "POST", url, json=self.request_body(request), headers=headers
            ) as response:
                if response.status_code != 200:
                    detail = (await response.aread()).decode("utf-8", "replace")
                    raise error_for_status(
                        response.status_code,
                        redact(detail, secrets),
                        where=self.where,
                        provider=self.provider,
                    )
                async for delta in self._parse_sse(response, secrets):
                    yield delta
        except httpx.TimeoutException:
            raise BackendTimeout(
                f"{self.where} did not answer within {self._timeout_s:g} s (timeout_s)",
                provider=self.provider,
            ) from None
        except httpx.ConnectError as exc:
            raise BackendUnavailable(
                f"{self.where} is not reachable: {redact(str(exc), secrets)}. Is the server "
                "running, and is base_url right?",
                provider=self.provider,
            ) from None
        except httpx.TransportError as exc:
            raise BackendServerError(
                f"{self.where} dropped the connection: {redact(str(exc), secrets)}",
                provider=self.provider,
            ) from None

    async def _parse_sse(
        self, response: httpx.Response, secrets: list[str]
    ) -> AsyncIterator[StreamDelta]:
        usage: BackendUsage | None = None
        finish: str | None = None
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunk = _decode_chunk(data, self.where, self.provider, secrets)
            if chunk.get("error"):
                raise BackendServerError(
                    f"{self.where} reported an error mid-stream: "
                    f"{redact(str(chunk['error']), secrets)[:300]}",
                    provider=self.provider,
                )
            if chunk.get("usage"):
                usage = parse_openai_usage(chunk["usage"], chunk.get("timings"))
            for choice in chunk.get("choices") or []:
                text = (choice.get("delta") or {}).get("content") or ""
                finish = choice.get("finish_reason") or finish
                if text:
                    yield StreamDelta(text=text)
        yield StreamDelta(usage=usage or BackendUsage(), finish_reason=finish)


def _decode_chunk(data: str, where: str, provider: str, secrets: list[str]) -> dict[str, Any]:
    try:
        chunk = msgspec.json.decode(data)
    except msgspec.DecodeError:
        raise BackendProtocolError(
            f"{where} sent a stream chunk that is not JSON: {redact(data, secrets)[:200]}",
            provider=provider,
        ) from None
    if not isinstance(chunk, dict):
        raise BackendProtocolError(f"{where} sent a non-object stream chunk", provider=provider)
    return chunk

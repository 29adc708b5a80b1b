"""Anthropic Messages API backend over httpx, with `cache_control` breakpoints on the prefix.

Owns the translation of `ChatRequest` into a Messages request: system messages become system
blocks; a message marked `cache_breakpoint` gets `cache_control: {"type": "ephemeral"}` so the
shared prefix is cached server-side. Usage: prompt = input + cache_read + cache_creation tokens,
cached = `cache_read_input_tokens`. The key (x-api-key) comes from the environment only.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec

from delegation_machine.engine.inference.backend import (
    BackendError,
    BackendProtocolError,
    BackendServerError,
    BackendTimeout,
    BackendUnavailable,
    BackendUsage,
    ChatMessage,
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
from delegation_machine.engine.inference.openai_compat import read_api_key

ANTHROPIC_VERSION = "2023-06-01"


def _block(message: ChatMessage) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": message.content}
    if message.cache_breakpoint:
        block["cache_control"] = {"type": "ephemeral"}
    return block


def parse_anthropic_usage(raw: dict[str, Any]) -> BackendUsage:
    read = int(raw.get("cache_read_input_tokens") or 0)
    created = int(raw.get("cache_creation_input_tokens") or 0)
    uncached = int(raw.get("input_tokens") or 0)
    return BackendUsage(
        prompt_tokens=uncached + read + created,
        cached_tokens=read,
        output_tokens=int(raw.get("output_tokens") or 0),
        cached_reported="cache_read_input_tokens" in raw,
    )


class AnthropicBackend:
    """POST {base_url}/v1/messages with stream=true."""

    supports_guided_json = False

    def __init__(
        self,
        *,
        model: str,
        base_url: str = "https://api.anthropic.com",
        api_key_env: str | None = "ANTHROPIC_API_KEY",
        timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        self.provider = "anthropic"
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.retry = retry or RetryPolicy()
        self.retries_made = 0
        self._sleep = sleep
        self._rng = random.Random(0)
        self._timeout_s = timeout_s
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s)
        )

    @property
    def where(self) -> str:
        return f"the anthropic backend at {self.base_url}"

    def request_body(self, request: ChatRequest) -> dict[str, Any]:
        system = [_block(m) for m in request.messages if m.role == "system"]
        turns = [
            {"role": m.role, "content": [_block(m)]} for m in request.messages if m.role != "system"
        ]
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "messages": turns,
            "stream": True,
        }
        if system:
            body["system"] = system
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
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if key:
            headers["x-api-key"] = key
        try:
            async with self._client.stream(
                "POST",
                f"{self.base_url}/v1/messages",
                json=self.request_body(request),
                headers=headers,
            ) as response:
                if response.status_code != 200:
                    detail = (await response.aread()).decode("utf-8", "replace")
                    raise error_for_status(
                        response.status_code,
                        redact(detail, secrets),
                        where=self.where,
                        provider=self.provider,
                    )
                async for delta in self._parse_events(response, secrets):
                    yield delta
        except httpx.TimeoutException:
            raise BackendTimeout(
                f"{self.where} did not answer within {self._timeout_s:g} s (timeout_s)",
                provider=self.provider,
            ) from None
        except httpx.ConnectError as exc:
            raise BackendUnavailable(
                f"{self.where} is not reachable: {redact(str(exc), secrets)}",
                provider=self.provider,
            ) from None
        except httpx.TransportError as exc:
            raise BackendServerError(
                f"{self.where} dropped the connection: {redact(str(exc), secrets)}",
                provider=self.provider,
            ) from None

    async def _parse_events(
        self, response: httpx.Response, secrets: list[str]
    ) -> AsyncIterator[StreamDelta]:
        usage: dict[str, Any] = {}
        finish: str | None = None
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            try:
                event = msgspec.json.decode(line[5:].strip())
            except msgspec.DecodeError:
                raise BackendProtocolError(
                    f"{self.where} sent an event that is not JSON", provider=self.provider
                ) from None
            kind = event.get("type") if isinstance(event, dict) else None
            if kind == "message_start":
                usage.update((event.get("message") or {}).get("usage") or {})
            elif kind == "content_block_delta":
                text = (event.get("delta") or {}).get("text") or ""
                if text:
                    yield StreamDelta(text=text)
            elif kind == "message_delta":
                usage.update(event.get("usage") or {})
                finish = (event.get("delta") or {}).get("stop_reason") or finish
            elif kind == "error":
                raise BackendServerError(
                    f"{self.where} reported an error mid-stream: "
                    f"{redact(str(event.get('error')), secrets)[:300]}",
                    provider=self.provider,
                )
            elif kind == "message_stop":
                break
        yield StreamDelta(usage=parse_anthropic_usage(usage), finish_reason=finish)

"""OpenAI-compatible chat-completions backend over httpx (vLLM, SGLang, llama.cpp, Ollama, OpenAI).

Owns one `httpx.AsyncClient` per backend. Every request streams (SSE) so that cancellation
and the per-read timeout apply between tokens. Cached-token counts come from
`usage.prompt_tokens_details.cached_tokens` (vLLM, SGLang, OpenAI) or llama.cpp's
`timings.cache_n`. The API key is read from the environment at request time and redacted from
every error message.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec

from delegation_machine.engine.inference.backend import (
    BackendProtocolError,
    BackendRefused,
    BackendServerError,
    BackendStreamBroken,
    BackendUsage,
    ChatRequest,
    RetryPolicy,
    Sleep,
    StreamDelta,
    redact,
)
from delegation_machine.engine.inference.http_backend import HttpBackend


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


class OpenAICompatibleBackend(HttpBackend):
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
        super().__init__(
            provider=provider,
            model=model,
            base_url=base_url,
            api_key_env=api_key_env,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            retry=retry,
            sleep=sleep,
            transport=transport,
        )
        self.supports_guided_json = guided_json

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

    async def _stream_once(self, request: ChatRequest) -> AsyncIterator[StreamDelta]:
        key = read_api_key(self.api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async for delta in self._post_stream(
            f"{self.base_url}/chat/completions",
            self.request_body(request),
            headers,
            [key] if key else [],
            self._parse_sse,
            unreachable_hint=". Is the server running, and is base_url right?",
        ):
            yield delta

    async def _parse_sse(
        self, response: httpx.Response, secrets: list[str]
    ) -> AsyncIterator[StreamDelta]:
        usage: BackendUsage | None = None
        finish: str | None = None
        done = False
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
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
        if not done and finish is None:
            raise BackendStreamBroken(
                f"{self.where} ended its stream before the reply was complete (no finish "
                "reason, no [DONE]); the model server may have stopped: see its log",
                provider=self.provider,
            )
        yield StreamDelta(usage=usage or BackendUsage(), finish_reason=finish)


def _decode_chunk(data: str, where: str, provider: str, secrets: list[str]) -> dict[str, Any]:
    try:
        chunk = msgspec.json.decode(data)
    except msgspec.DecodeError:
        raise BackendProtocolError(
            f"{where} sent a stream chunk that is not JSON: {redact(data, secrets)[:200]}; "
            "check that base_url points at an OpenAI-compatible /v1 endpoint",
            provider=provider,
        ) from None
    if not isinstance(chunk, dict):
        raise BackendProtocolError(f"{where} sent a non-object stream chunk", provider=provider)
    return chunk

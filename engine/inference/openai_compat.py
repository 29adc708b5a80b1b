"""OpenAI-compatible chat-completions backend over httpx (vLLM, SGLang, llama.cpp, Ollama, OpenAI).

Owns one `httpx.AsyncClient` per backend. Every request streams (SSE) so that cancellation
and the per-read timeout apply between tokens. Cached-token counts come from
`usage.prompt_tokens_details.cached_tokens` (vLLM, SGLang, OpenAI) or llama.cpp's
`timings.cache_n`. The model's context length comes from `GET /v1/models` (vLLM's
`max_model_len`) or llama.cpp's `GET /props` (`n_ctx`, per slot), asked once. The API key is
read from the environment at request time and redacted from every error message.
"""

from __future__ import annotations

import asyncio
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
    ContextWindow,
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


DISCOVERY_TIMEOUT_S = 5.0


def window_from_models(payload: object, model: str) -> int | None:
    """`max_model_len` of `model` (or of the only model served) in a /v1/models answer."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        return None
    entries = [e for e in data if isinstance(e, dict)]
    chosen = [e for e in entries if e.get("id") == model] or (entries if len(entries) == 1 else [])
    for entry in chosen:
        value = entry.get("max_model_len")
        if isinstance(value, int) and value > 0:
            return value
    return None


def window_from_props(payload: object) -> int | None:
    """llama.cpp's context per slot: `n_ctx` of /props, or of its default_generation_settings."""
    if not isinstance(payload, dict):
        return None
    settings = payload.get("default_generation_settings")
    for source in (settings if isinstance(settings, dict) else {}, payload):
        value = source.get("n_ctx")
        if isinstance(value, int) and value > 0:
            return value
    return None


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
        self._window: ContextWindow | None = None
        self._window_known = False  # the server answered the question (with or without one)
        self._window_lock = asyncio.Lock()

    async def context_window(self) -> ContextWindow | None:
        """The context length the server reports, asked once; None when it reports none.

        An unreachable server is asked again next time (the request itself then fails with
        the clear 'not reachable' error).
        """
        if self._window_known:
            return self._window
        async with self._window_lock:
            if not self._window_known:
                self._window, self._window_known = await self._ask_context_window()
        return self._window

    async def _ask_context_window(self) -> tuple[ContextWindow | None, bool]:
        key = read_api_key(self.api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        root = self.base_url.removesuffix("/v1")
        answered = False
        for url, read in (
            (f"{self.base_url}/models", lambda p: window_from_models(p, self.model)),
            (f"{root}/props", window_from_props),
        ):
            try:
                response = await self._client.get(
                    url, headers=headers, timeout=min(self._timeout_s, DISCOVERY_TIMEOUT_S)
                )
            except httpx.HTTPError:
                continue
            answered = True
            if response.status_code != 200:
                continue
            try:
                tokens = read(msgspec.json.decode(response.content))
            except msgspec.DecodeError:
                continue
            if tokens is not None:
                field = "max_model_len" if url.endswith("/models") else "n_ctx"
                return ContextWindow(tokens, f"{field} reported by {url}"), True
        return None, answered

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

"""Anthropic Messages API backend over httpx, with `cache_control` breakpoints on the prefix.

Owns the translation of `ChatRequest` into a Messages request: system messages become system
blocks; a message marked `cache_breakpoint` gets `cache_control: {"type": "ephemeral"}` so the
shared prefix is cached server-side. Usage: prompt = input + cache_read + cache_creation tokens,
cached = `cache_read_input_tokens`. The key (x-api-key) comes from the environment only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec

from delegation_machine.engine.inference.backend import (
    BackendProtocolError,
    BackendServerError,
    BackendStreamBroken,
    BackendUsage,
    ChatMessage,
    ChatRequest,
    RetryPolicy,
    Sleep,
    StreamDelta,
    redact,
)
from delegation_machine.engine.inference.http_backend import HttpBackend
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


class AnthropicBackend(HttpBackend):
    """POST {base_url}/v1/messages with stream=true."""

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
        super().__init__(
            provider="anthropic",
            model=model,
            base_url=base_url,
            api_key_env=api_key_env,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            retry=retry,
            sleep=sleep,
        )

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

    async def _stream_once(self, request: ChatRequest) -> AsyncIterator[StreamDelta]:
        key = read_api_key(self.api_key_env)
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if key:
            headers["x-api-key"] = key
        async for delta in self._post_stream(
            f"{self.base_url}/v1/messages",
            self.request_body(request),
            headers,
            [key] if key else [],
            self._parse_events,
        ):
            yield delta

    async def _parse_events(
        self, response: httpx.Response, secrets: list[str]
    ) -> AsyncIterator[StreamDelta]:
        usage: dict[str, Any] = {}
        finish: str | None = None
        stopped = False
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
                stopped = True
                break
        if not stopped and finish is None:
            raise BackendStreamBroken(
                f"{self.where} ended its stream before the reply was complete",
                provider=self.provider,
            )
        yield StreamDelta(usage=parse_anthropic_usage(usage), finish_reason=finish)

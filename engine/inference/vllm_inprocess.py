"""In-process vLLM backend (`vllm.LLM(..., enable_prefix_caching=True)`), behind the `vllm` extra.

Owns one `vllm.LLM` engine, created on first use; `vllm` is imported only then, so this module
imports on machines without a GPU. Generation runs in a worker thread (vLLM's offline API is
blocking): cancelling the caller stops waiting but cannot stop a generation already running.
The result arrives as a single delta; cached tokens come from `RequestOutput.num_cached_tokens`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

from delegation_machine.engine.inference.backend import (
    BackendError,
    BackendUsage,
    ChatRequest,
    Completion,
    StreamDelta,
    collect,
)


class VLLMNotInstalled(BackendError):
    """The `vllm` extra is not installed (it needs a CUDA GPU)."""


def _sampling_params(vllm: Any, request: ChatRequest) -> Any:
    kwargs: dict[str, Any] = {"max_tokens": request.max_tokens, "temperature": request.temperature}
    if request.json_schema is not None:
        # vLLM renamed guided decoding to structured outputs (0.10+); accept either.
        sampling = vllm.sampling_params
        if hasattr(sampling, "StructuredOutputsParams"):
            kwargs["structured_outputs"] = sampling.StructuredOutputsParams(
                json=request.json_schema
            )
        elif hasattr(sampling, "GuidedDecodingParams"):
            kwargs["guided_decoding"] = sampling.GuidedDecodingParams(json=request.json_schema)
    return vllm.SamplingParams(**kwargs)


class VLLMInProcessBackend:
    provider = "vllm-inprocess"
    supports_guided_json = True

    def __init__(self, *, model: str, engine_args: dict[str, Any] | None = None) -> None:
        self.model = model
        self._engine_args = {"enable_prefix_caching": True, **(engine_args or {})}
        self._llm: Any = None
        self._lock = threading.Lock()

    def _engine(self) -> tuple[Any, Any]:
        try:
            import vllm  # the `vllm` extra (CUDA wheels)
        except ImportError:
            raise VLLMNotInstalled(
                "provider 'vllm-inprocess' needs the vllm extra (pip install "
                "'delegation-machine[vllm]') and a CUDA GPU; or run `vllm serve` and use "
                "provider 'openai' with its base_url",
                provider=self.provider,
            ) from None
        with self._lock:
            if self._llm is None:
                self._llm = vllm.LLM(model=self.model, **self._engine_args)
        return vllm, self._llm

    def _generate(self, request: ChatRequest) -> Completion:
        vllm, llm = self._engine()
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        outputs = llm.chat(messages, _sampling_params(vllm, request), use_tqdm=False)
        out = outputs[0]
        cached = getattr(out, "num_cached_tokens", None)
        usage = BackendUsage(
            prompt_tokens=len(out.prompt_token_ids or ()),
            cached_tokens=int(cached or 0),
            output_tokens=len(out.outputs[0].token_ids),
            cached_reported=cached is not None,
        )
        return Completion(
            text=out.outputs[0].text, usage=usage, finish_reason=out.outputs[0].finish_reason
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamDelta]:
        completion = await asyncio.to_thread(self._generate, request)
        yield StreamDelta(text=completion.text)
        yield StreamDelta(usage=completion.usage, finish_reason=completion.finish_reason)

    async def complete(self, request: ChatRequest) -> Completion:
        return await collect(self.stream(request))

    async def aclose(self) -> None:
        self._llm = None

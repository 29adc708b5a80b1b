"""The in-process vLLM backend imports lazily and says clearly when vllm is missing."""

from __future__ import annotations

import importlib.util

import pytest

from delegation_machine.engine.inference.backend import ChatMessage, ChatRequest
from delegation_machine.engine.inference.vllm_inprocess import (
    VLLMInProcessBackend,
    VLLMNotInstalled,
)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
async def test_missing_vllm_is_a_clear_error() -> None:
    backend = VLLMInProcessBackend(model="/models/tiny")
    request = ChatRequest(messages=(ChatMessage("user", "hi"),))
    with pytest.raises(VLLMNotInstalled, match=r"delegation-machine\[vllm\].*vllm serve"):
        await backend.complete(request)


def test_prefix_caching_is_on_by_default() -> None:
    backend = VLLMInProcessBackend(model="m", engine_args={"gpu_memory_utilization": 0.5})
    assert backend._engine_args == {"enable_prefix_caching": True, "gpu_memory_utilization": 0.5}

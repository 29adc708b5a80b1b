"""Every way a model server can fail, against a real local HTTP server misbehaving on purpose.

Each fault ends in one typed BackendError whose message says what happened, where, and what to
do; transient faults are asked again with backoff, the others are not.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from delegation_machine.engine.inference.backend import (
    BackendContextOverflow,
    BackendProtocolError,
    BackendRefused,
    BackendStreamBroken,
    ChatMessage,
    ChatRequest,
    RetryPolicy,
    failure_record,
)
from delegation_machine.engine.inference.openai_compat import OpenAICompatibleBackend
from delegation_machine.engine.inference.scripted import ScriptedServer, ScriptedTurn
from tests.engine.model_doubles import RecordingSleep

Start = Callable[..., ScriptedServer]


def _request(max_tokens: int = 64) -> ChatRequest:
    return ChatRequest(
        messages=(ChatMessage("system", "prefix " * 40, True), ChatMessage("user", "do it")),
        max_tokens=max_tokens,
    )


def _backend(
    server: ScriptedServer, sleep: RecordingSleep, retries: int = 2
) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(
        base_url=server.base_url,
        model="m",
        sleep=sleep,
        retry=RetryPolicy(max_retries=retries, backoff_s=0.5),
    )


async def test_server_killed_mid_stream_is_asked_again(
    scripted: Start, backoff: RecordingSleep
) -> None:
    server = scripted(
        [
            ScriptedTurn(content="x" * 64, chunk_chars=8, fault="die", hold_after_chunks=2),
            ScriptedTurn(content="whole answer"),
        ]
    )
    backend = _backend(server, backoff)
    completion = await backend.complete(_request())
    await backend.aclose()
    assert completion.text == "whole answer"  # nothing of the broken reply is kept
    assert completion.attempts == 2
    assert len(backoff.delays) == 1


async def test_server_that_stays_dead_mid_stream_is_a_clear_error(
    scripted: Start, backoff: RecordingSleep
) -> None:
    server = scripted(
        [ScriptedTurn(content="y" * 64, chunk_chars=8, fault="die", hold_after_chunks=1)] * 3
    )
    backend = _backend(server, backoff)
    with pytest.raises(BackendStreamBroken, match=r"broke off its reply.*see its log") as caught:
        await backend.complete(_request())
    await backend.aclose()
    assert server.base_url in str(caught.value)
    assert len(server.requests) == 3  # 1 + max_retries
    assert failure_record(caught.value)["error"] == "BackendStreamBroken"


async def test_stream_ended_without_finish_is_not_taken_as_a_reply(
    scripted: Start, backoff: RecordingSleep
) -> None:
    server = scripted(
        [ScriptedTurn(content="z" * 64, chunk_chars=8, fault="truncate", hold_after_chunks=3)]
    )
    backend = _backend(server, backoff, retries=0)
    with pytest.raises(BackendStreamBroken, match=r"before the reply was complete"):
        await backend.complete(_request())
    await backend.aclose()


async def test_malformed_stream_is_a_protocol_error_and_not_retried(
    scripted: Start, backoff: RecordingSleep
) -> None:
    server = scripted([ScriptedTurn(content="{}" * 20, chunk_chars=4, fault="malformed")])
    backend = _backend(server, backoff)
    with pytest.raises(BackendProtocolError, match=r"not JSON.*OpenAI-compatible /v1"):
        await backend.complete(_request())
    await backend.aclose()
    assert backoff.delays == []
    assert len(server.requests) == 1


async def test_context_overflow_is_refused_once_and_says_what_to_configure(
    scripted: Start, backoff: RecordingSleep
) -> None:
    server = scripted([ScriptedTurn(content="never")], max_model_len=64)
    backend = _backend(server, backoff)
    with pytest.raises(BackendContextOverflow, match=r"maximum context length is 64") as caught:
        await backend.complete(_request(max_tokens=32))
    await backend.aclose()
    message = str(caught.value)
    assert "--max-model-len" in message and "inference.context_window" in message
    assert isinstance(caught.value, BackendRefused) and not caught.value.retryable
    assert backoff.delays == []


async def test_llama_cpp_wording_of_overflow_is_recognised(
    scripted: Start, backoff: RecordingSleep
) -> None:
    detail = "the request exceeds the available context size, try increasing it"
    server = scripted([ScriptedTurn(status=400, error=detail)])
    backend = _backend(server, backoff)
    with pytest.raises(BackendContextOverflow, match="available context size"):
        await backend.complete(_request())
    await backend.aclose()


async def test_other_400s_stay_plain_refusals(scripted: Start, backoff: RecordingSleep) -> None:
    server = scripted([ScriptedTurn(status=400, error="unknown field 'foo'")])
    backend = _backend(server, backoff)
    with pytest.raises(BackendRefused) as caught:
        await backend.complete(_request())
    await backend.aclose()
    assert not isinstance(caught.value, BackendContextOverflow)


async def test_5xx_names_the_log_and_is_retried(scripted: Start, backoff: RecordingSleep) -> None:
    server = scripted([ScriptedTurn(status=502, error="bad gateway")] * 3)
    backend = _backend(server, backoff)
    with pytest.raises(Exception, match=r"HTTP 502.*bad gateway.*log"):
        await backend.complete(_request())
    await backend.aclose()
    assert len(backoff.delays) == 2


async def test_a_connection_reset_before_any_answer_is_asked_again(
    scripted: Start, backoff: RecordingSleep
) -> None:
    server = scripted([ScriptedTurn(fault="hangup"), ScriptedTurn(content="answer")])
    backend = _backend(server, backoff)
    completion = await backend.complete(_request())
    await backend.aclose()
    assert completion.text == "answer" and completion.attempts == 2
    assert len(server.requests) == 2 and len(backoff.delays) == 1


async def test_a_server_that_keeps_hanging_up_is_a_clear_error_after_the_retries(
    scripted: Start, backoff: RecordingSleep
) -> None:
    server = scripted([ScriptedTurn(fault="hangup")] * 3)
    backend = _backend(server, backoff)
    with pytest.raises(BackendStreamBroken, match=r"broke off its reply.*see its log"):
        await backend.complete(_request())
    await backend.aclose()
    assert len(server.requests) == 3 and len(backoff.delays) == 2


@given(
    backoff_s=st.floats(0.01, 5.0),
    max_backoff_s=st.floats(0.01, 30.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_backoff_grows_exponentially_and_stays_bounded(
    backoff_s: float, max_backoff_s: float, seed: int
) -> None:
    policy = RetryPolicy(max_retries=12, backoff_s=backoff_s, max_backoff_s=max_backoff_s)
    rng = random.Random(seed)
    for attempt in range(1, 13):
        ceiling = min(max_backoff_s, backoff_s * 2 ** (attempt - 1))
        assert ceiling / 2 <= policy.delay(attempt, rng) <= ceiling <= max_backoff_s

"""The OpenAI-compatible backend against the real scripted HTTP server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from delegation_machine.engine.inference.backend import (
    BackendRefused,
    BackendServerError,
    BackendTimeout,
    BackendUnavailable,
    ChatMessage,
    ChatRequest,
    RetryPolicy,
)
from delegation_machine.engine.inference.openai_compat import OpenAICompatibleBackend
from delegation_machine.engine.inference.scripted import ScriptedServer, ScriptedTurn
from tests.engine.model_doubles import RecordingSleep

Start = Callable[..., ScriptedServer]


def _request(user: str = "hello", schema: dict[str, object] | None = None) -> ChatRequest:
    return ChatRequest(
        messages=(ChatMessage("system", "shared prefix " * 50, True), ChatMessage("user", user)),
        json_schema=schema,
    )


def _backend(
    server: ScriptedServer, sleep: RecordingSleep, **kwargs: object
) -> OpenAICompatibleBackend:
    options: dict[str, object] = {"retry": RetryPolicy(max_retries=2, backoff_s=0.5)}
    options.update(kwargs)
    return OpenAICompatibleBackend(
        base_url=server.base_url,
        model="m",
        sleep=sleep,
        **options,  # type: ignore[arg-type]
    )


async def test_streams_text_and_reads_cached_tokens(
    scripted: Start, backoff: RecordingSleep
) -> None:
    server = scripted([ScriptedTurn(content="first answer"), ScriptedTurn(content="second")])
    backend = _backend(server, backoff)
    pieces = [d.text async for d in backend.stream(_request("a"))]
    assert "".join(pieces) == "first answer"
    assert len([p for p in pieces if p]) == 1  # 16-char chunks: one piece
    second = await backend.complete(_request("b"))
    await backend.aclose()
    assert second.text == "second"
    assert second.usage.cached_reported
    # The second request shares the whole system prompt with the first: whole blocks reused.
    assert second.usage.cached_tokens == server.requests[1].cached_tokens > 0
    assert second.usage.prompt_tokens == server.requests[1].prompt_tokens
    assert server.requests[0].body["stream"] is True
    assert server.requests[0].body["stream_options"] == {"include_usage": True}


async def test_guided_json_sends_a_json_schema_response_format(
    scripted: Start, backoff: RecordingSleep
) -> None:
    server = scripted([ScriptedTurn(content="{}"), ScriptedTurn(content="{}")])
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    guided = _backend(server, backoff)
    plain = _backend(server, backoff, guided_json=False)
    await guided.complete(_request(schema=schema))
    await plain.complete(_request(schema=schema))
    await guided.aclose()
    await plain.aclose()
    assert server.requests[0].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema},
    }
    assert "response_format" not in server.requests[1].body


async def test_transient_errors_are_retried_with_backoff(
    scripted: Start, backoff: RecordingSleep
) -> None:
    server = scripted(
        [ScriptedTurn(status=503), ScriptedTurn(status=429), ScriptedTurn(content="ok")]
    )
    backend = _backend(server, backoff)
    completion = await backend.complete(_request())
    await backend.aclose()
    assert completion.text == "ok"
    assert completion.attempts == 3
    assert len(backoff.delays) == 2
    assert 0.25 <= backoff.delays[0] <= 0.5 and 0.5 <= backoff.delays[1] <= 1.0


async def test_retries_exhausted_raise_the_last_error(
    scripted: Start, backoff: RecordingSleep
) -> None:
    server = scripted([ScriptedTurn(status=500, error="engine overloaded")] * 3)
    backend = _backend(server, backoff)
    with pytest.raises(BackendServerError, match=r"HTTP 500.*engine overloaded"):
        await backend.complete(_request())
    await backend.aclose()
    assert len(server.requests) == 3  # 1 + max_retries


async def test_refusal_is_not_retried_and_names_the_fix(
    scripted: Start, backoff: RecordingSleep
) -> None:
    server = scripted([ScriptedTurn(status=401, error="invalid key")])
    backend = _backend(server, backoff)
    with pytest.raises(BackendRefused, match=r"HTTP 401.*api_key_env") as caught:
        await backend.complete(_request())
    await backend.aclose()
    assert caught.value.status == 401
    assert backoff.delays == []


async def test_slow_server_times_out_then_the_retry_succeeds(
    scripted: Start, backoff: RecordingSleep
) -> None:
    server = scripted([ScriptedTurn(hold="before_headers"), ScriptedTurn(content="late but fine")])
    backend = _backend(server, backoff, timeout_s=0.3)
    completion = await backend.complete(_request())
    await backend.aclose()
    assert completion.text == "late but fine"
    assert completion.attempts == 2
    assert server.held.is_set()


async def test_timeout_without_retries_is_a_clear_error(
    scripted: Start, backoff: RecordingSleep
) -> None:
    server = scripted([ScriptedTurn(hold="before_headers")])
    backend = _backend(server, backoff, timeout_s=0.2, retry=RetryPolicy(max_retries=0))
    with pytest.raises(BackendTimeout, match=r"did not answer within 0.2 s"):
        await backend.complete(_request())
    await backend.aclose()


async def test_cancellation_mid_stream_closes_the_connection(
    scripted: Start, backoff: RecordingSleep
) -> None:
    server = scripted(
        [ScriptedTurn(content="x" * 200, chunk_chars=10, hold="mid_stream", hold_after_chunks=2)]
    )
    backend = _backend(server, backoff)
    first_text: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    received: list[str] = []

    async def consume() -> None:
        async for delta in backend.stream(_request()):
            received.append(delta.text)
            if not first_text.done():
                first_text.set_result(delta.text)

    task = asyncio.create_task(consume())
    assert await first_text == "x" * 10
    assert await asyncio.to_thread(server.held.wait, 10)  # the server is parked mid-stream
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(server.disconnected.wait, 10)
    # Only what was sent before the server parked can have arrived (one or both chunks).
    assert "".join(received) in ("x" * 10, "x" * 20)
    await backend.aclose()


async def test_nothing_listening_is_unavailable(backoff: RecordingSleep) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = OpenAICompatibleBackend(
        base_url=f"http://127.0.0.1:{port}/v1",
        model="m",
        sleep=backoff,
        retry=RetryPolicy(max_retries=1),
    )
    with pytest.raises(BackendUnavailable, match=r"not reachable.*base_url"):
        await backend.complete(_request())
    await backend.aclose()
    assert len(backoff.delays) == 1


async def test_missing_key_variable_is_named(
    scripted: Start, backoff: RecordingSleep, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DM_TEST_ABSENT_KEY", raising=False)
    server = scripted([ScriptedTurn(content="never")])
    backend = _backend(server, backoff, api_key_env="DM_TEST_ABSENT_KEY")
    with pytest.raises(BackendRefused, match=r"DM_TEST_ABSENT_KEY"):
        await backend.complete(_request())
    await backend.aclose()
    assert server.requests == []


async def test_key_is_sent_but_redacted_from_errors(
    scripted: Start, backoff: RecordingSleep, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-4f9a1c2e7b"
    monkeypatch.setenv("DM_TEST_KEY", secret)
    server = scripted([ScriptedTurn(content="ok"), ScriptedTurn(status=403, echo_credentials=True)])
    backend = _backend(server, backoff, api_key_env="DM_TEST_KEY")
    await backend.complete(_request())
    with pytest.raises(BackendRefused) as caught:
        await backend.complete(_request())
    await backend.aclose()
    assert server.requests[0].had_credentials
    assert secret not in str(caught.value)
    assert "[redacted]" in str(caught.value)

"""Configuration of the `[inference]` table: validation names the key; keys never in config."""

from __future__ import annotations

import pytest

from delegation_machine.engine.config import ConfigError
from delegation_machine.engine.inference.anthropic import AnthropicBackend
from delegation_machine.engine.inference.config import (
    create_backend,
    create_session,
    load_backend_config,
    no_backend_message,
)
from delegation_machine.engine.inference.openai_compat import OpenAICompatibleBackend
from delegation_machine.engine.inference.vllm_inprocess import VLLMInProcessBackend


def test_no_provider_means_no_backend() -> None:
    assert load_backend_config(None) is None
    assert load_backend_config({}) is None
    assert load_backend_config({"model": "x"}) is None


def test_editor_settings_in_camel_case() -> None:
    cfg = load_backend_config(
        {
            "provider": "openai",
            "baseUrl": "http://127.0.0.1:8000/v1",
            "model": "qwen",
            "apiKeyEnv": "VLLM_KEY",
            "timeoutS": 5,
            "blockSize": 32,
            "maxTokensPerTask": 1000,
        }
    )
    assert cfg is not None
    assert (cfg.base_url, cfg.api_key_env, cfg.timeout_s, cfg.block_size) == (
        "http://127.0.0.1:8000/v1",
        "VLLM_KEY",
        5.0,
        32,
    )
    session = create_session(cfg)
    assert isinstance(session.backend, OpenAICompatibleBackend)
    assert session.accounting.block_size == 32
    assert session.ledger.default_budget == 1000


@pytest.mark.parametrize(
    ("mapping", "key"),
    [
        ({"provider": "openai", "model": "m", "timeout_s": "soon"}, "inference.timeout_s"),
        ({"provider": "bard", "model": "m"}, "inference.provider"),
        ({"provider": "openai", "model": "m", "colour": "red"}, "inference.colour"),
        ({"provider": "openai"}, "inference.model"),
        ({"provider": "openai", "model": "m", "block_size": 0}, "inference.block_size"),
        ({"provider": "scripted", "model": "m"}, "inference.base_url"),
        (
            {"provider": "openai", "model": "m", "api_key_env": "sk-live-abc.def"},
            "inference.api_key_env",
        ),
    ],
)
def test_validation_errors_name_the_key(mapping: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{key}\b"):
        load_backend_config(mapping)


@pytest.mark.parametrize("name", ["api_key", "apiKey", "token", "secret"])
def test_a_literal_key_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="api_key_env") as caught:
        load_backend_config({"provider": "openai", "model": "m", name: "sk-abc123"})
    assert "sk-abc123" not in str(caught.value)


def test_create_backend_by_provider() -> None:
    openai = load_backend_config({"provider": "openai", "model": "gpt"})
    anthropic = load_backend_config({"provider": "anthropic", "model": "claude"})
    inprocess = load_backend_config({"provider": "vllm-inprocess", "model": "/models/tiny"})
    assert openai and anthropic and inprocess
    made = create_backend(openai)
    assert (
        isinstance(made, OpenAICompatibleBackend) and made.base_url == "https://api.openai.com/v1"
    )
    assert isinstance(create_backend(anthropic), AnthropicBackend)
    assert isinstance(create_backend(inprocess), VLLMInProcessBackend)


def test_no_backend_message_names_the_builtins_and_the_setting() -> None:
    message = no_backend_message()
    for word in (
        "fix",
        "format",
        "rename OLD NEW",
        "check",
        "[inference]",
        "api_key_env",
        "docs/models.md",
    ):
        assert word in message

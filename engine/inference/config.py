"""Inference configuration: the `[inference]` table of `.delegation/config.toml` or the editor's
`delegation.inference` settings, validated into `BackendConfig`, and the factory of backends.

Owns `BackendConfig`, `load_backend_config`, `create_backend`, `create_session`,
`no_backend_message` and `ModelSetup` (the swarm's configured model). Invariants: a configuration never holds a key, only the NAME of the
environment variable that does (`api_key_env`); a literal key under any key-like name is refused;
every validation error names the offending key as `inference.<key>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from delegation_machine.engine.config import ConfigError
from delegation_machine.engine.inference.accounting import TokenLedger, TokenPrices
from delegation_machine.engine.inference.anthropic import AnthropicBackend
from delegation_machine.engine.inference.backend import Backend, RetryPolicy, Sleep
from delegation_machine.engine.inference.layout import PrefixCatalog
from delegation_machine.engine.inference.openai_compat import OpenAICompatibleBackend
from delegation_machine.engine.inference.session import InferenceSession
from delegation_machine.engine.inference.vllm_inprocess import VLLMInProcessBackend

Provider = Literal["openai", "anthropic", "vllm-inprocess", "scripted"]

DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}

MIN_CONTEXT_WINDOW = 256

_SECRET_KEYS = {"api_key", "apikey", "key", "token", "secret", "password", "authorization"}


class BackendConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    provider: Provider
    model: str = ""
    base_url: str = ""
    api_key_env: str | None = None  # the NAME of the variable, e.g. "OPENAI_API_KEY"
    timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    max_retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    block_size: int = 16  # radix accounting block, match the server's (vLLM default 16)
    max_tokens_per_task: int = 200_000  # hard cap on billable tokens per task
    max_output_tokens: int = 2048
    # The model's context length; the server's report (vLLM max_model_len, llama.cpp n_ctx)
    # is used when there is one, the smaller of the two when both are known.
    context_window: int | None = None
    temperature: float = 0.0
    guided_json: bool | None = None  # None: on for openai/vllm/scripted, off for anthropic
    max_turns: int = 12
    max_validation_retries: int = 2
    price_prompt_per_1k: float = 0.0
    price_cached_per_1k: float = 0.0
    price_output_per_1k: float = 0.0
    engine_args: dict[str, Any] = {}  # vllm-inprocess only: passed to vllm.LLM

    @property
    def resolved_base_url(self) -> str:
        return self.base_url or DEFAULT_BASE_URLS.get(self.provider, "")

    @property
    def prices(self) -> TokenPrices:
        return TokenPrices(
            self.price_prompt_per_1k, self.price_cached_per_1k, self.price_output_per_1k
        )

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(self.max_retries, self.backoff_s, self.max_backoff_s)


def _snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


def _check_positive(cfg: BackendConfig) -> None:
    for name in (
        "timeout_s",
        "connect_timeout_s",
        "block_size",
        "max_tokens_per_task",
        "max_output_tokens",
        "max_turns",
    ):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"inference.{name}: must be > 0, got {getattr(cfg, name)!r}")
    for name in ("max_retries", "max_validation_retries", "backoff_s"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"inference.{name}: must be >= 0, got {getattr(cfg, name)!r}")


def load_backend_config(mapping: Mapping[str, Any] | None) -> BackendConfig | None:
    """Validate the `[inference]` table; None when no backend is configured (no provider)."""
    if not mapping:
        return None
    values = {_snake(str(k)): v for k, v in mapping.items()}
    for key in values:
        if key.lower() in _SECRET_KEYS:
            raise ConfigError(
                f"inference.{key}: keys are never read from configuration; put the key in an "
                "environment variable and set inference.api_key_env to its name"
            )
    if not values.get("provider"):
        return None
    known = BackendConfig.__struct_fields__
    for key in values:
        if key not in known:
            raise ConfigError(f"inference.{key}: unknown key (known: {', '.join(known)})")
    try:
        cfg = msgspec.convert(values, type=BackendConfig)
    except msgspec.ValidationError as exc:
        message = str(exc)
        path = message.rsplit(" - at `$.", 1)[1].rstrip("`") if " - at `$." in message else ""
        where = f"inference.{path}" if path else "inference"
        detail = message.split(" - at ")[0]
        raise ConfigError(f"{where}: {detail}") from None
    _check_positive(cfg)
    if cfg.context_window is not None and cfg.context_window < MIN_CONTEXT_WINDOW:
        raise ConfigError(
            f"inference.context_window: must be at least {MIN_CONTEXT_WINDOW} tokens, "
            f"got {cfg.context_window}"
        )
    if cfg.provider != "vllm-inprocess" and not cfg.model:
        raise ConfigError(f"inference.model: required for provider {cfg.provider!r}")
    if cfg.provider == "scripted" and not cfg.base_url:
        raise ConfigError("inference.base_url: required for provider 'scripted'")
    if cfg.api_key_env is not None and not cfg.api_key_env.replace("_", "").isalnum():
        raise ConfigError(
            "inference.api_key_env: must be the NAME of an environment variable "
            "(letters, digits, underscores), not the key itself"
        )
    return cfg


def create_backend(cfg: BackendConfig, *, sleep: Sleep | None = None) -> Backend:
    """Build the backend the configuration names. Nothing is contacted until the first request."""
    if cfg.provider == "anthropic":
        return AnthropicBackend(
            model=cfg.model,
            base_url=cfg.resolved_base_url,
            api_key_env=cfg.api_key_env,
            timeout_s=cfg.timeout_s,
            connect_timeout_s=cfg.connect_timeout_s,
            retry=cfg.retry,
            sleep=sleep,
        )
    if cfg.provider == "vllm-inprocess":
        return VLLMInProcessBackend(model=cfg.model, engine_args=dict(cfg.engine_args))
    return OpenAICompatibleBackend(
        base_url=cfg.resolved_base_url,
        model=cfg.model,
        api_key_env=cfg.api_key_env,
        timeout_s=cfg.timeout_s,
        connect_timeout_s=cfg.connect_timeout_s,
        retry=cfg.retry,
        guided_json=cfg.guided_json if cfg.guided_json is not None else True,
        provider=cfg.provider,
        sleep=sleep,
    )


def create_session(cfg: BackendConfig, *, sleep: Sleep | None = None) -> InferenceSession:
    """The backend with the shared radix accounting and token ledger the swarm's agents share."""
    ledger = TokenLedger(prices=cfg.prices, max_tokens_per_task=cfg.max_tokens_per_task)
    return InferenceSession(
        create_backend(cfg, sleep=sleep),
        ledger=ledger,
        block_size=cfg.block_size,
        context_window=cfg.context_window,
    )


def no_backend_message() -> str:
    """What the swarm answers to a natural-language request when no backend is configured."""
    return (
        "No inference backend is configured, so only the built-in tasks can run: "
        "fix (apply available fixes), format, rename OLD NEW, check. "
        "To delegate natural-language requests, add an [inference] table to "
        ".delegation/config.toml, for example:\n"
        "  [inference]\n"
        '  provider = "openai"              # also: anthropic, vllm-inprocess\n'
        '  base_url = "http://127.0.0.1:8000/v1"   # vllm serve, SGLang, llama.cpp, Ollama\n'
        '  model = "Qwen/Qwen2.5-Coder-7B-Instruct"\n'
        '  api_key_env = "OPENAI_API_KEY"   # the NAME of the variable holding the key\n'
        "or set the same keys under the editor setting delegation.inference. "
        "See docs/models.md."
    )


class ModelSetup:
    """The swarm's model, if one is configured: its settings, the session its agents and the
    planner share, and the catalog of shared prompt prefixes.

    Owned by the swarm; the planner and the agent factory read it, so a settings change
    (`configure`) reaches both at once.
    """

    def __init__(self, settings: Mapping[str, Any] | None) -> None:
        self.prefixes = PrefixCatalog()
        self.config: BackendConfig | None = None
        self.session: InferenceSession | None = None
        self.configure(settings)

    def configure(self, settings: Mapping[str, Any] | None) -> InferenceSession | None:
        """Apply `[inference]` settings; returns the replaced session (the caller closes it)."""
        previous = self.session
        self.config = load_backend_config(settings or None)
        self.session = create_session(self.config) if self.config is not None else None
        return previous

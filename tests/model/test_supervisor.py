"""`ModelServerSupervisor`: restarts a server that dies, gives up after `max_restarts` crashes
in its window, and stops what it started on close. The child is a small real HTTP server put
where `make llama-server` puts llama-server (the real vLLM restart is in
test_supervised_model_server.py); it answers /v1/models and prints llama.cpp's ready line."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from delegation_machine.engine.inference.model_server import (
    ModelServer,
    ModelServerSpec,
    ModelServerSupervisor,
    get_json,
)
from delegation_machine.engine.inference.provision import ModelServerCache

STAND_IN = f"""#!{sys.executable}
import http.server, json, sys
port = int(sys.argv[sys.argv.index("--port") + 1])

class Models(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({{"data": [{{"id": "m"}}]}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", port), Models)
print(f"main: server is listening on http://127.0.0.1:{{port}}", flush=True)
server.serve_forever()
"""


def stand_in_server(tmp_path: Path) -> ModelServer:
    cache = ModelServerCache(tmp_path / "cache")
    binary = cache.root / "llama.cpp" / "bin" / "llama-server"
    binary.parent.mkdir(parents=True)
    binary.write_text(STAND_IN)
    binary.chmod(0o755)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    spec = ModelServerSpec(kind="llama.cpp", model=gguf, served_name="m")
    return ModelServer(spec, cache, log_path=tmp_path / "server.log", start_timeout_s=30)


async def test_a_dead_server_is_restarted_until_the_limit_then_left_down(tmp_path: Path) -> None:
    server = stand_in_server(tmp_path)
    events: list[str] = []
    changed = asyncio.Event()

    def on_event(message: str) -> None:
        events.append(message)
        changed.set()

    async def said(count: int, text: str) -> None:
        while sum(text in e for e in events) < count:
            changed.clear()
            await asyncio.wait_for(changed.wait(), 30)

    supervisor = ModelServerSupervisor(server, on_event=on_event, max_restarts=2)
    supervisor.start()
    try:
        for answered in (1, 2, 3):
            await said(answered, "answers at")
            assert get_json(f"{server.base_url}/models")["data"][0]["id"] == "m"
            assert server.process is not None
            os.killpg(server.process.pid, signal.SIGKILL)  # a crash
        await said(1, "not restarting it")
        assert server.starts == 3 and not server.running
        assert sum("); restarting it" in e for e in events) == 2
    finally:
        await supervisor.aclose()


async def test_closing_the_supervisor_stops_its_server(tmp_path: Path) -> None:
    server = stand_in_server(tmp_path)
    supervisor = ModelServerSupervisor(server)
    supervisor.start()
    await asyncio.wait_for(supervisor.ready.wait(), 30)
    process = server.process
    assert process is not None and process.poll() is None
    await supervisor.aclose()
    assert process.poll() is not None  # stopped, not left behind

"""A real local HTTP server that speaks OpenAI chat completions (and Anthropic Messages).

Owns `ScriptedServer`: bound to 127.0.0.1 on a free port, served by `http.server` threads, it
replays scripted turns (a list, or a responder function of the request) with streaming SSE,
records every request it receives, and reports usage like a prefix-caching server: cached tokens
are computed with the same radix-tree block arithmetic as vLLM's automatic prefix caching.
It never stores credentials: only whether an Authorization/x-api-key header was present.
Used by the engine's tests, the benchmarks and the LSP-level tests.
"""

from __future__ import annotations

import itertools
import json
import logging
import select
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import msgspec

from delegation_machine.engine.inference.radix import PrefixAccounting
from delegation_machine.engine.inference.tokens import ApproxTokenizer, ChatTurnText, render_chat

logger = logging.getLogger(__name__)


class ScriptedTurn(msgspec.Struct, frozen=True, kw_only=True):
    """One scripted reply. `hold` parks the reply until `ScriptedServer.release()`."""

    content: str = ""
    status: int = 200
    error: str = "scripted failure"
    echo_credentials: bool = False  # put the received key in the error body (redaction tests)
    hold: Literal["none", "before_headers", "mid_stream"] = "none"
    hold_after_chunks: int = 1
    chunk_chars: int = 16
    finish_reason: str = "stop"
    report_cached: bool = True
    # Misbehaviour on purpose, after `hold_after_chunks` content chunks: "malformed" sends a
    # chunk that is not JSON; "die" cuts the connection mid-response (a killed server);
    # "truncate" ends the response cleanly but without a finish reason or [DONE]; "hangup"
    # closes the connection before any response (a connection reset, a server restarting).
    fault: Literal["none", "malformed", "die", "truncate", "hangup"] = "none"


class RecordedRequest(msgspec.Struct, frozen=True):
    path: str
    body: dict[str, Any]
    had_credentials: bool
    prompt_tokens: int = 0
    cached_tokens: int = 0


Responder = Callable[[RecordedRequest], ScriptedTurn]


class ScriptExhausted(RuntimeError):
    pass


def _queue_responder(turns: Sequence[ScriptedTurn]) -> Responder:
    pending = list(turns)
    lock = threading.Lock()

    def next_turn(_: RecordedRequest) -> ScriptedTurn:
        with lock:
            if not pending:
                raise ScriptExhausted("the script has no more turns")
            return pending.pop(0)

    return next_turn


class _QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many agents connect at once; the default backlog is 5

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (a cancelled stream) is expected here, not a fault to print.
        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionError, TimeoutError)):
            logger.exception("scripted server: request from %s failed", client_address)


class ScriptedServer:
    """Start with `with ScriptedServer(turns) as server:`; point a backend at `server.base_url`."""

    def __init__(
        self,
        turns: Sequence[ScriptedTurn] | Responder,
        *,
        block_size: int = 16,
        model: str = "scripted-model",
        max_model_len: int | None = None,
        context_source: Literal["models", "props", "none"] = "models",
        token_scale: float = 1.0,
    ) -> None:
        self.respond: Responder = turns if callable(turns) else _queue_responder(turns)
        self.model = model
        # Like vLLM (/v1/models max_model_len) or llama.cpp (/props n_ctx): the context window
        # is reported ("none": not reported, like a proxy that hides it), and a request whose
        # prompt plus max_tokens exceeds it gets vLLM's 400.
        self.max_model_len = max_model_len
        self.context_source = context_source
        # A model whose tokenizer makes `token_scale` times the tokens ours counts: usage and
        # the window check see the scaled counts.
        self.token_scale = token_scale
        self.tokenizer = ApproxTokenizer()
        self.cache = PrefixAccounting(block_size)
        self.requests: list[RecordedRequest] = []
        self.held = threading.Event()  # set while a reply is parked on `hold`
        self.disconnected = threading.Event()  # set when a client hung up on a parked reply
        self._gate = threading.Event()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._httpd: _QuietHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> ScriptedServer:
        handler = type("ScriptedHandler", (_Handler,), {"scripted": self})
        self._httpd = _QuietHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="scripted-llm-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._gate.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "start() the server first"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """For OpenAI-compatible clients (ends in /v1)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def release(self) -> None:
        """Let parked replies continue."""
        self._gate.set()

    # --- accounting -------------------------------------------------------------------------

    def account(self, path: str, body: dict[str, Any], had_credentials: bool) -> RecordedRequest:
        turns, breakpoint_text = _chat_turns(path, body)
        tokens = self.tokenizer.encode(render_chat(turns))
        observed = self.cache.observe(tokens)
        cached = observed.reusable_tokens
        if breakpoint_text is not None:
            # Anthropic reads the cache only for a prefix ending at a cache_control breakpoint.
            prefix_len = len(self.tokenizer.encode(breakpoint_text))
            cached = prefix_len if observed.matched_tokens >= prefix_len else 0
        scale = self.token_scale
        record = RecordedRequest(
            path, body, had_credentials, int(len(tokens) * scale), int(cached * scale)
        )
        with self._lock:
            self.requests.append(record)
        return record

    def wait_parked(self, handler: BaseHTTPRequestHandler) -> bool:
        """Park until release(); return False if the client hung up meanwhile."""
        self.held.set()
        conn: socket.socket = handler.connection
        hangup = select.poll()  # not select(): a process may hold descriptors above 1024
        hangup.register(conn, select.POLLIN)
        while not self._gate.wait(0.005):
            if hangup.poll(0):
                try:
                    if conn.recv(1, socket.MSG_PEEK) == b"":
                        self.disconnected.set()
                        return False
                except OSError:
                    self.disconnected.set()
                    return False
        return True

    def next_id(self) -> int:
        return next(self._ids)


def _chat_turns(path: str, body: dict[str, Any]) -> tuple[list[ChatTurnText], str | None]:
    if not path.endswith("/messages"):
        return [ChatTurnText(str(m["role"]), str(m["content"])) for m in body["messages"]], None
    turns: list[ChatTurnText] = []
    breakpoint_text: str | None = None
    blocks = [("system", b) for b in body.get("system") or []]
    blocks += [(m["role"], b) for m in body["messages"] for b in m["content"]]
    for role, block in blocks:
        turns.append(ChatTurnText(role, block["text"]))
        if block.get("cache_control"):
            breakpoint_text = render_chat(turns)
    return turns, breakpoint_text


class _Handler(BaseHTTPRequestHandler):
    scripted: ScriptedServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return  # keep test output clean

    def do_GET(self) -> None:
        window = self.scripted.max_model_len
        if self.path.rstrip("/").endswith("/models"):
            entry: dict[str, Any] = {"id": self.scripted.model, "object": "model"}
            if window is not None and self.scripted.context_source == "models":
                entry["max_model_len"] = window
            self._send_json(200, {"object": "list", "data": [entry]})
        elif self.path.rstrip("/") == "/props" and self.scripted.context_source == "props":
            self._send_json(200, {"default_generation_settings": {"n_ctx": window}})
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._send_json(400, {"error": {"message": "request body is not JSON"}})
            return
        if not (self.path.endswith("/chat/completions") or self.path.endswith("/messages")):
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})
            return
        credential = self.headers.get("Authorization") or self.headers.get("x-api-key") or ""
        record = self.scripted.account(self.path, body, bool(credential))
        try:
            turn = self.scripted.respond(record)
        except ScriptExhausted as exc:
            self._send_json(500, {"error": {"message": str(exc)}})
            return
        if turn.fault == "hangup":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if turn.hold == "before_headers" and not self.scripted.wait_parked(self):
            self.close_connection = True
            return
        window = self.scripted.max_model_len
        wanted = record.prompt_tokens + int(body.get("max_tokens") or 0)
        if window is not None and turn.status == 200 and wanted > window:
            self._send_json(
                400,
                {
                    "error": {
                        "message": f"This model's maximum context length is {window} tokens. "
                        f"However, you requested {wanted} tokens ({record.prompt_tokens} in "
                        f"the messages, {body.get('max_tokens')} in the completion).",
                        "type": "BadRequestError",
                    }
                },
            )
            return
        if turn.status != 200:
            detail = turn.error + (
                f" (received credentials: {credential})" if turn.echo_credentials else ""
            )
            self._send_json(turn.status, {"error": {"message": detail}})
            return
        anthropic = self.path.endswith("/messages")
        if body.get("stream"):
            self._stream(turn, record, anthropic)
        elif anthropic:
            self._send_json(200, self._anthropic_message(turn, record))
        else:
            self._send_json(200, self._openai_completion(turn, record))

    # --- replies ----------------------------------------------------------------------------

    def _usage(self, turn: ScriptedTurn, record: RecordedRequest) -> tuple[int, int, int]:
        output = len(self.scripted.tokenizer.encode(turn.content))
        return record.prompt_tokens, record.cached_tokens, output

    def _openai_usage(self, turn: ScriptedTurn, record: RecordedRequest) -> dict[str, Any]:
        prompt, cached, output = self._usage(turn, record)
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": output,
            "total_tokens": prompt + output,
        }
        if turn.report_cached:
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        return usage

    def _anthropic_usage(self, turn: ScriptedTurn, record: RecordedRequest) -> dict[str, Any]:
        prompt, cached, output = self._usage(turn, record)
        return {
            "input_tokens": prompt - cached,
            "cache_read_input_tokens": cached,
            "cache_creation_input_tokens": 0,
            "output_tokens": output,
        }

    def _openai_completion(self, turn: ScriptedTurn, record: RecordedRequest) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{self.scripted.next_id()}",
            "object": "chat.completion",
            "model": self.scripted.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": turn.content},
                    "finish_reason": turn.finish_reason,
                }
            ],
            "usage": self._openai_usage(turn, record),
        }

    def _anthropic_message(self, turn: ScriptedTurn, record: RecordedRequest) -> dict[str, Any]:
        return {
            "id": f"msg_{self.scripted.next_id()}",
            "type": "message",
            "role": "assistant",
            "model": self.scripted.model,
            "content": [{"type": "text", "text": turn.content}],
            "stop_reason": "end_turn",
            "usage": self._anthropic_usage(turn, record),
        }

    def _events(self, turn: ScriptedTurn, record: RecordedRequest, anthropic: bool) -> list[bytes]:
        size = max(1, turn.chunk_chars)
        pieces = [turn.content[i : i + size] for i in range(0, len(turn.content), size)]
        if anthropic:
            usage = self._anthropic_usage(turn, record)
            start_usage = {k: v for k, v in usage.items() if k != "output_tokens"}
            events: list[dict[str, Any]] = [
                {"type": "message_start", "message": {"id": "msg", "usage": start_usage}},
                *(
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": p},
                    }
                    for p in pieces
                ),
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": usage["output_tokens"]},
                },
                {"type": "message_stop"},
            ]
            return [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events]
        cid = f"chatcmpl-{self.scripted.next_id()}"
        chunks: list[dict[str, Any]] = [
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "model": self.scripted.model,
                "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}],
            }
            for p in pieces
        ]
        chunks.append(
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "model": self.scripted.model,
                "choices": [{"index": 0, "delta": {}, "finish_reason": turn.finish_reason}],
            }
        )
        chunks.append(
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "model": self.scripted.model,
                "choices": [],
                "usage": self._openai_usage(turn, record),
            }
        )
        return [f"data: {json.dumps(c)}\n\n".encode() for c in chunks] + [b"data: [DONE]\n\n"]

    def _stream(self, turn: ScriptedTurn, record: RecordedRequest, anthropic: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for n, event in enumerate(self._events(turn, record, anthropic)):
                if turn.hold == "mid_stream" and n == turn.hold_after_chunks:
                    self.wfile.flush()
                    if not self.scripted.wait_parked(self):
                        self.close_connection = True
                        return
                if turn.fault != "none" and n == turn.hold_after_chunks:
                    self._misbehave(turn)
                    return
                self._write_chunk(event)
            self._write_chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            self.scripted.disconnected.set()
            self.close_connection = True

    def _misbehave(self, turn: ScriptedTurn) -> None:
        self.close_connection = True
        if turn.fault == "malformed":
            self._write_chunk(b"data: {this is not json\n\n")
            self._write_chunk(b"")
        elif turn.fault == "truncate":
            self._write_chunk(b"")  # a clean end of the body, but no finish reason, no [DONE]
        else:  # "die": the connection drops in the middle of the chunked body
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

"""JSON-RPC on top of the framing layer: every request gets exactly one answer.

Owns `DelegationProtocol` (pygls's LanguageServerProtocol, fed by `server.framing` instead of
pygls's reader). What pygls would drop silently is answered here with the JSON-RPC/LSP error
code: a body that is not JSON (ParseError, id null), a value that is no JSON-RPC 2.0 message
(InvalidRequest), params of the wrong types (InvalidParams, naming the JSON path), a request
before `initialize` (ServerNotInitialized, not queued) or after `shutdown` (InvalidRequest),
and a message over the size limit (skipped unread, refused with a message to the user).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import cattrs
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.protocol import LanguageServerProtocol

from delegation_machine.server.framing import Decoded, FrameError, Message, OversizedFrame

log = logging.getLogger(__name__)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
SERVER_NOT_INITIALIZED = -32002
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

_HEAD_ID = re.compile(rb'^\s*\{\s*"jsonrpc"\s*:\s*"2\.0"\s*,\s*"id"\s*:\s*(-?[0-9]+|"[^"\\]*")')
_HEAD_METHOD = re.compile(rb'"method"\s*:\s*"([^"\\]{1,200})"')


def _is_id(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


class DelegationProtocol(LanguageServerProtocol):
    """pygls's protocol with the lifecycle and error answers LSP requires."""

    max_message_bytes = MAX_MESSAGE_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._initialize_seen = False

    # --- from the framing layer ---------------------------------------------------------------

    def handle_decoded(self, item: Decoded) -> None:
        if isinstance(item, Message):
            self.handle_value(item.value)
        elif isinstance(item, OversizedFrame):
            self._refuse_oversized(item)
        elif isinstance(item, FrameError):
            log.warning("bad input from the client, skipped: %s", item.reason)
            if item.unreadable_body:
                self._send_error(None, PARSE_ERROR, f"unreadable message: {item.reason}")

    def handle_value(self, value: Any) -> None:
        """One decoded JSON value: checked, structured and handled, or answered with why not."""
        if not isinstance(value, dict) or value.get("jsonrpc") != self.VERSION:
            msg_id = value.get("id") if isinstance(value, dict) else None
            self._send_error(
                msg_id if _is_id(msg_id) else None, INVALID_REQUEST, "not a JSON-RPC 2.0 message"
            )
            return
        method = value.get("method")
        has_id = "id" in value
        if (has_id and not _is_id(value["id"])) or (
            method is not None and not isinstance(method, str)
        ):
            self._send_error(None, INVALID_REQUEST, "a message with an invalid id or method")
            return
        if method is not None and not self._lifecycle_allows(value, method):
            return
        try:
            message = self.structure_message(value)
        except JsonRpcException as exc:
            self._refuse_unstructurable(value, method, exc)
            return
        self.handle_message(message)

    # --- the lifecycle ------------------------------------------------------------------------

    def _lifecycle_allows(self, value: dict[str, Any], method: str) -> bool:
        is_request = "id" in value
        if method == types.EXIT:
            return True
        if not self._initialize_seen:
            if method == types.INITIALIZE and is_request:
                self._initialize_seen = True
                return True
            if is_request:
                self._send_error(
                    value["id"],
                    SERVER_NOT_INITIALIZED,
                    f"{method}: the server is not initialized yet; send initialize first",
                )
            else:
                log.info("notification %s before initialize dropped", method)
            return False
        if method == types.INITIALIZE and is_request:
            self._send_error(value["id"], INVALID_REQUEST, "initialize was already sent")
            return False
        if self._shutdown and is_request:
            self._send_error(value["id"], INVALID_REQUEST, f"{method}: the server is shutting down")
            return False
        return True

    # --- refusals -----------------------------------------------------------------------------

    def _refuse_unstructurable(
        self, value: dict[str, Any], method: str | None, exc: JsonRpcException
    ) -> None:
        detail = _validation_detail(exc)
        if method is not None and "id" in value:
            self._send_error(value["id"], INVALID_PARAMS, f"{method}: invalid params: {detail}")
        elif method is not None:
            log.warning("notification %s with invalid params dropped: %s", method, detail)
        elif "id" in value:
            # a response of the client we cannot read: fail the waiting request, do not hang
            future = self._request_futures.pop(value["id"], None)
            self._result_types.pop(value["id"], None)
            log.warning("unreadable response to %s: %s", value["id"], detail)
            if future is not None and not future.done():
                future.set_exception(JsonRpcException(message=f"unreadable response: {detail}"))

    def _refuse_oversized(self, item: OversizedFrame) -> None:
        limit = self.max_message_bytes
        text = (
            f"a message of {item.length} bytes is over the limit of {limit} bytes and was not read"
        )
        method = _HEAD_METHOD.search(item.head)
        if method is not None:
            text = f"{method.group(1).decode('utf-8', 'replace')}: {text}"
        log.warning("%s", text)
        found = _HEAD_ID.match(item.head)
        if found is not None:
            raw = found.group(1).decode("utf-8")
            self._send_error(
                raw.strip('"') if raw.startswith('"') else int(raw), INVALID_REQUEST, text
            )
        self.notify(
            types.WINDOW_SHOW_MESSAGE,
            types.ShowMessageParams(
                type=types.MessageType.Error, message=f"Delegation Machine: {text}"
            ),
        )

    def _send_error(self, msg_id: Any, code: int, message: str) -> None:
        if msg_id is None:  # the converter would drop the null id JSON-RPC requires here
            error = {"code": code, "message": message}
            self._send_data({"jsonrpc": self.VERSION, "id": None, "error": error})
            return
        self._send_response(msg_id, error=types.ResponseError(code=code, message=message))


def _validation_detail(exc: JsonRpcException) -> str:
    cause = exc.__cause__
    if isinstance(cause, cattrs.ClassValidationError):
        return "; ".join(cattrs.transform_error(cause, path="$"))[:500]
    return str(cause or exc)[:500]

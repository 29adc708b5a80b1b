"""Keeps secrets out of everything the engine records or shows.

Owns the rule for what counts as a secret: the value of any environment variable whose name
contains KEY, TOKEN, SECRET, PASSWORD or CREDENTIAL (values shorter than 8 characters are
ignored), and any literal value given under a secret-looking key (`remember_secrets_in`: an
`api_key` in the editor's settings is refused, but its value is still redacted everywhere).
`redact` replaces every occurrence of such a value, wherever it is nested; `redact_text` also
blanks `key=value` / `"key": "value"` pairs under secret names and bearer tokens, and
`install_log_redaction` applies it to every line the process logs (tracebacks included).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any

SECRET_NAME = re.compile(
    r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTHORIZATION", re.IGNORECASE
)
REDACTED = "[redacted]"
MAX_LOG_CHARS = 8000  # a log line longer than this is cut (a multi-MB message body, say)
_SCAN_CHARS = 4 * MAX_LOG_CHARS
_SECRET_WORDS = {"key", "apikey", "token", "secret", "password", "passwd", "credential"}
_SECRET_WORDS |= {"credentials", "authorization", "passphrase"}
_NAME_WORDS = {"env", "name", "names", "file", "path", "kind", "count", "len", "length", "id"}
_KEY_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_KEY_AND_SEPARATOR = re.compile(r"""(?<![\w.-])(?P<key>[A-Za-z_][\w.-]{0,63})['"]?\s*[:=]\s*""")
_VALUE = re.compile(r"""'[^']*'|"[^"]*"|[^\s,;'"}\])]+""")
_BEARER = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{6,}")
_NOT_SECRET_VALUES = {"none", "null", "true", "false", "''", '""', "[redacted]"}
_remembered: set[str] = set()


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Secret values known to this process: the environment's, and remembered literals."""
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= 8}
    if environ is None:
        values |= _remembered
    return sorted(values, key=len, reverse=True)


def remember_secrets_in(settings: Any) -> None:
    """Remember every string under a secret-looking key of `settings` (nested), so it is
    redacted from logs and the ledger even though it came from no environment variable."""
    if isinstance(settings, Mapping):
        for key, value in settings.items():
            if isinstance(value, str) and _names_a_secret(str(key)) and len(value) >= 4:
                _remembered.add(value)
            else:
                remember_secrets_in(value)
    elif isinstance(settings, list | tuple):
        for value in settings:
            remember_secrets_in(value)


def _names_a_secret(key: str) -> bool:
    """`api_key`, `apiKey`, `OPENAI_TOKEN`: yes; `api_key_env`, `monkey`, `max_tokens`: no."""
    words = [w.lower() for w in _KEY_WORDS.findall(key)]
    return bool(words) and words[-1] not in _NAME_WORDS and any(w in _SECRET_WORDS for w in words)


def redact_text(text: str, secrets: list[str] | None = None) -> str:
    """`text` with known secret values, values under secret names and bearer tokens blanked."""
    text = _redact(text, secret_values() if secrets is None else secrets)
    text = _blank_keyed_values(text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


def _blank_keyed_values(text: str) -> str:
    """Blank the value after every `key=` / `key: ` / `"key": ` whose key names a secret."""
    parts: list[str] = []
    copied = 0
    found = _KEY_AND_SEPARATOR.search(text)
    while found is not None:
        value = _VALUE.match(text, found.end())
        if (
            value is not None
            and _names_a_secret(found.group("key"))
            and value.group(0).lower() not in _NOT_SECRET_VALUES
        ):
            parts.append(text[copied : found.end()])
            parts.append(_blanked(value.group(0)))
            copied = value.end()
        found = _KEY_AND_SEPARATOR.search(text, found.end())
    parts.append(text[copied:])
    return "".join(parts)


def _blanked(value: str) -> str:
    if value[:1] in "'\"" and len(value) >= 2:
        return f"{value[0]}{REDACTED}{value[0]}"
    return REDACTED


class RedactingFormatter(logging.Formatter):
    """Formats with `inner`, then redacts the whole line (message and traceback) and cuts
    it to MAX_LOG_CHARS."""

    def __init__(self, inner: logging.Formatter | None = None) -> None:
        super().__init__()
        self._inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        text = self._inner.format(record)
        if len(text) > _SCAN_CHARS:
            text = text[:_SCAN_CHARS]
        text = redact_text(text)
        if len(text) > MAX_LOG_CHARS:
            text = f"{text[:MAX_LOG_CHARS]}... [cut at {MAX_LOG_CHARS} characters]"
        return text


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Redact every line the handlers of `logger` (the root logger by default) write."""
    for handler in (logger or logging.getLogger()).handlers:
        if not isinstance(handler.formatter, RedactingFormatter):
            handler.setFormatter(RedactingFormatter(handler.formatter))


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name))


def redact(value: Any, secrets: list[str] | None = None) -> Any:
    """Return `value` with every secret string replaced; containers are copied, not mutated."""
    secrets = secret_values() if secrets is None else secrets
    if not secrets:
        return value
    return _redact(value, secrets)


def _redact(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, Mapping):
        return {k: _redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact(v, secrets) for v in value)
    return value


def scrubbed_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of the environment without any variable whose name looks like a secret."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if not SECRET_NAME.search(k)}

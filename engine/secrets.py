"""Keeps secrets out of everything the engine records or shows.

Owns the rule for what counts as a secret: the value of any environment variable whose name
contains KEY, TOKEN, SECRET, PASSWORD or CREDENTIAL (values shorter than 8 characters are
ignored). `redact` replaces every occurrence of such a value, wherever it is nested.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
REDACTED = "[redacted]"


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= 8}
    return sorted(values, key=len, reverse=True)


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

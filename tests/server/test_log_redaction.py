"""Secrets never reach a log line: the formatter every server log handler gets."""

from __future__ import annotations

import io
import logging

from delegation_machine.engine.secrets import (
    MAX_LOG_CHARS,
    RedactingFormatter,
    redact_text,
    remember_secrets_in,
)


def test_values_under_secret_names_are_blanked_and_names_of_variables_kept() -> None:
    line = (
        "params={'inference': {'api_key': 'sk-abcdef123456', 'api_key_env': 'OPENAI_API_KEY'}}"
        ' {"apiKey": "abcdefgh12", "max_tokens": 512, "Authorization": "Bearer xyz.abc.def"}'
        " password=hunter2222 monkey=banana"
    )
    redacted = redact_text(line)
    for secret in ("sk-abcdef123456", "abcdefgh12", "xyz.abc.def", "hunter2222"):
        assert secret not in redacted
    for kept in ("OPENAI_API_KEY", "512", "monkey=banana"):
        assert kept in redacted


def test_a_remembered_literal_is_redacted_wherever_it_appears() -> None:
    remember_secrets_in({"delegation": {"inference": {"token": "tok-remembered-42"}}})
    assert "tok-remembered-42" not in redact_text("an error mentioning tok-remembered-42 plainly")


def test_the_formatter_redacts_tracebacks_and_cuts_huge_lines() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter(logging.Formatter("%(message)s")))
    logger = logging.getLogger("test_log_redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise ValueError("api_key='sk-in-a-traceback-999'")
        except ValueError:
            logger.exception("failed")
        logger.warning("%s", "x" * (MAX_LOG_CHARS * 10))
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "Traceback" in text and "sk-in-a-traceback-999" not in text
    assert max(len(line) for line in text.splitlines()) < MAX_LOG_CHARS + 100

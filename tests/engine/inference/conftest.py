"""Fixtures for the inference tests: a started ScriptedServer and a recording no-wait sleep."""

from __future__ import annotations

import pytest

from tests.engine.model_doubles import RecordingSleep


@pytest.fixture
def backoff() -> RecordingSleep:
    return RecordingSleep()

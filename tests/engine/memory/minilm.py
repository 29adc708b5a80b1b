"""The marker for tests that need the `embeddings` extra (MiniLM vectors).

`make test` installs the extra, so under CI a missing model fails those tests instead of
skipping them; elsewhere (a venv made without the extra) they are skipped.
"""

from __future__ import annotations

import os

import pytest

from delegation_machine.engine.memory.embeddings import embeddings_available

needs_minilm = pytest.mark.skipif(
    not embeddings_available() and not os.environ.get("CI"),
    reason="the `embeddings` extra is not installed",
)

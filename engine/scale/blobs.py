"""Content-addressed snapshot blobs: a file's text stored once under its sha256.

Owns `BlobStore`: the host `put`s each text a task needs (SET NX, so a text already there is
not written again; it expires after `ttl_s`), a worker `get`s it by digest and checks the
digest against what it read, so a blob that does not match its name is refused (`BlobError`),
never handed to an agent.
"""

from __future__ import annotations

import hashlib
from typing import Any

import redis.asyncio as aioredis

from delegation_machine.engine.scale.connection import StreamNames

BLOB_TTL_S = 24 * 3600


class BlobError(Exception):
    """A blob is missing or does not match its digest."""


def digest_of(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class BlobStore:
    def __init__(
        self, client: aioredis.Redis, names: StreamNames, *, ttl_s: int = BLOB_TTL_S
    ) -> None:
        self._client = client
        self._names = names
        self._ttl_s = ttl_s
        self.written = 0  # blobs this store wrote (not those already there)

    async def put_many(self, texts: list[str]) -> list[str]:
        """Store each text under its digest (once); the digests, in order."""
        digests = [digest_of(text) for text in texts]
        if not texts:
            return digests
        pipe = self._client.pipeline(transaction=False)
        for digest, text in zip(digests, texts, strict=True):
            pipe.set(self._names.blob(digest), text.encode("utf-8"), nx=True, ex=self._ttl_s)
        written = await pipe.execute()
        self.written += sum(1 for w in written if w)
        return digests

    async def get_many(self, digests: list[str]) -> list[str]:
        """The texts of `digests`, each checked against its digest; `BlobError` otherwise."""
        if not digests:
            return []
        raw: list[Any] = await self._client.mget([self._names.blob(d) for d in digests])
        texts: list[str] = []
        for digest, data in zip(digests, raw, strict=True):
            if data is None:
                raise BlobError(f"blob {digest[:12]} is not in Redis (expired or never written)")
            if hashlib.sha256(data).hexdigest() != digest:
                raise BlobError(f"blob {digest[:12]} does not match its digest; refused")
            try:
                texts.append(data.decode("utf-8"))
            except UnicodeDecodeError:
                raise BlobError(f"blob {digest[:12]} is not UTF-8 text; refused") from None
        return texts

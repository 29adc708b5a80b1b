"""Per-file write leases between agents, with expiry and fencing tokens.

Owns the lease table. Invariants: at most one live lease per file; tokens strictly increase;
a multi-file request is granted whole or not at all (checked in sorted path order, so two
requests never hold each other's files); `check` refuses any token that is not the current live
one for the file. The user never takes a lease: leases only order agents among themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from delegation_machine.engine.state.types import Lease, LeaseConflict, LeaseError


class LeaseTable:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._next_token = 1
        self._by_path: dict[str, Lease] = {}
        self._revoked: set[int] = set()

    def acquire(self, paths: Iterable[str], holder: str, ttl_s: float) -> Lease:
        """All-or-nothing: raise `LeaseConflict` (nothing taken) if any file is held by another
        holder. Re-acquiring files one already holds supersedes the old token."""
        if ttl_s <= 0:
            raise LeaseError(f"ttl_s must be positive, got {ttl_s}")
        ordered = tuple(sorted(set(paths)))
        if not ordered:
            raise LeaseError("a lease needs at least one path")
        now = self._clock()
        for path in ordered:
            current = self._by_path.get(path)
            if current is not None and self._is_live(current, now) and current.holder != holder:
                raise LeaseConflict(
                    f"held by {current.holder} until t={current.expires_at:.3f}",
                    path,
                    holder=current.holder,
                    expires_at=current.expires_at,
                )
        lease = Lease(self._next_token, holder, ordered, now + ttl_s)
        self._next_token += 1
        for path in ordered:
            self._by_path[path] = lease
        return lease

    def release(self, lease: Lease) -> None:
        """Give the files back; a release of a superseded lease leaves the newer one alone."""
        for path in lease.paths:
            current = self._by_path.get(path)
            if current is not None and current.token == lease.token:
                del self._by_path[path]

    def revoke(self, path: str) -> Lease | None:
        """Revoke the live lease on `path` (all its files); later writes with it are refused."""
        lease = self._by_path.get(path)
        if lease is None:
            return None
        self._revoked.add(lease.token)
        self.release(lease)
        return lease

    def check(self, lease: Lease, path: str) -> None:
        """Raise `LeaseError` unless `lease` is the current, live lease on `path`."""
        if path not in lease.paths:
            raise LeaseError(
                f"lease {lease.token} of {lease.holder} does not cover this file", path
            )
        if lease.token in self._revoked:
            raise LeaseError(f"lease {lease.token} of {lease.holder} was revoked", path)
        current = self._by_path.get(path)
        if current is None or current.token != lease.token:
            newer = f"; current token is {current.token}" if current else ""
            raise LeaseError(
                f"stale fencing token {lease.token} of {lease.holder}{newer}",
                path,
            )
        if not self._is_live(current, self._clock()):
            raise LeaseError(f"lease {lease.token} of {lease.holder} expired", path)

    def now(self) -> float:
        return self._clock()

    def _is_live(self, lease: Lease, now: float) -> bool:
        return lease.token not in self._revoked and now < lease.expires_at

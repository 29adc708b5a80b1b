"""Per-file memo of file-local check verdicts (syntax, semgrep), keyed by content digest.

Owns the cache and the in-flight runs, so that N tasks over N files pay one batched checker
run instead of N, and a file whose text did not change is never checked twice. Only
file-local checks are cached: a verdict of the "quick" level depends on nothing but the
file's own text; the "full" level (compile, affected tests) always runs.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence

import msgspec

from delegation_machine.engine.protocol import Verdict, VerdictKind

CheckFiles = Callable[[dict[str, str], list[str]], Awaitable[list[Verdict]]]
CacheKey = tuple[str, str]  # (path, digest of its text)


def content_key(path: str, text: str) -> CacheKey:
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return (path, digest)


def split_by_file(verdicts: Sequence[Verdict], paths: Sequence[str]) -> dict[str, list[Verdict]]:
    """One verdict per (check, file) out of verdicts that covered several files."""
    per_file: dict[str, list[Verdict]] = {p: [] for p in paths}
    for verdict in verdicts:
        for path in paths:
            findings = tuple(f for f in verdict.findings if f.path == path)
            kind: VerdictKind = (
                verdict.kind if verdict.kind == "error" else ("failed" if findings else "passed")
            )
            per_file[path].append(
                msgspec.structs.replace(verdict, kind=kind, findings=findings, paths=(path,))
            )
    return per_file


def merge_files(per_file: Mapping[str, Sequence[Verdict]], task_id: str | None) -> list[Verdict]:
    """The verdicts of several files as one verdict per check, stamped with `task_id`."""
    by_check: dict[str, list[Verdict]] = {}
    for path in sorted(per_file):
        for verdict in per_file[path]:
            by_check.setdefault(verdict.check, []).append(verdict)
    merged = []
    for check, parts in by_check.items():
        kinds = {p.kind for p in parts}
        kind: VerdictKind = (
            "error" if "error" in kinds else "failed" if "failed" in kinds else "passed"
        )
        merged.append(
            Verdict(
                check=check,
                kind=kind,
                findings=tuple(f for p in parts for f in p.findings),
                reason="; ".join(sorted({p.reason for p in parts if p.reason})),
                task_id=task_id,
                paths=tuple(path for p in parts for path in p.paths),
                duration_s=max(p.duration_s for p in parts),
            )
        )
    return merged


class VerdictCache:
    """Memoised, batched, de-duplicated runs of file-local checks."""

    def __init__(self, check_files: CheckFiles, *, max_entries: int = 4096) -> None:
        self._check_files = check_files
        self._max_entries = max_entries
        self._done: dict[CacheKey, list[Verdict]] = {}
        self._running: dict[CacheKey, asyncio.Future[list[Verdict]]] = {}

    def prefetch(self, files: Mapping[str, str]) -> None:
        """Start one batched run for every file not cached or running (returns at once)."""
        keys = {path: content_key(path, text) for path, text in files.items()}
        missing = [p for p in files if keys[p] not in self._done and keys[p] not in self._running]
        if missing:
            self._start_run({p: files[p] for p in missing}, {p: keys[p] for p in missing})

    async def check(self, files: Mapping[str, str], task_id: str | None) -> list[Verdict]:
        keys = {path: content_key(path, text) for path, text in files.items()}
        self.prefetch(files)
        # Take every future before the first await: a run that ends meanwhile unregisters them.
        sources = {
            path: self._done.get(key) or self._running.get(key) for path, key in keys.items()
        }
        per_file = {}
        for path, source in sources.items():
            per_file[path] = await source if isinstance(source, asyncio.Future) else source or []
        return merge_files(per_file, task_id)

    def _start_run(self, files: dict[str, str], keys: dict[str, CacheKey]) -> None:
        loop = asyncio.get_running_loop()
        futures = {keys[p]: loop.create_future() for p in files}
        self._running.update(futures)

        async def run() -> None:
            try:
                verdicts = await self._check_files(files, list(files))
            except BaseException as exc:
                for future in futures.values():
                    if future.done():
                        continue
                    if isinstance(exc, asyncio.CancelledError):
                        future.cancel()  # a prefetch nobody awaits is not an error to print
                    else:
                        future.set_exception(exc)
                raise
            finally:
                for key in futures:
                    self._running.pop(key, None)
            if len(self._done) > self._max_entries:
                self._done.clear()
            for path, verdicts_of_file in split_by_file(verdicts, list(files)).items():
                if not any(v.kind == "error" for v in verdicts_of_file):  # retry what failed to run
                    self._done[keys[path]] = verdicts_of_file
                futures[keys[path]].set_result(verdicts_of_file)

        task = loop.create_task(run(), name=f"check-{len(files)}-files")
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

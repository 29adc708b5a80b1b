"""The per-file verdict cache: one batched run, shared by concurrent callers, keyed by content."""

from __future__ import annotations

import asyncio

from delegation_machine.engine.protocol import Finding, Point, Span, Verdict
from delegation_machine.engine.supervise.verdict_cache import VerdictCache


class CountingChecker:
    """Finds "BAD" in any file; can be told to fail to run; counts its runs."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.unavailable = False

    async def __call__(self, files: dict[str, str], changed: list[str]) -> list[Verdict]:
        self.calls.append(sorted(files))
        await self.release.wait()
        if self.unavailable:
            return [Verdict(check="semgrep", kind="error", reason="semgrep is not installed")]
        findings = tuple(
            Finding(path, Span(Point(0, 0), Point(0, 3)), "bad", "semgrep:bad")
            for path, text in files.items()
            if "BAD" in text
        )
        return [
            Verdict(
                check="semgrep",
                kind="failed" if findings else "passed",
                findings=findings,
                paths=tuple(files),
            )
        ]


async def test_many_files_cost_one_run_and_unchanged_texts_none() -> None:
    checker = CountingChecker()
    cache = VerdictCache(checker)
    files = {"a.py": "ok", "b.py": "BAD", "c.py": "ok"}
    first = await cache.check(files, task_id="t1")
    assert checker.calls == [["a.py", "b.py", "c.py"]]
    assert first[0].kind == "failed" and first[0].task_id == "t1"
    assert [f.path for f in first[0].findings] == ["b.py"]
    single = await cache.check({"a.py": "ok"}, task_id="t2")
    assert single[0].kind == "passed" and len(checker.calls) == 1
    await cache.check({"a.py": "BAD now"}, task_id=None)
    assert checker.calls[-1] == ["a.py"]


async def test_concurrent_callers_join_the_run_in_flight() -> None:
    checker = CountingChecker()
    checker.release.clear()
    cache = VerdictCache(checker)
    cache.prefetch({"a.py": "ok", "b.py": "BAD"})
    waiting = [
        asyncio.create_task(cache.check({p: t}, task_id=p))
        for p, t in (("a.py", "ok"), ("b.py", "BAD"))
    ]
    await asyncio.sleep(0)
    checker.release.set()
    a, b = await asyncio.gather(*waiting)
    assert len(checker.calls) == 1
    assert (a[0].kind, b[0].kind) == ("passed", "failed")


async def test_a_check_that_could_not_run_is_not_cached() -> None:
    checker = CountingChecker()
    checker.unavailable = True
    cache = VerdictCache(checker)
    verdicts = await cache.check({"a.py": "ok"}, task_id=None)
    assert verdicts[0].kind == "error" and "not installed" in verdicts[0].reason
    checker.unavailable = False
    assert (await cache.check({"a.py": "ok"}, task_id=None))[0].kind == "passed"
    assert len(checker.calls) == 2

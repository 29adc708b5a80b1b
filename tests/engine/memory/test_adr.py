"""Decision records: written on a failure-then-fix, found again for nearby files."""

from __future__ import annotations

from pathlib import Path

import pytest

from delegation_machine.engine.memory.adr import DecisionRecords, slugify
from delegation_machine.engine.protocol import Finding, Point, Span, Verdict


def _failed_test() -> Verdict:
    finding = Finding(
        path="shop/pricing.py",
        span=Span(Point(12, 0), Point(12, 10)),
        message="assert 2.4 == 2.39",
        code="test:tests/test_pricing.py::test_total",
    )
    return Verdict(check="tests", kind="failed", findings=(finding,), task_id="t1")


def test_record_is_written_as_numbered_markdown_and_read_back(tmp_path: Path) -> None:
    records = DecisionRecords(tmp_path)
    record = records.record_resolution(
        "t1",
        [_failed_test(), Verdict(check="syntax", kind="passed")],
        "Round with Decimal so totals keep two places.",
        ["shop/pricing.py"],
        ["total_price"],
    )
    assert record.number == 1
    assert record.path.startswith(".delegation/adr/0001-fix-test-tests-test-pricing-py")
    text = (tmp_path / record.path).read_text(encoding="utf-8")
    for heading in ("## Context", "## Decision", "## Consequences"):
        assert heading in text
    assert "test:tests/test_pricing.py::test_total at shop/pricing.py:13" in text
    [again] = records.all()
    assert again.files == ("shop/pricing.py",) and again.symbols == ("total_price",)
    assert again.decision == "Round with Decimal so totals keep two places."
    assert again.failed_checks == ("test:tests/test_pricing.py::test_total",)
    second = records.record_resolution("t2", [_failed_test()], "x", ["web/app.ts"])
    assert second.number == 2


def test_relevant_records_same_file_first_then_same_folder(tmp_path: Path) -> None:
    records = DecisionRecords(tmp_path)
    near = records.record_resolution("t1", [_failed_test()], "a", ["shop/cart.py"])
    exact = records.record_resolution("t2", [_failed_test()], "b", ["shop/pricing.py"])
    records.record_resolution("t3", [_failed_test()], "c", ["web/app.ts"])
    found = records.relevant_records(["shop/pricing.py"])
    assert [r.number for r in found] == [exact.number, near.number]
    assert records.relevant_records(["svc/main.go"]) == []
    prefix = records.prefix_text(["shop/pricing.py"])
    assert prefix == records.prefix_text(["shop/pricing.py"])
    assert prefix.startswith("Decision records for these files:\n- ADR 0002")


def test_a_record_needs_a_failure_and_numbers_are_never_reused(tmp_path: Path) -> None:
    records = DecisionRecords(tmp_path)
    with pytest.raises(ValueError, match="at least one failed verdict"):
        records.record_resolution("t1", [Verdict(check="tests", kind="passed")], "x", ["a.py"])
    first = records.record_resolution("t1", [_failed_test()], "x", ["a.py"])
    (tmp_path / first.path).unlink()
    (tmp_path / ".delegation" / "adr" / "0007-by-hand.md").write_text("# 7. By hand\n")
    assert records.record_resolution("t2", [_failed_test()], "y", ["a.py"]).number == 8
    assert slugify("Fix: Ünïcode & spaces!!") == "fix-n-code-spaces"

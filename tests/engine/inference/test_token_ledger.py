"""The token ledger: per task and agent totals, cost, and the hard per-task cap."""

from __future__ import annotations

import msgspec
import pytest

from delegation_machine.engine.inference.accounting import BudgetExceeded, TokenLedger, TokenPrices
from delegation_machine.engine.inference.backend import BackendUsage
from delegation_machine.engine.inference.radix import PrefixObservation


def test_totals_per_task_and_agent_with_cost() -> None:
    ledger = TokenLedger(
        prices=TokenPrices(prompt_per_1k=1.0, cached_per_1k=0.1, output_per_1k=2.0)
    )
    ledger.record("t1", "a1", BackendUsage(1000, 800, 100, True), PrefixObservation(1000, 810, 800))
    ledger.record("t1", "a2", BackendUsage(1000, 0, 50, False))
    ledger.record("t2", "a1", BackendUsage(10, 0, 10, True))
    t1 = ledger.task_summary("t1")
    assert (t1.prompt_tokens, t1.cached_tokens, t1.uncached_tokens, t1.output_tokens) == (
        2000,
        800,
        1200,
        150,
    )
    assert t1.predicted_reusable_tokens == 800
    assert t1.billable_tokens == 1350
    # a1: 200 uncached * 1.0 + 800 cached * 0.1 + 100 out * 2.0 = 480 / 1000
    assert t1.agents["a1"].cost_usd == pytest.approx(0.48)
    assert t1.agents["a2"].unreported_cache_requests == 1
    snapshot = ledger.snapshot()
    assert snapshot.prompt_tokens == 2010
    assert b'"task_id":"t2"' in msgspec.json.encode(snapshot)


def test_budget_is_a_hard_cap_checked_before_sending() -> None:
    ledger = TokenLedger(max_tokens_per_task=1000)
    ledger.record("t", "a", BackendUsage(900, 0, 50, True))
    ledger.check_budget("t", 50)  # exactly at the cap is allowed
    with pytest.raises(
        BudgetExceeded, match=r"budget is 1000 .* 950 are spent .* 51 more"
    ) as caught:
        ledger.check_budget("t", 51)
    assert caught.value.cap == 1000
    ledger.set_budget("t", 5000)
    ledger.check_budget("t", 51)


def test_listeners_see_every_record() -> None:
    ledger = TokenLedger()
    seen: list[tuple[str, str, int]] = []
    ledger.subscribe(lambda task, agent, usage, _: seen.append((task, agent, usage.prompt_tokens)))
    ledger.record("t", "a", BackendUsage(5, 0, 1))
    assert seen == [("t", "a", 5)]

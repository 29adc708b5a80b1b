"""The stateful Economy: quarantine in and out, breakage, choice, budgets, persistence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delegation_machine.engine.agents.base import TokenUsage
from delegation_machine.engine.economy import (
    Economy,
    EconomyConfig,
    EconomyError,
    EconomyStateError,
    KeptWork,
    economy_config_from,
)

SOLO = KeptWork(("unit",))


def run_tasks(economy: Economy, agent: str, outcomes: list[bool], prefix: str = "") -> None:
    for index, passed in enumerate(outcomes):
        economy.record_task(f"{prefix}{agent}-{index}", "fix", {agent: SOLO}, passed)


def test_new_agents_start_quarantined_builtins_and_reviewed_do_not():
    economy = Economy(pretrusted={"team:alice-bot"})
    assert economy.is_quarantined("llm:new")
    assert not economy.is_quarantined("builtin:format")
    assert not economy.is_quarantined("team:alice-bot")
    economy.mark_human_reviewed("llm:reviewed")
    assert not economy.is_quarantined("llm:reviewed") and economy.is_pretrusted("llm:reviewed")


def test_good_agent_leaves_quarantine_after_probation_bad_one_stays():
    economy = Economy()
    run_tasks(economy, "llm:good", [True, True])
    run_tasks(economy, "llm:bad", [False, True, False, False])
    assert economy.is_quarantined("llm:good")  # two passes are not enough
    run_tasks(economy, "llm:good", [True], prefix="more-")
    assert not economy.is_quarantined("llm:good")
    assert economy.is_quarantined("llm:bad")
    assert economy.trust("llm:bad") == 0.0  # net outcomes clipped at zero
    assert economy.credit("llm:good") > 0 > economy.credit("llm:bad")


def test_released_agent_goes_back_when_its_record_turns():
    economy = Economy(config=EconomyConfig(half_life_tasks=4))
    run_tasks(economy, "llm:a", [True] * 4)
    run_tasks(economy, "llm:b", [True] * 4)
    assert not economy.is_quarantined("llm:a") and not economy.is_quarantined("llm:b")
    run_tasks(economy, "llm:a", [False] * 6, prefix="later-")
    assert economy.is_quarantined("llm:a")
    assert not economy.is_quarantined("llm:b")


def test_breakage_costs_the_culprit_trust_and_credit():
    economy = Economy()
    for agent in ("llm:careless", "llm:victim", "llm:bystander"):
        run_tasks(economy, agent, [True] * 3)
    before_trust = economy.trust("llm:careless")
    before_credit = economy.credit("llm:careless")
    economy.record_breakage("llm:careless", "llm:victim")
    economy.record_breakage("llm:careless", "llm:bystander")
    assert economy.trust("llm:careless") < before_trust
    assert economy.credit("llm:careless") == pytest.approx(before_credit - 2 * 0.5)
    standing = {row.agent_id: row for row in economy.summary()}
    assert standing["llm:careless"].breakages_caused == 2
    with pytest.raises(EconomyError, match="own work"):
        economy.record_breakage("llm:victim", "llm:victim")


def test_team_task_credits_by_shapley_share_and_usage_lowers_scores():
    economy = Economy()
    score = economy.record_task(
        "t1",
        "llm",
        {"llm:a": KeptWork(("x", "y", "z")), "llm:b": KeptWork(("z",))},
        True,
        TokenUsage(prompt_tokens=40_000, cached_tokens=30_000, output_tokens=2_000, tool_calls=4),
        retries=1,
    )
    assert score.shapley["llm:a"] > score.shapley["llm:b"] > 0
    assert 0 < score.efficiency < 1
    cheap = economy.record_task("t2", "llm", {"llm:c": KeptWork(("x",))}, True)
    assert cheap.efficiency == 1.0
    assert economy.credit("llm:a") == pytest.approx(score.scores["llm:a"])
    with pytest.raises(EconomyError, match="KeptWork"):
        economy.record_task("t3", "llm", {"llm:a": ("x",)}, True)  # type: ignore[dict-item]


def test_choose_agent_is_deterministic_and_favours_trust():
    def fresh() -> Economy:
        economy = Economy(config=EconomyConfig(seed=42))
        run_tasks(economy, "llm:trusted", [True] * 5)
        run_tasks(economy, "llm:shaky", [False, False, True])
        return economy

    first, second = fresh(), fresh()
    candidates = ["llm:trusted", "llm:shaky", "llm:unknown"]
    picks = [first.choose_agent(candidates) for _ in range(300)]
    assert picks == [second.choose_agent(candidates) for _ in range(300)]
    # weights: trusted 2 (relative trust, capped); untried 1 * 0.5 (quarantined);
    # shaky max(0, 0.05) * 0.5
    assert picks.count("llm:trusted") > 180
    assert 30 < picks.count("llm:unknown") < picks.count("llm:trusted")
    assert picks.count("llm:shaky") < picks.count("llm:unknown")
    other_seed = Economy(config=EconomyConfig(seed=7))
    assert [other_seed.choose_agent(candidates) for _ in range(30)] != picks[:30]
    with pytest.raises(EconomyError, match="no candidates"):
        first.choose_agent([])


def test_budgets_split_capacity_by_standing_and_cap_concurrency():
    config = EconomyConfig(min_context_tokens=4_096, slot_tokens=1_024, half_life_tasks=1e9)
    economy = Economy(config=config)
    for agent in ("llm:a", "llm:b"):
        run_tasks(economy, agent, [True] * 3)
    plan = economy.allocate_budgets(
        {"llm:a": 1.0, "llm:b": 1.0, "llm:new": 1.0}, capacity_tokens=64 * 1024, max_concurrent=3
    )
    assert set(plan.running) == {"llm:a", "llm:b", "llm:new"}
    assert sum(plan.budgets.values()) <= 64 * 1024
    assert plan.budgets["llm:a"] == plan.budgets["llm:b"]
    # the quarantined newcomer bids at (1/2 + 0) * 1/2 of face value: a quarter of the others
    assert plan.budgets["llm:new"] == pytest.approx(plan.budgets["llm:a"] / 4, rel=0.01)
    capped = economy.allocate_budgets({"llm:a": 1.0, "llm:b": 2.0}, 64 * 1024, max_concurrent=1)
    assert capped.running == ["llm:b"] and capped.waiting == ["llm:a"]
    assert capped.budgets == {"llm:b": 64 * 1024}
    tight = economy.allocate_budgets({"llm:a": 1.0, "llm:b": 1.0, "llm:new": 1.0}, 10_240, 3)
    assert "llm:new" in tight.waiting  # its share would be below the 4,096-token minimum
    assert all(budget >= 4_096 for budget in tight.budgets.values())
    standing = {row.agent_id: row.budget for row in economy.summary()}
    assert standing["llm:new"] == 0
    with pytest.raises(EconomyError, match="max_concurrent"):
        economy.allocate_budgets({"llm:a": 1.0}, 1000, 0)
    with pytest.raises(EconomyError, match="bid of 'llm:a'"):
        economy.allocate_budgets({"llm:a": -1.0}, 1000, 1)


def test_state_survives_a_restart_and_writes_are_atomic(tmp_path: Path):
    economy = Economy.open(tmp_path)
    run_tasks(economy, "llm:a", [True] * 3)
    economy.record_breakage("llm:a", "builtin:rename")
    economy.mark_human_reviewed("llm:b")
    economy.choose_agent(["llm:a", "llm:b"])
    state_file = tmp_path / ".delegation" / "economy.json"
    assert state_file.exists()
    assert [p.name for p in state_file.parent.iterdir()] == ["economy.json"]  # no temp left
    reopened = Economy.open(tmp_path)
    assert reopened.summary() == economy.summary()
    assert reopened.choose_agent(["llm:a", "llm:b"]) == economy.choose_agent(["llm:a", "llm:b"])
    assert json.loads(state_file.read_text())["version"] == 1


def test_corrupt_state_is_refused_with_its_location_and_left_alone(tmp_path: Path):
    state_file = tmp_path / ".delegation" / "economy.json"
    state_file.parent.mkdir()
    state_file.write_text('{"version": 1, "agents": {"a": {"tasks": "many"}}}')
    with pytest.raises(EconomyStateError) as caught:
        Economy.open(tmp_path)
    assert caught.value.json_path == "$.agents[...].tasks"  # msgspec elides dict keys
    assert str(state_file) in str(caught.value)
    assert state_file.read_text().startswith('{"version": 1')
    state_file.write_text("{not json")
    with pytest.raises(EconomyStateError, match="malformed JSON"):
        Economy.open(tmp_path)


def test_corrupt_state_can_be_set_aside_so_the_server_still_starts(tmp_path: Path):
    state_file = tmp_path / ".delegation" / "economy.json"
    state_file.parent.mkdir()
    state_file.write_text("{not json")
    economy = Economy.open(tmp_path, set_aside_corrupt=True)
    assert economy.set_aside == state_file.with_name("economy.json.corrupt-1")
    assert economy.set_aside.read_text() == "{not json"  # kept, not lost
    assert economy.summary() == []
    run_tasks(economy, "llm:a", [True])
    assert Economy.open(tmp_path).credit("llm:a") > 0


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("task"), st.sets(st.sampled_from("abcd"), min_size=1), st.booleans()),
            st.tuples(st.just("break"), st.sampled_from("abcd"), st.sampled_from("abcd")),
        ),
        max_size=25,
    )
)
def test_invariants_hold_for_any_history(history):
    economy = Economy()
    for step, (kind, first, second) in enumerate(history):
        if kind == "task":
            team = {f"llm:{a}": KeptWork((f"u{a}", "shared")) for a in first}
            economy.record_task(f"t{step}", "llm", team, second)
        elif first != second:
            economy.record_breakage(f"llm:{first}", f"llm:{second}")
    rows = economy.summary()
    assert all(row.trust >= 0 for row in rows)
    assert sum(row.trust for row in rows) <= 1.0 + 1e-9
    for row in rows:
        if row.passed < 3:
            assert row.quarantined  # nobody leaves quarantine before probation
        if row.trust == 0.0:
            assert row.quarantined


def test_config_from_settings_names_the_bad_key():
    config = economy_config_from({"half_life_tasks": 10, "sharp": {"samples": 500}})
    assert config.half_life_tasks == 10 and config.sharp.samples == 500
    with pytest.raises(EconomyError, match="half_life_tasks"):
        economy_config_from({"half_life_tasks": "soon"})
    with pytest.raises(EconomyError, match="unknown field"):
        economy_config_from({"half_lfe_tasks": 10})

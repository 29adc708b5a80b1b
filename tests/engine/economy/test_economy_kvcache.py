"""KV-cache planning: known sizes, PyramidKV's schedule, elastic pages, hierarchical offload."""

from __future__ import annotations

import contextlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delegation_machine.engine.economy.kvcache import (
    GIB,
    ElasticKvPool,
    KvGeometry,
    KvOutOfPages,
    KvPlanError,
    KvPlanRequest,
    OffloadHierarchy,
    OffloadTier,
    plan_kv,
    pyramid_budgets,
)

LLAMA3_8B = KvGeometry(layers=32, heads=32, kv_heads=8, head_dim=128, dtype="bf16")


def test_known_kv_sizes_per_token():
    assert LLAMA3_8B.bytes_per_token == 128 * 1024  # 2 * 32 * 8 * 128 * 2 bytes
    llama2_7b = KvGeometry(layers=32, heads=32, kv_heads=32, head_dim=128, dtype="fp16")
    assert llama2_7b.bytes_per_token == 512 * 1024
    assert KvGeometry(32, 32, 8, 128, "fp8").bytes_per_token == 64 * 1024
    with pytest.raises(KvPlanError, match="multiple of kv_heads"):
        KvGeometry(32, 30, 8, 128)
    with pytest.raises(KvPlanError, match="dtype"):
        KvGeometry(32, 32, 8, 128, "fp7")


def test_pyramid_reference_defaults_by_hand():
    # PyramidKV defaults: 32 layers, max_capacity 320, window 64, beta 20, long prompt.
    # k = 256 selected; top layer 256 // 20 = 12, bottom 2 * 256 - 12 = 500,
    # step (500 - 12) // 31 = 15: layer l keeps 500 - 15 l + 64.
    budgets = pyramid_budgets(32, 320, 64, 20, q_len=4096)
    assert budgets[0] == 564 and budgets[1] == 549 and budgets[-1] == 99
    assert budgets == [500 - 15 * layer + 64 for layer in range(32)]
    assert all(a > b for a, b in itertools.pairwise(budgets))


def test_pyramid_short_prompts():
    assert pyramid_budgets(4, 320, 64, 20, q_len=200) == [200] * 4  # kept whole
    assert pyramid_budgets(4, 320, 64, 20, q_len=400) == [320] * 4  # uniform, as the paper's code
    # 2k <= q_len < 2k + window: the bottom is capped at q_len - window
    budgets = pyramid_budgets(4, 320, 64, 20, q_len=530)
    assert budgets[0] == 530 - 64 + 64
    assert budgets[-1] == (2 * 256 - 466) + 64 + 0 * budgets[0]  # smallest = 2k - largest
    with pytest.raises(KvPlanError, match="window"):
        pyramid_budgets(4, 64, 64)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(2, 80),
    st.integers(65, 8192),
    st.integers(0, 64),
    st.floats(1.5, 40),
    st.integers(1, 200_000),
)
def test_pyramid_never_below_window_and_decreasing(layers, capacity, window, beta, q_len):
    budgets = pyramid_budgets(layers, capacity, window, beta, q_len)
    assert len(budgets) == layers
    assert all(b >= min(window, q_len) for b in budgets)
    assert all(a >= b for a, b in itertools.pairwise(budgets))
    assert max(budgets) <= max(q_len, capacity)


def test_elastic_pool_maps_pages_on_demand_and_gives_them_back():
    pool = ElasticKvPool(physical_pages=10, page_tokens=16)
    pool.reserve("a", 100_000)  # virtual: far beyond the physical pool, and that is fine
    pool.reserve("b", 100_000)
    assert pool.free_pages == 10
    assert pool.grow("a", 100) == 7  # ceil(100 / 16)
    assert pool.grow("a", 100) == 0  # already backed
    with pytest.raises(KvOutOfPages) as caught:
        pool.grow("b", 64)  # needs 4, 3 free
    assert caught.value.shortfall == 1
    assert pool.shrink("a", 16) == 6
    assert pool.grow("b", 64) == 4
    assert pool.mapped_pages == 5 and pool.free_pages == 5
    assert pool.release("b") == 4 and pool.free_pages == 9
    with pytest.raises(KvPlanError, match="beyond its reservation"):
        pool.grow("a", 200_000)
    with pytest.raises(KvPlanError, match="no reservation"):
        pool.grow("ghost", 1)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from("abc"),
            st.sampled_from(["grow", "shrink", "release"]),
            st.integers(0, 400),
        )
    )
)
def test_elastic_pool_never_maps_more_than_it_has(operations):
    pool = ElasticKvPool(physical_pages=12, page_tokens=16)
    for owner, operation, tokens in operations:
        pool.reserve(owner, 400)
        if operation == "grow":
            with contextlib.suppress(KvOutOfPages):
                pool.grow(owner, tokens)
        elif operation == "shrink":
            pool.shrink(owner, tokens)
        else:
            pool.release(owner)
        assert 0 <= pool.mapped_pages <= pool.physical_pages
        reserved_pages = pool.pages_for(pool.reserved_tokens(owner))
        assert pool.mapped_tokens(owner) <= reserved_pages * pool.page_tokens


def hierarchy() -> OffloadHierarchy:
    return OffloadHierarchy(
        [
            OffloadTier("local-gpu", 100, 3000),
            OffloadTier("peer-gpu", 100, 450),
            OffloadTier("host-dram", 200, 50),
            OffloadTier("disk", None, 5),
        ]
    )


def test_offload_demotes_least_recently_used_down_the_tiers():
    tiers = hierarchy()
    for name in "abcd":
        tiers.place(name, 50)
    # gpu holds 2 blocks: c, d; a and b were pushed to the peer GPU in LRU order
    assert tiers.blocks_in("local-gpu") == ["c", "d"]
    assert tiers.blocks_in("peer-gpu") == ["a", "b"]
    tiers.touch("a")  # a is needed again: back to the GPU, c (now LRU) moves down, b too
    assert tiers.tier_of("a") == "local-gpu"
    assert tiers.blocks_in("local-gpu") == ["d", "a"]
    assert tiers.blocks_in("peer-gpu") == ["b", "c"]
    for name in "efgh":
        tiers.place(name, 50)
    assert tiers.blocks_in("disk") == []
    tiers.place("i", 50)
    # each placement pushes the GPU's LRU block to the peer GPU and the peer's LRU to DRAM;
    # the fifth block in DRAM (200 bytes) overflows its oldest, b, to disk
    assert tiers.blocks_in("local-gpu") == ["h", "i"]
    assert tiers.blocks_in("peer-gpu") == ["f", "g"]
    assert tiers.blocks_in("host-dram") == ["c", "d", "a", "e"]
    assert tiers.blocks_in("disk") == ["b"]


def test_offload_big_blocks_skip_tiers_they_cannot_fit():
    tiers = hierarchy()
    assert tiers.place("huge", 150) == "host-dram"
    assert tiers.place("giant", 10_000) == "disk"
    with pytest.raises(KvPlanError, match="unknown block"):
        tiers.touch("nope")
    strict = OffloadHierarchy([OffloadTier("gpu", 10, 1)])
    with pytest.raises(KvPlanError, match="fits in no tier"):
        strict.place("x", 11)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("abcdefgh"), st.integers(1, 120), st.booleans()), max_size=40
    )
)
def test_offload_keeps_every_block_in_exactly_one_tier_within_capacity(steps):
    tiers = hierarchy()
    placed: set[str] = set()
    for name, size, touch in steps:
        if touch and name in placed:
            tiers.touch(name)
        else:
            tiers.place(name, size)
            placed.add(name)
        for level, tier in enumerate(tiers.tiers):
            if tier.capacity_bytes is not None:
                assert tiers.used_bytes(level) <= tier.capacity_bytes
        locations = [tiers.tier_of(n) for n in placed]
        assert all(location is not None for location in locations)
        assert sum(len(tiers.blocks_in(t.name)) for t in tiers.tiers) == len(placed)


def test_plan_for_eight_agents_on_an_80_gib_gpu():
    request = KvPlanRequest(
        geometry=LLAMA3_8B,
        gpu_mem_gib=80,
        agents=8,
        context_tokens=131_072,
        weights_gib=16,
        shared_prefix_tokens=8_192,
        host_mem_gib=256,
    )
    plan = plan_kv(request)
    budget = 80 * GIB * 0.9 - 16 * GIB
    assert plan.kv_budget_bytes == pytest.approx(budget)
    assert plan.capacity_tokens == int(budget // (128 * 1024 * 16)) * 16  # 458,752
    assert plan.demand_tokens == 8_192 + 8 * (131_072 - 8_192)
    assert not plan.fits
    assert plan.concurrent_full_context == (plan.capacity_tokens - 8_192) // (131_072 - 8_192)
    assert plan.static_reservation_bytes == 8 * 131_072 * 128 * 1024
    assert plan.elastic_initial_bytes == 8_192 * 128 * 1024
    # PyramidKV: every agent fits once each keeps about capacity / agents tokens per layer
    assert plan.pyramid_max_capacity is not None
    assert 8 * sum(plan.pyramid_budgets) <= (plan.capacity_tokens - 8_192) * 32
    assert plan.pyramid_budgets[0] > plan.pyramid_budgets[-1]
    # offload: three agents' KV on the GPU, the rest spill to host DRAM (no peer GPU)
    assert len(plan.offload["local-gpu"]) == plan.concurrent_full_context
    assert plan.offload["peer-gpu"] == []
    assert len(plan.offload["local-gpu"]) + len(plan.offload["host-dram"]) == 8


def test_plan_that_fits_and_bad_requests():
    small = plan_kv(KvPlanRequest(LLAMA3_8B, gpu_mem_gib=80, agents=2, context_tokens=8_192))
    assert small.fits and small.concurrent_full_context == 2 and small.notes == []
    with pytest.raises(KvPlanError, match="no KV memory"):
        plan_kv(
            KvPlanRequest(LLAMA3_8B, gpu_mem_gib=16, agents=1, context_tokens=10, weights_gib=16)
        )
    with pytest.raises(KvPlanError, match="shared prefix"):
        plan_kv(KvPlanRequest(LLAMA3_8B, 80, 1, 100, shared_prefix_tokens=200))

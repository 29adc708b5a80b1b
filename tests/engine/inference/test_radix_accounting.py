"""Known answers and properties of the radix tree and the block-granular reuse count."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from delegation_machine.engine.inference.radix import PrefixAccounting, RadixTree, reusable_tokens


def test_insert_reports_the_prefix_already_stored() -> None:
    tree = RadixTree()
    assert tree.insert("abcdef") == 0
    assert tree.insert("abcxyz") == 3  # splits the edge "abcdef" at 3
    assert tree.insert("abcdef") == 6
    assert tree.insert("ab") == 2
    assert tree.insert("q") == 0
    assert tree.longest_prefix("abcxy-") == 5
    assert tree.longest_prefix("zzz") == 0
    # root, "ab", "c", "def", "xyz", "q"
    assert tree.node_count() == 6


def test_reuse_counts_whole_blocks_and_always_computes_the_last_token() -> None:
    assert reusable_tokens(matched=37, prompt_tokens=100, block_size=16) == 32
    assert reusable_tokens(matched=15, prompt_tokens=100, block_size=16) == 0
    # A fully cached 64-token prompt still computes its last token: 63 usable -> 48.
    assert reusable_tokens(matched=64, prompt_tokens=64, block_size=16) == 48
    assert reusable_tokens(matched=10, prompt_tokens=10, block_size=1) == 9
    assert reusable_tokens(matched=0, prompt_tokens=0, block_size=16) == 0


def test_accounting_sees_the_second_agent_reuse_the_first_agents_prefix() -> None:
    accounting = PrefixAccounting(block_size=4)
    shared = list(range(40))
    first = accounting.observe([*shared, 100, 101, 102])
    second = accounting.observe([*shared, 200, 201])
    assert first.reusable_tokens == 0
    assert second.matched_tokens == 40
    assert second.reusable_tokens == 40
    assert second.uncached_tokens == 2


@given(st.lists(st.lists(st.integers(0, 3), max_size=12), min_size=1, max_size=25))
def test_longest_prefix_matches_brute_force(sequences: list[list[int]]) -> None:
    tree = RadixTree()
    seen: list[list[int]] = []
    for seq in sequences:
        expected = max(
            (_lcp(seq, other) for other in seen),
            default=0,
        )
        assert tree.longest_prefix(seq) == expected
        assert tree.insert(seq) == expected
        seen.append(seq)


def _lcp(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n

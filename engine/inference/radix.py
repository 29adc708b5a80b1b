"""A radix tree over every prompt sent, counting the prefix tokens a prefix cache could reuse.

Owns `RadixTree` (compressed trie of token sequences) and `PrefixAccounting`. Reuse is counted
as vLLM's automatic prefix caching does: only whole blocks of `block_size` tokens are cached,
and at least the last prompt token is always computed, so a prompt of n tokens whose longest
previously-seen prefix is m tokens can reuse floor(min(m, n - 1) / block_size) * block_size.
The tree never evicts (an upper bound on what a server with a finite cache could reuse).
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Sequence

import msgspec


class _Node:
    __slots__ = ("children", "label")

    def __init__(self, label: tuple[Hashable, ...]) -> None:
        self.label = label
        self.children: dict[Hashable, _Node] = {}


def _common_length(a: Sequence[Hashable], a_start: int, b: tuple[Hashable, ...]) -> int:
    limit = min(len(a) - a_start, len(b))
    n = 0
    while n < limit and a[a_start + n] == b[n]:
        n += 1
    return n


class RadixTree:
    """Token sequences stored with shared prefixes merged; edges carry token tuples."""

    def __init__(self) -> None:
        self._root = _Node(())
        self.sequences = 0
        self.tokens_seen = 0

    def longest_prefix(self, tokens: Sequence[Hashable]) -> int:
        """Length of the longest prefix of `tokens` that is a prefix of a stored sequence."""
        node, pos = self._root, 0
        while pos < len(tokens):
            child = node.children.get(tokens[pos])
            if child is None:
                return pos
            common = _common_length(tokens, pos, child.label)
            pos += common
            if common < len(child.label):
                return pos
            node = child
        return pos

    def insert(self, tokens: Sequence[Hashable]) -> int:
        """Store `tokens`; return the length of the prefix that was already stored."""
        self.sequences += 1
        self.tokens_seen += len(tokens)
        node, pos = self._root, 0
        while pos < len(tokens):
            child = node.children.get(tokens[pos])
            if child is None:
                node.children[tokens[pos]] = _Node(tuple(tokens[pos:]))
                return pos
            common = _common_length(tokens, pos, child.label)
            if common < len(child.label):
                self._split(node, child, common)
                child = node.children[tokens[pos]]
            pos += common
            node = child
        return pos

    @staticmethod
    def _split(parent: _Node, child: _Node, at: int) -> None:
        middle = _Node(child.label[:at])
        child.label = child.label[at:]
        middle.children[child.label[0]] = child
        parent.children[middle.label[0]] = middle

    def node_count(self) -> int:
        count, stack = 0, [self._root]
        while stack:
            node = stack.pop()
            count += 1
            stack.extend(node.children.values())
        return count


def reusable_tokens(matched: int, prompt_tokens: int, block_size: int) -> int:
    """Whole cached blocks a prefix cache can serve; the last prompt token is always computed."""
    if prompt_tokens <= 0 or block_size <= 0:
        return 0
    usable = min(matched, prompt_tokens - 1)
    return (usable // block_size) * block_size


class PrefixObservation(msgspec.Struct, frozen=True):
    prompt_tokens: int
    matched_tokens: int
    reusable_tokens: int

    @property
    def uncached_tokens(self) -> int:
        return self.prompt_tokens - self.reusable_tokens


class PrefixAccounting:
    """Feeds every prompt into one radix tree and reports the reusable prefix per request.

    Thread-safe: the scripted server's handler threads and the event loop may share one.
    """

    def __init__(self, block_size: int = 16) -> None:
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.block_size = block_size
        self._tree = RadixTree()
        self._lock = threading.Lock()

    def observe(self, tokens: Sequence[Hashable]) -> PrefixObservation:
        with self._lock:
            matched = self._tree.insert(tokens)
        return PrefixObservation(
            prompt_tokens=len(tokens),
            matched_tokens=matched,
            reusable_tokens=reusable_tokens(matched, len(tokens), self.block_size),
        )

    def peek(self, tokens: Sequence[Hashable]) -> PrefixObservation:
        with self._lock:
            matched = self._tree.longest_prefix(tokens)
        return PrefixObservation(
            prompt_tokens=len(tokens),
            matched_tokens=matched,
            reusable_tokens=reusable_tokens(matched, len(tokens), self.block_size),
        )

"""KV-cache planning for self-hosted inference (vLLM): sizes, PyramidKV, elastic pages, offload.

Owns the arithmetic of a model's KV footprint, PyramidKV's per-layer budgets (Cai et al.
2024, arithmetic schedule with the recent window kept), a kvcached-style elastic pool
(reserve virtual space large, back it with physical pages on demand) and a hierarchical
offload policy (local GPU -> peer GPU -> host DRAM -> disk, least recently used moves down).
Invariants: mapped pages never exceed the physical pool; a tier never holds more than its
capacity; every placed block is in exactly one tier. Nothing here touches a GPU.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import msgspec

GIB = 1 << 30

DTYPE_BYTES: dict[str, float] = {
    "fp32": 4,
    "float32": 4,
    "fp16": 2,
    "float16": 2,
    "bf16": 2,
    "bfloat16": 2,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
    "int8": 1,
    "int4": 0.5,
}


class KvPlanError(ValueError):
    """A KV plan input was out of range; the message names the parameter."""


class KvOutOfPages(RuntimeError):
    """The elastic pool has too few free physical pages; `shortfall` pages are missing."""

    def __init__(self, owner: str, shortfall: int) -> None:
        super().__init__(f"{owner!r} needs {shortfall} more physical page(s) than are free")
        self.owner = owner
        self.shortfall = shortfall


class KvGeometry(msgspec.Struct, frozen=True):
    """The shape of a model's KV cache."""

    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    dtype: str = "bf16"

    def __post_init__(self) -> None:
        for name in ("layers", "heads", "kv_heads", "head_dim"):
            if getattr(self, name) <= 0:
                raise KvPlanError(f"{name} must be positive, got {getattr(self, name)}")
        if self.heads % self.kv_heads:
            raise KvPlanError(
                f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})"
            )
        if self.dtype not in DTYPE_BYTES:
            raise KvPlanError(f"dtype {self.dtype!r} unknown; one of {sorted(DTYPE_BYTES)}")

    @property
    def bytes_per_token_layer(self) -> float:
        """K and V for one token in one layer: 2 * kv_heads * head_dim * dtype bytes."""
        return 2 * self.kv_heads * self.head_dim * DTYPE_BYTES[self.dtype]

    @property
    def bytes_per_token(self) -> float:
        return self.bytes_per_token_layer * self.layers


def pyramid_budgets(
    layers: int, max_capacity: int, window: int, beta: float = 20, q_len: int | None = None
) -> list[int]:
    """Tokens kept per layer (recent window included) by PyramidKV's arithmetic schedule.

    With k = max_capacity - window selected tokens on average: the top layer keeps k // beta,
    the bottom 2k - k // beta, layers in between fall by a constant integer step; when the
    prompt is too short for that the bottom is capped at q_len - window. Prompts shorter than
    max_capacity are kept whole; shorter than 2k, every layer keeps max_capacity (as the
    reference implementation does).
    """
    if layers <= 0:
        raise KvPlanError(f"layers must be positive, got {layers}")
    if window < 0 or max_capacity - window <= 0:
        raise KvPlanError(f"need 0 <= window < max_capacity, got {window} and {max_capacity}")
    if beta <= 0:
        raise KvPlanError(f"beta must be positive, got {beta}")
    selected = max_capacity - window
    prompt = q_len if q_len is not None else 2 * selected + window + 1
    if prompt < max_capacity:
        return [prompt] * layers
    if prompt < 2 * selected:
        return [max_capacity] * layers
    smallest = int(selected // beta)
    largest = 2 * selected - smallest
    if largest >= prompt - window:
        largest = prompt - window
        smallest = 2 * selected - largest
    step = (largest - smallest) // (layers - 1) if layers > 1 else 0
    return [largest - layer * step + window for layer in range(layers)]


class ElasticKvPool:
    """kvcached-style elastic KV memory: virtual reservations, physical pages on demand.

    `reserve` only records virtual space (it never fails for lack of physical memory);
    `grow` maps the pages an owner's tokens need, `shrink`/`release` give them back to the
    shared pool, so idle agents hold no physical memory.
    """

    def __init__(self, physical_pages: int, page_tokens: int = 16) -> None:
        if physical_pages < 0 or page_tokens <= 0:
            raise KvPlanError(
                f"need physical_pages >= 0 and page_tokens > 0, got {physical_pages}, {page_tokens}"
            )
        self.physical_pages = physical_pages
        self.page_tokens = page_tokens
        self._reserved: dict[str, int] = {}  # owner -> virtual tokens
        self._mapped: dict[str, int] = {}  # owner -> physical pages

    def pages_for(self, tokens: int) -> int:
        return math.ceil(tokens / self.page_tokens)

    @property
    def mapped_pages(self) -> int:
        return sum(self._mapped.values())

    @property
    def free_pages(self) -> int:
        return self.physical_pages - self.mapped_pages

    def reserved_tokens(self, owner: str) -> int:
        return self._reserved.get(owner, 0)

    def mapped_tokens(self, owner: str) -> int:
        return self._mapped.get(owner, 0) * self.page_tokens

    def reserve(self, owner: str, virtual_tokens: int) -> None:
        if virtual_tokens < 0:
            raise KvPlanError(f"virtual_tokens must be >= 0, got {virtual_tokens}")
        self._reserved[owner] = max(self._reserved.get(owner, 0), virtual_tokens)
        self._mapped.setdefault(owner, 0)

    def grow(self, owner: str, tokens: int) -> int:
        """Back `tokens` of `owner`'s reservation with pages; returns newly mapped pages."""
        if owner not in self._reserved:
            raise KvPlanError(f"{owner!r} has no reservation; call reserve() first")
        if tokens > self._reserved[owner]:
            raise KvPlanError(
                f"{owner!r} asked for {tokens} tokens beyond its reservation of "
                f"{self._reserved[owner]}"
            )
        needed = self.pages_for(tokens) - self._mapped[owner]
        if needed <= 0:
            return 0
        if needed > self.free_pages:
            raise KvOutOfPages(owner, needed - self.free_pages)
        self._mapped[owner] += needed
        return needed

    def shrink(self, owner: str, tokens: int) -> int:
        """Keep only the pages `tokens` need; returns pages given back."""
        keep = min(self.pages_for(max(tokens, 0)), self._mapped.get(owner, 0))
        freed = self._mapped.get(owner, 0) - keep
        if owner in self._mapped:
            self._mapped[owner] = keep
        return freed

    def release(self, owner: str) -> int:
        freed = self._mapped.pop(owner, 0)
        self._reserved.pop(owner, None)
        return freed


class OffloadTier(msgspec.Struct, frozen=True):
    """One level of the memory hierarchy; `capacity_bytes` None means unbounded (disk)."""

    name: str
    capacity_bytes: float | None
    bandwidth_gb_s: float


DEFAULT_TIER_NAMES = ("local-gpu", "peer-gpu", "host-dram", "disk")


class OffloadHierarchy:
    """Places KV blocks in the fastest tier with room; least recently used blocks move down.

    `place` and `touch` put a block in tier 0 and demote the least recently used blocks of
    each full tier one level down, cascading; a block too big for every tier is refused.
    """

    def __init__(self, tiers: Sequence[OffloadTier]) -> None:
        if not tiers:
            raise KvPlanError("an offload hierarchy needs at least one tier")
        self.tiers = list(tiers)
        self._blocks: list[OrderedDict[str, float]] = [OrderedDict() for _ in self.tiers]

    def used_bytes(self, tier: int) -> float:
        return sum(self._blocks[tier].values())

    def tier_of(self, block: str) -> str | None:
        for tier, blocks in zip(self.tiers, self._blocks, strict=True):
            if block in blocks:
                return tier.name
        return None

    def blocks_in(self, tier_name: str) -> list[str]:
        for tier, blocks in zip(self.tiers, self._blocks, strict=True):
            if tier.name == tier_name:
                return list(blocks)
        raise KvPlanError(f"no tier named {tier_name!r}")

    def place(self, block: str, size_bytes: float) -> str:
        """Admit (or re-admit) `block` at the fastest tier that can ever hold it."""
        if size_bytes < 0:
            raise KvPlanError(f"block {block!r} has negative size {size_bytes}")
        self._remove(block)
        for level, tier in enumerate(self.tiers):
            if tier.capacity_bytes is None or size_bytes <= tier.capacity_bytes:
                self._insert(level, block, size_bytes)
                return self.tier_of(block) or tier.name
        raise KvPlanError(f"block {block!r} ({size_bytes:.0f} bytes) fits in no tier")

    def touch(self, block: str) -> str:
        """The block is about to be used: promote it to the fastest tier that can hold it."""
        for blocks in self._blocks:
            if block in blocks:
                return self.place(block, blocks[block])
        raise KvPlanError(f"unknown block {block!r}")

    def _remove(self, block: str) -> None:
        for blocks in self._blocks:
            blocks.pop(block, None)

    def _insert(self, level: int, block: str, size_bytes: float) -> None:
        blocks = self._blocks[level]
        blocks[block] = size_bytes
        blocks.move_to_end(block)
        capacity = self.tiers[level].capacity_bytes
        while capacity is not None and self.used_bytes(level) > capacity:
            victim, victim_size = next(iter(blocks.items()))
            if victim == block:
                break  # only the new block is left; it fits by construction
            del blocks[victim]
            self._demote(level, victim, victim_size)

    def _demote(self, level: int, block: str, size_bytes: float) -> None:
        for lower in range(level + 1, len(self.tiers)):
            capacity = self.tiers[lower].capacity_bytes
            if capacity is None or size_bytes <= capacity:
                self._insert(lower, block, size_bytes)
                return
        raise KvPlanError(f"no room below {self.tiers[level].name!r} for {block!r}")


class KvPlan(msgspec.Struct, frozen=True):
    """What `plan_kv` decided for one GPU and a swarm of agents."""

    geometry: KvGeometry
    agents: int
    context_tokens: int
    shared_prefix_tokens: int
    bytes_per_token: float
    kv_budget_bytes: float
    capacity_tokens: int  # whole pages of KV that fit on the GPU
    demand_tokens: int  # shared prefix once + every agent's own part
    fits: bool
    concurrent_full_context: int  # agents that can run at once with no compression
    static_reservation_bytes: float  # pre-allocating max context for every agent
    elastic_initial_bytes: float  # kvcached: only the shared prefix is mapped at start
    pyramid_max_capacity: int | None  # per-layer average that lets every agent run at once
    pyramid_budgets: list[int]
    offload: dict[str, list[str]]  # tier -> agents whose KV lives there without compression
    notes: list[str]


class KvPlanRequest(msgspec.Struct, frozen=True):
    geometry: KvGeometry
    gpu_mem_gib: float
    agents: int
    context_tokens: int
    weights_gib: float = 0.0
    gpu_utilization: float = 0.9
    shared_prefix_tokens: int = 0
    page_tokens: int = 16
    window: int = 32
    beta: float = 20
    peer_gpu_mem_gib: float = 0.0
    host_mem_gib: float = 64.0


def _validate_request(request: KvPlanRequest) -> None:
    if request.gpu_mem_gib <= 0:
        raise KvPlanError(f"gpu_mem_gib must be positive, got {request.gpu_mem_gib}")
    if not 0 < request.gpu_utilization <= 1:
        raise KvPlanError(f"gpu_utilization must be in (0, 1], got {request.gpu_utilization}")
    if request.agents <= 0 or request.context_tokens <= 0:
        raise KvPlanError(
            f"agents and context must be positive, got {request.agents}, {request.context_tokens}"
        )
    if not 0 <= request.shared_prefix_tokens <= request.context_tokens:
        raise KvPlanError(
            f"shared prefix ({request.shared_prefix_tokens}) must be within the context "
            f"({request.context_tokens})"
        )
    if request.weights_gib < 0 or request.peer_gpu_mem_gib < 0 or request.host_mem_gib < 0:
        raise KvPlanError("memory sizes must be >= 0")


def plan_kv(request: KvPlanRequest) -> KvPlan:
    """Size the KV cache of `agents` sharing one GPU, and say how to fit them if they do not."""
    _validate_request(request)
    geometry = request.geometry
    per_token = geometry.bytes_per_token
    budget = request.gpu_mem_gib * GIB * request.gpu_utilization - request.weights_gib * GIB
    notes: list[str] = []
    if budget <= 0:
        raise KvPlanError(
            f"the weights ({request.weights_gib} GiB) leave no KV memory on a "
            f"{request.gpu_mem_gib} GiB GPU at utilisation {request.gpu_utilization}"
        )
    pages = int(budget // (per_token * request.page_tokens))
    capacity = pages * request.page_tokens
    shared = request.shared_prefix_tokens
    own = request.context_tokens - shared
    demand = shared + request.agents * own
    concurrent = (
        request.agents if own == 0 else max(0, min(request.agents, (capacity - shared) // own))
    )
    pyramid_capacity, budgets = _fit_pyramid(request, capacity)
    if demand > capacity:
        notes.append(
            f"full contexts need {demand:,} tokens but {capacity:,} fit: "
            f"{concurrent} of {request.agents} agents can run at once uncompressed"
        )
    if pyramid_capacity is None and demand > capacity:
        notes.append("PyramidKV cannot fit every agent: the window alone is too large")
    return KvPlan(
        geometry=geometry,
        agents=request.agents,
        context_tokens=request.context_tokens,
        shared_prefix_tokens=shared,
        bytes_per_token=per_token,
        kv_budget_bytes=budget,
        capacity_tokens=capacity,
        demand_tokens=demand,
        fits=demand <= capacity,
        concurrent_full_context=concurrent,
        static_reservation_bytes=request.agents * request.context_tokens * per_token,
        elastic_initial_bytes=math.ceil(shared / request.page_tokens)
        * request.page_tokens
        * per_token,
        pyramid_max_capacity=pyramid_capacity,
        pyramid_budgets=budgets,
        offload=_offload_placement(request, max(capacity - shared, 0) * per_token, own * per_token),
        notes=notes,
    )


def _fit_pyramid(request: KvPlanRequest, capacity: int) -> tuple[int | None, list[int]]:
    """Largest per-layer average capacity whose pyramid lets every agent's own part fit."""
    layers = request.geometry.layers
    own = request.context_tokens - request.shared_prefix_tokens
    room = capacity - request.shared_prefix_tokens
    if room <= 0:
        return None, []
    if request.agents * own <= room:
        return own, [own] * layers  # nothing to compress
    average = room // request.agents
    while average > request.window:
        budgets = pyramid_budgets(layers, average, request.window, request.beta, own)
        # a token's KV spans every layer: an agent's footprint is its mean per-layer budget
        if request.agents * sum(budgets) <= room * layers:
            return average, budgets
        average -= max(1, average // 100)
    return None, []


def _offload_placement(
    request: KvPlanRequest, gpu_bytes: float, per_agent_bytes: float
) -> dict[str, list[str]]:
    hierarchy = OffloadHierarchy(
        [
            OffloadTier("local-gpu", gpu_bytes, 3000.0),
            OffloadTier("peer-gpu", request.peer_gpu_mem_gib * GIB, 450.0),
            OffloadTier("host-dram", request.host_mem_gib * GIB, 50.0),
            OffloadTier("disk", None, 5.0),
        ]
    )
    for agent in range(request.agents):
        hierarchy.place(f"agent-{agent}", per_agent_bytes)
    return {tier: hierarchy.blocks_in(tier) for tier in DEFAULT_TIER_NAMES}

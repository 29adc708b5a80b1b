"""`delegation-machine plan-kv`: print a KV-cache plan for agents sharing one self-hosted GPU.

Owns only argument parsing and printing; the arithmetic is engine.economy.kvcache.plan_kv.
Exit codes: 0 a plan was printed, 2 the inputs were out of range (the message says which).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from delegation_machine.engine.economy.kvcache import (
    DTYPE_BYTES,
    GIB,
    KvGeometry,
    KvPlan,
    KvPlanError,
    KvPlanRequest,
    plan_kv,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plan-kv",
        help="plan KV-cache memory for a swarm on one self-hosted GPU (vLLM)",
        description=(
            "Size the KV cache of N agents sharing one GPU and say how to fit them: "
            "elastic pages, PyramidKV per-layer budgets, or offload to peer GPU / host / disk."
        ),
    )
    model = parser.add_argument_group("model")
    model.add_argument("--layers", type=int, required=True, help="transformer layers")
    model.add_argument("--heads", type=int, required=True, help="attention heads")
    model.add_argument("--kv-heads", type=int, required=True, help="key/value heads (GQA)")
    model.add_argument("--head-dim", type=int, required=True, help="dimension per head")
    model.add_argument("--dtype", default="bf16", choices=sorted(DTYPE_BYTES), help="KV dtype")
    model.add_argument("--weights-gib", type=float, default=0.0, help="GPU memory the weights use")
    swarm = parser.add_argument_group("swarm and hardware")
    swarm.add_argument("--gpu-mem-gib", type=float, required=True, help="GPU memory in GiB")
    swarm.add_argument("--gpu-util", type=float, default=0.9, help="vLLM gpu_memory_utilization")
    swarm.add_argument("--agents", type=int, required=True, help="agents running at once")
    swarm.add_argument("--context", type=int, required=True, help="context tokens per agent")
    swarm.add_argument(
        "--shared-prefix", type=int, default=0, help="prefix tokens all agents share"
    )
    swarm.add_argument("--page-tokens", type=int, default=16, help="tokens per KV page (block)")
    swarm.add_argument("--window", type=int, default=32, help="PyramidKV recent window")
    swarm.add_argument("--beta", type=float, default=20, help="PyramidKV top/average ratio")
    swarm.add_argument("--peer-gpu-mem-gib", type=float, default=0.0, help="peer GPU memory")
    swarm.add_argument("--host-mem-gib", type=float, default=64.0, help="host DRAM for offload")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.set_defaults(handler=run_plan_kv)


def request_from_args(args: argparse.Namespace) -> KvPlanRequest:
    geometry = KvGeometry(
        layers=args.layers,
        heads=args.heads,
        kv_heads=args.kv_heads,
        head_dim=args.head_dim,
        dtype=args.dtype,
    )
    return KvPlanRequest(
        geometry=geometry,
        gpu_mem_gib=args.gpu_mem_gib,
        agents=args.agents,
        context_tokens=args.context,
        weights_gib=args.weights_gib,
        gpu_utilization=args.gpu_util,
        shared_prefix_tokens=args.shared_prefix,
        page_tokens=args.page_tokens,
        window=args.window,
        beta=args.beta,
        peer_gpu_mem_gib=args.peer_gpu_mem_gib,
        host_mem_gib=args.host_mem_gib,
    )


def run_plan_kv(args: argparse.Namespace) -> int:
    try:
        plan = plan_kv(request_from_args(args))
    except KvPlanError as exc:
        print(f"plan-kv: {exc}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(plan)).decode() + "\n")
    else:
        sys.stdout.write(render_plan(plan))
    return 0


def _gib(value: float) -> str:
    return f"{value / GIB:,.2f} GiB"


def render_plan(plan: KvPlan) -> str:
    g = plan.geometry
    lines = [
        f"KV plan: {plan.agents} agent(s) x {plan.context_tokens:,} tokens "
        f"(shared prefix {plan.shared_prefix_tokens:,})",
        f"  model        {g.layers} layers, {g.heads} heads / {g.kv_heads} KV heads, "
        f"head dim {g.head_dim}, {g.dtype}",
        f"  per token    {plan.bytes_per_token / 1024:,.1f} KiB of K+V",
        f"  KV budget    {_gib(plan.kv_budget_bytes)} = {plan.capacity_tokens:,} tokens",
        f"  demand       {plan.demand_tokens:,} tokens -> {'fits' if plan.fits else 'does NOT fit'}",
        f"  concurrency  {plan.concurrent_full_context} of {plan.agents} at full context",
        f"  elastic      static reservation {_gib(plan.static_reservation_bytes)}; "
        f"kvcached maps {_gib(plan.elastic_initial_bytes)} at start, the rest on demand",
    ]
    if plan.pyramid_max_capacity is not None and not plan.fits:
        budgets = plan.pyramid_budgets
        lines.append(
            f"  PyramidKV    all agents at once with {plan.pyramid_max_capacity:,} tokens/layer "
            f"on average: layer 0 keeps {budgets[0]:,}, layer {len(budgets) - 1} keeps "
            f"{budgets[-1]:,}"
        )
    placed = ", ".join(f"{tier}: {len(agents)}" for tier, agents in plan.offload.items())
    lines.append(f"  offload      agents' KV without compression -> {placed}")
    lines.extend(f"  note         {note}" for note in plan.notes)
    return "\n".join(lines) + "\n"

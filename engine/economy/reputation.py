"""The swarm's economy: SHARP credit, EigenTrust reputation, quarantine and budgets, persisted.

`Economy` owns `<workspace>/.delegation/economy.json` (rewritten atomically after every change)
and is owned by the swarm's event loop; a lock guards it against stray threads. Invariants:
pre-trusted agents ("builtin:*", human-reviewed, configured) are never quarantined; every
other agent starts quarantined and leaves only by the exit rule of docs/economy.md; trust is
the EigenTrust score over decayed local trust formed from task outcomes and breakages.
"""

from __future__ import annotations

import math
import os
import random
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from delegation_machine.engine.economy.eigentrust import (
    InteractionTally,
    eigentrust,
    local_trust_from_tallies,
)
from delegation_machine.engine.economy.market import proportional_response
from delegation_machine.engine.economy.sharp import (
    KeptWork,
    SharpScore,
    SharpWeights,
    UsageLike,
    process_cost,
    sharp_score,
)

JUDGE = "builtin:supervisor"
"""The supervisors' peer: pre-trusted, it rates every agent from the verdicts it sees."""

BUILTIN_PREFIX = "builtin:"
STATE_FILE = Path(".delegation") / "economy.json"
STATE_VERSION = 1


class EconomyError(ValueError):
    """A call into the economy had bad arguments; the message says which and why."""


class EconomyStateError(EconomyError):
    """economy.json could not be read; the file is left untouched for inspection."""

    def __init__(self, path: Path, message: str, json_path: str = "$") -> None:
        super().__init__(f"{path}: {message} (at {json_path})")
        self.path = path
        self.json_path = json_path


class EconomyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    alpha: float = 0.15  # EigenTrust damping toward pre-trusted peers
    half_life_tasks: float = 50.0  # local scores halve every this many recorded tasks
    probation_tasks: int = 3  # passed tasks needed (in quarantine) before exit is possible
    exit_ratio: float = 0.5  # relative trust needed to leave quarantine
    reentry_ratio: float = 0.25  # relative trust below which a released agent goes back
    breakage_weight: float = 1.0  # unsatisfactory outcomes one breakage counts for
    breakage_credit_penalty: float = 0.5
    exploration: float = 0.05  # floor of every candidate's pick weight (average agent: 1)
    quarantine_pick_factor: float = 0.5  # quarantined agents still get (reviewed) work
    quarantine_bid_factor: float = 0.5  # and a smaller say in the budget market
    min_context_tokens: int = 2_048  # an agent given less than this does not run
    slot_tokens: int = 1_024  # the market's unit of context budget
    seed: int = 0
    sharp: SharpWeights = SharpWeights()


def economy_config_from(settings: Mapping[str, Any]) -> EconomyConfig:
    """EconomyConfig from the `economy` table of the swarm's settings; bad values raise
    EconomyError naming the key (e.g. `$.half_life_tasks`)."""
    try:
        return msgspec.convert(dict(settings), type=EconomyConfig)
    except msgspec.ValidationError as exc:
        raise EconomyError(f"invalid economy settings: {exc}") from None


class AgentRecord(msgspec.Struct):
    tasks: int = 0
    passed: int = 0
    failed: int = 0
    credit: float = 0.0
    shapley_total: float = 0.0
    breakages_caused: int = 0
    breakages_suffered: int = 0
    quarantined: bool = True
    probation_passes: int = 0
    last_score: float = 0.0
    budget_tokens: int = 0


class EconomyState(msgspec.Struct):
    version: int = STATE_VERSION
    epoch: float = 0.0  # the decay clock: tasks recorded so far
    choices: int = 0  # choose_agent calls so far (keys the deterministic draw)
    agents: dict[str, AgentRecord] = {}
    human_reviewed: list[str] = []
    tallies: dict[str, dict[str, InteractionTally]] = {}  # rater -> ratee -> outcomes


class AgentStanding(msgspec.Struct, frozen=True):
    """One row of `delegation.status` and `delegation-machine` status output."""

    agent_id: str
    trust: float  # EigenTrust global score (all peers sum to 1)
    credit: float  # accumulated SHARP score
    budget: int  # context tokens from the last allocation (0 when waiting)
    quarantined: bool
    relative_trust: float = 0.0  # trust / mean trust of the non-pre-trusted active agents
    pretrusted: bool = False
    tasks: int = 0
    passed: int = 0
    failed: int = 0
    breakages_caused: int = 0


class BudgetPlan(msgspec.Struct, frozen=True):
    """Who runs now and with how much context; the rest wait."""

    budgets: dict[str, int]  # agent -> context tokens (running agents only)
    running: list[str]  # highest effective bid first
    waiting: list[str]
    capacity_tokens: int
    slot_tokens: int
    token_price: float  # market price of one token of context, in bid units
    market_iterations: int
    equilibrium_gap: float


class Economy:
    """SHARP credit, EigenTrust trust, quarantine and Fisher-market budgets for one workspace."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        config: EconomyConfig | None = None,
        pretrusted: Iterable[str] = (),
        set_aside_corrupt: bool = False,
    ) -> None:
        """`set_aside_corrupt`: an unreadable state file is renamed to
        `economy.json.corrupt-<n>` (kept for inspection, `self.set_aside` names it) and the
        economy starts empty, instead of raising `EconomyStateError`."""
        self.path = path
        self.config = config or EconomyConfig()
        self.set_aside: Path | None = None
        self._configured_pretrusted = frozenset(pretrusted)
        self._lock = threading.RLock()
        self._state = self._initial_state(path, set_aside_corrupt)
        self._trust: dict[str, float] | None = None

    @classmethod
    def open(
        cls,
        workspace_root: Path,
        *,
        config: EconomyConfig | None = None,
        pretrusted: Iterable[str] = (),
        set_aside_corrupt: bool = False,
    ) -> Economy:
        """The economy persisted at `<workspace_root>/.delegation/economy.json`."""
        return cls(
            Path(workspace_root) / STATE_FILE,
            config=config,
            pretrusted=pretrusted,
            set_aside_corrupt=set_aside_corrupt,
        )

    # --- identity ----------------------------------------------------------------------------

    def is_pretrusted(self, agent_id: str) -> bool:
        return (
            agent_id.startswith(BUILTIN_PREFIX)
            or agent_id in self._configured_pretrusted
            or agent_id in self._state.human_reviewed
        )

    def register_agent(self, agent_id: str) -> None:
        with self._lock:
            self._record(agent_id)
            self._save()

    def mark_human_reviewed(self, agent_id: str) -> None:
        """A person reviewed this agent: it becomes pre-trusted and leaves quarantine."""
        with self._lock:
            if agent_id not in self._state.human_reviewed:
                self._state.human_reviewed.append(agent_id)
            self._record(agent_id).quarantined = False
            self._trust = None
            self._save()

    # --- outcomes ----------------------------------------------------------------------------

    def record_task(
        self,
        task_id: str,
        kind: str,
        contributions: Mapping[str, KeptWork],
        verdict_passed: bool,
        usage: UsageLike | None = None,
        *,
        retries: int = 0,
        value: Callable[[frozenset[str]], float] | None = None,
    ) -> SharpScore:
        """Score a finished task, credit its agents and turn its outcome into local trust.

        The judge rates each agent by its Shapley share (satisfied on a pass, unsatisfied on
        a failure); teammates rate each other the same way.
        """
        if not task_id:
            raise EconomyError("record_task: task_id is empty")
        for agent_id, work in contributions.items():
            _check_agent_id(agent_id, "record_task")
            if not isinstance(work, KeptWork):
                raise EconomyError(f"record_task: contributions[{agent_id!r}] is not a KeptWork")
        score = sharp_score(
            task_id,
            kind,
            contributions,
            verdict_passed,
            process_cost(usage, retries),
            self.config.sharp,
            value,
        )
        with self._lock:
            self._state.epoch += 1
            for agent_id in score.shapley:
                self._credit_agent(agent_id, score, verdict_passed)
            for agent_id, share in score.shapley.items():
                for rater in [JUDGE, *(a for a in score.shapley if a != agent_id)]:
                    self._rate(rater, agent_id, abs(share), satisfied=verdict_passed)
            self._after_change(passed_agents=score.shapley if verdict_passed else {})
        return score

    def record_breakage(self, culprit_agent: str, victim_agent: str) -> None:
        """`culprit_agent`'s change broke `victim_agent`'s work: both the victim and the judge
        record an unsatisfactory outcome with the culprit, and the culprit loses credit."""
        _check_agent_id(culprit_agent, "record_breakage")
        _check_agent_id(victim_agent, "record_breakage")
        if culprit_agent == victim_agent:
            raise EconomyError(f"record_breakage: {culprit_agent!r} cannot break its own work")
        with self._lock:
            weight = self.config.breakage_weight
            self._rate(victim_agent, culprit_agent, weight, satisfied=False)
            self._rate(JUDGE, culprit_agent, weight, satisfied=False)
            culprit = self._record(culprit_agent)
            culprit.breakages_caused += 1
            culprit.credit -= self.config.breakage_credit_penalty
            self._record(victim_agent).breakages_suffered += 1
            self._after_change(passed_agents={})

    # --- queries -----------------------------------------------------------------------------

    def trust(self, agent_id: str) -> float:
        with self._lock:
            return self._global_trust().get(agent_id, 0.0)

    def relative_trust(self, agent_id: str) -> float:
        """trust / mean trust of the active non-pre-trusted agents (1.0 = an average agent)."""
        with self._lock:
            if self.is_pretrusted(agent_id):
                return 1.0
            reference = self._reference_trust()
            return self.trust(agent_id) / reference if reference > 0 else 0.0

    def credit(self, agent_id: str) -> float:
        with self._lock:
            record = self._state.agents.get(agent_id)
            return record.credit if record is not None else 0.0

    def is_quarantined(self, agent_id: str) -> bool:
        with self._lock:
            if self.is_pretrusted(agent_id):
                return False
            record = self._state.agents.get(agent_id)
            return True if record is None else record.quarantined

    def choose_agent(self, candidates: Sequence[str]) -> str:
        """Draw one candidate with probability proportional to its pick weight (relative trust,
        docs/economy.md). Deterministic given the seed and the number of earlier draws."""
        if not candidates:
            raise EconomyError("choose_agent: no candidates")
        with self._lock:
            weights = self._pick_weights(list(candidates))
            rng = random.Random(f"{self.config.seed}:{self._state.choices}")
            self._state.choices += 1
            self._save()
            return rng.choices(list(candidates), weights=weights, k=1)[0]

    def allocate_budgets(
        self,
        agent_bids: Mapping[str, float],
        capacity_tokens: int,
        max_concurrent: int,
        slot_values: Mapping[str, Sequence[float]] | None = None,
    ) -> BudgetPlan:
        """Split `capacity_tokens` of context among at most `max_concurrent` agents.

        Each agent's money is its bid scaled by its standing (docs/economy.md). The capacity is
        cut into slots of `config.slot_tokens`; a Fisher market (proportional response) prices
        them; agents whose equilibrium share is below `config.min_context_tokens` wait, lowest
        money first, and the market is re-run without them. `slot_values[agent][j]` may give
        per-slot utilities (e.g. prefix-cache affinity); slots are otherwise identical.
        """
        _check_budget_request(agent_bids, capacity_tokens, max_concurrent)
        with self._lock:
            money = {a: bid * self._standing_factor(a) for a, bid in agent_bids.items()}
            ranked = sorted((a for a in money if money[a] > 0), key=lambda a: (-money[a], a))
            slot_tokens = max(self.config.slot_tokens, math.ceil(capacity_tokens / 4096))
            slots = capacity_tokens // slot_tokens
            fit = slots * slot_tokens // max(self.config.min_context_tokens, 1)
            running = ranked[: max(0, min(max_concurrent, fit))]
            plan = self._run_market(running, money, slots, slot_tokens, slot_values)
            while plan.running and min(plan.budgets.values()) < self.config.min_context_tokens:
                running = running[:-1]
                plan = self._run_market(running, money, slots, slot_tokens, slot_values)
            waiting = [a for a in agent_bids if a not in plan.budgets]
            for agent_id in agent_bids:
                self._record(agent_id).budget_tokens = plan.budgets.get(agent_id, 0)
            self._save()
            return msgspec.structs.replace(plan, waiting=waiting, capacity_tokens=capacity_tokens)

    def summary(self) -> list[AgentStanding]:
        """Every known agent (the judge excluded), highest trust first."""
        with self._lock:
            trust = self._global_trust()
            reference = self._reference_trust()
            rows = []
            for agent_id, record in self._state.agents.items():
                pretrusted = self.is_pretrusted(agent_id)
                value = trust.get(agent_id, 0.0)
                relative = 1.0 if pretrusted else (value / reference if reference > 0 else 0.0)
                rows.append(
                    AgentStanding(
                        agent_id=agent_id,
                        trust=value,
                        credit=record.credit,
                        budget=record.budget_tokens,
                        quarantined=False if pretrusted else record.quarantined,
                        relative_trust=relative,
                        pretrusted=pretrusted,
                        tasks=record.tasks,
                        passed=record.passed,
                        failed=record.failed,
                        breakages_caused=record.breakages_caused,
                    )
                )
            return sorted(rows, key=lambda row: (-row.trust, row.agent_id))

    # --- internals ---------------------------------------------------------------------------

    def _record(self, agent_id: str) -> AgentRecord:
        record = self._state.agents.get(agent_id)
        if record is None:
            record = AgentRecord(quarantined=not self.is_pretrusted(agent_id))
            self._state.agents[agent_id] = record
            self._trust = None
        return record

    def _credit_agent(self, agent_id: str, score: SharpScore, passed: bool) -> None:
        record = self._record(agent_id)
        record.tasks += 1
        record.passed += int(passed)
        record.failed += int(not passed)
        record.credit += score.scores[agent_id]
        record.shapley_total += score.shapley[agent_id]
        record.last_score = score.scores[agent_id]

    def _rate(self, rater: str, ratee: str, amount: float, *, satisfied: bool) -> None:
        if amount <= 0 or rater == ratee:
            return
        row = self._state.tallies.setdefault(rater, {})
        now, half_life = self._state.epoch, self.config.half_life_tasks
        tally = row.get(ratee, InteractionTally(epoch=now)).decayed_to(now, half_life)
        if satisfied:
            tally.satisfied += amount
        else:
            tally.unsatisfied += amount
        row[ratee] = tally
        self._trust = None

    def _after_change(self, passed_agents: Mapping[str, float]) -> None:
        self._trust = None
        for agent_id in passed_agents:
            record = self._record(agent_id)
            if record.quarantined:
                record.probation_passes += 1
        self._update_quarantine()
        self._save()

    def _update_quarantine(self) -> None:
        """Exit: >= probation_tasks passes in quarantine, trust > 0 and relative trust >=
        exit_ratio. Re-entry: relative trust < reentry_ratio (the pass count restarts)."""
        config = self.config
        for agent_id, record in self._state.agents.items():
            if self.is_pretrusted(agent_id):
                record.quarantined = False
                continue
            relative = self.relative_trust(agent_id)
            if record.quarantined:
                if (
                    record.probation_passes >= config.probation_tasks
                    and self.trust(agent_id) > 0
                    and relative >= config.exit_ratio
                ):
                    record.quarantined = False
            elif relative < config.reentry_ratio:
                record.quarantined = True
                record.probation_passes = 0

    def _global_trust(self) -> dict[str, float]:
        if self._trust is None:
            local = local_trust_from_tallies(
                self._state.tallies, self._state.epoch, self.config.half_life_tasks
            )
            peers = {JUDGE, *self._state.agents}
            pretrusted = {peer for peer in peers | set(local) if self.is_pretrusted(peer)}
            result = eigentrust(
                local, pretrusted, alpha=self.config.alpha, tol=1e-10, max_iter=10_000, peers=peers
            )
            self._trust = result.scores
        return self._trust

    def _reference_trust(self) -> float:
        trust = self._global_trust()
        active = [
            trust.get(agent_id, 0.0)
            for agent_id, record in self._state.agents.items()
            if record.tasks > 0 and not self.is_pretrusted(agent_id)
        ]
        return sum(active) / len(active) if active else 0.0

    def _pick_weights(self, candidates: list[str]) -> list[float]:
        """max(relative trust capped at 2, exploration), times the quarantine factor. An agent
        with no finished task counts as average (1.0): optimism, because its output is
        reviewed while it is quarantined and it cannot earn trust without work."""
        weights = []
        for candidate in candidates:
            record = self._state.agents.get(candidate)
            untried = (record is None or record.tasks == 0) and not self.is_pretrusted(candidate)
            relative = 1.0 if untried else min(self.relative_trust(candidate), 2.0)
            weight = max(relative, self.config.exploration)
            if self.is_quarantined(candidate):
                weight *= self.config.quarantine_pick_factor
            weights.append(weight)
        return weights

    def _standing_factor(self, agent_id: str) -> float:
        """Bid multiplier: (1 + min(relative trust, 1)) / 2, halved again in quarantine."""
        factor = 0.5 + 0.5 * min(self.relative_trust(agent_id), 1.0)
        if self.is_quarantined(agent_id):
            factor *= self.config.quarantine_bid_factor
        return factor

    def _run_market(
        self,
        running: list[str],
        money: Mapping[str, float],
        slots: int,
        slot_tokens: int,
        slot_values: Mapping[str, Sequence[float]] | None,
    ) -> BudgetPlan:
        empty = BudgetPlan({}, [], [], 0, slot_tokens, 0.0, 0, 0.0)
        if not running or slots <= 0:
            return empty
        utilities = [_slot_utilities(agent, slots, slot_values) for agent in running]
        market = proportional_response([money[a] for a in running], utilities, tol=1e-9)
        budgets = {
            agent: int(sum(market.allocation[row]) * slot_tokens)
            for row, agent in enumerate(running)
        }
        return BudgetPlan(
            budgets=budgets,
            running=list(running),
            waiting=[],
            capacity_tokens=0,
            slot_tokens=slot_tokens,
            token_price=sum(market.prices) / (slots * slot_tokens),
            market_iterations=market.iterations,
            equilibrium_gap=market.equilibrium_gap,
        )

    def _initial_state(self, path: Path | None, set_aside_corrupt: bool) -> EconomyState:
        if path is None or not path.exists():
            return EconomyState()
        try:
            return self._load(path)
        except EconomyStateError:
            if not set_aside_corrupt:
                raise
            number = 1
            while path.with_name(f"{path.name}.corrupt-{number}").exists():
                number += 1
            self.set_aside = path.with_name(f"{path.name}.corrupt-{number}")
            os.replace(path, self.set_aside)
            return EconomyState()

    def _load(self, path: Path) -> EconomyState:
        try:
            data = path.read_bytes()
            state = msgspec.json.decode(data, type=EconomyState)
        except OSError as exc:
            raise EconomyStateError(path, f"cannot read: {exc}") from None
        except msgspec.ValidationError as exc:
            message = str(exc)
            where = message.rsplit(" - at `", 1)[1].rstrip("`") if " - at `" in message else "$"
            raise EconomyStateError(path, message, where) from None
        except msgspec.DecodeError as exc:
            raise EconomyStateError(path, f"malformed JSON: {exc}") from None
        if state.version != STATE_VERSION:
            raise EconomyStateError(path, f"unknown version {state.version}", "$.version")
        return state

    def _save(self) -> None:
        """Atomic replace: write a sibling temp file, fsync it, rename over the old file."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(msgspec.json.format(msgspec.json.encode(self._state)))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def _check_agent_id(agent_id: object, where: str) -> None:
    if not isinstance(agent_id, str) or not agent_id.strip():
        raise EconomyError(f"{where}: agent id must be a non-empty string, got {agent_id!r}")


def _check_budget_request(
    agent_bids: Mapping[str, float], capacity_tokens: int, max_concurrent: int
) -> None:
    if capacity_tokens < 0:
        raise EconomyError(f"allocate_budgets: capacity_tokens must be >= 0, got {capacity_tokens}")
    if max_concurrent < 1:
        raise EconomyError(f"allocate_budgets: max_concurrent must be >= 1, got {max_concurrent}")
    for agent_id, bid in agent_bids.items():
        _check_agent_id(agent_id, "allocate_budgets")
        if not math.isfinite(bid) or bid < 0:
            raise EconomyError(f"allocate_budgets: bid of {agent_id!r} must be >= 0, got {bid}")


def _slot_utilities(
    agent_id: str, slots: int, slot_values: Mapping[str, Sequence[float]] | None
) -> list[float]:
    if slot_values is None or agent_id not in slot_values:
        return [1.0] * slots
    values = list(slot_values[agent_id])
    if len(values) != slots:
        raise EconomyError(
            f"allocate_budgets: slot_values[{agent_id!r}] has {len(values)} entries, "
            f"the market has {slots} slots"
        )
    return values

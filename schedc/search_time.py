"""The search's clock: what its rollouts cost per sample, and the work after the search sized to the time left.

The clock charges work, not wall time (WorkClock): every generation the solve asks of the model costs its
samples x steps x the share of blocks it computes, at the seconds per sample the profile recorded for a full
generation. A solve that read a wall clock ran 6 rollouts on a slow model on a quiet machine and fewer on a
busy one, so the same command gave different schedules (25 of unet-sd's 33 zoo solves were ended by the
time limit). Charged work gives the same stopping points, and so the same schedule, at any
load; the time limit is then about the solve's duration on the machine that profiled (model work only: the
DP starts and each rollout's bookkeeping come on top, 0.97-1.27x in all on a 2-core CPU). A wall-clock guard at
WALL_GUARD x the limit still bounds a machine far slower than that one (the stats say it ended the search).

Why: after the warm starts and the local search, the finalists are re-ranked on fresh seeds and the pick's
prediction is measured on more (schedc.search, steps 3-4), each with full compute on its seeds. On a slow
model (a 30-step CFG UNet, seconds per rollout) those two alone took ~50 s of a 60 s limit, and the starts
scored whatever the time pushed the solve to 75-86 s. The sizes asked for are kept when they fit; otherwise
both shrink in proportion to what is left, never below a floor that keeps the prediction's standard error
within ~1.4x of the full size's (the stats record the sizes used).
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from schedc.costmodel import block_costs, resolve_cost
from schedc_runtime.modes import REUSE_MODES

if TYPE_CHECKING:
    from schedc.models.adapter import ModelAdapter
    from schedc.profile import Profile

MIN_SELECT_SAMPLES = 32  # fresh seeds the finalists are re-ranked on, at the least
MIN_PREDICT_SAMPLES = 64  # fresh seeds the prediction is measured on, at the least (standard error x1.4 of 128)
WALL_GUARD = 3.0  # the search also stops once the wall clock passes this many time limits (then not reproducible)

# the decisions grid the generation running now replays (set by a rollout around its generation; None: full)
_RUNNING: ContextVar["Sequence[Sequence[str]] | None"] = ContextVar("schedc_running_decisions", default=None)


def computed_share(decisions: Sequence[Sequence[str]], weights: Sequence[float]) -> float:
    """The share of a full generation's block work a decisions grid [T][B] computes: each compute weighs its
    block's share of a step's block time (`weights`, summing to 1; reduced precisions count as native)."""
    if not decisions:
        return 1.0
    return sum(w for row in decisions for a, w in zip(row, weights) if a not in REUSE_MODES) / len(decisions)


@contextmanager
def running(decisions: Sequence[Sequence[str]]) -> Iterator[None]:
    """A metering clock charges the generations inside this block as replaying `decisions` (schedc.rollout)."""
    token = _RUNNING.set(decisions)
    try:
        yield
    finally:
        _RUNNING.reset(token)


@dataclass
class WorkClock:
    """Seconds charged for the model work of one solve (see the module docstring).

    per_sample: seconds of a full-compute generation per sample at `steps` steps, from the profile (`source`
    "profile": reproducible). A profile that does not record it ("wall") leaves the solve on the wall clock,
    as before: its result then depends on the machine's speed and load (re-profile to record it).
    nonblock: the share of a generation outside the blocks (it is paid whatever the schedule computes).
    """

    per_sample: float | None
    steps: int
    nonblock: float
    weights: tuple[float, ...]  # [B] each block's share of a step's block time
    source: str
    elapsed: float = 0.0
    wall_started: float = field(default_factory=time.perf_counter)

    @classmethod
    def of(cls, profile: "Profile") -> "WorkClock":
        meta = profile.meta
        times, _ = block_costs(meta, profile.block_flops, (), resolve_cost(meta, "auto"))  # [B] > 0, the cost model's
        return cls(per_sample=meta.generation_seconds, steps=profile.num_steps,
                   nonblock=meta.nonblock_share if meta.nonblock_share is not None else 0.0,
                   weights=tuple(float(t) for t in times / times.sum()),
                   source="profile" if meta.generation_seconds else "wall")

    def cost(self, samples: int, steps: int, share: float = 1.0) -> float:
        """Seconds charged for `samples` generations of `steps` steps computing `share` of the blocks."""
        rate = self.per_sample or 0.0
        return rate * samples * steps / self.steps * (self.nonblock + (1.0 - self.nonblock) * share)

    def wall(self) -> float:
        return time.perf_counter() - self.wall_started

    def now(self) -> float:
        """Seconds into the solve: the work charged, or the wall clock where the profile records no rate."""
        return self.elapsed if self.source == "profile" else self.wall()

    @contextmanager
    def metering(self, adapter: "ModelAdapter") -> Iterator[None]:
        """Charge every generation `adapter` runs inside this block (rollouts, full-compute references, gain
        probes), by its samples, the steps it runs and the share of blocks its schedule computes."""
        own = vars(adapter).get("generate")
        inner = adapter.generate

        def generate(inputs: Any, sampler: Any, *args: Any, **kwargs: Any) -> Any:
            out = inner(inputs, sampler, *args, **kwargs)
            start = kwargs.get("start", args[1] if len(args) > 1 else 0) or 0
            decisions = _RUNNING.get()
            share = 1.0 if decisions is None else computed_share(decisions, self.weights)
            self.elapsed += self.cost(len(inputs), sampler.steps - start, share)
            return out

        adapter.generate = generate  # type: ignore[method-assign]
        try:
            yield
        finally:
            if own is None:
                del adapter.generate
            else:
                adapter.generate = own  # type: ignore[method-assign]


@dataclass
class RolloutRate:
    """Seconds per sample of the search's rollouts (and of full compute), measured as it goes: what the
    work after the search will take, so the time limit can leave room for it. Kept per step count: the
    finalists re-ranked afterwards may be the profiled step count's, dearer per sample than the fewer-step
    rollouts that a plain mean would mix in (the bundled model's solve overran 60 s by 2 s that way)."""

    full: float
    by_steps: dict = field(default_factory=dict)  # step count -> [seconds, samples]

    def add(self, seconds: float, samples: int, steps: int = 0) -> None:
        if samples:
            total = self.by_steps.setdefault(steps, [0.0, 0])
            total[0], total[1] = total[0] + seconds, total[1] + samples

    def per_sample(self) -> float:
        return max((sec / n for sec, n in self.by_steps.values()), default=self.full)


@dataclass(frozen=True)
class AfterSearch:
    """The samples run after the search, per setting: `finalists` schedules re-ranked on `select` fresh seeds
    (0 finalists: no re-ranking) and the pick measured on `predict` more, each seed also with full compute."""

    select: int
    predict: int
    finalists: int

    def __post_init__(self) -> None:
        if self.select < 0 or self.predict < 0 or self.finalists < 0:
            raise ValueError(f"after-search sizes must be >= 0, got {self}")

    @property
    def reranks(self) -> bool:
        return self.finalists > 0 and self.select > 0

    def seconds(self, rate: RolloutRate, settings: int = 1) -> float:
        """What it takes at `rate` for `settings` settings (rollouts at the dearest step count seen)."""
        select = self.select if self.reranks else 0
        rollouts = self.finalists * select + self.predict
        return settings * (rate.per_sample() * rollouts + rate.full * (select + self.predict))

    def fitted(self, seconds_left: float, rate: RolloutRate, settings: int = 1) -> "AfterSearch":
        """Shrunk in proportion to fit `seconds_left` where it does not, never below the floors (nor above
        the sizes asked); unchanged where it fits."""
        need = self.seconds(rate, settings)
        if need <= seconds_left or need <= 0:
            return self
        scale = max(seconds_left, 0.0) / need
        return replace(self, select=_shrunk(self.select, scale, MIN_SELECT_SAMPLES),
                       predict=_shrunk(self.predict, scale, MIN_PREDICT_SAMPLES))


def _shrunk(size: int, scale: float, floor: int) -> int:
    return min(size, max(floor, math.floor(size * scale)))


__all__ = ["AfterSearch", "MIN_PREDICT_SAMPLES", "MIN_SELECT_SAMPLES", "RolloutRate", "WALL_GUARD", "WorkClock",
           "computed_share", "running"]

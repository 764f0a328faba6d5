"""Rollouts of a decisions grid through the replay runtime, scored against full compute.

Shared by every closed loop (the search solver, `refine`): run the schedule for real on fixed
calibration inputs and measure the final sample, so every interaction the additive model misses is in
the number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from schedc.errors import SolverError
from schedc.metrics import psnr, rel_l2
from schedc.models.adapter import ModelAdapter
from schedc.objectives import Objective
from schedc.profile import Profile
from schedc.sampler_config import SamplerConfig
from schedc.schedule import build_schedule
from schedc.search_time import running
from schedc.solvers.families import Decisions
from schedc_runtime import apply_schedule


@dataclass(frozen=True)
class Score:
    """Mean over samples of PSNR (dB) and relative L2 against full compute; `samples`: the per-sample PSNRs
    (for paired comparisons on the same seeds, schedc.selection), empty where only the means are known."""

    psnr: float
    rel_l2: float
    samples: tuple[float, ...] = field(default=(), compare=False, repr=False)

    def better_than(self, other: "Score") -> bool:
        return self.psnr > other.psnr + 1e-6


@dataclass
class RolloutScorer:
    """Runs a decisions grid through the replay runtime on fixed calibration inputs; memoised."""

    adapter: ModelAdapter
    profile: Profile
    seeds: list[int]
    calls: int = 0
    _memo: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sampler = SamplerConfig(**self.profile.meta.sampler)
        self.inputs = self.adapter.make_inputs(self.seeds)
        self.full = self.adapter.generate(self.inputs, self.sampler).float().clamp(-1, 1)  # [N, ...]

    def __call__(self, decisions: Decisions, target: "Profile | None" = None) -> Score:
        """Score `decisions`; `target`: the profile retargeted to the step count they run at (None: the
        profile's own), always against full compute at the profile's step count."""
        target = target or self.profile
        key = (target.num_steps, decisions)
        if key not in self._memo:
            self.calls += 1
            schedule = build_schedule(target, decisions, {"solver": "rollout"})
            with apply_schedule(self.adapter.model, schedule), running(decisions):
                out = self.adapter.generate(self.inputs, SamplerConfig(**target.meta.sampler)).float().clamp(-1, 1)
            if not torch.isfinite(out).all():
                self._memo[key] = Score(-math.inf, math.inf)
            else:
                each = psnr(out, self.full)  # [N]
                self._memo[key] = Score(float(each.mean()), float(rel_l2(out, self.full).mean()),
                                        tuple(float(v) for v in each))
        return self._memo[key]


@dataclass
class SettingsScorer:
    """One RolloutScorer per setting (the same calibration seeds at each guidance scale); a schedule's
    Score combines theirs with the objective (schedc.objectives: mean, or the worst setting)."""

    scorers: list[RolloutScorer]
    objective: Objective

    def __post_init__(self) -> None:
        if not self.scorers:
            raise SolverError("a settings scorer needs at least one setting")

    @property
    def calls(self) -> int:
        return sum(s.calls for s in self.scorers)

    def each(self, decisions: Decisions, target: "Profile | None" = None) -> list[Score]:
        if target is not None and len(self.scorers) > 1:
            raise SolverError("a schedule for several settings runs at their step count (no retargeting)")
        return [s(decisions, target) for s in self.scorers]

    def __call__(self, decisions: Decisions, target: "Profile | None" = None) -> Score:
        scores = self.each(decisions, target)
        return Score(self.objective.psnr([s.psnr for s in scores]), self.objective.rel_l2([s.rel_l2 for s in scores]),
                     scores[0].samples if len(scores) == 1 else ())  # one setting: paired comparisons still work


__all__ = ["RolloutScorer", "Score", "SettingsScorer"]

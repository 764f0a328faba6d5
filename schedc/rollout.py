"""Rollouts of a decisions grid through the replay runtime, scored against full compute.

Shared by every closed loop (the search solver, `refine`): run the schedule for real on fixed
calibration inputs and measure the final sample, so every interaction the additive model misses is in
the number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from schedc.metrics import psnr, rel_l2
from schedc.models.adapter import ModelAdapter
from schedc.profile import Profile
from schedc.sampler_config import SamplerConfig
from schedc.schedule import build_schedule
from schedc.solvers.families import Decisions
from schedc_runtime import apply_schedule


@dataclass(frozen=True)
class Score:
    """Mean over samples of PSNR (dB) and relative L2 against full compute."""

    psnr: float
    rel_l2: float

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
            with apply_schedule(self.adapter.model, schedule):
                out = self.adapter.generate(self.inputs, SamplerConfig(**target.meta.sampler)).float().clamp(-1, 1)
            if not torch.isfinite(out).all():
                self._memo[key] = Score(-math.inf, math.inf)
            else:
                self._memo[key] = Score(float(psnr(out, self.full).mean()), float(rel_l2(out, self.full).mean()))
        return self._memo[key]


__all__ = ["RolloutScorer", "Score"]

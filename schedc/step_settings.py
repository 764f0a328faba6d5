"""Step counts the closed-loop search weighs against caching at the profiled step count.

Why: on a high-order multistep sampler (DPM-Solver++) running fewer steps beats any cache at the
same speed (issue #11: fewer steps won 6 UNet rows by 4-8 dB), and at the fast end of any model a
few whole steps are cheaper than a cached run that still pays every step's non-block work. A
compiler that only places caches at the user's step count cannot match that; one that treats the
step count as one more decision can, and keeps whichever the rollouts say is better.

Equal speed across step counts: a step also costs its non-block work (embeddings, the scheduler's
update, the runtime's bookkeeping), the share `o` of a full step measured on the model itself. At
budget b, the profiled step count N takes time o + (1 - o) b per step (as a fraction of full compute);
a run of n steps fits when n / N * (o + (1 - o) c) is no more, c being its block cost at n steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from schedc.errors import SolverError
from schedc.models.adapter import ModelAdapter
from schedc.problem import Problem, problem_like
from schedc.profile import Profile
from schedc.retarget import retarget_profile
from schedc.sampler_config import SamplerConfig

if TYPE_CHECKING:
    from typing import Callable

ALTERNATIVES = 3  # step counts tried between the fewest that fit and the profiled count
NONBLOCK_MAX = 0.95  # o is capped here so equal-time budgets stay finite (block_cost_at divides by 1 - o)


def time_fraction(steps: int, full_steps: int, block_cost: float, nonblock: float) -> float:
    """Ideal time of `steps` steps at block cost `block_cost` (of those steps), as a fraction of full compute."""
    return steps / full_steps * (nonblock + (1.0 - nonblock) * block_cost)


def block_cost_at(time: float, nonblock: float) -> float:
    """The block cost whose ideal time (per step, as a fraction of a full step) is `time`: time_fraction's inverse."""
    return (time - nonblock) / (1.0 - nonblock)


def block_budget(steps: int, full_steps: int, budget: float, nonblock: float) -> float:
    """The block cost at `steps` steps whose time equals the profiled step count's at `budget` (<= 1)."""
    allowed = time_fraction(full_steps, full_steps, budget, nonblock) * full_steps / steps
    return min(1.0, block_cost_at(allowed, nonblock))


def alternative_step_counts(full_steps: int, budget: float, nonblock: float, count: int = ALTERNATIVES) -> list[int]:
    """Fewer step counts worth trying, fewest first: the most steps that fit at full compute (the
    fewer-steps baseline at this speed) and `count` more spaced evenly in log up to the profiled count."""
    fewest = max(1, math.floor(full_steps * time_fraction(full_steps, full_steps, budget, nonblock) + 1e-9))
    if fewest >= full_steps:
        return []
    ratio = full_steps / fewest
    # one more than the fewest (the fewest-steps run with a little caching), then spaced out to the profiled count
    counts = {fewest, fewest + 1, *(round(fewest * ratio ** (i / (count + 1))) for i in range(1, count + 1))}
    return sorted(n for n in counts if 1 <= n < full_steps)


@dataclass(frozen=True)
class StepSetting:
    """One step count the search may run at: its tables, its Problem and its block budget."""

    steps: int
    profile: Profile  # the profile's tables on this step count (the profile itself at its own count)
    problem: Problem
    budget: float  # most block cost at this step count, as a fraction of its own full compute
    sampler: SamplerConfig

    def __post_init__(self) -> None:
        if self.problem.num_steps != self.steps or self.profile.num_steps != self.steps:
            raise SolverError(f"a {self.steps}-step setting needs tables of {self.steps} steps")
        if not 0.0 < self.budget <= 1.0:
            raise SolverError(f"a step setting's block budget must be in (0, 1], got {self.budget}")


def profiled_setting(profile: Profile, problem: Problem, budget: float) -> StepSetting:
    return StepSetting(profile.num_steps, profile, problem, budget, SamplerConfig(**profile.meta.sampler))


def retargeted_setting(adapter: ModelAdapter, profile: Profile, problem: Problem, steps: int, budget: float,
                       nonblock: float, rescale_gains: "Callable[[Profile, Profile], Profile] | None" = None,
                       ) -> StepSetting | None:
    """The setting at `steps` (tables retargeted by noise level, gains rescaled by `rescale_gains(profile,
    retargeted)` when given, e.g. schedc.gain_probe.GainScaling.apply; costs as `problem`'s); None if no compute
    fits."""
    sampler = SamplerConfig(**profile.meta.sampler).with_changes(steps=steps)
    target = retargeted_profile(adapter, profile, steps)
    if rescale_gains is not None:
        target = rescale_gains(profile, target)
    moved = problem_like(target, problem)
    share = block_budget(steps, profile.num_steps, budget, nonblock)
    if share * steps < 1.0 - 1e-9:  # not even step 0's computes fit
        return None
    return StepSetting(steps, target, moved, share, sampler)


def retargeted_profile(adapter: ModelAdapter, profile: Profile, steps: int) -> Profile:
    """`profile`'s tables at `steps` steps of its own sampler (the model's timesteps there)."""
    sampler = SamplerConfig(**profile.meta.sampler).with_changes(steps=steps)
    return retarget_profile(profile, steps, adapter.model_timesteps(sampler))


def usable_nonblock(share: float) -> float:
    """A measured or recorded o kept in [0, NONBLOCK_MAX], the range equal-time budgets are defined on."""
    return min(max(share, 0.0), NONBLOCK_MAX)


__all__ = ["ALTERNATIVES", "StepSetting", "alternative_step_counts", "block_budget", "block_cost_at", "profiled_setting",
           "retargeted_profile", "retargeted_setting", "time_fraction", "usable_nonblock"]

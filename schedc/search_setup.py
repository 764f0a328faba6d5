"""The search's setup and bookkeeping: which step counts it tries, whether a setting may join, the cache-memory
check, the seeds its prediction is measured on and that prediction's standard error.

Why apart from `schedc.search`: these are plain functions of the profile and problem, tested on their own, and
keeping them out leaves the search module the search loop itself.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from schedc.errors import SolverError
from schedc.gain_probe import fewer_steps_gains
from schedc.interleaved import measure_nonblock_share
from schedc.models.adapter import ModelAdapter
from schedc.problem import Problem
from schedc.profile import Profile
from schedc.profile_set import describe, setting_of
from schedc.rollout import Score
from schedc.sampler_config import EVAL_SEED_START
from schedc.solvers.base import Constraints
from schedc.solvers.families import Decisions
from schedc.step_settings import StepSetting, alternative_step_counts, profiled_setting, retargeted_setting, usable_nonblock


def cache_check(constraints: Constraints):
    """(profile, decisions) -> whether the schedule's peak cache memory (per CFG branch, at the profiling batch,
    runtime's own accounting: runtime Schedule.peak_cache_bytes) is within constraints.max_cache_bytes."""
    if constraints.max_cache_bytes is None:
        return lambda profile, grid: True
    from schedc.schedule import build_schedule

    limit, tensor_bytes = constraints.max_cache_bytes, constraints.cache_bytes

    def ok(profile: Profile, grid: Decisions) -> bool:
        return build_schedule(profile, grid, {"solver": "cache-check"}).peak_cache_bytes(tensor_bytes) <= limit * (1 + 1e-9)
    return ok


def check_settings(profile: Profile, settings: Sequence[Profile], vary_steps: bool) -> None:
    if not settings:
        return
    if vary_steps:
        raise SolverError("a schedule for several settings keeps their step count: search them with vary_steps off")
    for p in settings:
        if (p.meta.fingerprint != profile.meta.fingerprint or p.meta.timesteps != profile.meta.timesteps
                or p.meta.calibration_seeds[:1] != profile.meta.calibration_seeds[:1]):
            raise SolverError(f"setting {describe(setting_of(p))} is not the same model, timesteps and calibration "
                              "seeds as the profile searched: profile every setting in one `schedc profile` run")


def prediction_seeds(calibration: list[int], count: int, after: int = 0) -> list[int]:
    """`count` seeds right after the profile's calibration seeds (and `after` more): calibration-side
    (recorded as such in the schedule, so evaluation refuses them), never scored by the search, so the
    prediction is unbiased."""
    start = max(calibration) + 1 + after
    if start + count > EVAL_SEED_START:
        raise SolverError(f"prediction seeds {start}..{start + count - 1} would reach the evaluation seeds ({EVAL_SEED_START}..)")
    return list(range(start, start + count))


def step_settings(adapter: ModelAdapter, profile: Profile, problem: Problem, budget: float, seeds: list[int],
              vary_steps: bool, given: Sequence[Decisions]) -> tuple[StepSetting, list[StepSetting], float | None]:
    """The profiled step count's setting, the fewer step counts worth trying (fewest first; those of the
    given warm starts too, so a lower budget's schedule is never lost), and the measured non-block share
    they were sized with (None when the step count is fixed)."""
    native = profiled_setting(profile, problem, budget)
    if not vary_steps:
        return native, [], None
    recorded = profile.meta.nonblock_share  # measured when profiling: the same profile gives the same step counts
    nonblock = usable_nonblock(recorded) if recorded is not None else measure_nonblock_share(adapter, native.sampler, seeds)
    counts = set(alternative_step_counts(profile.num_steps, budget, nonblock))
    counts |= {len(grid) for grid in given if 1 <= len(grid) < profile.num_steps}
    gains = fewer_steps_gains(adapter, profile, min(counts)) if counts else None
    others = [retargeted_setting(adapter, profile, problem, n, budget, nonblock, gains.apply if gains else None)
              for n in sorted(counts)]
    return native, [s for s in others if s is not None], nonblock


def standard_error(scores: Sequence[Score], objective: str, held: Sequence[int]) -> dict:
    """{"predicted_psnr_se": dB} of the prediction: the per-sample PSNR spread over sqrt(seeds), for one
    setting or the mean over settings (the same seeds at each); {} where it is not known (no fresh seeds, or the
    worst setting, whose standard error a plain formula does not give). Held-out PSNR on as many other seeds
    scatters about as much again, so |predicted - measured| is noise up to ~2.8 x this."""
    per = [np.asarray(s.samples, dtype=float) for s in scores]
    if not held or not all(len(p) > 1 and np.isfinite(p).all() for p in per) or (len(per) > 1 and objective != "mean"):
        return {}
    mean = np.mean(per, axis=0)  # [N] per-sample mean over settings
    return {"predicted_psnr_se": float(mean.std(ddof=1) / math.sqrt(len(mean)))}


__all__ = ["cache_check", "check_settings", "prediction_seeds", "standard_error", "step_settings"]

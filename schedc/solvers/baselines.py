"""Baselines in the same format as every solver, so they run through the same runtime and harness.

- uniform: every block computes at k evenly spaced steps (FORA/DeepCache's fixed refresh interval,
  generalised to any k so its cost equals the budget exactly: interval 2.5 alternates 2 and 3).
- fewer steps: a shorter DDIM sampler at (at least) the same wall-clock cost, all blocks computed.
"""

from __future__ import annotations

import math
import time

import numpy as np

from schedc.errors import SolverError
from schedc.problem import Problem, check_budget
from schedc.solvers.base import Constraints, Solution


def uniform_compute_steps(steps: int, computes: int) -> np.ndarray:
    """Indices of `computes` evenly spaced steps in 0..steps-1, always including step 0."""
    computes = max(1, min(steps, computes))
    return np.unique(np.floor(np.arange(computes) * steps / computes).astype(int))


def solve_uniform(problem: Problem, budget: float, constraints: Constraints = Constraints()) -> Solution:
    """All blocks refresh together at round(budget x T) evenly spaced steps."""
    started = time.perf_counter()
    budget = check_budget(budget)
    steps = problem.num_steps
    computes = max(constraints.first_full, int(math.floor(budget * steps + 1e-9)))
    compute = np.zeros((steps, problem.num_blocks), dtype=bool)
    compute[uniform_compute_steps(steps, computes)] = True
    compute[: constraints.first_full] = True
    error = problem.predicted_error(compute)
    if not np.isfinite(error):
        raise SolverError(f"uniform refresh every {steps / computes:.2f} steps exceeds the profile's max cache age")
    return Solution(compute, problem.cost_of(compute), error, "uniform",
                    {"solve_seconds": time.perf_counter() - started, "interval": steps / computes})


def fewer_steps_count(steps: int, cost: float, nonblock_share: float) -> int:
    """Steps of a shorter sampler whose ideal wall time is at least that of a schedule at `cost`.

    A schedule at block cost c runs in (o + (1 - o) c) of full time (o = non-block share); n of T
    steps runs in n / T. The smallest n with n / T >= o + (1 - o) c is the honest equal-time baseline.
    """
    target = nonblock_share + (1.0 - nonblock_share) * cost
    return max(1, min(steps, int(math.ceil(target * steps - 1e-9))))


def delta_dit_compute(steps: int, blocks: int, cost: float, at_least: bool = True) -> np.ndarray:
    """Δ-DiT's pattern at the block cost nearest `cost` from above (`at_least`, for a fair baseline)
    or from below (as a solver within a budget): bool [T, B], True = compute.

    Every n-th step computes every block; between refreshes, k blocks reuse their residual: the rear
    blocks in the first half of sampling (outline stage) and the front blocks in the second half
    (detail stage). n is the smallest interval that reaches the cost with k <= B blocks.
    """
    compute = np.ones((steps, blocks), dtype=bool)
    for n in range(2, steps + 1):
        refresh = np.zeros(steps, dtype=bool)
        refresh[::n] = True
        idle = int((~refresh).sum())
        share = (1.0 - cost) * steps * blocks / idle if idle else 0.0  # blocks to cache per idle step
        k = int(math.floor(share + 1e-9)) if at_least else int(math.ceil(share - 1e-9))
        if k <= blocks:
            break
    k = max(0, min(blocks, k))
    for t in np.flatnonzero(~refresh):
        cached = range(blocks - k, blocks) if t < steps // 2 else range(0, k)
        compute[t, list(cached)] = False
    return compute


def solve_delta_dit(problem: Problem, budget: float, constraints: Constraints = Constraints()) -> Solution:
    started = time.perf_counter()
    budget = check_budget(budget)
    compute = delta_dit_compute(problem.num_steps, problem.num_blocks, budget, at_least=False)
    compute[: constraints.first_full] = True
    error = problem.predicted_error(compute)
    if not np.isfinite(error):
        raise SolverError("the Δ-DiT pattern reuses older caches than the profile's max cache age")
    return Solution(compute, problem.cost_of(compute), error, "delta-dit", {"solve_seconds": time.perf_counter() - started})

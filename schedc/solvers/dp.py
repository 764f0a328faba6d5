"""Exact dynamic-programming optimizer of the additive error model.

The objective separates over blocks once each block's number of computes is fixed, so we
(1) solve every block's "exactly k computes" curve f_b(k) with a DP over (k, last compute step),
vectorised across blocks, and (2) split the budget across blocks exactly with a multiple-choice
knapsack (min-plus over integer cost units), vectorised over the capacity axis.
"""

from __future__ import annotations

import time

import numpy as np

from schedc.errors import SolverError
from schedc.problem import Problem, check_budget
from schedc.solvers.base import Constraints, Solution
from schedc.solvers.history import segment_costs
from schedc.solvers.joint import solve_joint
from schedc.solvers.knapsack import BUDGET_RTOL, cost_units, knapsack  # noqa: F401  (BUDGET_RTOL re-exported)


def block_curves(r: np.ndarray, first: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per block, the least error with exactly k computes among steps first..T-1.

    Returns f [B, K] (K = T - first + 1), arg [B, K, T] (previous compute before a compute at t,
    for k computes) and last [B, K] (the last compute step), enough to backtrack any (b, k).
    """
    b, t, _ = r.shape
    k_count = t - first + 1
    steps = r[:, :, :t]  # [B, T(s), T(t)]
    tail = r[:, :, t]  # [B, T(s)]
    d = np.full((b, t), np.inf)  # [B, T]: best error up to s with a compute at s
    d[:, first - 1] = 0.0
    f = np.empty((b, k_count))  # [B, K]
    arg = np.zeros((b, k_count, t), dtype=np.int32)  # [B, K, T]
    last = np.empty((b, k_count), dtype=np.int32)  # [B, K]
    for k in range(k_count):
        if k > 0:
            cand = d[:, :, None] + steps  # [B, T(s), T(t)]
            arg[:, k] = np.argmin(cand, axis=1)
            d = np.take_along_axis(cand, arg[:, k][:, None, :], axis=1)[:, 0, :]  # [B, T]
        total = d + tail  # [B, T]
        last[:, k] = np.argmin(total, axis=1)
        f[:, k] = total[np.arange(b), last[:, k]]
    return f, arg, last


def backtrack_block(arg: np.ndarray, last: np.ndarray, k: int) -> list[int]:
    """arg [K, T], last [K] of one block -> its k compute steps after the fixed prefix."""
    steps = []
    s = int(last[k])
    for j in range(k, 0, -1):
        steps.append(s)
        s = int(arg[j, s])
    return steps


def _infeasible(problem: Problem, budget: float, first: int, kmin: np.ndarray) -> SolverError:
    costs = problem.block_cost
    need = float((costs * (first + kmin)).sum() / (problem.num_steps * costs.sum()))
    return SolverError(
        f"budget {budget:.6g} is below the minimum achievable budget {need:.6g} "
        f"({first} full step(s) plus the fewest computes the max-age limits allow); raise the budget"
    )


def solve_dp(problem: Problem, budget: float, constraints: Constraints = Constraints()) -> Solution:
    """Exact minimiser of the summed weighted reuse error under the compute budget."""
    unsupported = constraints.deployment()
    if unsupported:
        raise SolverError(f"the dp solver does not model {', '.join(unsupported)}: use the ilp solver")
    if problem.is_joint:
        return solve_joint(problem, budget, constraints)
    budget = check_budget(budget)
    start = time.perf_counter()
    steps, blocks = problem.num_steps, problem.num_blocks
    first = min(constraints.first_full, steps)
    curves, arg, last = block_curves(segment_costs(problem.weighted_error), first)  # [B, K] ...
    finite = np.isfinite(curves)  # [B, K]; k = K - 1 (compute everything) is always finite
    kmin = np.argmax(finite, axis=1)  # [B]
    extra_max = (curves.shape[1] - 1) - kmin  # [B]
    units, capacity, exact = cost_units(problem.block_cost, budget, steps, first + kmin, extra_max)
    if capacity < 0:
        raise _infeasible(problem, budget, first, kmin)
    ks = knapsack(curves, kmin, units, capacity)
    compute = np.zeros((steps, blocks), dtype=bool)  # [T, B]
    compute[:first] = True
    for b in range(blocks):
        compute[backtrack_block(arg[b], last[b], int(ks[b])), b] = True
    objective = float(sum(curves[b, ks[b]] for b in range(blocks)))
    stats = {
        "solve_seconds": time.perf_counter() - start,
        "exact_split": exact,
        "objective": objective,
    }
    return Solution(
        compute=compute,
        cost=problem.cost_of(compute),
        predicted_error=objective,
        solver="dp",
        stats=stats,
    )

"""Brute-force oracle: enumerate every compute pattern of a tiny problem (tests only).

Deliberately shares no code with the DP: each block's patterns are scored by walking the steps,
and the blocks are combined by broadcasting over the full product of patterns.
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from schedc.errors import SolverError
from schedc.problem import Problem, check_budget
from schedc.solvers.base import Constraints, Solution
from schedc.solvers.knapsack import BUDGET_RTOL

MAX_CELLS = 20  # T * B above this is refused: 2**20 patterns is already a lot


def _pattern_error(w: np.ndarray, pattern: tuple[bool, ...]) -> float:
    """w [T, T] of one block, pattern [T] of computes -> summed reuse error (inf if not allowed)."""
    total, last = 0.0, None
    for t, computed in enumerate(pattern):
        if computed:
            last = t
        elif last is None:
            return float("inf")
        else:
            total += float(w[last, t])
    return total


def _block_table(w: np.ndarray, first: int) -> tuple[np.ndarray, np.ndarray]:
    """All 2**(T-first) patterns of one block: bool [P, T] and their errors [P]."""
    steps = w.shape[0]
    free = [tuple(p) for p in itertools.product((False, True), repeat=steps - first)]
    patterns = np.array([(True,) * first + p for p in free], dtype=bool).reshape(len(free), steps)
    errors = np.array([_pattern_error(w, tuple(p)) for p in patterns])
    return patterns, errors


def solve_brute_force(
    problem: Problem, budget: float, constraints: Constraints = Constraints()
) -> Solution:
    """Least-error schedule within budget by full enumeration; ties go to fewer computes."""
    budget = check_budget(budget)
    start = time.perf_counter()
    steps, blocks = problem.num_steps, problem.num_blocks
    if steps * blocks > MAX_CELLS:
        raise SolverError(f"brute force is for T*B <= {MAX_CELLS}, got {steps}*{blocks}; use the dp solver")
    first = min(constraints.first_full, steps)
    e = problem.reuse_error
    with np.errstate(invalid="ignore"):
        w = np.where(np.isinf(e), np.inf, e * problem.gain[:, None, :])  # [B, T, T]
    tables = [_block_table(w[b], first) for b in range(blocks)]
    shape = [len(t[1]) for t in tables]  # P_b patterns per block
    error = np.zeros(shape)  # [P_0, ..., P_{B-1}]
    cost = np.zeros(shape)
    computes = np.zeros(shape, dtype=np.int64)
    for b, (patterns, errors) in enumerate(tables):
        axis = [1] * blocks
        axis[b] = -1
        error = error + errors.reshape(axis)
        count = patterns.sum(axis=1)  # [P_b]
        cost = cost + (count * problem.block_cost[b]).reshape(axis)
        computes = computes + count.reshape(axis)
    fraction = cost / (steps * problem.block_cost.sum())
    feasible = (fraction <= budget * (1 + BUDGET_RTOL)) & np.isfinite(error)
    if not feasible.any():
        raise SolverError(f"budget {budget:.6g} admits no schedule that respects the max-age limits")
    order = np.lexsort((computes[feasible], error[feasible]))  # by error, then computes
    flat = np.flatnonzero(feasible.ravel())[order[0]]
    picks = np.unravel_index(flat, shape)
    compute = np.stack([tables[b][0][picks[b]] for b in range(blocks)], axis=1)  # [T, B]
    objective = float(error[picks])
    return Solution(
        compute=compute,
        cost=problem.cost_of(compute),
        predicted_error=objective,
        solver="brute",
        stats={"solve_seconds": time.perf_counter() - start, "objective": objective},
    )

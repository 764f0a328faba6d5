"""Exact dynamic-programming optimizer of the additive error model.

The objective separates over blocks once each block's number of computes is fixed, so we
(1) solve every block's "exactly k computes" curve f_b(k) with a DP over (k, last compute step),
vectorised across blocks, and (2) split the budget across blocks exactly with a multiple-choice
knapsack (min-plus over integer cost units), vectorised over the capacity axis.
"""

from __future__ import annotations

import math
import time

import numpy as np

from schedc.errors import SolverError
from schedc.problem import Problem, check_budget
from schedc.solvers.base import Constraints, Solution

CAPACITY_UNITS = 20_000  # knapsack resolution when block costs are not small integer multiples
BUDGET_RTOL = 1e-9  # a schedule costing budget * (1 + 1e-9) still counts as within budget
_MAX_MULTIPLIER = 1000  # largest integer multiple tried to make block costs exact integers


def segment_costs(w: np.ndarray) -> np.ndarray:
    """R[b, s, t] = sum_{u=s+1}^{t-1} w[b, s, u]: the error of reusing step s's cache until t.

    t runs to T inclusive, so R[:, s, T] is the tail cost after a last compute at s. Entries with
    t <= s are inf (not a valid segment). Built with a cumsum, so an inf reuse poisons every later t.
    """
    b, t, _ = w.shape
    s_idx = np.arange(t)
    after = s_idx[None, :] > s_idx[:, None]  # [T, T]: u > s
    wm = np.where(after[None], w, 0.0)  # [B, T, T]
    prefix = np.zeros((b, t, t + 1))  # [B, T, T+1]: prefix[b, s, j] = sum_{u<j} wm[b, s, u]
    np.cumsum(wm, axis=2, out=prefix[:, :, 1:])
    with np.errstate(invalid="ignore"):
        r = prefix - prefix[:, s_idx, s_idx + 1][:, :, None]  # [B, T, T+1]; prefix[s, s+1] is 0
    valid = np.arange(t + 1)[None, :] > s_idx[:, None]  # [T, T+1]: t > s
    return np.where(valid[None], r, np.inf)


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


def _exact_units(costs: np.ndarray) -> np.ndarray | None:
    """Smallest integer units proportional to costs (to 1e-9 relative), or None if none is small."""
    ratio = costs / costs.min()  # [B]
    mult = np.arange(1, _MAX_MULTIPLIER + 1, dtype=float)[:, None]  # [M, 1]
    scaled = ratio[None, :] * mult  # [M, B]
    ok = np.all(np.abs(scaled - np.round(scaled)) <= 1e-9 * scaled, axis=1)  # [M]
    if not ok.any():
        return None
    return np.round(scaled[int(np.argmax(ok))]).astype(np.int64)


def cost_units(
    costs: np.ndarray, budget: float, steps: int, fixed: np.ndarray, extra_max: np.ndarray
) -> tuple[np.ndarray, int, bool]:
    """Integer knapsack weights for one extra compute per block, and the spare capacity.

    fixed [B]: computes every feasible schedule needs; extra_max [B]: most extra computes.
    Exact integer units are used when they exist and keep the knapsack small; otherwise costs are
    scaled so all possible extras span CAPACITY_UNITS and rounded up, so the true cost never
    exceeds the budget (the split is then only near-optimal). The units never depend on the
    budget, so a larger budget only ever enlarges the feasible set (monotone objective).
    Capacity < 0 means infeasible.
    """
    units = _exact_units(costs)
    if units is not None:
        usable = int((units * extra_max).sum())
        if usable <= CAPACITY_UNITS or np.all(units == units[0]):
            cap = math.floor(budget * (1 + BUDGET_RTOL) * steps * int(units.sum()))
            spare = cap - int((units * fixed).sum())
            return units, min(spare, usable), True
    spare_true = budget * (1 + BUDGET_RTOL) * steps * costs.sum() - float((costs * fixed).sum())
    extra_true = float((costs * extra_max).sum())
    scale = CAPACITY_UNITS / extra_true if extra_true > 0 else 1.0
    units = np.maximum(np.ceil(costs * scale), 1).astype(np.int64)
    usable = int((units * extra_max).sum())
    if spare_true < 0:
        return units, -1, False
    if spare_true >= extra_true:  # every extra compute fits: the split is trivially exact
        return units, usable, True
    exact = bool(np.all(units == costs * scale))
    return units, min(math.floor(spare_true * scale), usable), exact


def _relax(
    best: np.ndarray, count: np.ndarray, value: float, k: int, tgt: np.ndarray,
    tgt_count: np.ndarray, pick: np.ndarray, cand: np.ndarray, cand_count: np.ndarray,
    mask: np.ndarray, tie: np.ndarray,
) -> None:
    """In place: tgt = lexicographic min of (tgt, tgt_count) and (best + value, count + k)."""
    np.add(best, value, out=cand)
    np.add(count, k, out=cand_count)
    np.less(cand, tgt, out=mask)
    np.equal(cand, tgt, out=tie)
    tie &= cand_count < tgt_count
    mask |= tie
    np.copyto(tgt, cand, where=mask)
    np.copyto(tgt_count, cand_count, where=mask)
    np.copyto(pick, k, where=mask)


def knapsack(curves: np.ndarray, kmin: np.ndarray, units: np.ndarray, capacity: int) -> np.ndarray:
    """Multiple-choice knapsack: pick k_b >= kmin_b per block, sum units_b (k_b - kmin_b) <= capacity.

    Minimises sum_b curves[b, k_b]; among equal objectives, fewer total computes. Returns k [B].
    """
    b_count, k_count = curves.shape
    size = capacity + 1
    best = np.zeros(size)  # [C]: least objective of blocks so far with <= c spare units used
    count = np.zeros(size, dtype=np.int64)  # [C]: total computes behind best
    choice = np.zeros((b_count, size), dtype=np.int32)  # [B, C]
    mask = np.empty(size, dtype=bool)  # scratch buffers, reused for every (block, k)
    tie = np.empty(size, dtype=bool)
    cand = np.empty(size)
    cand_count = np.empty(size, dtype=np.int64)
    for b in range(b_count):
        new = np.full(size, np.inf)
        new_count = np.zeros(size, dtype=np.int64)
        for k in range(int(kmin[b]), k_count):
            shift = (k - int(kmin[b])) * int(units[b])
            if shift >= size:
                break
            if np.isfinite(curves[b, k]):
                n = size - shift
                _relax(best[:n], count[:n], curves[b, k], k, new[shift:], new_count[shift:],
                       choice[b, shift:], cand[:n], cand_count[:n], mask[:n], tie[:n])
        best, count = new, new_count
    ks = np.empty(b_count, dtype=np.int64)
    c = capacity
    for b in range(b_count - 1, -1, -1):
        ks[b] = choice[b, c]
        c -= (ks[b] - int(kmin[b])) * int(units[b])
    return ks


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
        raise SolverError(f"the dp solver does not model {', '.join(unsupported)}: use --solver ilp")
    if problem.is_joint:
        from schedc.solvers.joint import solve_joint

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

"""Exact DP for the joint decision: compute at a precision, or reuse in a mode, per (step, block).

Under the additive model blocks separate once each block's cost is fixed, as in the residual DP.
Per block the state is the last two compute steps (s', s), because forecast reuse extrapolates
from both; between two computes each step independently takes its cheapest reuse mode. Costs are
integer units (a native compute = `NATIVE_UNITS`), so the DP gives the least error for every
exact cost u; the multiple-choice knapsack of the residual DP then splits the budget over blocks.
"""

from __future__ import annotations

import time

import numpy as np

from schedc.errors import SolverError
from schedc.problem import Problem, check_budget
from schedc.solvers.base import Constraints, Solution
from schedc.solvers.dp import cost_units, knapsack

NATIVE_UNITS = 4  # a native compute costs 4 units: reduced precisions resolve to quarters
MODES = ("residual", "output", "forecast")


def option_units(problem: Problem) -> np.ndarray:
    """[B, 1 + P] integer cost units of computing each block natively / at each precision."""
    ratio = problem.precision_cost if problem.precisions else np.zeros((problem.num_blocks, 0))
    units = np.maximum(np.rint(NATIVE_UNITS * ratio), 1).astype(np.int64)
    return np.concatenate([np.full((problem.num_blocks, 1), NATIVE_UNITS), units], axis=1)


def step_errors(problem: Problem, b: int) -> tuple[np.ndarray, np.ndarray]:
    """W [T+1, T, T] (s', s, t) = least weighted reuse error at t, and the mode index achieving it.

    s' = T stands for "no earlier compute" (forecast then needs two computes and is unavailable).
    """
    steps = problem.num_steps
    g = problem.gain[b][None, :]  # [1, T]
    per_mode = np.full((len(MODES), steps + 1, steps, steps), np.inf)  # [M, T+1, T, T]
    with np.errstate(invalid="ignore"):
        if problem.allow_residual:
            per_mode[0] = np.where(np.isinf(problem.reuse_error[b]), np.inf, problem.reuse_error[b] * g)[None]
        if problem.output_error is not None:
            per_mode[1] = np.where(np.isinf(problem.output_error[b]), np.inf, problem.output_error[b] * g)[None]
        if problem.forecast_error is not None:
            fc = problem.forecast_error[b]  # [G, T, T]
            for gap in range(fc.shape[0]):
                s = np.arange(gap + 1, steps)
                w = np.where(np.isinf(fc[gap, s]), np.inf, fc[gap, s] * g)  # [len(s), T]
                per_mode[2, s - gap - 1, s] = w
    mode = np.argmin(per_mode, axis=0)  # [T+1, T, T]
    return np.min(per_mode, axis=0), mode.astype(np.int8)


def segment_costs(w: np.ndarray) -> np.ndarray:
    """R [T+1, T, T+1]: summed step errors for t in s+1..v-1 (v = T: the tail), inf if v <= s."""
    n_prev, steps, _ = w.shape
    s_idx = np.arange(steps)
    after = s_idx[None, :] > s_idx[:, None]  # [s, t]: t > s
    wm = np.where(after[None], w, 0.0)
    prefix = np.zeros((n_prev, steps, steps + 1))
    np.cumsum(wm, axis=2, out=prefix[:, :, 1:])
    with np.errstate(invalid="ignore"):
        r = prefix - prefix[:, s_idx, s_idx + 1][:, :, None]
    valid = np.arange(steps + 1)[None, :] > s_idx[:, None]  # [s, v]: v > s
    return np.where(valid[None], r, np.inf)


def block_curve(problem: Problem, b: int, first: int, units: np.ndarray):
    """Least error of block b for every exact cost u, with what is needed to rebuild its decisions."""
    steps = problem.num_steps
    none = steps  # index of "no earlier compute"
    w, mode = step_errors(problem, b)
    r = segment_costs(w)  # [T+1, T, T+1]
    comp = np.zeros((steps, len(units)))  # [T, 1+P]: weighted quantization error per compute option
    if problem.precisions:
        q = problem.quant_error[b] * problem.gain[b][:, None]  # [T, P]
        comp[:, 1:] = np.where(np.isinf(problem.quant_error[b]), np.inf, q)
    u_max = steps * int(units.max())
    f = np.full((u_max + 1, steps + 1, steps), np.inf)  # [U, s', s]
    back_prev = np.full((u_max + 1, steps + 1, steps), -1, dtype=np.int16)  # s'' of the predecessor
    back_opt = np.zeros((u_max + 1, steps + 1, steps), dtype=np.int8)  # option of the compute at s
    u0 = first * NATIVE_UNITS
    f[u0, first - 2 if first >= 2 else none, first - 1] = 0.0
    for u in range(u0, u_max + 1):
        layer = f[u]  # [T+1, T]
        if not np.isfinite(layer).any():
            continue
        cand = layer[:, :, None] + r[:, :, :steps]  # [T+1(s'), T(s), T(v)]
        arg = np.argmin(cand, axis=0)  # [s, v]
        best = np.take_along_axis(cand, arg[None], axis=0)[0]  # [s, v]
        for opt, cost in enumerate(units):
            nu = u + int(cost)
            if nu > u_max:
                continue
            val = best + comp[None, :, opt]  # [s, v]
            target = f[nu, :steps, :]  # [s (as new s'), v]
            better = val < target
            if better.any():
                target[better] = val[better]
                back_prev[nu, :steps, :][better] = arg[better]
                back_opt[nu, :steps, :][better] = opt
    tail = f + r[None, :, :, steps]  # [U, s', s]
    curve = tail.reshape(u_max + 1, -1).min(axis=1)  # [U]
    return curve, (f, r, mode, back_prev, back_opt, u0, first)


def rebuild(problem: Problem, u: int, state, first: int, units: np.ndarray) -> list[str]:
    """Decisions of one block at exact cost u, walking the back pointers."""
    f, r, mode, back_prev, back_opt, u0, _ = state
    steps = problem.num_steps
    options = ("native",) + problem.precisions
    actions = ["native"] * steps
    tail = f[u] + r[:, :, steps]  # [s', s]
    sp, s = np.unravel_index(int(np.argmin(tail)), tail.shape)
    for t in range(s + 1, steps):
        actions[t] = MODES[mode[sp, s, t]]
    while not (u == u0 and s == first - 1):
        opt = int(back_opt[u, sp, s])
        prev = int(back_prev[u, sp, s])  # s'' : compute before sp
        actions[s] = options[opt]
        for t in range(sp + 1, s):
            actions[t] = MODES[mode[prev, sp, t]]
        u -= int(units[opt])
        s, sp = sp, prev
    return actions


def solve_joint(problem: Problem, budget: float, constraints: Constraints = Constraints()) -> Solution:
    """Exact minimiser of the additive error over compute@precision / reuse@mode within the budget."""
    budget = check_budget(budget)
    started = time.perf_counter()
    steps, blocks = problem.num_steps, problem.num_blocks
    first = min(max(constraints.first_full, 1), steps)
    units = option_units(problem)  # [B, 1+P]
    curves, states = [], []
    for b in range(blocks):
        curve, state = block_curve(problem, b, first, units[b])
        curves.append(curve)
        states.append(state)
    width = max(len(c) for c in curves)
    table = np.full((blocks, width), np.inf)
    for b, c in enumerate(curves):
        table[b, : len(c)] = c
    finite = np.isfinite(table)
    kmin = np.argmax(finite, axis=1)
    per_unit = problem.block_cost / NATIVE_UNITS  # cost of one unit of each block
    weights, capacity, exact = cost_units(per_unit, budget, steps * NATIVE_UNITS, kmin, (width - 1) - kmin)
    if capacity < 0:
        need = float((per_unit * kmin).sum() / (steps * problem.block_cost.sum()))
        raise SolverError(f"budget {budget:.6g} is below the minimum achievable budget {need:.6g}; raise the budget")
    ks = knapsack(table, kmin, weights, capacity)
    rows = [["native"] * blocks for _ in range(steps)]
    for b in range(blocks):
        for t, action in enumerate(rebuild(problem, int(ks[b]), states[b], first, units[b])):
            rows[t][b] = action
    decisions = tuple(tuple(r) for r in rows)
    error, cost = problem.evaluate_decisions(decisions)
    objective = float(sum(table[b, ks[b]] for b in range(blocks)))
    compute = np.array([[a not in MODES for a in r] for r in decisions], dtype=bool)
    return Solution(compute=compute, cost=cost, predicted_error=error, solver="dp", decisions=decisions,
                    stats={"solve_seconds": time.perf_counter() - started, "exact_split": exact,
                           "objective": objective, "joint": True})

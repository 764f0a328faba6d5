"""Exact DP for the joint decision: compute at a precision, or reuse in a mode, per (step, block).

Under the additive model blocks separate once each block's cost is fixed, as in the residual DP.
Per block the state is the last compute s, its precision p (a reduced-precision cache carries its
error into the reuses) and the history state h of the computes before it (history.py: the gaps a
multi-compute mode such as forecast reads). The history holds computes of one precision only: a compute
at another precision than the last starts afresh (h = ()), so the error a reuse carries from every compute
it reads is exact (Problem.step_error prices each at its own precision; a state keeping only the last
precision once priced an int8 compute read behind a native one as error-free, and the DP chose exactly
those reads). Between two computes each step independently takes its
cheapest applicable reuse mode. Costs are integer units (a native compute = NATIVE_UNITS), so the DP
gives the least error for every exact cost u; the multiple-choice knapsack of the residual DP then
splits the budget over blocks.
"""

from __future__ import annotations

import time

import numpy as np

from schedc.costmodel import NATIVE_UNITS, option_units
from schedc.errors import SolverError
from schedc.problem import Problem, check_budget
from schedc.solvers.base import Constraints, Solution
from schedc.solvers.history import HistoryStates, segment_costs, step_errors
from schedc.solvers.knapsack import cost_units, knapsack


def _units(problem: Problem) -> np.ndarray:
    """[B, 1 + P] integer cost units of computing each block natively / at each precision."""
    ratio = problem.precision_cost if problem.precisions else np.zeros((problem.num_blocks, 0))
    return option_units(ratio)


def _sources(hist: HistoryStates, steps: int) -> tuple[dict, list[int]]:
    """For each target state h' != (): (its gap g, the source states h that reach it after gap g);
    and the gaps after which every state falls back to () ("far")."""
    near: dict[int, tuple[int, list[int]]] = {}
    far = []
    for g in range(1, steps):
        targets = {hist.next_state[h][g] for h in range(len(hist))}
        if targets == {0}:
            far.append(g)
            continue
        for h in range(len(hist)):
            near.setdefault(hist.next_state[h][g], (g, []))[1].append(h)
    return near, far


def block_curve(problem: Problem, b: int, first: int, units: np.ndarray, hist: HistoryStates):
    """Least error of block b for every exact cost u, and the back pointers to rebuild it.

    State (u, h, s, p): u units spent, last compute at s at precision p, history state h.
    """
    steps, n_h, n_opt = problem.num_steps, len(hist), len(units)
    w, mode = step_errors(problem, b, hist)  # [H, P1, T, T]
    r = segment_costs(w)  # [H, P1, T, T+1]
    comp = np.zeros((steps, n_opt))  # [T, P1]: weighted quantization error of the compute itself
    if problem.precisions:
        comp[:, 1:] = problem.quant_error[b] * problem.gain[b][:, None]
    u_max = steps * NATIVE_UNITS  # a budget <= 1 never buys more than every step at native cost
    f = np.full((u_max + 1, n_h, steps, n_opt), np.inf)  # [U, H, T, P1]
    back_s = np.full(f.shape, -1, dtype=np.int16)  # compute step before s
    back_hp = np.zeros(f.shape, dtype=np.int16)  # its (h, p) as h * P1 + p
    u0 = first * NATIVE_UNITS
    f[u0, hist.start(first), first - 1, 0] = 0.0
    near, far = _sources(hist, steps)
    far_ok = np.zeros((steps, steps), dtype=bool)  # [s, v]: v - s is a "far" gap
    for g in far:
        far_ok[np.arange(steps - g), np.arange(g, steps)] = True
    v_idx = np.arange(steps)
    for u in range(u0, u_max + 1):
        layer = f[u]  # [H, T, P1]
        if not np.isfinite(layer).any():
            continue
        cand = np.transpose(layer, (0, 2, 1))[:, :, :, None] + r[:, :, :, :steps]  # [H, P1, T(s), T(v)]
        # per precision p of the last compute: the best history state, for a next compute that starts afresh
        arg_h = np.argmin(cand, axis=0)  # [P1, s, v]
        by_p = np.take_along_axis(cand, arg_h[None], axis=0)[0]  # [P1, s, v]
        far_by_p = np.where(far_ok[None], by_p, np.inf)  # [P1, s, v]: the far gaps only
        for opt in range(n_opt):
            nu = u + int(units[opt])
            if nu > u_max:
                continue
            # to state (): a far gap from any (h, p), or any gap from a compute at another precision (its
            # history is not read across a precision change, so the carried error stays exact)
            other = np.arange(n_opt) != opt
            fresh = far_by_p.copy()
            fresh[other] = by_p[other]
            arg_p = np.argmin(fresh, axis=0)  # [s, v]
            best = np.take_along_axis(fresh, arg_p[None], axis=0)[0]  # [s, v]
            s_best = np.argmin(best, axis=0)  # [v]
            p_best = arg_p[s_best, v_idx]
            hp_best = arg_h[p_best, s_best, v_idx] * n_opt + p_best
            _relax(f, back_s, back_hp, (nu, 0, v_idx, opt), best[s_best, v_idx] + comp[:, opt], s_best, hp_best)
            # keeping the history: a near gap from a compute at the same precision
            for target, (g, srcs) in near.items():
                s_idx = np.arange(steps - g)
                sub = cand[srcs, opt][:, s_idx, s_idx + g]  # [h, S]
                pick = np.argmin(sub, axis=0)
                hp = np.asarray(srcs)[pick] * n_opt + opt
                _relax(f, back_s, back_hp, (nu, target, s_idx + g, opt), sub[pick, np.arange(len(s_idx))]
                       + comp[s_idx + g, opt], s_idx, hp)
    tail = f + np.transpose(r[:, :, :, steps], (0, 2, 1))[None]  # [U, H, T, P1]
    curve = tail.reshape(u_max + 1, -1).min(axis=1)  # [U]
    return curve, (tail, mode, back_s, back_hp, u0)


def _relax(f, back_s, back_hp, index, values, prev_s, prev_hp) -> None:
    """f[index] = min(f[index], values), recording where the better values came from."""
    nu, h, v, opt = index
    current = f[nu, h, v, opt]
    better = values < current
    if np.any(better):
        vv = v[better]
        f[nu, h, vv, opt] = values[better]
        back_s[nu, h, vv, opt] = prev_s[better]
        back_hp[nu, h, vv, opt] = prev_hp[better]


def rebuild(problem: Problem, u: int, state, first: int, units: np.ndarray) -> list[str]:
    """Decisions of one block at exact cost u, walking the back pointers."""
    tail, mode, back_s, back_hp, u0 = state
    steps = problem.num_steps
    n_opt = len(units)
    options = ("native",) + problem.precisions
    modes = problem.reuse_modes
    actions = ["native"] * steps
    h, s, p = np.unravel_index(int(np.argmin(tail[u])), tail[u].shape)
    for t in range(s + 1, steps):
        actions[t] = modes[mode[h, p, s, t]]
    while not (u == u0 and s == first - 1):
        actions[s] = options[p]
        prev_s = int(back_s[u, h, s, p])
        ph, pp = divmod(int(back_hp[u, h, s, p]), n_opt)
        for t in range(prev_s + 1, s):
            actions[t] = modes[mode[ph, pp, prev_s, t]]
        u -= int(units[p])
        h, s, p = ph, prev_s, pp
    return actions


def _drop_dominated(problem: Problem) -> Problem:
    """Precisions that cost at least a native compute in every block can never help: drop them."""
    if not problem.precisions:
        return problem
    units = _units(problem)[:, 1:]  # [B, P]
    return problem.with_precisions([p for i, p in enumerate(problem.precisions) if np.any(units[:, i] < NATIVE_UNITS)])


def _option_index(problem: Problem, sub: Problem) -> list[int]:
    """Positions of sub's compute options (native first) among problem's."""
    return [0] + [1 + problem.precisions.index(p) for p in sub.precisions]


def _best_block_curve(problem: Problem, b: int, first: int, units: np.ndarray, static: bool, hist: HistoryStates):
    """Block b's curve and, per cost u, the (sub-problem, DP state) that achieves it.

    With `static`, each block may use native plus one reduced precision: the best over the
    precisions per cost u is exact, since the choice is the block's own.
    """
    if not static or len(problem.precisions) <= 1:
        curve, state = block_curve(problem, b, first, units, hist)
        return curve, [(problem, state)] * len(curve)
    best, owners = None, []
    for precision in problem.precisions:
        sub = problem.with_precisions([precision])
        curve, state = block_curve(sub, b, first, units[_option_index(problem, sub)], hist)
        if best is None:
            best, owners = curve.copy(), [(sub, state)] * len(curve)
            continue
        for u in np.flatnonzero(curve[: len(best)] < best[: len(curve)]):
            best[u] = curve[u]
            owners[u] = (sub, state)
    return best, owners


def solve_joint(problem: Problem, budget: float, constraints: Constraints = Constraints()) -> Solution:
    """Exact minimiser of the additive error over compute@precision / reuse@mode within the budget."""
    budget = check_budget(budget)
    started = time.perf_counter()
    steps, blocks = problem.num_steps, problem.num_blocks
    first = min(max(constraints.first_full, 1), steps)
    problem = _drop_dominated(problem)
    units = _units(problem)  # [B, 1+P]
    hist = HistoryStates.of(problem)
    curves, states = [], []
    for b in range(blocks):
        curve, state = _best_block_curve(problem, b, first, units[b], constraints.static_precision, hist)
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
        sub, state = states[b][int(ks[b])]
        for t, action in enumerate(rebuild(sub, int(ks[b]), state, first, units[b][_option_index(problem, sub)])):
            rows[t][b] = action
    decisions = tuple(tuple(r) for r in rows)
    error, cost = problem.evaluate_decisions(decisions)
    objective = float(sum(table[b, ks[b]] for b in range(blocks)))
    compute = np.array([[a not in problem.reuse_modes for a in r] for r in decisions], dtype=bool)
    return Solution(compute=compute, cost=cost, predicted_error=error, solver="dp", decisions=decisions,
                    stats={"solve_seconds": time.perf_counter() - started, "exact_split": exact,
                           "objective": objective, "joint": True})

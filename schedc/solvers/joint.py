"""Exact DP for the joint decision: compute at a precision, or reuse in a mode, per (step, block).

Under the additive model blocks separate once each block's cost is fixed, as in the residual DP.
Per block the state is the last compute s, its precision p (a reduced-precision cache carries its
error into the reuses) and how far back the compute before it was (forecast extrapolates from both;
beyond the forecast window only that it was far matters). Between two computes each step
independently takes its cheapest reuse mode. Costs are
integer units (a native compute = `NATIVE_UNITS`), so the DP gives the least error for every
exact cost u; the multiple-choice knapsack of the residual DP then splits the budget over blocks.
"""

from __future__ import annotations

import time
from dataclasses import replace

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
    """W [P1, J, T, T] (p, j, s, t): least weighted reuse error at t after a compute at s at
    precision p whose previous compute was at s - j - 1 (j = J - 1: further back or none, so no
    forecast); and the mode index achieving it. Matches Problem.step_error exactly.
    """
    steps, gap = problem.num_steps, _gap(problem)
    options = ("native",) + problem.precisions
    g = problem.gain[b][None, :]  # [1, T]
    q = np.zeros((steps, len(options)))  # [T, P1]: carried quantization error of a compute
    if problem.precisions:
        q[:, 1:] = problem.quant_error[b]
    per_mode = np.full((len(MODES), len(options), gap + 1, steps, steps), np.inf)  # [M, P1, J, T(s), T(t)]
    with np.errstate(invalid="ignore"):
        for m, table in ((0, problem.reuse_error if problem.allow_residual else None), (1, problem.output_error)):
            if table is not None:
                per_mode[m] = (table[b][None, :, :] + q.T[:, :, None])[:, None] * g  # [P1, 1, T, T]
        if problem.forecast_error is not None:
            t_idx = np.arange(steps)
            for j in range(gap):
                s_idx = np.arange(j + 1, steps)  # s' = s - j - 1 >= 0
                lam = (t_idx[None, :] - s_idx[:, None]) / (j + 1)  # [S, T]
                fc = problem.forecast_error[b, j][s_idx]  # [S, T]
                for p in range(len(options)):
                    err = fc + (1 + lam) * q[s_idx, p][:, None] + lam * q[s_idx - j - 1, p][:, None]
                    per_mode[2, p, j, s_idx] = err * g
    per_mode = np.where(np.isnan(per_mode), np.inf, per_mode)
    return per_mode.min(axis=0), per_mode.argmin(axis=0).astype(np.int8)


def _gap(problem: Problem) -> int:
    return 0 if problem.forecast_error is None else int(problem.forecast_error.shape[1])


def segment_costs(w: np.ndarray) -> np.ndarray:
    """R [..., T, T+1]: summed step errors for t in s+1..v-1 (v = T: the tail), inf if v <= s."""
    steps = w.shape[-1]
    s_idx = np.arange(steps)
    after = s_idx[None, :] > s_idx[:, None]  # [s, t]: t > s
    wm = np.where(after, w, 0.0)
    prefix = np.zeros((*w.shape[:-1], steps + 1))
    np.cumsum(wm, axis=-1, out=prefix[..., 1:])
    with np.errstate(invalid="ignore"):
        r = prefix - prefix[..., s_idx, s_idx + 1][..., None]
    valid = np.arange(steps + 1)[None, :] > s_idx[:, None]  # [s, v]: v > s
    return np.where(valid, r, np.inf)


def block_curve(problem: Problem, b: int, first: int, units: np.ndarray):
    """Least error of block b for every exact cost u, and the back pointers to rebuild it.

    State (u, j, s, p): u units spent, last compute at s at precision p, the one before at
    s - j - 1 (j = J - 1: further back or none).
    """
    steps, gap = problem.num_steps, _gap(problem)
    far = gap  # the j index of "no forecast from here"
    n_opt = len(units)
    w, mode = step_errors(problem, b)  # [P1, J, T, T]
    r = segment_costs(w)  # [P1, J, T, T+1]
    r_jsp = np.transpose(r, (1, 2, 0, 3))  # [J, T, P1, T+1]
    comp = np.zeros((steps, n_opt))  # [T, P1]: weighted quantization error of the compute itself
    if problem.precisions:
        comp[:, 1:] = problem.quant_error[b] * problem.gain[b][:, None]
    u_max = steps * NATIVE_UNITS  # a budget <= 1 never buys more than every step at native cost
    f = np.full((u_max + 1, gap + 1, steps, n_opt), np.inf)  # [U, J, T, P1]
    back_s = np.full(f.shape, -1, dtype=np.int16)  # compute step before s
    back_jp = np.zeros(f.shape, dtype=np.int16)  # its (j, p) as j * P1 + p
    u0 = first * NATIVE_UNITS
    f[u0, 0 if first >= 2 and gap > 0 else far, first - 1, 0] = 0.0
    v_idx = np.arange(steps)
    for u in range(u0, u_max + 1):
        layer = f[u]  # [J, T, P1]
        if not np.isfinite(layer).any():
            continue
        cand = layer[:, :, :, None] + r_jsp[:, :, :, :steps]  # [J, T(s), P1, T(v)]
        cand = np.moveaxis(cand, 2, 1).reshape((gap + 1) * n_opt, steps, steps)  # [(J, P1), s, v]
        arg = np.argmin(cand, axis=0)  # [s, v]
        best = np.take_along_axis(cand, arg[None], axis=0)[0]  # [s, v]
        # j*P1 + p from the flattened (p-major after moveaxis: index = j * P1 + p)
        for opt in range(n_opt):
            nu = u + int(units[opt])
            if nu > u_max:
                continue
            val = best + comp[None, :, opt]  # [s, v]
            for j in range(gap):  # near: the new state's previous compute s = v - j - 1
                v = v_idx[j + 1 :]
                sv = v - j - 1
                _relax(f, back_s, back_jp, (nu, j, v, opt), val[sv, v], sv, arg[sv, v])
            gap_ok = (v_idx[None, :] - v_idx[:, None] - 1) >= gap  # [s, v]: v - s - 1 >= gap
            far_val = np.where(gap_ok, val, np.inf)
            s_best = np.argmin(far_val, axis=0)  # [v]
            _relax(f, back_s, back_jp, (nu, far, v_idx, opt), far_val[s_best, v_idx], s_best, arg[s_best, v_idx])
    tail = f + r_jsp[None, :, :, :, steps]  # [U, J, T, P1]
    curve = tail.reshape(u_max + 1, -1).min(axis=1)  # [U]
    return curve, (tail, mode, back_s, back_jp, u0)


def _relax(f, back_s, back_jp, index, values, prev_s, prev_jp) -> None:
    """f[index] = min(f[index], values), recording where the better values came from."""
    nu, j, v, opt = index
    current = f[nu, j, v, opt]
    better = values < current
    if np.any(better):
        vv = v[better] if isinstance(v, np.ndarray) else v
        f[nu, j, vv, opt] = values[better]
        back_s[nu, j, vv, opt] = prev_s[better]
        back_jp[nu, j, vv, opt] = prev_jp[better]


def rebuild(problem: Problem, u: int, state, first: int, units: np.ndarray) -> list[str]:
    """Decisions of one block at exact cost u, walking the back pointers."""
    tail, mode, back_s, back_jp, u0 = state
    steps = problem.num_steps
    n_opt = len(units)
    options = ("native",) + problem.precisions
    actions = ["native"] * steps
    j, s, p = np.unravel_index(int(np.argmin(tail[u])), tail[u].shape)
    for t in range(s + 1, steps):
        actions[t] = MODES[mode[p, j, s, t]]
    while not (u == u0 and s == first - 1):
        actions[s] = options[p]
        prev_s = int(back_s[u, j, s, p])
        pj, pp = divmod(int(back_jp[u, j, s, p]), n_opt)
        for t in range(prev_s + 1, s):
            actions[t] = MODES[mode[pp, pj, prev_s, t]]
        u -= int(units[p])
        j, s, p = pj, prev_s, pp
    return actions


def _drop_dominated(problem: Problem) -> Problem:
    """Precisions that cost at least a native compute in every block can never help: drop them."""
    if not problem.precisions:
        return problem
    units = option_units(problem)[:, 1:]  # [B, P]
    keep = [i for i in range(len(problem.precisions)) if np.any(units[:, i] < NATIVE_UNITS)]
    if len(keep) == len(problem.precisions):
        return problem
    return replace(
        problem,
        precisions=tuple(problem.precisions[i] for i in keep),
        quant_error=problem.quant_error[:, :, keep] if keep else None,
        precision_cost=problem.precision_cost[:, keep] if keep else None,
    )


def _only_precision(problem: Problem, precision: str | None) -> Problem:
    """The same problem with the reduced precisions narrowed to one (or none)."""
    keep = [i for i, p in enumerate(problem.precisions) if p == precision]
    return replace(
        problem,
        precisions=tuple(problem.precisions[i] for i in keep),
        quant_error=problem.quant_error[:, :, keep] if keep else None,
        precision_cost=problem.precision_cost[:, keep] if keep else None,
    )


def _option_index(problem: Problem, sub: Problem) -> list[int]:
    """Positions of sub's compute options (native first) among problem's."""
    return [0] + [1 + problem.precisions.index(p) for p in sub.precisions]


def _best_block_curve(problem: Problem, b: int, first: int, units: np.ndarray, static: bool):
    """Block b's curve and, per cost u, the (sub-problem, DP state) that achieves it.

    With `static`, each block may use native plus one reduced precision: the best over the
    precisions per cost u is exact, since the choice is the block's own.
    """
    if not static or len(problem.precisions) <= 1:
        curve, state = block_curve(problem, b, first, units)
        return curve, [(problem, state)] * len(curve)
    best, owners = None, []
    for precision in problem.precisions:
        sub = _only_precision(problem, precision)
        curve, state = block_curve(sub, b, first, units[_option_index(problem, sub)])
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
    units = option_units(problem)  # [B, 1+P]
    curves, states = [], []
    for b in range(blocks):
        curve, state = _best_block_curve(problem, b, first, units[b], constraints.static_precision)
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
    compute = np.array([[a not in MODES for a in r] for r in decisions], dtype=bool)
    return Solution(compute=compute, cost=cost, predicted_error=error, solver="dp", decisions=decisions,
                    stats={"solve_seconds": time.perf_counter() - started, "exact_split": exact,
                           "objective": objective, "joint": True})

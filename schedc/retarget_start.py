"""A search start at another step count: the profiled step count's own DP schedule, mapped by noise level.

Why: `schedc solve PROFILE --steps N` compiles from the profile's tables mapped onto N steps
(schedc.retarget). Interpolated tables are a transfer, not a measurement, and the DP run on them can
place computes where the N-step model would not want them; the closed-loop search then starts from
that plan. The DP on the measured tables, at the step count they were measured at, is the model's own
best plan by its error model, and its shape — how often each block computes, and where along the
noise levels — is what carries over. So each block's computes are placed on the N-step grid at
evenly spaced ranks of its measured computes, in the same proportion (rounded down, so the mapped grid never
costs more than the source), and every other step takes the reuse mode of the nearest measured reuse.
The search scores it for real at N steps like any other start, and a start that does not fit the
budget there is skipped (schedc.search).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from schedc.errors import SchedcError
from schedc.problem import Problem, resolve_cost
from schedc.profile import Profile
from schedc.retarget import step_positions
from schedc_runtime.format import is_reuse

Decisions = tuple[tuple[str, ...], ...]


def _place(wanted: Sequence[float], pos: np.ndarray) -> list[int]:
    """Target steps nearest to each wanted (fractional, measured-axis) position, each step used once
    (a wanted position whose nearest step is taken gets the nearest free one)."""
    free = set(range(pos.size))
    out = []
    for w in wanted:
        step = min(free, key=lambda t: (abs(pos[t] - w), t))
        free.discard(step)
        out.append(step)
    return out


def map_decisions(decisions: Sequence[Sequence[str]], source_timesteps: Sequence[float],
                  target_timesteps: Sequence[float]) -> Decisions:
    """decisions [T][B] at `source_timesteps` -> [T'][B] at `target_timesteps` (both decreasing).

    Per block: floor(computes x T' / T) computes (at least one): every (computes / that)-th source
    compute from the first, each keeping its source action (a precision); every other step reuses with the
    mode of the nearest source reuse of that block. Step 0 computes everywhere, as at the source.
    """
    rows = [list(r) for r in decisions]
    steps, blocks = len(rows), len(rows[0]) if rows else 0
    if steps != len(source_timesteps) or any(len(r) != blocks for r in rows):
        raise SchedcError("map_decisions: decisions must be [T][B] with one row per source timestep")
    pos = step_positions(source_timesteps, target_timesteps)  # [T'] on the source axis
    new_steps = pos.size
    out = [["native"] * blocks for _ in range(new_steps)]
    for b in range(blocks):
        column = [rows[s][b] for s in range(steps)]
        computes = [s for s, a in enumerate(column) if not is_reuse(a)]
        reuses = [s for s, a in enumerate(column) if is_reuse(a)]
        if not reuses:
            for t in range(new_steps):
                out[t][b] = column[min(range(steps), key=lambda s: abs(s - pos[t]))]
            continue
        count = max(1, min(new_steps, math.floor(len(computes) * new_steps / steps + 1e-9)))
        picks = [computes[i * len(computes) // count] for i in range(count)]  # every (n/count)-th, from the first
        placed = dict(zip(_place([float(s) for s in picks], pos), picks))
        for t in range(new_steps):
            if t in placed:
                out[t][b] = column[placed[t]]
            else:
                out[t][b] = column[min(reuses, key=lambda s: (abs(s - pos[t]), s))]
        if is_reuse(out[0][b]):  # the first step has nothing to reuse
            out[0][b] = "native"
    return tuple(tuple(r) for r in out)


def fit_to_budget(problem: Problem, budget: float, grid: Sequence[Sequence[str]]) -> Decisions | None:
    """`grid` with computes turned into reuses until it fits `budget` under `problem`'s cost model, each time the
    compute (after step 0) whose reuse `problem`'s error model minds least; None if no grid of this shape fits.

    Why: mapping keeps each block's share of computes, but not which of them run at a reduced precision,
    so the mapped grid can cost a little more than the source's."""
    rows = [list(r) for r in grid]
    error, cost = problem.evaluate_decisions(rows)
    while cost > budget * (1 + 1e-9):
        best = None
        for t in range(1, len(rows)):
            for b, action in enumerate(rows[t]):
                if is_reuse(action):
                    continue
                trial = [list(r) for r in rows]
                trial[t][b] = _reuse_near(rows, t, b, problem.reuse_modes)
                err, c = problem.evaluate_decisions(trial)  # err may be inf: a reuse the tables did not measure
                if c < cost and not math.isnan(err) and (best is None or (err, c) < best[:2]):
                    best = (err, c, trial)
        if best is None:
            return None
        error, cost, rows = best
    return tuple(tuple(r) for r in rows)


def _reuse_near(rows: list[list[str]], t: int, b: int, modes: Sequence[str]) -> str:
    """The reuse mode of block b's nearest reuse, else the problem's first mode."""
    near = sorted((abs(u - t), u) for u in range(len(rows)) if is_reuse(rows[u][b]) and rows[u][b] in modes)
    return rows[near[0][1]][b] if near else modes[0]


def mapped_start(source: Profile, budget: float, target_timesteps: Sequence[float], *,
                 allow: Iterable[str] | None = None, cost: str = "auto") -> Decisions | None:
    """The DP schedule of `source` (at its own step count) at `budget`, mapped onto `target_timesteps` and made
    to fit the budget there; None when there is none (the search has its other starts)."""
    from schedc.compile import compile_schedule
    from schedc.problem import problem_from_profile
    from schedc.retarget import retarget_profile
    from schedc.solvers import Constraints

    try:
        schedule = compile_schedule(source, budget, "dp", Constraints(), allow=allow, cost=cost, spans=False)
        target = retarget_profile(source, len(target_timesteps), target_timesteps)
        problem = problem_from_profile(target, None if allow is None else set(allow), resolve_cost(target, cost))
    except SchedcError:
        return None
    mapped = map_decisions(schedule.decisions, source.meta.timesteps, target_timesteps)
    if not problem.reuse_modes:
        return None
    return fit_to_budget(problem, budget, mapped)


__all__ = ["fit_to_budget", "map_decisions", "mapped_start"]

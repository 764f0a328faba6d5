"""Structured schedule families: the static forms of the caches practitioners already use.

Each family is a small parametric pattern placed at a budget, in the same decisions grid every solver
returns ([T][B] action names): the closed-loop search (`schedc.search`) starts from all of
them, so it is never worse on calibration data than the best of these patterns (nor than the DP).

- uniform: every block refreshes together at evenly spaced steps (FORA / DeepCache's interval).
- warmup-interval: the first w steps compute, then evenly spaced refreshes (TaylorSeer's warm-up and
  interval); with forecast reuse in between it is TaylorSeer's static form.
- first-blocks: the first k blocks (and the last m) compute every step, the others refresh at evenly
  spaced steps (FirstBlockCache / DBCache Fn-Bm, static form).
- delta-dit: Δ-DiT's stage-wise rear/front block caching.
- step-dp: the refresh steps of a whole-model refresh chosen by a DP over the additive model's errors
  summed over blocks (LeMiCa's step-level DAG path, scored by the additive model).
- step-dp-forecast: the same, with the forecast's own errors between refreshes: a forecast reads the
  last two computes, so its DP state is the last refresh and the spacing to the one before.

Torch-free: families only need the Problem (costs, which reuse modes each block can use).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from schedc.problem import Problem
from schedc.solvers.baselines import delta_dit_compute, uniform_compute_steps
from schedc_runtime.modes import REUSE_MODES

Decisions = tuple[tuple[str, ...], ...]  # [T][B] action names


@dataclass(frozen=True)
class Candidate:
    """A named schedule in the decisions grid (what the search scores)."""

    name: str
    decisions: Decisions
    origin: str = "family"  # one of ORIGINS: where the search got it (it treats each kind differently)

    def __post_init__(self) -> None:
        if not self.decisions or any(a != "native" for a in self.decisions[0]):
            raise ValueError(f"candidate {self.name}: step 0 must compute every block")
        if self.origin not in ORIGINS:
            raise ValueError(f"candidate {self.name}: origin {self.origin!r} is not one of {', '.join(ORIGINS)}")


# family: a structured family below; dp: the additive model's DP; setting-dp: one setting's own DP (a
# schedule for several settings must not lose to it); given: a caller's warm start; search: a local-search move
ORIGINS = ("family", "dp", "setting-dp", "given", "search")


def block_modes(problem: Problem) -> list[tuple[str, ...]]:
    """Per block, the reuse modes its measured errors allow (output-only blocks: output reuse only)."""
    out = []
    for b in range(problem.num_blocks):
        usable = tuple(m for m in problem.reuse_modes if np.isfinite(problem.errors[m][b]).any())
        out.append(usable or (("output",) if "output" in problem.reuse_modes else problem.reuse_modes[:1]))
    return out


def grid_from_compute(problem: Problem, compute: np.ndarray, mode: str) -> Decisions:
    """compute bool [T, B] -> decisions, reusing in `mode` where each block allows it and has the history.

    A mode that reads several computes (forecast) falls back to the block's first usable single-compute
    mode until the block has computed often enough.
    """
    modes = block_modes(problem)
    rows: list[list[str]] = []
    computed = np.zeros(problem.num_blocks, dtype=int)
    for t in range(problem.num_steps):
        row = []
        for b in range(problem.num_blocks):
            if compute[t, b]:
                row.append("native")
                computed[b] += 1
                continue
            usable = modes[b]
            pick = mode if mode in usable else usable[0]
            if REUSE_MODES[pick].history > computed[b]:
                pick = next((m for m in usable if REUSE_MODES[m].history <= computed[b]), usable[0])
            row.append(pick)
        rows.append(row)
    return tuple(tuple(r) for r in rows)


def _refresh_count(problem: Problem, budget: float, fixed: np.ndarray, refreshed: np.ndarray) -> int:
    """Most whole-refresh steps (of the `refreshed` blocks) that fit beside the `fixed` computes."""
    cost = problem.block_cost
    total = problem.num_steps * cost.sum()
    spare = budget * total * (1 + 1e-9) - (fixed * cost[None, :]).sum()
    per = float(cost[refreshed].sum())
    return int(max(0, spare // per)) if per > 0 else 0


def _spread(steps: int, start: int, count: int) -> np.ndarray:
    """`count` evenly spaced steps in start..steps-1 (start included when count >= 1)."""
    count = max(0, min(count, steps - start))
    return start + uniform_compute_steps(steps - start, count) if count else np.zeros(0, dtype=int)


def warmup_interval(problem: Problem, budget: float, warmup: int, first: int = 0, last: int = 0) -> np.ndarray | None:
    """bool [T, B]: steps < warmup compute; blocks < first and the last `last` compute every step; the
    others refresh at evenly spaced steps after the warm-up, as many as the budget allows."""
    steps, blocks = problem.num_steps, problem.num_blocks
    if first + last >= blocks:
        return None
    compute = np.zeros((steps, blocks), dtype=bool)
    compute[:warmup] = True
    compute[:, :first] = True
    if last:
        compute[:, blocks - last:] = True
    refreshed = np.ones(blocks, dtype=bool)
    refreshed[:first] = False
    if last:
        refreshed[blocks - last:] = False
    n = _refresh_count(problem, budget, compute, refreshed)
    if n < 1 and warmup < 1:
        return None
    for t in _spread(steps, warmup, n):
        compute[t, refreshed] = True
    return compute if problem.cost_of(compute) <= budget * (1 + 1e-9) else None


def step_dp(problem: Problem, budget: float, mode: str = "residual") -> np.ndarray | None:
    """bool [T, B]: whole-model refresh steps minimising the additive error summed over blocks."""
    steps = problem.num_steps
    n = _refresh_count(problem, budget, np.zeros((steps, problem.num_blocks), dtype=bool),
                       np.ones(problem.num_blocks, dtype=bool))
    if n < 1:
        return None
    seg = np.full((steps, steps + 1), np.inf)  # [s, u]: error of reusing step s's caches until u (exclusive)
    for s in range(steps):
        acc = 0.0
        for t in range(s + 1, steps + 1):
            seg[s, t] = acc
            if t < steps:
                acc += sum(problem.step_error(b, mode, [s], t) for b in range(problem.num_blocks))
                if not np.isfinite(acc):
                    break
    best = np.full((n + 1, steps), np.inf)  # [k, s]: least error of steps < s with k computes, the k-th at s
    arg = np.zeros((n + 1, steps), dtype=int)
    best[1, 0] = 0.0
    for k in range(2, n + 1):
        for u in range(1, steps):
            cand = best[k - 1, :u] + seg[:u, u]
            arg[k, u] = int(np.argmin(cand))
            best[k, u] = cand[arg[k, u]]
    totals = [(best[k, s] + seg[s, steps], k, s) for k in range(1, n + 1) for s in range(steps)]
    value, k, s = min(totals)
    if not np.isfinite(value):
        return None
    chosen = []
    while k >= 1:
        chosen.append(s)
        s, k = arg[k, s], k - 1
    compute = np.zeros((steps, problem.num_blocks), dtype=bool)
    compute[sorted(set(chosen))] = True
    return compute


def _weighted(problem: Problem, mode: str) -> np.ndarray:
    """[B, K, T, T] the additive model's term for block b reusing at t in `mode` from pattern k ending at s
    (native computes: no carried quantization error); +inf where not measured."""
    e = problem.errors[mode]
    with np.errstate(invalid="ignore"):
        w = e * problem.gain[:, None, None, :]
    return np.where(np.isinf(e), np.inf, w)


def step_dp_two(problem: Problem, budget: float, mode: str = "forecast") -> np.ndarray | None:
    """bool [T, B]: whole-model refresh steps minimising the additive error of reusing in a two-compute `mode`
    (forecast: the line through the last two computes), so the refreshes are spaced for the reuse that runs
    between them, not for residual reuse. After the first compute, and where two computes are further apart
    than the profile measured, every block reuses its residual (the table the mode falls back on there); a
    block that cannot use `mode` counts its own residual (or output) error throughout."""
    steps, blocks = problem.num_steps, problem.num_blocks
    n = _refresh_count(problem, budget, np.zeros((steps, blocks), dtype=bool), np.ones(blocks, dtype=bool))
    if n < 1 or mode not in problem.errors or REUSE_MODES[mode].history != 2:
        return None
    if not any(REUSE_MODES[m].history == 1 for m in problem.reuse_modes):
        return None
    # per block, its single-compute reuse (residual, else output: a block that changes shape); +inf if it has none
    own = [problem.single_compute_mode(b) for b in range(blocks)]
    tables = {m: _weighted(problem, m)[:, 0] for m in set(own) if m}  # mode -> [B, s, t]
    single = np.stack([tables[m][b] if m else np.full((steps, steps), np.inf) for b, m in enumerate(own)])  # [B, s, t]
    two = _weighted(problem, mode)  # [B, G, s, t]; pattern g-1: the previous compute g steps before s
    usable = np.isfinite(two).any(axis=(1, 2, 3))  # [B] blocks that can use the mode
    two = np.where(usable[:, None, None, None], two, single[:, None])
    gaps = two.shape[1]
    # per-step error summed over blocks; bucket 0: no usable previous compute (first, or beyond the measured gap)
    per = np.concatenate([single.sum(axis=0)[None], two.sum(axis=0)], axis=0)  # [G+1, s, t]
    per = np.where(np.isnan(per), np.inf, per)
    seg = np.full((gaps + 1, steps, steps + 1), np.inf)  # [g, s, u]: reuse s (and its predecessor) until u
    for s in range(steps):
        run = np.concatenate([np.zeros((gaps + 1, 1)), np.cumsum(per[:, s, s + 1:], axis=1)], axis=1)  # [G+1, T-s]
        seg[:, s, s + 1:] = run  # u = s+1 .. steps: the sum over t in s+1..u-1
    best = np.full((n + 1, steps, gaps + 1), np.inf)  # [k, s, g]: least error before s, k computes, k-th at s
    arg = np.zeros((n + 1, steps, gaps + 1, 2), dtype=int)  # predecessor (s, g)
    best[1, 0, 0] = 0.0
    for k in range(2, n + 1):
        for u in range(1, steps):
            cand = best[k - 1, :u, :] + seg[:, :u, u].T  # [s, g]: the k-th compute at u after one at s
            g_best = cand.argmin(axis=1)  # [s]
            value = cand[np.arange(u), g_best]  # [s]
            gap = u - np.arange(u)  # [s]
            near = np.flatnonzero(gap <= gaps)  # a measured spacing: its own bucket
            best[k, u, gap[near]] = value[near]
            arg[k, u, gap[near]] = np.stack([near, g_best[near]], axis=1)
            far = np.flatnonzero(gap > gaps)
            if far.size:
                s = far[int(np.argmin(value[far]))]
                best[k, u, 0], arg[k, u, 0] = value[s], (s, g_best[s])
    totals = [(best[k, s, g] + seg[g, s, steps], k, s, g) for k in range(1, n + 1) for s in range(steps)
              for g in range(gaps + 1)]
    value, k, s, g = min(totals)
    if not np.isfinite(value):
        return None
    chosen = []
    while k >= 1:
        chosen.append(s)
        s, g = arg[k, s, g]
        k -= 1
    compute = np.zeros((steps, blocks), dtype=bool)
    compute[sorted(set(chosen))] = True
    return compute


def _structured(problem: Problem, budget: float, first_full: int) -> Iterator[tuple[str, np.ndarray | None]]:
    steps, blocks = problem.num_steps, problem.num_blocks
    warmups = sorted({first_full, max(first_full, round(0.1 * steps)), max(first_full, round(0.2 * steps))})
    for w in warmups:
        yield f"warmup{w}", warmup_interval(problem, budget, w)
    for k in sorted({1, 2, max(1, blocks // 4)}):
        yield f"first{k}", warmup_interval(problem, budget, first_full, first=k)
        yield f"first{k}-last1", warmup_interval(problem, budget, first_full, first=k, last=1)
    dd = delta_dit_compute(steps, blocks, budget, at_least=False)
    dd[:first_full] = True
    yield "delta-dit", dd if problem.cost_of(dd) <= budget * (1 + 1e-9) else None


def family_candidates(problem: Problem, budget: float, first_full: int = 1) -> list[Candidate]:
    """Every structured family at `budget`, in each reuse mode the problem allows; deduplicated."""
    out: dict[Decisions, str] = {}
    patterns = list(_structured(problem, budget, first_full))
    # output reuse only where a block has nothing better (UNet blocks): elsewhere it is dominated by residual reuse
    modes = [m for m in problem.reuse_modes if m != "output" or not any("residual" in ms for ms in block_modes(problem))]
    for mode in modes:
        for name, compute in patterns:
            if compute is not None:
                out.setdefault(grid_from_compute(problem, compute, mode), f"{name}/{mode}")
    for mode in ("residual",) if "residual" in problem.reuse_modes else ():
        compute = step_dp(problem, budget, mode)
        if compute is not None:
            compute[:first_full] = True
            if problem.cost_of(compute) <= budget * (1 + 1e-9):
                for reuse in modes:
                    out.setdefault(grid_from_compute(problem, compute, reuse), f"step-dp/{reuse}")
    for mode in (m for m in problem.reuse_modes if REUSE_MODES[m].history == 2):
        # refreshes spaced for the two-compute reuse between them: the residual DP above spaces them for a
        # residual reuse, which a forecast reads differently (held out it ranged 5 dB between two calibrations)
        compute = step_dp_two(problem, budget, mode)
        if compute is not None:
            compute[:first_full] = True
            if problem.cost_of(compute) <= budget * (1 + 1e-9):
                out.setdefault(grid_from_compute(problem, compute, mode), f"step-dp-{mode}/{mode}")
    return [Candidate(name, grid) for grid, name in out.items()]


__all__ = ["Candidate", "Decisions", "block_modes", "family_candidates", "grid_from_compute", "step_dp", "step_dp_two",
           "warmup_interval"]

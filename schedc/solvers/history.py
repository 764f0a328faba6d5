"""What the solvers remember about a block's past computes, and what each reuse segment costs.

A reuse mode reads the last `history` computes at spacings its patterns list (runtime/modes/). A
block's state after a compute is the tuple of gaps to the computes before it (most recent first),
kept only as long as some allowed pattern starts with it: () means "no usable history" (only
single-compute modes apply). The states form a small automaton shared by the DP and the ILP, so a
new mode with new patterns needs no solver change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schedc.problem import Problem
from schedc_runtime.modes import REUSE_MODES


@dataclass(frozen=True)
class HistoryStates:
    """states[i]: gap tuple (most recent first); states[0] = (). next_state[i][g]: after a gap g."""

    states: tuple[tuple[int, ...], ...]
    next_state: tuple[tuple[int, ...], ...]  # [H][T]: state after computing again g steps later

    @classmethod
    def of(cls, problem: Problem) -> "HistoryStates":
        prefixes = {()}
        for mode in problem.reuse_modes:
            for pattern in problem.patterns(mode):
                prefixes.update(pattern[:i] for i in range(len(pattern) + 1))
        states = tuple(sorted(prefixes, key=lambda p: (len(p), p)))
        index = {p: i for i, p in enumerate(states)}
        table = []
        for state in states:
            row = []
            for g in range(problem.num_steps + 1):
                cand = (g,) + state
                while cand not in index:
                    cand = cand[:-1]
                row.append(index[cand])
            table.append(tuple(row))
        return cls(states=states, next_state=tuple(table))

    def __len__(self) -> int:
        return len(self.states)

    def start(self, first: int) -> int:
        """The state after the first `first` steps all computed (gaps of 1)."""
        h = 0
        for _ in range(first - 1):
            h = self.next_state[h][1]
        return h


def step_errors(problem: Problem, b: int, hist: HistoryStates) -> tuple[np.ndarray, np.ndarray]:
    """W [H, P1, T, T] (h, p, s, t): least weighted error of reusing at t after a compute at s at
    precision option p (0 = native) in history state h; and the mode index (into
    problem.reuse_modes) achieving it. Matches Problem.step_error exactly.
    """
    steps = problem.num_steps
    n_opt = 1 + len(problem.precisions)
    q = np.zeros((steps, n_opt))  # [T, P1]: quantization error of a compute at s at option p
    if problem.precisions:
        q[:, 1:] = problem.quant_error[b]
    g = problem.gain[b]  # [T]
    age = np.arange(steps)[None, :] - np.arange(steps)[:, None]  # [s, t]
    best = np.full((len(hist), n_opt, steps, steps), np.inf)
    arg = np.zeros(best.shape, dtype=np.int8)
    for m, mode in enumerate(problem.reuse_modes):
        spec = REUSE_MODES[mode]
        for k, pattern in enumerate(problem.patterns(mode)):
            applies = [i for i, st in enumerate(hist.states) if st[: len(pattern)] == pattern]
            if not applies:
                continue
            offsets = np.concatenate([[0], np.cumsum(pattern)]).astype(int)  # s - s_j for each compute read
            weights = np.zeros((len(offsets), steps, steps))  # [J, s, t]: |coefficient| by age
            for a in range(1, steps):
                weights[:, age == a] = np.asarray(spec.carried_weight(pattern, a))[:, None]
            carry = np.zeros((n_opt, steps, steps))  # [P1, s, t]
            for j, off in enumerate(offsets):
                src = np.arange(steps) - off
                qj = np.where(src[:, None] >= 0, q[np.clip(src, 0, None)], 0.0)  # [s, P1]
                carry += qj.T[:, :, None] * weights[j][None]
            with np.errstate(invalid="ignore"):
                val = (problem.errors[mode][b, k][None] + carry) * g[None, None, :]  # [P1, s, t]
            val = np.where(np.isnan(val), np.inf, val)
            for h in applies:
                better = val < best[h]
                best[h] = np.where(better, val, best[h])
                arg[h] = np.where(better, m, arg[h])
    return best, arg


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

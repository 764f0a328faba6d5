"""The closed-loop search's neighbourhood: budget-feasible edits of a decisions grid.

Why a module of its own: the moves are the search's whole notion of "nearby schedule" (shift a block's
compute to a nearby step, move a whole refresh step, trade a compute between blocks, switch the reuse
mode of a step or a block, spend leftover budget); keeping them apart from the search loop keeps each
small enough to read and lets tests drive them directly.
"""

from __future__ import annotations

import numpy as np

from schedc.problem import Problem
from schedc.solvers.families import Decisions, block_modes
from schedc.step_settings import StepSetting
from schedc_runtime.modes import REUSE_MODES


class Moves:
    """Budget-feasible neighbours of a decisions grid, drawn with a seeded generator."""

    KINDS = ("shift", "column", "trade", "mode-step", "mode-block", "fill")

    def __init__(self, problem: Problem, budget: float, first_full: int, rng: np.random.Generator,
                 cache_ok=lambda grid: True) -> None:
        self.problem, self.budget, self.first = problem, budget, first_full
        self.rng = rng
        self.modes = block_modes(problem)
        self.cache_ok = cache_ok  # decisions -> whether their caches fit the memory limit

    def feasible(self, grid: np.ndarray) -> bool:
        return (self.problem.evaluate_decisions(grid.tolist())[1] <= self.budget * (1 + 1e-9)
                and self.cache_ok(tuple(tuple(str(a) for a in row) for row in grid)))

    def repair(self, grid: np.ndarray, blocks) -> None:
        """Reuses whose mode needs more computes than the block has had fall back to a simpler mode."""
        for b in blocks:
            computed = 0
            for t in range(grid.shape[0]):
                a = grid[t, b]
                if a not in REUSE_MODES:
                    computed += 1
                elif REUSE_MODES[a].history > computed:
                    grid[t, b] = next((m for m in self.modes[b] if REUSE_MODES[m].history <= computed), self.modes[b][0])

    def _reuse_mode_near(self, grid: np.ndarray, t: int, b: int) -> str:
        """The mode a new reuse at (t, b) takes: its neighbour's, else the block's first."""
        for u in (t - 1, t + 1):
            if 0 <= u < grid.shape[0] and grid[u, b] in REUSE_MODES:
                return str(grid[u, b])
        return self.modes[b][0]

    def propose(self, decisions: Decisions) -> tuple[str, Decisions] | None:
        grid = np.array(decisions, dtype=object)  # [T, B]
        kind = self.KINDS[int(self.rng.integers(len(self.KINDS)))]
        changed = getattr(self, "_" + kind.replace("-", "_"))(grid)
        if changed is None:
            return None
        self.repair(grid, changed)
        if not self.feasible(grid):
            return None
        return kind, tuple(tuple(str(a) for a in row) for row in grid)

    # each move edits `grid` in place and returns the blocks it touched (None: nothing to do)
    def _compute_cells(self, grid: np.ndarray) -> np.ndarray:
        mask = np.vectorize(lambda a: a not in REUSE_MODES)(grid)
        mask[: self.first] = False
        return np.argwhere(mask)

    def _shift(self, grid: np.ndarray):
        cells = self._compute_cells(grid)
        if not len(cells):
            return None
        t, b = cells[int(self.rng.integers(len(cells)))]
        u = t + int(self.rng.choice([-3, -2, -1, 1, 2, 3]))
        if not (self.first <= u < grid.shape[0]) or grid[u, b] not in REUSE_MODES:
            return None
        mode = grid[u, b]
        grid[u, b], grid[t, b] = grid[t, b], mode
        return [b]

    def _column(self, grid: np.ndarray):
        cells = self._compute_cells(grid)
        if not len(cells):
            return None
        t = int(cells[int(self.rng.integers(len(cells)))][0])
        u = t + int(self.rng.choice([-2, -1, 1, 2]))
        if not (self.first <= u < grid.shape[0]):
            return None
        moved = [b for b in range(grid.shape[1]) if grid[t, b] not in REUSE_MODES and grid[u, b] in REUSE_MODES]
        if not moved:
            return None
        for b in moved:
            grid[u, b], grid[t, b] = grid[t, b], grid[u, b]
        return moved

    def _trade(self, grid: np.ndarray):
        cells = self._compute_cells(grid)
        reuse = np.argwhere(np.vectorize(lambda a: a in REUSE_MODES)(grid))
        if not len(cells) or not len(reuse):
            return None
        t, b = cells[int(self.rng.integers(len(cells)))]
        u, c = reuse[int(self.rng.integers(len(reuse)))]
        grid[u, c], grid[t, b] = grid[t, b], self._reuse_mode_near(grid, t, b)
        return [b, c]

    def _mode_step(self, grid: np.ndarray):
        t = int(self.rng.integers(self.first, grid.shape[0])) if grid.shape[0] > self.first else None
        if t is None:
            return None
        mode = str(self.rng.choice(self.problem.reuse_modes))
        touched = [b for b in range(grid.shape[1]) if grid[t, b] in REUSE_MODES and mode in self.modes[b] and grid[t, b] != mode]
        for b in touched:
            grid[t, b] = mode
        return touched or None

    def _mode_block(self, grid: np.ndarray):
        b = int(self.rng.integers(grid.shape[1]))
        mode = str(self.rng.choice(self.modes[b]))
        rows = [t for t in range(grid.shape[0]) if grid[t, b] in REUSE_MODES and grid[t, b] != mode]
        for t in rows:
            grid[t, b] = mode
        return [b] if rows else None

    def _fill(self, grid: np.ndarray):
        reuse = np.argwhere(np.vectorize(lambda a: a in REUSE_MODES)(grid))
        if not len(reuse):
            return None
        u, c = reuse[int(self.rng.integers(len(reuse)))]
        grid[u, c] = "native"
        return [c]



def has_reuse(grid: Decisions) -> bool:
    """Whether a decisions grid reuses anywhere: every move needs a reuse cell, so a grid without one has none."""
    return any(a in REUSE_MODES for row in grid for a in row)


def moves_at(setting: StepSetting, first: int, rng: np.random.Generator, cache_ok) -> Moves:
    """The local search's moves at a step count (its problem and budget), sharing the search's generator."""
    return Moves(setting.problem, setting.budget, min(first, setting.steps), rng,
                 lambda grid: cache_ok(setting.profile, grid))


__all__ = ["Moves", "has_reuse", "moves_at"]

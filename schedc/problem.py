"""Profile + cost + budget -> Problem: plain numpy arrays, so solvers never touch torch.

The error model is additive: choosing to reuse block b's cache made at step s at a later step t adds
`gain[b, t] * reuse_error[b, s, t]` to the predicted relative L2 error of the final sample. `gain` is
the measured propagation gain (how a unit of relative error at that block and step moves the final
sample), so the objective reads directly as a predicted final error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from schedc.errors import BudgetError, SolverError

if TYPE_CHECKING:
    from schedc.profile import Profile


def check_budget(budget: float) -> float:
    try:
        value = float(budget)
    except (TypeError, ValueError):
        raise BudgetError(f"budget must be a number in (0, 1], got {budget!r}") from None
    if not (0.0 < value <= 1.0) or not np.isfinite(value):
        raise BudgetError(f"budget must be in (0, 1] (fraction of full compute), got {budget!r}")
    return value


@dataclass(frozen=True)
class Problem:
    """A cache-scheduling problem for B blocks over T steps.

    reuse_error[b, s, t]: relative error of block b's output at step t when it reuses the cache made
        at step s (only s < t and t - s <= max_age are finite; everything else is +inf).
    gain[b, t]: propagation gain of a unit relative error at block b, step t, to the final sample.
    block_cost[b]: cost of one computation of block b (any unit; only ratios matter).
    """

    reuse_error: np.ndarray  # [B, T, T]
    gain: np.ndarray  # [B, T]
    block_cost: np.ndarray  # [B]
    block_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        e, g, c = self.reuse_error, self.gain, self.block_cost
        if e.ndim != 3 or e.shape[1] != e.shape[2]:
            raise SolverError(f"reuse_error must be [B, T, T], got {e.shape}")
        b, t, _ = e.shape
        if g.shape != (b, t):
            raise SolverError(f"gain must be [B, T] = {(b, t)}, got {g.shape}")
        if c.shape != (b,) or not np.all(c > 0):
            raise SolverError("block_cost must be [B] and positive")
        if np.any(np.isnan(e)) or np.any(e[np.isfinite(e)] < 0) or np.any(g < 0):
            raise SolverError("errors and gains must be non-negative numbers")
        if self.block_names and len(self.block_names) != b:
            raise SolverError("block_names must name every block")

    @property
    def num_blocks(self) -> int:
        return int(self.reuse_error.shape[0])

    @property
    def num_steps(self) -> int:
        return int(self.reuse_error.shape[1])

    @property
    def weighted_error(self) -> np.ndarray:
        """[B, T, T]: the objective's term for reusing the cache of step s at step t (inf stays inf)."""
        with np.errstate(invalid="ignore"):
            w = self.reuse_error * self.gain[:, None, :]
        return np.where(np.isinf(self.reuse_error), np.inf, w)

    def cost_of(self, compute: np.ndarray) -> float:
        """compute: bool [T, B]. Cost as a fraction of computing every block at every step."""
        return float((compute * self.block_cost[None, :]).sum() / (self.num_steps * self.block_cost.sum()))

    def predicted_error(self, compute: np.ndarray) -> float:
        """compute: bool [T, B]. Sum of weighted reuse errors (inf if a reuse exceeds the max age)."""
        w = self.weighted_error
        total = 0.0
        for b in range(self.num_blocks):
            last = None
            for t in range(self.num_steps):
                if compute[t, b]:
                    last = t
                elif last is None:
                    return float("inf")
                else:
                    total += float(w[b, last, t])
        return total


def problem_from_profile(profile: "Profile") -> Problem:
    """Reuse errors and gains as measured; block cost = FLOPs per call (the cost model)."""
    return Problem(
        reuse_error=profile.reuse_error(),
        gain=profile.gain(),
        block_cost=profile.block_flops.copy(),
        block_names=tuple(profile.meta["blocks"]),
    )

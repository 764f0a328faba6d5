"""The one solver interface: solve(problem, budget, constraints) -> Solution."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from schedc.errors import SolverError
from schedc.problem import Problem


@dataclass(frozen=True)
class Constraints:
    """Deployment constraints every solver understands (more arrive with the ILP)."""

    first_full: int = 1  # the first k steps compute every block (step 0 always does)
    static_precision: bool = False  # each block uses at most one reduced precision (one copy in memory)

    def __post_init__(self) -> None:
        if self.first_full < 1:
            raise SolverError("first_full must be >= 1: step 0 computes every block")


@dataclass(frozen=True)
class Solution:
    compute: np.ndarray  # bool [T, B]: True = compute, False = reuse (residual)
    cost: float  # fraction of full compute
    predicted_error: float  # predicted relative L2 of the final sample
    solver: str
    stats: dict = field(default_factory=dict)
    decisions: tuple[tuple[str, ...], ...] | None = None  # [T][B] action names; None = from `compute`

    def __post_init__(self) -> None:
        if self.compute.dtype != np.bool_ or self.compute.ndim != 2:
            raise SolverError("compute must be a bool [T, B] array")
        if not self.compute[0].all():
            raise SolverError("step 0 must compute every block")

    def actions(self) -> tuple[tuple[str, ...], ...]:
        """[T][B] action names: compute precisions or reuse modes."""
        if self.decisions is not None:
            return self.decisions
        return tuple(tuple("native" if c else "residual" for c in row) for row in self.compute.tolist())


SolverFn = Callable[[Problem, float, Constraints], Solution]

"""What "good at several settings" means: the mean or the worst case over them (`schedc solve --for`).

The closed-loop search scores a schedule at every setting (guidance scale) for real and combines the
scores with the objective (mean PSNR, or the worst setting's PSNR: LeMiCa's minimax view). The
model-free solvers see one Problem: the settings' tables combined element by element (mean, or max,
which bounds every setting's additive error from above), a surrogate that gives the DP's warm start.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from schedc.errors import SolverError
from schedc.problem import Problem


@dataclass(frozen=True)
class Objective:
    """How per-setting figures combine into one: PSNR (higher is better), error tables and rel L2 (lower)."""

    name: str
    psnr: Callable[[Sequence[float]], float]
    rel_l2: Callable[[Sequence[float]], float]
    tables: Callable[[list[np.ndarray]], np.ndarray]  # [S, ...] -> [...], element by element
    help: str

    def __post_init__(self) -> None:
        if not self.name or not self.help:
            raise SolverError("an objective needs a name and a help line")


OBJECTIVES = {
    "mean": Objective("mean", statistics.fmean, statistics.fmean, lambda a: np.mean(np.stack(a), axis=0),
                      "mean PSNR over the settings"),
    "worst": Objective("worst", min, max, lambda a: np.max(np.stack(a), axis=0),
                       "the worst setting's PSNR: minimax"),
}


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise SolverError(f"unknown objective {name!r}; choose from {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


def combine_problems(problems: Sequence[Problem], objective: str) -> Problem:
    """One Problem standing for all `problems` (same blocks, steps, modes, precisions and costs)."""
    if not problems:
        raise SolverError("combining problems needs at least one")
    first = problems[0]
    if len(problems) == 1:
        return first
    for p in problems[1:]:
        if (p.gain.shape != first.gain.shape or set(p.errors) != set(first.errors) or p.precisions != first.precisions
                or p.max_gap != first.max_gap):
            raise SolverError("settings combined into one schedule must share blocks, steps, reuse modes and precisions")
    combine = get_objective(objective).tables
    with np.errstate(invalid="ignore"):  # inf (unmeasured) stays inf under both
        errors = {m: combine([p.errors[m] for p in problems]) for m in first.errors}
    quant = None if first.quant_error is None else combine([p.quant_error for p in problems])
    return replace(first, errors=errors, gain=combine([p.gain for p in problems]), quant_error=quant)


__all__ = ["OBJECTIVES", "Objective", "combine_problems", "get_objective"]

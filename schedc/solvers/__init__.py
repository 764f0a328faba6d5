"""Schedule solvers: each maps (Problem, budget, Constraints) to a Solution. A registry, not if/else."""

from __future__ import annotations

from schedc.errors import SolverError
from schedc.solvers.base import Constraints, Solution, SolverFn
from schedc.solvers.baselines import solve_delta_dit, solve_uniform
from schedc.solvers.dp import solve_dp
from schedc.solvers.ilp import solve_ilp

SOLVERS: dict[str, SolverFn] = {
    "dp": solve_dp,
    "ilp": solve_ilp,
    "uniform": solve_uniform,
    "delta-dit": solve_delta_dit,
}


def get_solver(name: str) -> SolverFn:
    try:
        return SOLVERS[name]
    except KeyError:
        raise SolverError(f"unknown solver {name!r}: choose one of {', '.join(SOLVERS)}") from None


__all__ = ["SOLVERS", "Constraints", "Solution", "SolverFn", "get_solver"]

"""Schedule solvers behind one registry and one call: solver(problem, budget, constraints, context).

Each entry names where its function lives and is imported on first call, so this module (and the
model-free solvers) import without torch. `needs_model` marks solvers that roll the model out (the
learned router): they take a SolveContext as a fourth argument. Closed-loop refinement is not a
solver but a wrapper around any model-free one (`schedc.refine.refine`, `compile_schedule(refine=N)`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from schedc.errors import SolverError
from schedc.problem import Problem
from schedc.solvers.base import Constraints, Solution, SolverFn
from schedc.solvers.context import SolveContext


@dataclass(frozen=True)
class Solver:
    """A registered solver. Calling it checks what it supports, then imports and runs its function."""

    name: str
    target: str  # "module:function"; model-free: fn(problem, budget, constraints), else (..., context)
    needs_model: bool = False  # rolls the model out: needs a SolveContext
    deployment: bool = False  # models last_full, max_reuse, max_cache_bytes and dependencies
    summary: str = ""
    supports: frozenset = frozenset()  # deployment constraints it models without modelling all of them

    def __post_init__(self) -> None:
        module, _, function = self.target.partition(":")
        if not (self.name and module and function):
            raise SolverError(f"a solver needs a name and a 'module:function' target, got {self.name!r} -> {self.target!r}")

    def check(self, constraints: Constraints) -> None:
        """Refuse, before any work, constraints this solver would silently ignore."""
        unsupported = [] if self.deployment else [c for c in constraints.deployment() if c not in self.supports]
        if unsupported:
            raise SolverError(f"the {self.name} solver does not model {', '.join(unsupported)}: use the ilp solver"
                              + (" (or the search for max_cache_bytes)" if unsupported == ["max_cache_bytes"] else ""))

    def load(self) -> Callable[..., Solution]:
        module, _, function = self.target.partition(":")
        return getattr(importlib.import_module(module), function)

    def __call__(
        self, problem: Problem, budget: float, constraints: Constraints = Constraints(),
        context: SolveContext | None = None,
    ) -> Solution:
        self.check(constraints)
        if not self.needs_model:
            return self.load()(problem, budget, constraints)
        if context is None:
            raise SolverError(f"the {self.name} solver runs the model: give it a SolveContext")
        return self.load()(problem, budget, constraints, context)


SOLVERS: dict[str, Solver] = {s.name: s for s in (
    Solver("dp", "schedc.solvers.dp:solve_dp",
           summary="exact for the additive error model, joint decisions included"),
    Solver("ilp", "schedc.solvers.ilp:solve_ilp", deployment=True,
           summary="CP-SAT with deployment constraints; no forecast"),
    Solver("learned", "schedc.solvers.learned:solve_learned", needs_model=True,
           summary="router trained through rollouts; residual only"),
    Solver("search", "schedc.search:solve_search", needs_model=True, supports=frozenset({"max_cache_bytes"}),
           summary="closed loop: DP and structured families as warm starts, local search on measured final error"),
    Solver("uniform", "schedc.solvers.baselines:solve_uniform", summary="every block refreshes at even intervals"),
    Solver("delta-dit", "schedc.solvers.baselines:solve_delta_dit", summary="Δ-DiT's stage-wise block caching"),
)}


def get_solver(name: str) -> Solver:
    try:
        return SOLVERS[name]
    except KeyError:
        raise SolverError(f"unknown solver {name!r}: choose one of {', '.join(SOLVERS)}") from None


__all__ = ["SOLVERS", "Constraints", "Solution", "SolveContext", "Solver", "SolverFn", "get_solver"]

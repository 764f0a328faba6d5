"""The closed-loop search's warm starts: the DP's schedules, the given grids and each step count's own starts.

Why a module of their own: the search (schedc.search) decides what to score when; what the starts are is
built here, one function per kind of start.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Sequence

from schedc.errors import SolverError
from schedc.problem import Problem, problem_like
from schedc.profile import Profile
from schedc.profile_set import setting_of
from schedc.solvers.base import Constraints
from schedc.solvers.families import Candidate, Decisions, family_candidates
from schedc.step_settings import StepSetting


def dp_candidates(problem: Problem, budget: float, constraints: Constraints) -> tuple[list[Candidate], list]:
    """The DP's schedules (default decisions, cache-only, residual-only) and the errors of those that failed."""
    from schedc.solvers.dp import solve_dp

    out, failures = [], []
    variants = {"dp": problem}
    if problem.precisions:
        variants["dp-cache"] = problem.with_precisions(())
    if "residual" in problem.errors and len(problem.reuse_modes) > 1:
        variants["dp-residual"] = replace(problem.with_precisions(()), errors={"residual": problem.errors["residual"]})
    for name, variant in variants.items():
        try:
            out.append(Candidate(name, solve_dp(variant, budget, constraints).actions(), "dp"))
        except SolverError as exc:
            failures.append(exc)
    return out, failures


def setting_dp_candidates(problem: Problem, budget: float, constraints: Constraints,
                          profiles: Sequence[Profile]) -> list[Candidate]:
    """Each setting's own DP schedule (its tables, `problem`'s options and costs): the single-setting
    schedules a schedule for all settings must not lose to."""
    from schedc.solvers.dp import solve_dp

    out = []
    for p in profiles:
        try:
            out.append(Candidate(f"dp@g={setting_of(p)[0]:g}",
                                 solve_dp(problem_like(p, problem), budget, constraints).actions(), "setting-dp"))
        except SolverError:
            continue
    return out


def fits(problem: Problem, budget: float, grid) -> bool:
    """Whether a given decisions grid is a schedule of this problem within the budget."""
    options = {"native", *problem.precisions, *problem.reuse_modes}
    if len(grid) != problem.num_steps or any(len(row) != problem.num_blocks for row in grid):
        return False
    if any(a != "native" for a in grid[0]) or any(a not in options for row in grid for a in row):
        return False
    error, cost = problem.evaluate_decisions(grid)
    return cost <= budget * (1 + 1e-9) and not math.isnan(error)


def by_prediction(problem: Problem, cands: Sequence[Candidate]) -> list[Candidate]:
    """`cands` best predicted first (the additive model, unmeasured spacings standing in as single-compute reuse;
    ties keep their order): a solve whose time limit ends its starts early scores the likeliest first. On the
    transfer bench's profiles (8 models x budgets 0.2, 0.4; bench/bench_start_order.py) the family scoring best on
    the 16 calibration samples was among the first three so ranked on 14 of 16 rows (4th and 8th on the others),
    and 6th to 23rd in the families' own order."""
    return sorted(cands, key=lambda c: problem.evaluate_decisions(c.decisions, stand_in=True)[0])


def kind(name: str) -> str:
    """A start's family without its numbers ("warmup5/forecast" -> "warmup/forecast")."""
    return re.sub(r"\d+", "", name)


def first_starts_at(setting: StepSetting, constraints: Constraints, first: int,
                    given: Sequence[Decisions]) -> list[Candidate]:
    """A fewer step count's own starts, scored before the profiled count's families: the given grids of this
    step count (a lower budget's schedule: the ladder's guarantee), every block every step when it fits, the DP."""
    out: dict[Decisions, Candidate] = {}
    tag = f"{setting.steps}steps:"
    for i, grid in enumerate(given):
        if fits(setting.problem, setting.budget, grid):
            grid = tuple(tuple(row) for row in grid)
            out.setdefault(grid, Candidate(f"{tag}given{i}", grid, "given"))
    if setting.budget >= 1.0 - 1e-9:
        grid = tuple(("native",) * setting.problem.num_blocks for _ in range(setting.steps))
        out.setdefault(grid, Candidate(tag + "all", grid, "family"))
    dp, _ = dp_candidates(setting.problem, setting.budget, replace(constraints, first_full=min(first, setting.steps)))
    for cand in dp[:1]:
        out.setdefault(cand.decisions, Candidate(tag + cand.name, cand.decisions, cand.origin))
    return list(out.values())


def family_starts_at(setting: StepSetting, first: int, kinds: set[str]) -> list[Candidate]:
    """A fewer step count's structured families of the kinds that scored best at the profiled count."""
    tag = f"{setting.steps}steps:"
    return [Candidate(tag + c.name, c.decisions, c.origin)
            for c in family_candidates(setting.problem, setting.budget, min(first, setting.steps)) if kind(c.name) in kinds]


__all__ = ["by_prediction", "dp_candidates", "family_starts_at", "first_starts_at", "fits", "kind", "setting_dp_candidates"]

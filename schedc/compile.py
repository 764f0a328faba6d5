"""The library entry point: profile + budget -> Schedule, everything `schedc solve` does.

Resolves the cost model, builds the Problem, dispatches to a registered solver (closed-loop refinement
and model-in-the-loop solvers included) and builds the schedule with its provenance. Torch is imported
only when a solver or refinement runs the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from schedc import costmodel
from schedc.errors import SchedcError, SolverError
from schedc.problem import Problem, check_budget, problem_from_profile, problem_like, resolve_cost
from schedc.profile import Profile
from schedc.schedule import schedule_from_solution
from schedc.spans import span_stats, with_spans
from schedc.solvers import Constraints, Solution, SolveContext, get_solver
from schedc_runtime import Schedule

if TYPE_CHECKING:
    from schedc.refine import RefineRound


@dataclass(frozen=True)
class Compiled:
    """A compiled schedule with what produced it: the solver's Solution and any refinement rounds."""

    schedule: Schedule
    solution: Solution
    refine_history: "tuple[RefineRound, ...]" = ()

    def __post_init__(self) -> None:
        if not isinstance(self.schedule, Schedule) or not isinstance(self.solution, Solution):
            raise SolverError("a compiled result needs a Schedule and the Solution it came from")


def compile_solution(
    profile: "Profile | str | os.PathLike[str]", budget: float, solver: str = "dp",
    constraints: Constraints = Constraints(), allow: Iterable[str] | None = None, cost: str = "auto",
    refine: int = 0, context: SolveContext | None = None, spans: bool = True,
) -> Compiled:
    """`compile_schedule`, also returning the Solution and refinement history (for reporting)."""
    spec = get_solver(solver)  # an unknown solver fails before any work
    budget = check_budget(budget)
    spec.check(constraints)
    if refine < 0:
        raise SolverError(f"refine rounds must be >= 0, got {refine}")
    if refine and spec.needs_model:
        raise SolverError(f"refinement re-solves with a model-free solver and the {solver} solver runs the model: use refine=0")
    profile_file = None
    if not isinstance(profile, Profile):
        profile_file = str(profile)
        profile = Profile.load(profile)
    cost_model = resolve_cost(profile, cost)
    allowed = None if allow is None else set(allow)
    problem = problem_from_profile(profile, allowed, cost_model)
    settings = context.settings if context is not None else ()
    if settings:  # one schedule for several guidance scales: the model-free solvers see their combined tables
        from schedc.objectives import combine_problems

        problem = combine_problems([problem, *(problem_like(p, problem) for p in settings)], context.objective)
    constraints = constraints.with_cache_bytes(profile.meta.cache_bytes or ())
    history: tuple = ()
    if spec.needs_model or refine:
        context = (context or SolveContext()).for_profile(profile)
    if refine:
        from schedc.refine import refine as run_refine

        solution, rounds = run_refine(problem, budget, constraints, context, solver=spec, rounds=refine)
        history = tuple(rounds)
    else:
        solution = spec(problem, budget, constraints, context)
    used = sorted({a for row in solution.actions() for a in row if a in profile.precisions})
    extra: dict = {"profile_file": profile_file} if profile_file is not None else {}
    extra.update({"cost_model": cost_model, "allowed": sorted(allowed) if allowed else "all profiled"})
    if settings:
        from schedc.profile_set import setting_of

        extra["compiled_for"] = {"objective": context.objective, "settings": [
            {"guidance_scale": g, "steps": n} for g, n in sorted(setting_of(p) for p in (profile, *settings))]}
    if used:
        extra["kernels_at_profile"] = {p: list(profile.meta.kernels.get(p, ["?"])) for p in used}
    schedule = _fuse_pass(schedule_from_solution(profile, solution, budget, extra), profile, problem, cost_model, spans)
    return Compiled(_with_cache_memory(schedule, profile, constraints), solution, history)


def _with_cache_memory(schedule: Schedule, profile: Profile, constraints: Constraints) -> Schedule:
    """predicted.peak_cache_mib: the most cache memory the runtime holds at once for a batch of the profiling
    batch size (CFG rows included), from the per-block tensor sizes the profile recorded; checked against
    constraints.max_cache_bytes (--max-cache-mb). Six significant digits, not four decimals: a small
    cache (16 KiB = 0.015625 MiB) would otherwise read 0.2% off what the runtime holds."""
    if not profile.meta.cache_bytes:
        return schedule
    peak = schedule.peak_cache_bytes(profile.meta.cache_bytes)
    if constraints.max_cache_bytes is not None and peak > constraints.max_cache_bytes * (1 + 1e-9):
        raise SolverError(f"the schedule holds {peak / 2**20:.3f} MiB of caches, over the limit of "
                          f"{constraints.max_cache_bytes / 2**20:.3f} MiB")
    predicted = {**(schedule.provenance.get("predicted") or {}), "peak_cache_mib": float(f"{peak / 2**20:.6g}"),
                 "cache_batch": int(profile.meta.config.get("batch_size", 0))}
    return replace(schedule, provenance={**schedule.provenance, "predicted": predicted})


def _fuse_pass(schedule: Schedule, profile: Profile, problem: Problem, cost_model: str, spans: bool) -> Schedule:
    """The span pass every solver's schedule goes through: fuse eligible runs of residual reuses into
    spans (schedc.spans; same decisions, same numbers) and record the reuse overhead they save.

    predicted.reuse_overhead: what the reuses themselves cost (fraction of full compute, on top of
    predicted.cost, which counts block computes as the budget does); 0 under the FLOP model.
    """
    fused = with_spans(schedule) if spans else schedule
    predicted = dict(schedule.provenance.get("predicted") or {})
    reuse = costmodel.reuse_costs(profile.meta, profile.block_flops, cost_model)
    if reuse is not None:
        per_block = lambda s: round(costmodel.reuse_overhead(s.decisions, s.spans, problem.block_cost, reuse), 5)  # noqa: E731
        predicted["reuse_overhead"] = per_block(fused)
        if spans:
            predicted["reuse_overhead_without_spans"] = per_block(schedule)
    info = {**span_stats(fused)} if spans else "off"
    return replace(fused, provenance={**schedule.provenance, "predicted": predicted, "spans": info})


def compile_schedule(
    profile: "Profile | str | os.PathLike[str]", budget: float, solver: str = "dp",
    constraints: Constraints = Constraints(), allow: Iterable[str] | None = None, cost: str = "auto",
    refine: int = 0, context: SolveContext | None = None, spans: bool = True,
) -> Schedule:
    """A static cache schedule for `profile` (a Profile or its file) within `budget` of full compute.

    solver: a name in `schedc.solvers.SOLVERS`. allow: reuse modes and precisions the solver may choose
    (None = all the profile measured). cost: "flops", "latency" or "auto" (latency when profiled).
    refine: rounds of closed-loop run-measure-rescale-resolve on calibration seeds (needs the model).
    context: the model for model-in-the-loop work; None = the model the profile recorded.
    spans: fuse runs of residual reuses of one compute into spans (schedc.spans): one add per run.
    """
    return compile_solution(profile, budget, solver, constraints, allow, cost, refine, context, spans).schedule


def problem_of_schedule(schedule: Schedule) -> Problem | None:
    """The error model of the profile a schedule was solved from, if that file is still here unchanged
    (of a multi-setting file: the setting whose digest the schedule records)."""
    from schedc.profile_set import ProfileSet

    path = schedule.provenance.get("profile_file")
    if not path or not Path(path).exists():
        return None
    try:
        profiles = ProfileSet.load(path).profiles
    except SchedcError:
        return None
    match = [p for p in profiles if p.digest() == schedule.provenance.get("profile")]
    return problem_from_profile(match[0]) if match else None

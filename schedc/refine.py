"""Closed loop: run the candidate schedule, measure its real final error, correct the model, re-solve.

The additive model sums local errors weighted by single-perturbation gains; real errors do not add
linearly, and reuse and quantization errors deviate differently (on the reference model a schedule's
reuse errors land at ~0.2x of their sum, quantization errors at ~0.5x). Each round splits the
candidate into its reuse part (reduced precisions -> native) and its precision part (reuses ->
native compute), measures both on calibration inputs through the runtime, and rescales the two
error kinds by measured / predicted before solving again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from schedc.errors import SolverError
from schedc.problem import Problem
from schedc.rollout import RolloutScorer
from schedc.solvers.base import Constraints, Solution, SolverFn
from schedc.solvers.context import SolveContext
from schedc_runtime.format import is_reuse


@dataclass(frozen=True)
class RefineRound:
    reuse_scale: float
    quant_scale: float
    predicted: float  # predicted final rel L2 of the candidate under the scaled model
    measured: float  # its measured final rel L2 on the calibration inputs


def _split(decisions) -> tuple[tuple, tuple]:
    reuse_only = tuple(tuple(a if is_reuse(a) else "native" for a in row) for row in decisions)
    quant_only = tuple(tuple("native" if is_reuse(a) else a for a in row) for row in decisions)
    return reuse_only, quant_only


def _measure(scorer: RolloutScorer, decisions) -> float:
    if all(a == "native" for row in decisions for a in row):
        return 0.0
    return scorer(tuple(tuple(row) for row in decisions)).rel_l2


def refine(
    problem: Problem, budget: float, constraints: Constraints, context: SolveContext, *,
    solver: SolverFn, rounds: int = 2,
) -> tuple[Solution, list[RefineRound]]:
    """Solve with the model-free `solver`, measure and rescale `rounds` times on the context's model.

    Returns the last solution and the history. A wrapper, not a solver: `compile_schedule(refine=N)`.
    """
    if rounds < 0:
        raise SolverError(f"refine rounds must be >= 0, got {rounds}")
    # calibration seeds: never the evaluation ones
    scorer = RolloutScorer(context.model(), context.bound_profile, context.calibration_seeds(8))
    reuse_scale = quant_scale = 1.0
    history: list[RefineRound] = []
    solution = solver(problem, budget, constraints)
    for _ in range(rounds):
        reuse_only, quant_only = _split(solution.actions())
        model = problem.scaled(reuse_scale, quant_scale)
        pred_reuse, _ = model.evaluate_decisions(reuse_only)
        pred_quant, _ = model.evaluate_decisions(quant_only)
        meas_reuse = _measure(scorer, reuse_only)
        meas_quant = _measure(scorer, quant_only)
        measured = _measure(scorer, solution.actions())
        history.append(RefineRound(reuse_scale, quant_scale, pred_reuse + pred_quant, measured))
        if pred_reuse > 0 and meas_reuse > 0:
            reuse_scale *= meas_reuse / pred_reuse
        if pred_quant > 0 and meas_quant > 0:
            quant_scale *= meas_quant / pred_quant
        solution = solver(problem.scaled(reuse_scale, quant_scale), budget, constraints)
    final_model = problem.scaled(reuse_scale, quant_scale)
    predicted, _ = final_model.evaluate_decisions(solution.actions())
    measured = _measure(scorer, solution.actions())
    history.append(RefineRound(reuse_scale, quant_scale, predicted, measured))
    stats = {**solution.stats, "refine_rounds": rounds, "reuse_scale": reuse_scale, "quant_scale": quant_scale,
             "calibration_measured_rel_l2": measured}
    return replace(solution, predicted_error=predicted, stats=stats), history

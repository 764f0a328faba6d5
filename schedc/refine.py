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

import numpy as np
import torch

from schedc.errors import SolverError
from schedc.metrics import rel_l2
from schedc.models.adapter import ModelAdapter
from schedc.problem import Problem
from schedc.profile import Profile
from schedc.sampling import SamplerConfig
from schedc.schedule import build_schedule
from schedc.solvers.base import Constraints, Solution, SolverFn
from schedc.solvers.context import SolveContext
from schedc_runtime import apply_schedule
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


def _measure(adapter: ModelAdapter, profile: Profile, decisions, inputs, full: torch.Tensor) -> float:
    if all(a == "native" for row in decisions for a in row):
        return 0.0
    sampler = SamplerConfig(**profile.meta.sampler)
    with apply_schedule(adapter.model, build_schedule(profile, decisions, {"solver": "refine"})):
        out = adapter.generate(inputs, sampler)
    return float(rel_l2(out.float().clamp(-1, 1), full).mean())


def refine(
    problem: Problem, budget: float, constraints: Constraints, context: SolveContext, *,
    solver: SolverFn, rounds: int = 2,
) -> tuple[Solution, list[RefineRound]]:
    """Solve with the model-free `solver`, measure and rescale `rounds` times on the context's model.

    Returns the last solution and the history. A wrapper, not a solver: `compile_schedule(refine=N)`.
    """
    if rounds < 0:
        raise SolverError(f"refine rounds must be >= 0, got {rounds}")
    adapter, profile = context.model(), context.bound_profile
    inputs = adapter.make_inputs(context.calibration_seeds(8))  # calibration seeds: never the evaluation ones
    full = adapter.generate(inputs, SamplerConfig(**profile.meta.sampler)).float().clamp(-1, 1)
    reuse_scale = quant_scale = 1.0
    history: list[RefineRound] = []
    solution = solver(problem, budget, constraints)
    for _ in range(rounds):
        reuse_only, quant_only = _split(solution.actions())
        model = problem.scaled(reuse_scale, quant_scale)
        pred_reuse, _ = model.evaluate_decisions(reuse_only)
        pred_quant, _ = model.evaluate_decisions(quant_only)
        meas_reuse = _measure(adapter, profile, reuse_only, inputs, full)
        meas_quant = _measure(adapter, profile, quant_only, inputs, full)
        measured = _measure(adapter, profile, solution.actions(), inputs, full)
        history.append(RefineRound(reuse_scale, quant_scale, pred_reuse + pred_quant, measured))
        if pred_reuse > 0 and meas_reuse > 0:
            reuse_scale *= meas_reuse / pred_reuse
        if pred_quant > 0 and meas_quant > 0:
            quant_scale *= meas_quant / pred_quant
        solution = solver(problem.scaled(reuse_scale, quant_scale), budget, constraints)
    final_model = problem.scaled(reuse_scale, quant_scale)
    predicted, _ = final_model.evaluate_decisions(solution.actions())
    measured = _measure(adapter, profile, solution.actions(), inputs, full)
    history.append(RefineRound(reuse_scale, quant_scale, predicted, measured))
    stats = {**solution.stats, "refine_rounds": rounds, "reuse_scale": reuse_scale, "quant_scale": quant_scale,
             "calibration_measured_rel_l2": measured}
    return replace(solution, predicted_error=predicted, stats=stats), history

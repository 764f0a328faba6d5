"""Closed-loop refinement: measured errors rescale the model, and the prediction moves to the measurement."""

from __future__ import annotations

from schedc.problem import problem_from_profile
from schedc.refine import refine
from schedc.solvers import Constraints, SolveContext, get_solver
from tests.conftest import make_tiny_adapter


def test_refine_moves_the_prediction_to_the_measurement(tiny_profile):
    adapter = make_tiny_adapter()
    problem = problem_from_profile(tiny_profile, {"residual", "forecast", "int8"}, "flops")
    context = SolveContext(tiny_profile, adapter=adapter, samples=4)
    solution, history = refine(problem, 0.5, Constraints(), context, solver=get_solver("dp"), rounds=2)
    assert len(history) == 3
    first, last = history[0], history[-1]
    assert last.reuse_scale > 0 and last.quant_scale > 0
    assert abs(last.predicted - last.measured) <= abs(first.predicted - first.measured) + 1e-9
    assert solution.stats["refine_rounds"] == 2 and solution.predicted_error == last.predicted
    assert solution.cost <= 0.5 + 1e-9


def test_scaled_keeps_inf_and_scales_each_kind(tiny_profile):
    problem = problem_from_profile(tiny_profile, None, "flops")
    half = problem.scaled(0.5, 2.0)
    finite = problem.reuse_error < float("inf")
    assert (half.reuse_error[finite] == 0.5 * problem.reuse_error[finite]).all()
    assert (half.reuse_error[~finite] == float("inf")).all()
    assert (half.quant_error == 2.0 * problem.quant_error).all()

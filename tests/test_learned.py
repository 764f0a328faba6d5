"""The learned router: deterministic with a seed, budget-feasible, trained through real rollouts."""

from __future__ import annotations

import numpy as np

from schedc.solvers.learned import learn_schedule
from schedc.problem import problem_from_profile
from schedc.schedule import build_schedule
from schedc_runtime import load_schedule
from tests.conftest import make_tiny_adapter


def test_learned_schedule_is_feasible_deterministic_and_valid(tiny_profile):
    problem = problem_from_profile(tiny_profile, {"residual"}, "flops")
    runs = [learn_schedule(make_tiny_adapter(), tiny_profile, problem, 0.5, iterations=6, samples=2, seed=3, progress=False)
            for _ in range(2)]
    a, b = runs
    assert np.array_equal(a.compute, b.compute)  # same seed, same schedule
    assert a.cost <= 0.5 + 1e-9 and a.compute[0].all()
    assert np.isfinite(a.predicted_error) and a.solver == "learned"
    schedule = build_schedule(tiny_profile, a.actions(), {"solver": "learned"})
    assert load_schedule(schedule) == schedule  # validates like every solver's output


def test_learned_router_is_trained_by_gradient(tiny_profile):
    """Rolling out with the router in the loop and descending the final-sample error lowers that error."""
    problem = problem_from_profile(tiny_profile, {"residual"}, "flops")
    sol = learn_schedule(make_tiny_adapter(), tiny_profile, problem, 0.6, iterations=12, samples=2, progress=False)
    assert sol.stats["iterations"] == 12
    assert sol.stats["train_rel_l2"] < sol.stats["train_rel_l2_first"]

"""Second-order forecast reuse: one mode file, and it works through profile -> dp -> schedule -> runtime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from schedc.problem import problem_from_profile
from schedc.schedule import build_schedule
from schedc.solvers.dp import solve_dp
from schedc_runtime import apply_schedule
from schedc_runtime.modes import REUSE_MODES
from tests.conftest import TINY_SAMPLER

FORECAST2 = REUSE_MODES["forecast2"]


def test_weights_are_newton_backward_differences():
    assert FORECAST2.coefficients((1, 1), 1) == pytest.approx((3.0, -3.0, 1.0))
    assert FORECAST2.coefficients((2, 2), 1) == pytest.approx((15 / 8, -5 / 4, 3 / 8))
    assert sum(FORECAST2.coefficients((3, 3), 5)) == pytest.approx(1.0)  # a constant residual is kept
    assert FORECAST2.patterns(3) == ((1, 1), (2, 2), (3, 3))
    assert FORECAST2.cache_tensors() == (3, 0)


def test_rebuild_is_exact_on_a_quadratic_residual():
    rng = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(2, 5, generator=rng) for _ in range(3))
    d = lambda t: a + b * t + c * t * t  # noqa: E731  residual quadratic in the step
    x = torch.randn(2, 5, generator=rng)
    steps = [10, 7, 4]
    y = FORECAST2.rebuild_residual(x, [d(s) for s in steps], steps, 15)
    assert torch.allclose(y, x + d(15), atol=1e-4)


def test_forecast2_through_profile_dp_schedule_and_runtime(tiny_adapter, tiny_profile):
    assert "forecast2" in tiny_profile.modes
    problem = problem_from_profile(tiny_profile, {"residual", "forecast2"}, "flops")
    solution = solve_dp(problem, 0.55)
    used = {a for row in solution.actions() for a in row}
    assert "forecast2" in used and used <= {"native", "residual", "forecast2"}
    schedule = build_schedule(tiny_profile, solution.actions(), {"solver": "dp"})
    inputs = tiny_adapter.make_inputs(range(100, 104))
    with apply_schedule(tiny_adapter.model, schedule) as handle:
        out = tiny_adapter.generate(inputs, TINY_SAMPLER)
    computes = (~np.isin(np.array(solution.actions()), list(REUSE_MODES))).sum(axis=0)
    assert handle.block_calls == computes.tolist()  # a forecast runs no block work
    assert torch.isfinite(out).all()


def test_runtime_forecast2_equals_the_hand_extrapolation(tiny_adapter, tiny_profile):
    """Block 1 computes at steps 0-3 and forecasts at 4 from 3, 2, 1: x4 + 3 d3 - 3 d2 + d1."""
    block = tiny_adapter.blocks()[1]
    seen = []
    hook = block.register_forward_hook(lambda m, a, o: seen.append((a[0].clone(), o.clone())))
    inputs = tiny_adapter.make_inputs(range(3))
    tiny_adapter.generate(inputs, TINY_SAMPLER)
    full = list(seen)
    seen.clear()
    rows = [["native"] * 4 for _ in range(TINY_SAMPLER.steps)]
    rows[4][1] = "forecast2"
    with apply_schedule(tiny_adapter.model, build_schedule(tiny_profile, tuple(map(tuple, rows)), {"solver": "test"})):
        tiny_adapter.generate(inputs, TINY_SAMPLER)
    hook.remove()
    delta = lambda t: full[t][1] - full[t][0]  # noqa: E731
    expected = full[4][0] + 3 * delta(3) - 3 * delta(2) + delta(1)
    assert torch.allclose(seen[4][1], expected, atol=1e-5)

"""CP-SAT solver: equals the DP without extra constraints; every constraint holds; infeasible sets are named."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schedc.errors import SolverError
from schedc.problem import Problem
from schedc.solvers.base import Constraints
from schedc.solvers.dp import solve_dp
from schedc_runtime.modes import REUSE_MODES
from schedc.solvers.ilp import solve_ilp


def random_problem(seed: int, blocks: int, steps: int, int8: bool = False, max_age: int | None = None) -> Problem:
    rng = np.random.default_rng(seed)
    age = np.arange(steps)[None, :] - np.arange(steps)[:, None]
    valid = (age >= 1) & (age <= (max_age or steps))
    err = np.where(valid[None], rng.uniform(0.01, 1.0, (blocks, steps, steps)) * age.clip(min=1), np.inf)
    return Problem.residual_only(
        reuse_error=err, gain=rng.uniform(0.2, 2.0, (blocks, steps)), block_cost=np.ones(blocks),
        precisions=("int8",) if int8 else (),
        quant_error=rng.uniform(0, 0.3, (blocks, steps, 1)) if int8 else None,
        precision_cost=np.full((blocks, 1), 0.5) if int8 else None,
    )


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), blocks=st.integers(1, 3), steps=st.integers(2, 7),
       budget=st.sampled_from([0.3, 0.5, 0.8, 1.0]), int8=st.booleans())
def test_ilp_reaches_the_dp_optimum(seed, blocks, steps, budget, int8):
    assert_ilp_equals_dp(random_problem(seed, blocks, steps, int8), budget)


def assert_ilp_equals_dp(problem, budget: float):
    """Both infeasible, or the ILP proves the DP's optimum within the budget; returns the ILP's solution."""
    try:
        dp = solve_dp(problem, budget)
    except SolverError:
        with pytest.raises(SolverError):
            solve_ilp(problem, budget)
        return None
    ilp = solve_ilp(problem, budget)
    assert ilp.stats["status"] == "OPTIMAL"
    assert ilp.predicted_error == pytest.approx(dp.predicted_error, rel=1e-6, abs=1e-5)
    assert ilp.cost <= budget * (1 + 1e-9)
    return ilp


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), blocks=st.integers(1, 2), steps=st.integers(3, 6),
       budget=st.sampled_from([0.4, 0.6, 1.0]), int8=st.booleans())
def test_ilp_with_every_reuse_mode_reaches_the_dp_optimum(seed, blocks, steps, budget, int8):
    """Forecast modes (several cached computes) are history states of the path model: same optimum."""
    rng = np.random.default_rng(seed)
    base = random_problem(seed, blocks, steps, int8)
    age = np.arange(steps)[None, :] - np.arange(steps)[:, None]
    valid = (age >= 1)[None, None]
    errors = {m: np.where(valid, rng.uniform(0.005, 1.0, (blocks, len(spec.patterns(2)), steps, steps)), np.inf)
              for m, spec in REUSE_MODES.items()}
    ilp = assert_ilp_equals_dp(replace(base, errors=errors, max_gap=2), budget)
    if ilp is not None:
        assert set(a for row in ilp.actions() for a in row) <= {"native", "int8", *REUSE_MODES}
        assert not replace(base, errors=errors, max_gap=2).reads_across_precisions(ilp.actions())


def test_every_deployment_constraint_holds():
    problem = random_problem(1, 4, 12, int8=True)
    constraints = Constraints(first_full=2, static_precision=True, last_full=2, max_reuse=2, dependencies=((0, 3),),
                              max_cache_bytes=2.0, cache_bytes=(1.0,) * 4)
    sol = solve_ilp(problem, 0.6, constraints)
    rows = sol.actions()
    computes = sol.compute  # [T, B]
    assert computes[:2].all() and computes[-2:].all()
    assert all(a == "native" for r in rows[:2] + rows[-2:] for a in r)
    for b in range(4):
        run = 0
        for t in range(12):
            run = 0 if computes[t, b] else run + 1
            assert run <= 2
    assert np.all(computes[:, 0] <= computes[:, 3])
    for t in range(1, 12):  # live caches: blocks reusing at t
        assert (~computes[t]).sum() <= 2
    assert sol.cost <= 0.6 + 1e-9 and 0 <= sol.stats["gap"] <= 1e-9


def test_infeasible_constraint_set_names_the_conflict():
    problem = random_problem(2, 2, 10)
    with pytest.raises(SolverError, match="infeasible: .*budget 0.3.*first 5 step"):
        solve_ilp(problem, 0.3, Constraints(first_full=5))
    with pytest.raises(SolverError, match="budget 0.2.*at most 1 consecutive reuses"):
        solve_ilp(problem, 0.2, Constraints(max_reuse=1))


def test_dependency_chains_close_transitively():
    from schedc.solvers.ilp import dependency_closure

    assert dependency_closure(((0, 1), (1, 2)), 3) == [(0, 1), (0, 2), (1, 2)]
    with pytest.raises(SolverError, match="outside 0..2"):
        dependency_closure(((0, 5),), 3)

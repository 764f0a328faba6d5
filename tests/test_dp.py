"""Property tests: the DP solver against the brute-force oracle on tiny random problems."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from schedc.errors import BudgetError, SolverError
from schedc.problem import Problem
from schedc.solvers.base import Constraints, Solution
from schedc.solvers.brute import solve_brute_force
from schedc.solvers.dp import solve_dp

TOL = 1e-9


def make_problem(
    blocks: int, steps: int, max_age: int, seed: int, cost_mode: str, zero_frac: float = 0.2
) -> Problem:
    """Random problem: errors finite only for 0 < t - s <= max_age, some gains and errors zero."""
    rng = np.random.default_rng(seed)
    s, t = np.meshgrid(np.arange(steps), np.arange(steps), indexing="ij")
    allowed = (t > s) & (t - s <= max_age)  # [T, T]
    err = rng.exponential(1.0, (blocks, steps, steps)) * (rng.random((blocks, steps, steps)) > zero_frac)
    err = np.where(allowed[None], err, np.inf)  # [B, T, T]
    gain = rng.uniform(0.0, 2.0, (blocks, steps)) * (rng.random((blocks, steps)) > zero_frac)
    if cost_mode == "equal":
        cost = np.full(blocks, 2.5)
    elif cost_mode == "integer":
        cost = rng.integers(1, 5, blocks).astype(float)
    else:
        cost = rng.uniform(0.3, 3.0, blocks)
    return Problem.residual_only(reuse_error=err, gain=gain, block_cost=cost)


def min_budget(problem: Problem, max_age: int, first: int) -> float:
    """Cheapest feasible cost, counted by hand: a compute covers itself and max_age reuses."""
    steps = problem.num_steps
    first = min(first, steps)
    rest = steps - first
    extra = max(0, -(-(rest - max_age) // (max_age + 1)))  # ceil((rest - max_age) / (max_age + 1))
    return (first + extra) / steps


@st.composite
def cases(draw: st.DrawFn, cost_modes: tuple[str, ...] = ("equal", "integer")) -> tuple:
    """(problem, budget, constraints, minimum budget); budgets mostly feasible, some on the grid."""
    blocks = draw(st.integers(1, 3))
    steps = draw(st.integers(2, 6))
    max_age = draw(st.integers(0, steps))
    seed = draw(st.integers(0, 2**32 - 1))
    problem = make_problem(blocks, steps, max_age, seed, draw(st.sampled_from(cost_modes)))
    first = draw(st.integers(1, steps + 1))
    lowest = min_budget(problem, max_age, first)
    grid = st.integers(1, steps * blocks).map(lambda n: n / (steps * blocks))
    feasible = st.floats(0.0, 1.0).map(lambda u: min(1.0, lowest + u * (1.0 - lowest)))
    budget = draw(st.one_of(st.floats(0.01, 1.0), grid, feasible, feasible))
    return problem, budget, Constraints(first_full=first), lowest


def check_solution(problem: Problem, budget: float, constraints: Constraints, sol: Solution) -> None:
    first = min(constraints.first_full, problem.num_steps)
    assert sol.compute.shape == (problem.num_steps, problem.num_blocks)
    assert sol.compute[:first].all()
    assert sol.cost <= budget * (1 + TOL)
    assert np.isclose(sol.cost, problem.cost_of(sol.compute))
    assert np.isfinite(sol.predicted_error)
    assert np.isclose(sol.predicted_error, problem.predicted_error(sol.compute), rtol=1e-9, atol=1e-12)
    assert sol.predicted_error == sol.stats["objective"]


@settings(max_examples=1000, deadline=None)
@given(cases())
def test_dp_matches_brute_force_on_integer_costs(case: tuple) -> None:
    problem, budget, constraints, lowest = case
    try:
        oracle = solve_brute_force(problem, budget, constraints)
    except SolverError:
        event("infeasible")
        with pytest.raises(SolverError, match=f"minimum achievable budget {lowest:.6g} "):
            solve_dp(problem, budget, constraints)
        return
    sol = solve_dp(problem, budget, constraints)
    check_solution(problem, budget, constraints, sol)
    assert sol.stats["exact_split"]
    assert np.isclose(sol.predicted_error, oracle.predicted_error, rtol=1e-9, atol=1e-12)
    assert sol.solver == "dp"


@settings(max_examples=400, deadline=None)
@given(cases(cost_modes=("float",)))
def test_dp_on_float_costs_is_feasible_and_never_beats_the_oracle(case: tuple) -> None:
    problem, budget, constraints, _ = case
    try:
        oracle = solve_brute_force(problem, budget, constraints)
    except SolverError:
        with pytest.raises(SolverError):
            solve_dp(problem, budget, constraints)
        return
    sol = solve_dp(problem, budget, constraints)
    check_solution(problem, budget, constraints, sol)
    assert sol.predicted_error >= oracle.predicted_error - 1e-9 * (1 + oracle.predicted_error)


@settings(max_examples=150, deadline=None)
@given(cases(cost_modes=("equal", "integer", "float")))
def test_objective_never_increases_with_budget(case: tuple) -> None:
    problem, _, constraints, _ = case
    last = np.inf
    for budget in np.linspace(0.05, 1.0, 20):
        try:
            sol = solve_dp(problem, float(budget), constraints)
        except SolverError:
            assert last == np.inf, "a larger budget became infeasible"
            continue
        assert sol.predicted_error <= last
        last = sol.predicted_error


def test_zero_error_prefers_fewest_computes() -> None:
    problem = make_problem(3, 6, 6, seed=1, cost_mode="integer", zero_frac=1.0)
    sol = solve_dp(problem, 1.0, Constraints(first_full=2))
    assert sol.predicted_error == 0.0
    assert sol.compute[:2].all() and not sol.compute[2:].any()


def test_infeasible_budget_names_the_minimum() -> None:
    problem = make_problem(2, 5, 0, seed=0, cost_mode="equal")  # no reuse allowed: compute every step
    with pytest.raises(SolverError, match="minimum achievable budget 1"):
        solve_dp(problem, 0.9)
    assert solve_dp(problem, 1.0).compute.all()


def test_minimum_budget_in_message_is_achievable() -> None:
    problem = make_problem(2, 6, 2, seed=3, cost_mode="integer")
    with pytest.raises(SolverError) as info:
        solve_dp(problem, 0.05)
    need = float(str(info.value).split("minimum achievable budget ")[1].split()[0])
    sol = solve_dp(problem, min(1.0, need * (1 + 1e-6)))
    assert np.isfinite(sol.predicted_error)


@pytest.mark.parametrize("budget", [0.0, -0.1, 1.5, float("nan"), float("inf"), "abc", None])
def test_budget_outside_unit_interval_raises(budget: object) -> None:
    problem = make_problem(2, 4, 4, seed=0, cost_mode="equal")
    with pytest.raises(BudgetError):
        solve_dp(problem, budget)  # type: ignore[arg-type]
    with pytest.raises(BudgetError):
        solve_brute_force(problem, budget)  # type: ignore[arg-type]


def test_brute_force_refuses_large_problems() -> None:
    problem = make_problem(3, 7, 7, seed=0, cost_mode="equal")
    with pytest.raises(SolverError, match="brute force"):
        solve_brute_force(problem, 0.5)


def test_full_size_problem_solves() -> None:
    problem = make_problem(28, 50, 49, seed=0, cost_mode="equal", zero_frac=0.0)
    sol = solve_dp(problem, 0.4)
    check_solution(problem, 0.4, Constraints(), sol)
    assert sol.stats["exact_split"]
    uneven = make_problem(28, 50, 10, seed=1, cost_mode="float", zero_frac=0.0)
    check_solution(uneven, 0.4, Constraints(), solve_dp(uneven, 0.4))


def test_every_registered_solver_meets_the_budget_and_validates():
    """Every model-free solver (dp, ilp, uniform, delta-dit) on one random problem: within budget, step 0
    computes, YAML-valid. The model-in-the-loop ones (learned) are in test_learned."""
    from schedc.solvers import SOLVERS
    from schedc_runtime import ModelInfo, Schedule

    rng = np.random.default_rng(7)
    steps, blocks = 12, 3
    age = np.arange(steps)[None, :] - np.arange(steps)[:, None]
    err = np.where((age >= 1)[None], rng.uniform(0.01, 1, (blocks, steps, steps)) * age.clip(min=1), np.inf)
    problem = Problem.residual_only(reuse_error=err, gain=rng.uniform(0.5, 2, (blocks, steps)), block_cost=np.ones(blocks))
    info = ModelInfo(name="m", fingerprint="sha256:0", blocks=("a", "b", "c"), steps=steps, timesteps=tuple(range(steps, 0, -1)))
    assert {"dp", "ilp", "learned", "uniform", "delta-dit"} <= set(SOLVERS)
    for name, solver in SOLVERS.items():
        if solver.needs_model:
            continue
        for budget in (0.3, 0.6):
            sol = solver(problem, budget, Constraints())
            assert sol.cost <= budget + 1e-9, name
            assert sol.compute[0].all(), name
            Schedule(model=info, decisions=sol.actions())  # validates

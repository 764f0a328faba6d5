"""The joint DP (compute@precision / reuse@mode) equals brute force on tiny random problems."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schedc.errors import SolverError
from schedc.problem import Problem
from schedc.solvers.base import Constraints
from schedc.solvers.dp import solve_dp
from schedc_runtime.modes import REUSE_MODES

MODES = tuple(REUSE_MODES)  # every registered reuse mode: a new mode is checked against brute force too


def random_problem(seed: int, blocks: int, steps: int, precisions: tuple[str, ...], modes: set[str]) -> Problem:
    rng = np.random.default_rng(seed)
    age = np.arange(steps)[None, :] - np.arange(steps)[:, None]  # [s, t]
    valid = (age >= 1) & (age <= steps - 1)
    gap = 2

    def err(k: int):
        e = rng.uniform(0.005, 1.0, (blocks, k, steps, steps)) * age.clip(min=1)[None, None]
        return np.where(valid[None, None], e, np.inf)

    return Problem(
        errors={m: err(len(REUSE_MODES[m].patterns(gap))) for m in MODES if m in modes},
        gain=rng.uniform(0.2, 2.0, (blocks, steps)),
        block_cost=np.ones(blocks) * rng.choice([1.0, 3.0]),
        precisions=precisions,
        quant_error=rng.uniform(0.0, 0.5, (blocks, steps, len(precisions))) if precisions else None,
        precision_cost=np.full((blocks, len(precisions)), 0.5) if precisions else None,
        max_gap=gap,
    )


def brute_force(problem: Problem, budget: float) -> float:
    options = ("native",) + problem.precisions + problem.reuse_modes
    steps, blocks = problem.num_steps, problem.num_blocks
    best = np.inf
    per_block = list(itertools.product(options, repeat=steps - 1))
    for combo in itertools.product(per_block, repeat=blocks):
        rows = [["native"] * blocks] + [[combo[b][t - 1] for b in range(blocks)] for t in range(1, steps)]
        if problem.reads_across_precisions(rows):
            continue  # outside the DP's space: its state keeps one precision for what a reuse reads
        error, cost = problem.evaluate_decisions(rows)
        if cost <= budget * (1 + 1e-9):
            best = min(best, error)
    return best


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    blocks=st.integers(1, 2),
    steps=st.integers(2, 4),
    budget=st.sampled_from([0.3, 0.5, 0.7, 1.0]),
    use_int8=st.booleans(),
    modes=st.sets(st.sampled_from(MODES), min_size=1),
)
def test_joint_dp_equals_brute_force(seed, blocks, steps, budget, use_int8, modes):
    problem = random_problem(seed, blocks, steps, ("int8",) if use_int8 else (), modes)
    if not problem.is_joint:
        return  # the plain residual DP has its own property tests
    expected = brute_force(problem, budget)
    try:
        solution = solve_dp(problem, budget)
    except SolverError:
        assert not np.isfinite(expected)
        return
    assert np.isclose(solution.predicted_error, expected, rtol=1e-9, atol=1e-12)
    error, cost = problem.evaluate_decisions(solution.actions())
    assert np.isclose(error, solution.predicted_error) and cost <= budget * (1 + 1e-9)
    assert all(a == "native" for a in solution.actions()[0])
    assert not problem.reads_across_precisions(solution.actions())


def test_a_forecast_carries_each_read_computes_own_quantization_error():
    """An int8 compute read as the older of a forecast's two computes carries its error (weighted by the
    forecast's coefficient for it) even when the newer compute is native: the DP once priced that read
    at the newer compute's precision (no error) and chose such schedules, losing up to 9 dB in rollouts."""
    problem = random_problem(3, 1, 6, ("int8",), {"residual", "forecast"})
    mixed = [["native"], ["int8"], ["native"], ["forecast"], ["forecast"], ["native"]]
    clean = [["native"], ["native"], ["native"], ["forecast"], ["forecast"], ["native"]]
    quant = problem.quant_error[0, 1, 0]
    extra = 0.0
    for t in (3, 4):  # the forecast from computes (2, 1) at age t - 2: |coefficient| of the compute at 1
        weight = REUSE_MODES["forecast"].carried_weight((1,), t - 2)[1]
        extra += weight * quant * problem.gain[0, t]
    extra += problem.gain[0, 1] * quant  # the int8 compute's own error at step 1
    assert problem.evaluate_decisions(mixed)[0] == pytest.approx(problem.evaluate_decisions(clean)[0] + extra)
    assert problem.reads_across_precisions(mixed) and not problem.reads_across_precisions(clean)


def test_more_options_never_hurt():
    """Allowing forecast/output and a precision can only lower the optimum at the same budget."""
    for seed in range(5):
        base = random_problem(seed, 3, 8, (), {"residual"})
        rich = random_problem(seed, 3, 8, ("int8",), set(MODES))
        for budget in (0.3, 0.5):
            assert solve_dp(rich, budget).predicted_error <= solve_dp(base, budget).predicted_error + 1e-12


def test_static_precision_keeps_one_copy_per_block_and_is_optimal():
    for seed in range(4):
        problem = random_problem(seed, 2, 4, ("int8", "fp8"), {"residual", "forecast"})
        problem = __import__("dataclasses").replace(problem, precision_cost=np.full((2, 2), 0.5))
        for budget in (0.5, 0.7):
            sol = solve_dp(problem, budget, Constraints(static_precision=True))
            for b in range(2):
                used = {row[b] for row in sol.actions()} & {"int8", "fp8"}
                assert len(used) <= 1
            # oracle: the best over per-block precision assignments, each solved by brute force
            best = np.inf
            options = ("native", "int8", "fp8") + problem.reuse_modes
            per_block = list(itertools.product(options, repeat=3))
            for combo in itertools.product(per_block, repeat=2):
                if any(len(set(c) & {"int8", "fp8"}) > 1 for c in combo):
                    continue
                rows = [["native", "native"]] + [[combo[b][t - 1] for b in range(2)] for t in range(1, 4)]
                if problem.reads_across_precisions(rows):
                    continue
                error, cost = problem.evaluate_decisions(rows)
                if cost <= budget * (1 + 1e-9):
                    best = min(best, error)
            assert np.isclose(sol.predicted_error, best)
            assert sol.predicted_error >= solve_dp(problem, budget).predicted_error - 1e-12

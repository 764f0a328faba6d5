"""Time the CP-SAT solver on a random 50-step x 28-block problem and compare with the DP optimum.

Run: python bench/bench_ilp.py [--max-age 49] [--budgets 0.3 0.5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schedc.problem import Problem  # noqa: E402
from schedc.solvers.dp import solve_dp  # noqa: E402
from schedc.solvers.ilp import solve_ilp  # noqa: E402

STEPS, BLOCKS = 50, 28


def random_problem(max_age: int, seed: int = 0) -> Problem:
    rng = np.random.default_rng(seed)
    s, t = np.meshgrid(np.arange(STEPS), np.arange(STEPS), indexing="ij")
    age = (t - s).astype(float)
    err = rng.uniform(0.5, 1.5, (BLOCKS, STEPS, STEPS)) * 0.01 * age[None]
    err = np.where(((age > 0) & (age <= max_age))[None], err, np.inf)
    return Problem.residual_only(reuse_error=err, gain=rng.uniform(0.1, 2.0, (BLOCKS, STEPS)), block_cost=np.ones(BLOCKS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-age", type=int, default=24)
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.3, 0.5])
    args = parser.parse_args()
    problem = random_problem(args.max_age)
    print(f"T={STEPS} x B={BLOCKS}, max age {args.max_age}, default options (30 s limit, 2 workers)")
    for budget in args.budgets:
        start = time.perf_counter()
        ilp = solve_ilp(problem, budget)
        seconds = time.perf_counter() - start
        dp = solve_dp(problem, budget)
        print(f"budget {budget:.2f}: ilp {seconds:.1f} s, status {ilp.stats['status']}, gap {ilp.stats['gap']:.2e}, "
              f"objective {ilp.predicted_error:.5f} vs dp {dp.predicted_error:.5f}")


if __name__ == "__main__":
    main()

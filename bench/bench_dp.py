"""Time solve_dp on a random 50-step x 28-block problem (max age 49) over several budgets.

Run: python bench/bench_dp.py [--repeats N] [--uneven]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schedc.problem import Problem  # noqa: E402
from schedc.solvers.dp import solve_dp  # noqa: E402

STEPS, BLOCKS, MAX_AGE = 50, 28, 49
BUDGETS = (0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)


def random_problem(uneven: bool, seed: int = 0) -> Problem:
    """Errors grow with cache age; finite only up to MAX_AGE steps back."""
    rng = np.random.default_rng(seed)
    s, t = np.meshgrid(np.arange(STEPS), np.arange(STEPS), indexing="ij")
    age = (t - s).astype(float)  # [T, T]
    err = rng.uniform(0.5, 1.5, (BLOCKS, STEPS, STEPS)) * 0.01 * age[None]  # [B, T, T]
    err = np.where(((age > 0) & (age <= MAX_AGE))[None], err, np.inf)
    gain = rng.uniform(0.1, 2.0, (BLOCKS, STEPS))  # [B, T]
    cost = rng.uniform(0.5, 2.0, BLOCKS) if uneven else np.ones(BLOCKS)
    return Problem.residual_only(reuse_error=err, gain=gain, block_cost=cost)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--uneven", action="store_true", help="random block costs (inexact split)")
    args = parser.parse_args()
    problem = random_problem(args.uneven)
    solve_dp(problem, 0.5)  # warm-up
    label = "uneven" if args.uneven else "equal"
    print(f"solve_dp on T={STEPS} x B={BLOCKS}, max age {MAX_AGE}, {label} block costs")
    for budget in BUDGETS:
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            sol = solve_dp(problem, budget)
            times.append(time.perf_counter() - start)
        print(
            f"budget {budget:4.2f}: median {statistics.median(times):.4f} s  "
            f"cost {sol.cost:.3f}  objective {sol.predicted_error:.4f}  exact {sol.stats['exact_split']}"
        )


if __name__ == "__main__":
    main()

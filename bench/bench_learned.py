"""The learned router vs the DP it starts from (residual reuse, FLOP cost), on held-out seeds.

    python bench/bench_learned.py [--budgets 0.3] [--iterations 60]

Trains on calibration seeds 0..3 (60 rollouts), evaluates on held-out seeds 1000000..1000063.
Writes bench/results/learned.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schedc.atomic import atomic_write_text  # noqa: E402
from schedc.evaluate import EVAL_SEED_START, generate_with, held_out_reference, sampler_of  # noqa: E402
from schedc.solvers.learned import learn_schedule  # noqa: E402
from schedc.metrics import quality  # noqa: E402
from schedc.models import load_model  # noqa: E402
from schedc.problem import problem_from_profile  # noqa: E402
from schedc.profile import Profile  # noqa: E402
from schedc.schedule import build_schedule, save_schedule  # noqa: E402
from schedc.solvers import Constraints, get_solver  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="profiles/reference-dit.profile.npz")
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.3])
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--samples", type=int, default=64)
    args = parser.parse_args()
    os.chdir(ROOT)
    profile = Profile.load(args.profile)
    adapter = load_model(profile.meta.model)
    problem = problem_from_profile(profile, {"residual"}, "flops")
    inputs, full = held_out_reference(adapter, profile, args.samples)
    lines = ["| budget | solver | cost | predicted rel L2 | rel L2 | PSNR dB | train rel L2 (first -> last) | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for budget in args.budgets:
        started = time.perf_counter()
        dp = get_solver("dp")(problem, budget, Constraints())
        dp_seconds = time.perf_counter() - started
        learned = learn_schedule(adapter, profile, problem, budget, iterations=args.iterations)
        for name, sol, secs in (("dp", dp, dp_seconds), ("learned", learned, learned.stats["solve_seconds"])):
            schedule = build_schedule(profile, sol.actions(), {"solver": name, "budget": budget})
            if name == "learned":
                save_schedule(schedule, Path("schedules") / f"{profile.meta.model}-learned-b{budget:.2f}.yaml")
            out, _ = generate_with(adapter, schedule, inputs, 32, sampler_of(schedule))
            q = quality(out, full)
            train = (f"{sol.stats['train_rel_l2_first']:.4f} -> {sol.stats['train_rel_l2']:.4f}" if name == "learned" else "-")
            lines.append(f"| {budget:.2f} | {name} | {sol.cost:.3f} | {sol.predicted_error:.4f} | {q['rel_l2']:.4f} | "
                         f"{q['psnr']:.2f} | {train} | {secs:.1f} |")
            print(lines[-1], flush=True)
    lines += ["", f"Residual reuse, FLOP cost; router trained on calibration seeds 0..3 for {args.iterations} rollouts "
              f"(seed 0), evaluated on held-out seeds {EVAL_SEED_START}..{EVAL_SEED_START + args.samples - 1}."]
    atomic_write_text(ROOT / "bench" / "results" / "learned.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

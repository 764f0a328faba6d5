"""Predicted vs measured final error, before and after closed-loop refinement (no timing).

    python bench/bench_refine.py [--rounds 2]

For budgets 0.2-0.6: the DP over three decision sets (residual; residual+output+forecast; all options)
and the ILP (all but forecast), FLOP costs, plain and with `--refine` (rounds on calibration seeds
0..7); measure every schedule's final
rel L2 on held-out seeds 1000000..1000063. Spearman rank correlation of predicted vs measured over
all schedules, before and after. Writes bench/results/refine.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schedc.atomic import atomic_write_text  # noqa: E402
from schedc.evaluate import EVAL_SEED_START, generate_with, held_out_reference, sampler_of  # noqa: E402
from schedc.metrics import quality  # noqa: E402
from schedc.models import load_model  # noqa: E402
from schedc.problem import problem_from_profile  # noqa: E402
from schedc.profile import Profile  # noqa: E402
from schedc.refine import refine  # noqa: E402
from schedc.schedule import build_schedule  # noqa: E402
from schedc.solvers import Constraints, SolveContext, get_solver  # noqa: E402

# (label, solver, decision set): the dp over three decision sets, and the CP-SAT ilp (no forecast)
SETS = (("dp residual", "dp", {"residual"}), ("dp cache", "dp", {"residual", "output", "forecast"}),
        ("dp joint", "dp", None), ("ilp", "ilp", {"residual", "output", "int8", "fp8", "int4w"}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="profiles/reference-dit.profile.npz")
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.2, 0.3, 0.4, 0.5, 0.6])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--samples", type=int, default=64)
    args = parser.parse_args()
    os.chdir(ROOT)
    profile = Profile.load(args.profile)
    adapter = load_model(profile.meta.model)
    inputs, full = held_out_reference(adapter, profile, args.samples)
    rows = []
    for name, solver_name, allow in SETS:
        problem = problem_from_profile(profile, allow, "flops")
        solver = get_solver(solver_name)
        for budget in args.budgets:
            plain = solver(problem, budget, Constraints())
            refined, history = refine(problem, budget, Constraints(), SolveContext(profile, adapter=adapter),
                                      solver=solver, rounds=args.rounds)
            measured = {}
            for label, sol in (("plain", plain), ("refined", refined)):
                schedule = build_schedule(profile, sol.actions(), {"solver": solver_name})
                out, _ = generate_with(adapter, schedule, inputs, 32, sampler_of(schedule))
                measured[label] = quality(out, full)["rel_l2"]
            rows.append({"set": name, "budget": budget, "predicted": plain.predicted_error, "measured": measured["plain"],
                         "refined_predicted": refined.predicted_error, "refined_measured": measured["refined"],
                         "reuse_scale": history[-1].reuse_scale, "quant_scale": history[-1].quant_scale})
            print(rows[-1], flush=True)
    before = spearmanr([r["predicted"] for r in rows], [r["measured"] for r in rows])[0]
    after = spearmanr([r["refined_predicted"] for r in rows], [r["refined_measured"] for r in rows])[0]
    lines = ["| solver / decision set | budget | predicted | measured | refined: predicted | refined: measured | reuse x | quant x |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['set']} | {r['budget']:.1f} | {r['predicted']:.4f} | {r['measured']:.4f} | {r['refined_predicted']:.4f} "
              f"| {r['refined_measured']:.4f} | {r['reuse_scale']:.3f} | {r['quant_scale']:.3f} |" for r in rows]
    lines += ["", f"Spearman(predicted, measured) over {len(rows)} schedules: {before:.3f} before refinement, "
              f"{after:.3f} after ({args.rounds} rounds on calibration seeds 0..7; measured on held-out seeds "
              f"{EVAL_SEED_START}..{EVAL_SEED_START + args.samples - 1})."]
    table = "\n".join(lines)
    out = ROOT / "bench" / "results" / "refine"
    atomic_write_text(out.with_suffix(".md"), table + "\n")
    atomic_write_text(out.with_suffix(".json"), json.dumps({"rows": rows, "spearman_before": before,
                                                            "spearman_after": after}, indent=1))
    print(table)


if __name__ == "__main__":
    main()

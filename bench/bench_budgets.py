"""Budget sweep on the reference model: DP schedule vs baselines, predicted vs measured error.

    python bench/bench_budgets.py [--profile profiles/reference-dit.profile.npz] [--budgets 0.3 0.4 0.5 0.6]

For each budget: solve with dp, write schedules/reference-dit-b<B>.yaml, evaluate on held-out seeds
(1000000..1000063) with the fewer-steps and uniform baselines, every variant timed interleaved in
this one process. Writes bench/results/budgets.{md,json} and prints the markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schedc.atomic import atomic_write_text  # noqa: E402
from schedc.evaluate import EvalConfig, evaluate  # noqa: E402
from schedc.models import load_model  # noqa: E402
from schedc.plots import pareto_plot  # noqa: E402
from schedc.problem import problem_from_profile  # noqa: E402
from schedc.profile import Profile  # noqa: E402
from schedc.schedule import save_schedule, schedule_from_solution  # noqa: E402
from schedc.solvers import Constraints, get_solver  # noqa: E402

COLUMNS = ("budget", "variant", "steps", "cost", "psnr", "ssim", "rel_l2", "predicted_rel_l2", "class_acc",
           "speedup", "ideal_speedup", "measured_over_ideal")


def fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="profiles/reference-dit.profile.npz", help="relative to the repository")
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6])
    parser.add_argument("--allow", default="residual", help="decision set (default: residual, the vertical slice)")
    parser.add_argument("--cost", default="flops", choices=("flops", "latency"))
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "budgets"))
    args = parser.parse_args()
    os.chdir(ROOT)  # paths recorded in schedules stay relative to the repository

    profile = Profile.load(args.profile)
    problem = problem_from_profile(profile, set(args.allow.split(",")), args.cost)
    adapter = load_model(profile.meta.model)
    rows, reports = [], {}
    for budget in args.budgets:
        solution = get_solver("dp")(problem, budget, Constraints())
        schedule = schedule_from_solution(profile, solution, budget, {"profile_file": args.profile,
                                                                       "allowed": args.allow, "cost_model": args.cost})
        suffix = "-" + args.allow.replace(",", "+")
        save_schedule(schedule, Path("schedules") / f"{profile.meta.model}{suffix}-b{budget:.2f}.yaml")
        report = evaluate(adapter, schedule, EvalConfig(samples=args.samples, repeats=args.repeats), baselines=True,
                          problem=problem)
        print(report.table(), flush=True)
        reports[f"{budget:.2f}"] = report.to_json_dict()
        for name, metrics in [("schedc-dp", report.schedule), *report.baselines.items()]:
            rows.append({"budget": budget, "variant": name, **metrics.to_dict()})

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt(row.get(c)) for c in COLUMNS) + " |" for row in rows]
    settings = next(iter(reports.values()))["settings"]
    lines.append("")
    lines.append(f"Held-out seeds {settings['eval_seeds']} ({settings['samples']} samples), calibration seeds "
                 f"{profile.meta.calibration_seeds[0]}..{profile.meta.calibration_seeds[-1]}; timing: "
                 f"{settings['repeats']} interleaved rounds of {settings['timing_batch']} samples, median; "
                 f"torch {torch.__version__}, {settings['threads']} threads.")
    table = "\n".join(lines)
    out = Path(args.out)
    atomic_write_text(out.with_suffix(".md"), table + "\n")
    atomic_write_text(out.with_suffix(".json"), json.dumps({"rows": rows, "reports": reports}, indent=1))
    pareto_plot(rows, out.with_suffix(".png"), "reference-dit, held-out seeds: PSNR vs measured speedup")
    print(table)


if __name__ == "__main__":
    main()

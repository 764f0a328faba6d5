"""Joint cache + precision decisions on the reference model (issue: forecast, precisions, cost models).

    python bench/bench_joint.py [--profile profiles/reference-dit.profile.npz]

1. budgets 0.2 and 0.3: residual-only vs schedules that may also use output and forecast reuse;
2. budget 0.4: the best cache-only decision set vs the joint set (+ int8/fp8/int4w) under the FLOP
   cost model, and the joint set under this CPU's measured latency cost model;
3. profiled quantization error vs measured: for every block b and precision p, a schedule running
   only block b at p (all steps); Spearman rank correlation of predicted sum_t G[b,t] Q[b,t,p] (and
   of the raw sum_t Q[b,t,p]) with the measured final relative L2.
Held-out seeds 1000000.. (64 samples for 1-2, 16 for 3). Writes bench/results/joint.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schedc.atomic import atomic_write_text  # noqa: E402
from schedc.evaluate import EvalConfig, evaluate, generate_with, held_out_reference, sampler_of  # noqa: E402
from schedc.metrics import quality  # noqa: E402
from schedc.models import load_model  # noqa: E402
from schedc.problem import problem_from_profile  # noqa: E402
from schedc.profile import Profile  # noqa: E402
from schedc.schedule import build_schedule, save_schedule, schedule_from_solution  # noqa: E402
from schedc.solvers import Constraints, get_solver  # noqa: E402

CACHE_SETS = {"residual": {"residual"}, "residual+output": {"residual", "output"},
              "residual+output+forecast": {"residual", "output", "forecast"}}
JOINT = {"residual", "output", "forecast", "int8", "fp8", "int4w"}


def solve_and_eval(adapter, profile, allow, budget, cost, config, label):
    solution = get_solver("dp")(problem_from_profile(profile, allow, cost), budget, Constraints())
    schedule = schedule_from_solution(profile, solution, budget, {"allowed": sorted(allow), "cost_model": cost})
    save_schedule(schedule, Path("schedules") / "joint" / f"{label}-b{budget:.2f}.yaml")
    report = evaluate(adapter, schedule, config, progress=False)
    m = report.schedule.to_dict()
    m.update(label=label, budget=budget, cost_model=cost, kernels=report.settings["runtime"].get("kernels", {}),
             predicted_cost=solution.cost)
    print(f"{label:<28} b={budget:.2f} cost={cost:<7} PSNR {m['psnr']:.2f} relL2 {m['rel_l2']:.4f} "
          f"pred {m['predicted_rel_l2']:.4f} speedup {m['speedup']:.2f}x (ideal {m['ideal_speedup']:.2f}x)", flush=True)
    return m


def quant_rank_check(adapter, profile, samples: int) -> dict:
    inputs, full = held_out_reference(adapter, profile, samples, batch=samples)
    q, g = profile.quant_error(), profile.gain()  # [B, T, P], [B, T]
    rows = []
    for b in range(profile.num_blocks):
        for p, precision in enumerate(profile.precisions):
            decisions = tuple(tuple(precision if j == b else "native" for j in range(profile.num_blocks))
                              for _ in range(profile.num_steps))
            schedule = build_schedule(profile, decisions, {"solver": "probe"})
            out, _ = generate_with(adapter, schedule, inputs, samples, sampler_of(schedule))
            rows.append({"block": b, "precision": precision, "measured_rel_l2": quality(out, full)["rel_l2"],
                         "predicted_rel_l2": float((g[b] * q[b, :, p]).sum()), "sum_q": float(q[b, :, p].sum())})
    measured = [r["measured_rel_l2"] for r in rows]
    return {"rows": rows,
            "spearman_predicted": float(spearmanr([r["predicted_rel_l2"] for r in rows], measured)[0]),
            "spearman_sum_q": float(spearmanr([r["sum_q"] for r in rows], measured)[0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="profiles/reference-dit.profile.npz")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rank-samples", type=int, default=16)
    args = parser.parse_args()
    os.chdir(ROOT)
    profile = Profile.load(args.profile)
    adapter = load_model(profile.meta.model)
    config = EvalConfig(samples=args.samples, repeats=args.repeats)
    results = []
    for budget in (0.2, 0.3):
        for label in ("residual", "residual+output+forecast"):
            results.append(solve_and_eval(adapter, profile, CACHE_SETS[label], budget, "flops", config, label))
        results.append(solve_and_eval(adapter, profile, JOINT, budget, "flops", config, "joint"))
    for label in ("residual", "residual+output"):
        results.append(solve_and_eval(adapter, profile, CACHE_SETS[label], 0.4, "flops", config, label))
    results.append(solve_and_eval(adapter, profile, CACHE_SETS["residual+output+forecast"], 0.4, "flops", config,
                                  "residual+output+forecast"))
    results.append(solve_and_eval(adapter, profile, JOINT, 0.4, "flops", config, "joint"))
    results.append(solve_and_eval(adapter, profile, JOINT, 0.4, "latency", config, "joint"))
    rank = quant_rank_check(adapter, profile, args.rank_samples)
    print(f"Spearman(predicted sum G*Q, measured) = {rank['spearman_predicted']:.3f}; "
          f"Spearman(sum Q, measured) = {rank['spearman_sum_q']:.3f}", flush=True)

    cols = ("label", "budget", "cost_model", "predicted_cost", "cost", "psnr", "rel_l2", "predicted_rel_l2", "class_acc",
            "speedup", "ideal_speedup")
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) and abs(v) < 1 else (f"{v:.2f}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = ["| decision set | budget | cost model | solver cost | FLOP cost | PSNR | rel L2 | predicted rel L2 | class acc "
             "| speedup | ideal (FLOPs) |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in results]
    lines += ["", f"Quantization error, profiled vs measured ({profile.num_blocks} blocks x {len(profile.precisions)} "
              f"precisions, each alone at every step, {args.rank_samples} held-out samples): Spearman "
              f"{rank['spearman_predicted']:.3f} (G-weighted prediction), {rank['spearman_sum_q']:.3f} (raw sum of Q).",
              f"Kernels on this CPU: {profile.meta.to_dict()['kernels']}. Latency per block relative to native "
              f"(median over blocks): " + ", ".join(
                  f"{k} {np.median(np.array(v) / np.array(profile.meta.latency['native'])):.2f}"
                  for k, v in (profile.meta.latency or {}).items())]
    table = "\n".join(lines)
    out = ROOT / "bench" / "results" / "joint"
    atomic_write_text(out.with_suffix(".md"), table + "\n")
    atomic_write_text(out.with_suffix(".json"), json.dumps({"rows": results, "rank": rank}, indent=1))
    print(table)


if __name__ == "__main__":
    main()

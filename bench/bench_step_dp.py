"""How much the whole-model step DPs' schedules move with their calibration, and how good they are held out.

    python bench/bench_step_dp.py                                  # the zoo, digits-dit and reference-dit
    python bench/bench_step_dp.py --models zoo/sd3-flow --budgets 0.4
    python bench/bench_step_dp.py --summary-only

The search starts from two step-level DPs (schedc.solvers.families): `step-dp` places whole-model refreshes
for a residual reuse between them (then runs them with forecast reuse, `step-dp/forecast`); `step-dp-forecast`
places them for the forecast itself. Per model and budget, each is built from three profiles of the transfer
bench (16 calibration samples, FLOP cost model, native computes: cached under --work): calibrated on the first
half of the classes (a), on the second half (b), and on the second half with other seeds (r, the seeds
shifted as bench_transfer's reseed part), and every schedule is run on the second half's held-out seeds
(1000000-, --samples of them) against full compute. The spread over a, b and r is how much a start moves
with the calibration alone; the search can only be as steady as its best starts. Models without classes or
prompts to split are skipped. Writes <out>/<model>.json and <out>/summary.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_cli import run_per_model, transfer_profiles_parser  # noqa: E402
from bench_transfer import RESEED_OFFSET, Transfer, calibrations as transfer_calibrations  # noqa: E402
from schedc.problem import problem_from_profile  # noqa: E402
from schedc.schedule import build_schedule  # noqa: E402
from schedc.solvers.families import grid_from_compute, step_dp, step_dp_two  # noqa: E402

NATIVE_ONLY = {"residual", "output", "forecast"}
PLACEMENTS = {"step-dp": lambda problem, budget: step_dp(problem, budget, "residual"),
              "step-dp-forecast": lambda problem, budget: step_dp_two(problem, budget, "forecast")}


def run_model(spec, args) -> dict | None:
    bench = Transfer(spec, args, lambda m: print(m, flush=True))
    found = transfer_calibrations(bench.adapter)
    if found is None:
        return None
    halves, by_role = found
    calibrations = dict(zip("abr", by_role.values()))  # this bench's tables name the reseeded one r
    second = by_role["b"][1]
    rows = []
    for budget in args.budgets:
        for placement, place in PLACEMENTS.items():
            row = {"budget": budget, "placement": placement, "held_psnr": {}, "refresh_steps": {}}
            for key, (label, adapter) in calibrations.items():
                profile = bench.profile(label, adapter, bench.sampler)
                problem = problem_from_profile(profile, NATIVE_ONLY)
                compute = place(problem, budget)
                if compute is None:
                    continue
                compute[:1] = True  # step 0 computes every block, as the search's families have it
                grid = grid_from_compute(problem, compute, "forecast")
                held = bench.per_sample(second, build_schedule(profile, grid, {"solver": placement}), bench.sampler)
                row["held_psnr"][key] = round(float(held.mean()), 3)
                row["refresh_steps"][key] = np.flatnonzero(compute.any(axis=1)).tolist()
            rows.append(row)
            print(f"{spec.name} b={budget:.2f} {placement}: {row['held_psnr']}", flush=True)
    return {"settings": {"model": spec.name, "sampler": bench.sampler.to_dict(), "budgets": args.budgets,
                         "calib": args.calib, "halves": [list(h) for h in halves], "reseed_offset": RESEED_OFFSET,
                         "eval_seeds": f"{bench.seeds[0]}-{bench.seeds[-1]}", "threads": torch.get_num_threads(),
                         "torch": torch.__version__}, "rows": rows}


def summary_markdown(results: list[dict]) -> str:
    lines = ["# The step DPs' schedules under three calibrations", "",
             "Held-out PSNR (dB, second half of the classes, 64 seeds) of each step DP's forecast schedule built from "
             "profiles calibrated on the first half (a), the second half (b) and the second half with other seeds (r); "
             "range = max - min over the three.", "",
             "| model | budget | step-dp/forecast a / b / r | range | mean | step-dp-forecast a / b / r | range | mean |",
             "|---|---|---|---|---|---|---|---|"]
    ranges: dict[str, list[float]] = {p: [] for p in PLACEMENTS}
    paired: list[tuple[float, float]] = []  # rows where both DPs gave all three schedules: (residual, forecast) means
    for res in results:
        by = {}
        for r in res["rows"]:
            by.setdefault(r["budget"], {})[r["placement"]] = r["held_psnr"]
        for budget, cells in sorted(by.items()):
            parts, means = [], {}
            for placement in PLACEMENTS:
                v = cells.get(placement) or {}
                if len(v) == 3:
                    vals = [v[k] for k in "abr"]
                    ranges[placement].append(max(vals) - min(vals))
                    means[placement] = float(np.mean(vals))
                    parts += [" / ".join(f"{x:.2f}" for x in vals), f"{max(vals) - min(vals):.2f}", f"{means[placement]:.2f}"]
                else:
                    parts += ["none" if not v else "-", "-", "-"]
            if len(means) == len(PLACEMENTS):
                paired.append((means["step-dp"], means["step-dp-forecast"]))
            lines.append(f"| {res['settings']['model']} | {budget:.2f} | " + " | ".join(parts) + " |")
    lines += ["", "none: the DP has no schedule there (a UNet's shape-changing blocks have no residual to reuse)."]
    if paired and all(ranges.values()):
        diff = np.array([f - r for r, f in paired])
        lines += ["", f"Median range: step-dp/forecast {np.median(ranges['step-dp']):.2f} dB over "
                  f"{len(ranges['step-dp'])} rows, step-dp-forecast {np.median(ranges['step-dp-forecast']):.2f} dB over "
                  f"{len(ranges['step-dp-forecast'])}; largest {max(ranges['step-dp']):.2f} / "
                  f"{max(ranges['step-dp-forecast']):.2f} dB. Where both give schedules ({len(diff)} rows) step-dp-forecast's "
                  f"mean is higher on {int((diff > 0).sum())} and lower on {int((diff < 0).sum())} (by {diff.min():+.2f} "
                  f"to {diff.max():+.2f} dB, median {np.median(diff):+.2f})."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = transfer_profiles_parser(__doc__, "step-dp")
    args = parser.parse_args()
    return run_per_model(args, lambda spec: run_model(spec, args), summary_markdown)


if __name__ == "__main__":
    sys.exit(main())

"""Does the search's winner hold on new seeds? Its local search vs a fresh-seed confirmation (experimental).

    python bench/bench_confirm.py --models reference-dit,zoo/pixart-cross --budgets 0.3,0.4

Why: the local search keeps a move whenever the mean PSNR over its 16 calibration samples rises by any
amount, so after ~80 comparisons its winner is biased upwards (the winner's curse); on reference-dit the
search lands below its own DP start on held-out seeds (README section 11). `SolveContext(confirm=True)`
re-ranks the winner and the best starts on 64 fresh calibration-side seeds and keeps a local-search result
only if it leads the best start in 95% of paired bootstrap resamples (schedc.selection.confirm_on_fresh_seeds).

Per model and budget: the profile of calibration seeds 0-31 (cached under --work, shared with
bench_calibration.py), `schedc solve`'s default search (16 rollout samples, 80 evaluations, fewer steps
allowed; --time-limit high enough that the evaluation count ends it) without and with the confirmation,
each measured on held-out seeds 1000000.. (--samples) against full compute. Writes <out>/confirm.{json,md}.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_calibration import Curve  # noqa: E402
from bench_cli import model_bench_parser, model_specs, numbers  # noqa: E402
from bench_io import read_json, write_json  # noqa: E402
from schedc.atomic import atomic_write_text  # noqa: E402
from schedc.compile import compile_solution  # noqa: E402
from schedc.metrics import psnr  # noqa: E402
from schedc.search import PREDICT_SAMPLES, SELECT_SAMPLES  # noqa: E402
from schedc.solvers import Constraints, SolveContext  # noqa: E402

CALIB = 32  # the profile's calibration samples (`schedc profile`'s default)


def rows_for(curve: Curve, budgets: list[float], time_limit: float) -> list[dict]:
    path = curve.work / "confirm.json"
    cached = read_json(path) or {}
    key = {"samples": curve.args.samples, "time_limit": time_limit}
    rows = cached.get("rows", []) if cached.get("key") == key else []
    done = {(r["budget"], r["confirm"]) for r in rows}
    profile = curve.profile(CALIB)
    for budget in budgets:
        for confirm in (False, True):
            if (budget, confirm) in done:
                continue
            context = SolveContext(adapter=curve.adapter, progress=False, vary_steps=True, confirm=confirm)
            compiled = compile_solution(profile, budget, "search", Constraints(time_limit=time_limit), context=context)
            stats = compiled.solution.stats
            rows.append({"budget": budget, "confirm": confirm, "psnr": float(psnr(curve.generate(compiled.schedule), curve.full).mean()),
                         "predicted_psnr": stats.get("predicted_psnr"), "start": stats.get("start"),
                         "selected": stats.get("selected"), "lead_confidence": stats.get("lead_confidence"),
                         "fresh": stats.get("selected_on_fresh_seeds"), "steps": compiled.schedule.num_steps,
                         "stopped_by": stats.get("stopped_by"), "solve_seconds": stats.get("solve_seconds")})
            curve.log(f"b={budget:.2f} confirm={confirm}: {rows[-1]['psnr']:.2f} dB held-out"
                      + (f" (kept {rows[-1]['selected']})" if rows[-1]["selected"] else ""))
            write_json(path, {"key": key, "rows": rows})
    return [r for r in rows if r["budget"] in budgets]


def markdown(results: dict[str, list[dict]], samples: int) -> str:
    lines = ["# The search with and without a fresh-seed confirmation of its winner", "",
             f"Held-out PSNR (dB, seeds 1000000.., {samples} samples, vs full compute); profile on calibration seeds "
             f"0-{CALIB - 1}, search on the first 16, confirmation on the {SELECT_SAMPLES} after the profile's seeds, "
             f"prediction on the {PREDICT_SAMPLES} after those. Δ = confirmed − plain.", "",
             "| model | budget | plain search | confirmed | Δ dB | kept | lead confidence |", "|---|---|---|---|---|---|---|"]
    deltas = []
    for model, rows in results.items():
        for budget in sorted({r["budget"] for r in rows}):
            plain = next((r for r in rows if r["budget"] == budget and not r["confirm"]), None)
            conf = next((r for r in rows if r["budget"] == budget and r["confirm"]), None)
            if plain is None or conf is None:
                continue
            deltas.append(conf["psnr"] - plain["psnr"])
            c = conf["lead_confidence"]
            lines.append(f"| {model} | {budget:.2f} | {plain['psnr']:.2f} | {conf['psnr']:.2f} | {deltas[-1]:+.2f} | "
                         f"{conf['selected'] or '-'} | {'-' if c is None else f'{c:.1%}'} |")
    if deltas:
        lines += ["", f"{sum(d > 0.05 for d in deltas)} better, {sum(d < -0.05 for d in deltas)} worse, "
                      f"{sum(abs(d) <= 0.05 for d in deltas)} within 0.05 dB; mean Δ {sum(deltas) / len(deltas):+.2f} dB."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = model_bench_parser(__doc__, "/tmp/schedc-calibration", "confirm")
    parser.add_argument("--budgets", type=numbers(float), default=[0.3, 0.4])
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = read_json(out / "confirm.json") or {}
    if not args.summary_only:
        torch.set_num_threads(args.threads)
        log = lambda m: print(m, flush=True)  # noqa: E731
        for spec in model_specs(args):
            results[spec.name] = rows_for(Curve(spec, args, log), args.budgets, args.time_limit)
            write_json(out / "confirm.json", results)
    text = markdown(results, args.samples)
    atomic_write_text(out / "confirm.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""In which order a short solve should score the structured families (schedc.search_starts.by_prediction).

    python bench/bench_start_order.py                           # the zoo, digits-dit and reference-dit
    python bench/bench_start_order.py --summary-only

A solve whose time limit ends before every start is scored (a slow model: reference-dit at budget 0.4 scored
18 of its 55 starts) keeps the best of those it scored, so the order matters. Per model and budget, every
structured family at the profiled step count is rolled out on the profile's 16 calibration samples (the
transfer bench's second-half profile, cached under --work), and reported: where the family scoring best
stands in the families' own order and ranked by the additive model's prediction (a forecast at a spacing the
profile did not measure standing in as a residual reuse), and the rank correlation of prediction and PSNR.
Writes <out>/<model>.json and <out>/summary.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_cli import run_per_model, transfer_profiles_parser  # noqa: E402
from bench_transfer import LabelSubset, Transfer, label_halves  # noqa: E402
from schedc.problem import problem_from_profile  # noqa: E402
from schedc.rollout import RolloutScorer  # noqa: E402
from schedc.search_starts import by_prediction  # noqa: E402
from schedc.solvers.families import family_candidates  # noqa: E402

NATIVE_ONLY = {"residual", "output", "forecast"}
SAMPLES = 16  # the search's samples per rollout (schedc.search.SEARCH_SAMPLES)


def run_model(spec, args) -> dict | None:
    bench = Transfer(spec, args, lambda m: print(m, flush=True))
    halves = label_halves(bench.adapter)
    if halves is None:
        return None
    second = LabelSubset(bench.adapter, halves[1])
    profile = bench.profile("classes-b", second, bench.sampler)
    problem = problem_from_profile(profile, NATIVE_ONLY)
    scorer = RolloutScorer(second, profile, list(profile.meta.calibration_seeds[:SAMPLES]))
    rows = []
    for budget in args.budgets:
        cands = family_candidates(problem, budget, 1)
        psnr = {c.name: scorer(c.decisions).psnr for c in cands}
        predicted = {c.name: problem.evaluate_decisions(c.decisions, stand_in=True)[0] for c in cands}
        ranked = [c.name for c in by_prediction(problem, cands)]
        best = max(psnr, key=psnr.get)
        rows.append({"budget": budget, "families": len(cands), "best": best, "best_psnr": round(psnr[best], 3),
                     "best_place_own_order": [c.name for c in cands].index(best) + 1,
                     "best_place_by_prediction": ranked.index(best) + 1,
                     "spearman": round(float(spearmanr([predicted[n] for n in psnr], list(psnr.values())).correlation), 3),
                     "psnr": {n: round(v, 3) for n, v in psnr.items()},
                     "predicted_rel_l2": {n: round(v, 5) for n, v in predicted.items()}})
        print(f"{spec.name} b={budget:.2f}: best {best} ({psnr[best]:.2f} dB), place {rows[-1]['best_place_own_order']} "
              f"in the families' order, {rows[-1]['best_place_by_prediction']} by prediction", flush=True)
    return {"settings": {"model": spec.name, "sampler": bench.sampler.to_dict(), "budgets": args.budgets,
                         "calib": args.calib, "samples": SAMPLES, "classes": list(halves[1]),
                         "threads": torch.get_num_threads(), "torch": torch.__version__}, "rows": rows}


def summary_markdown(results: list[dict]) -> str:
    lines = ["# Which family to score first", "",
             "Every structured family rolled out on the profile's 16 calibration samples (second half of the classes); "
             "the place of the best-scoring one in the families' own order and ranked by the additive model "
             "(by_prediction), and the Spearman correlation of predicted rel L2 with PSNR (negative: the prediction "
             "orders them right).", "",
             "| model | budget | families | best (PSNR dB) | place, own order | place, by prediction | Spearman |",
             "|---|---|---|---|---|---|---|"]
    places = []
    for res in results:
        for r in res["rows"]:
            places.append((r["best_place_own_order"], r["best_place_by_prediction"]))
            lines.append(f"| {res['settings']['model']} | {r['budget']:.2f} | {r['families']} | {r['best']} "
                         f"({r['best_psnr']:.2f}) | {r['best_place_own_order']} | {r['best_place_by_prediction']} | "
                         f"{r['spearman']:+.3f} |")
    if places:
        own, pred = np.array(places).T
        lines += ["", f"Rows: {len(places)}. Best among the first three: {int((own <= 3).sum())} in the families' order, "
                  f"{int((pred <= 3).sum())} by prediction (median place {np.median(own):g} vs {np.median(pred):g})."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = transfer_profiles_parser(__doc__, "start-order")
    args = parser.parse_args()
    return run_per_model(args, lambda spec: run_model(spec, args), summary_markdown)


if __name__ == "__main__":
    sys.exit(main())

"""Would scoring candidates on their worst samples pick schedules with better tails on other inputs?

    python bench/bench_tail_score.py --work /tmp/diag/work      # the transfer bench's cached profiles
    python bench/bench_tail_score.py --summary-only

The search ranks candidates by mean PSNR over its 16 calibration samples. Two of the transfer bench's
class misses (issue #12) are worst-5% tails, so: per model and budget, every start the search begins from
at the profiled step count (its DP schedules and the structured families) is rolled out on the first half
of the classes' 16 calibration samples, the pick of each scoring rule over those per-sample PSNRs is
recorded, and each pick (and the four best by the mean) is measured on held-out seeds of the other half:
mean PSNR and the 5th percentile (the transfer bench's worst 5%). Rules: the mean (the search's), the
dataset PSNR (of the mean squared error, dominated by the worst samples), the mean of the worst quarter
(CVaR 25%), mean minus one standard deviation, and the single worst sample. Native computes only, as the
transfer bench. Writes <out>/<model>.json and <out>/summary.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_cli import run_per_model, transfer_profiles_parser  # noqa: E402
from bench_transfer import EVAL_SEED_START, LabelSubset, Transfer, label_halves  # noqa: E402
from schedc.problem import problem_from_profile  # noqa: E402
from schedc.rollout import RolloutScorer  # noqa: E402
from schedc.search_starts import dp_candidates  # noqa: E402
from schedc.solvers.base import Constraints  # noqa: E402
from schedc.solvers.families import family_candidates  # noqa: E402

NATIVE_ONLY = {"residual", "output", "forecast"}
SAMPLES = 16  # the search's samples per rollout (schedc.search.SEARCH_SAMPLES)
TOP = 4  # best candidates by the mean also measured held out (a rule's pick among them is compared to them)


def _dataset_psnr(p: np.ndarray) -> float:
    return float(-10 * np.log10(np.mean(10 ** (-p / 10))))


RULES: dict[str, Callable[[np.ndarray], float]] = {  # per-sample PSNRs [N] -> score (higher is better)
    "mean": lambda p: float(p.mean()),
    "dataset": _dataset_psnr,
    "cvar25": lambda p: float(np.sort(p)[:max(1, p.size // 4)].mean()),
    "mean-std": lambda p: float(p.mean() - p.std(ddof=1)),
    "min": lambda p: float(p.min()),
}


def run_model(spec, args) -> dict | None:
    bench = Transfer(spec, args, lambda m: print(m, flush=True))
    halves = label_halves(bench.adapter)
    if halves is None:
        return None
    first, second = (LabelSubset(bench.adapter, h) for h in halves)
    profile = bench.profile("classes-a", first, bench.sampler)
    problem = problem_from_profile(profile, NATIVE_ONLY)
    calibration = RolloutScorer(first, profile, list(profile.meta.calibration_seeds[:SAMPLES]))
    held = RolloutScorer(second, profile, list(range(EVAL_SEED_START, EVAL_SEED_START + args.samples)))
    rows = []
    for budget in args.budgets:
        unique = {}
        for cand in dp_candidates(problem, budget, Constraints())[0] + family_candidates(problem, budget, 1):
            unique.setdefault(cand.decisions, cand)
        samples = {c.name: np.asarray(calibration(c.decisions).samples, dtype=np.float64) for c in unique.values()}  # [N]
        scores = {rule: {n: f(p) for n, p in samples.items()} for rule, f in RULES.items()}
        picks = {rule: max(s, key=s.get) for rule, s in scores.items()}
        measured = {}
        for name in set(picks.values()) | set(sorted(samples, key=lambda n: -scores["mean"][n])[:TOP]):
            cand = next(c for c in unique.values() if c.name == name)
            each = np.asarray(held(cand.decisions).samples, dtype=np.float64)  # [M]
            measured[name] = {"mean": round(float(each.mean()), 3), "p5": round(float(np.percentile(each, 5)), 3)}
        rows.append({"budget": budget, "candidates": len(unique), "picks": picks, "held_out": measured,
                     "calibration": {n: {r: round(scores[r][n], 3) for r in RULES} for n in measured}})
        print(f"{spec.name} b={budget:.2f}: " + ", ".join(f"{r} -> {n} {measured[n]['mean']:.2f}/{measured[n]['p5']:.2f}"
                                                          for r, n in picks.items()), flush=True)
    return {"settings": bench.halves_settings(halves, samples=SAMPLES, calibrated_on=list(halves[0])), "rows": rows}


def summary_markdown(results: list[dict]) -> str:
    lines = ["# Scoring candidates on their tails", "",
             "Each rule's pick among the search's starts (profiled step count, native computes) by its score on the first "
             "half of the classes' 16 calibration samples; held out on the other half: mean / 5th-percentile PSNR (dB), "
             "and the change against the mean's pick (positive: the rule's pick is better).", "",
             "| model | budget | mean's pick: mean / p5 | " + " | ".join(f"{r}: Δmean / Δp5" for r in RULES if r != "mean") + " |",
             "|---|---|---|" + "---|" * (len(RULES) - 1)]
    deltas: dict[str, list] = {r: [] for r in RULES if r != "mean"}
    for res in results:
        for row in res["rows"]:
            base = row["held_out"][row["picks"]["mean"]]
            cells = []
            for rule in deltas:
                got = row["held_out"][row["picks"][rule]]
                d = (got["mean"] - base["mean"], got["p5"] - base["p5"])
                deltas[rule].append(d)
                cells.append("same pick" if row["picks"][rule] == row["picks"]["mean"] else f"{d[0]:+.2f} / {d[1]:+.2f}")
            lines.append(f"| {res['settings']['model']} | {row['budget']:.2f} | {row['picks']['mean']} "
                         f"{base['mean']:.2f} / {base['p5']:.2f} | " + " | ".join(cells) + " |")
    if any(deltas.values()):
        lines += ["", "Over all rows (same pick counts as 0):", ""]
        for rule, ds in deltas.items():
            arr = np.array(ds)  # [rows, 2]
            lines.append(f"- {rule}: other pick on {int((np.abs(arr).sum(axis=1) > 0).sum())} of {len(ds)} rows; mean "
                         f"Δmean {arr[:, 0].mean():+.2f} dB, mean Δp5 {arr[:, 1].mean():+.2f} dB, p5 better on "
                         f"{int((arr[:, 1] > 0).sum())}, worse on {int((arr[:, 1] < 0).sum())}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = transfer_profiles_parser(__doc__, "tail-score")
    args = parser.parse_args()
    return run_per_model(args, lambda spec: run_model(spec, args), summary_markdown)


if __name__ == "__main__":
    sys.exit(main())

"""What leaving clearly-behind starts out of the re-ranking buys (schedc.selection.CLEARLY_BEHIND_SE).

    python bench/bench_search_prune.py --models reference-dit,zoo/unet-sd --budgets 0.4
    python bench/bench_search_prune.py --summary-only

Per model and budget, the default search (fewer step counts tried, 60 s of charged model work, fresh-seed
confirmation, native computes only: what the latency cost model picks on a CPU) is solved twice from the same
profile (16 calibration samples, the transfer bench's profile and generation timing, cached under --work):
re-ranking the best three starts whatever their scores ("all", the behaviour before session 21) and leaving
out those clearly behind the best ("pruned", the default). Both run on the charged clock, so each is
reproducible at any load. Reported: rollouts, what ended the search, the starts not re-ranked, the pick and its
held-out PSNR (seeds 1000000-, --samples of them). Writes <out>/<model>.json and <out>/summary.md.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import schedc.selection as selection  # noqa: E402
from bench_cli import run_per_model, transfer_profiles_parser  # noqa: E402
from bench_transfer import WALL_GUARD, Transfer  # noqa: E402
from schedc.compile import compile_schedule  # noqa: E402
from schedc.solvers import Constraints, SolveContext  # noqa: E402

NATIVE_ONLY = ("residual", "output", "forecast")
VARIANTS = {"all": math.inf, "pruned": selection.CLEARLY_BEHIND_SE}
STATS = ("selected", "rollouts", "stopped_by", "not_reranked", "select_seeds", "predict_seeds", "predicted_psnr",
         "charged_seconds", "solve_seconds")


def run_model(spec, args) -> dict:
    bench = Transfer(spec, args, lambda m: print(m, flush=True))
    profile = bench.profile("all", bench.adapter, bench.sampler)
    rows = []
    for budget in args.budgets:
        for variant, limit in VARIANTS.items():
            selection.CLEARLY_BEHIND_SE = limit
            try:
                context = SolveContext(adapter=bench.adapter, progress=False, vary_steps=True, wall_guard=WALL_GUARD)
                schedule = compile_schedule(profile, budget, "search", Constraints(time_limit=args.time_limit),
                                            allow=NATIVE_ONLY, context=context)
            finally:
                selection.CLEARLY_BEHIND_SE = VARIANTS["pruned"]
            stats = schedule.provenance["stats"]
            held = bench.per_sample(bench.adapter, schedule, bench.sampler)
            rows.append({"budget": budget, "variant": variant, "held_psnr": float(held.mean()),
                         **{k: stats.get(k) for k in STATS}})
            print(f"{spec.name} b={budget:.2f} {variant}: {rows[-1]}", flush=True)
    return {"settings": {"model": spec.name, "sampler": bench.sampler.to_dict(), "budgets": args.budgets,
                         "time_limit": args.time_limit, "calib": args.calib, "allow": list(NATIVE_ONLY),
                         "eval_seeds": f"{bench.seeds[0]}-{bench.seeds[-1]}", "threads": torch.get_num_threads(),
                         "torch": torch.__version__}, "rows": rows}


def summary_markdown(results: list[dict]) -> str:
    lines = ["# Re-ranking only the starts in contention", "",
             "Each solve twice from one profile: 'all' re-ranks the best three starts whatever their scores (before "
             "session 21); 'pruned' leaves out those more than 4 paired standard errors behind the best start "
             "(the default). Charged clock: each row is reproducible at any load.", "",
             "| model | budget | variant | rollouts | ended by | not re-ranked | pick | held-out PSNR dB |",
             "|---|---|---|---|---|---|---|---|"]
    for res in results:
        for r in res["rows"]:
            lines.append(f"| {res['settings']['model']} | {r['budget']:.2f} | {r['variant']} | {r['rollouts']} | "
                         f"{r['stopped_by']} | {', '.join(r['not_reranked'] or []) or '-'} | {r['selected']} | "
                         f"{r['held_psnr']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = transfer_profiles_parser(__doc__, "search-prune", budgets=(0.4,))
    args = parser.parse_args()
    return run_per_model(args, lambda spec: run_model(spec, args), summary_markdown)


if __name__ == "__main__":
    sys.exit(main())

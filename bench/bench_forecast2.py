"""Second-order vs first-order forecast reuse on both bundled models (issue #9, item 7).

    python bench/bench_forecast2.py [--samples 64] [--repeats 5]

Per model and budget (0.15, 0.2, 0.3), dp schedules (FLOP cost model) over three cache-only decision
sets: forecast order 1 (residual, output, forecast), order 2 (residual, output, forecast2) and both.
Quality on held-out seeds 1000000.. (PSNR, rel L2, predicted rel L2), measured speedup interleaved.
Writes bench/results/forecast2.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schedc.atomic import atomic_write_text  # noqa: E402
from schedc.compile import compile_schedule  # noqa: E402
from schedc.evaluate import EvalConfig, evaluate  # noqa: E402
from schedc.models import load_recorded  # noqa: E402
from schedc.profile import Profile  # noqa: E402

SETS = {"order 1": {"residual", "output", "forecast"}, "order 2": {"residual", "output", "forecast2"},
        "orders 1+2": {"residual", "output", "forecast", "forecast2"}}
BUDGETS = (0.15, 0.2, 0.3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="reference-dit,digits-dit")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.chdir(ROOT)
    config = EvalConfig(samples=args.samples, repeats=args.repeats)
    rows = []
    for model in args.models.split(","):
        profile = Profile.load(f"profiles/{model}.profile.npz")
        adapter = load_recorded(profile.meta)
        for budget in BUDGETS:
            for label, allow in SETS.items():
                schedule = compile_schedule(profile, budget, allow=allow, cost="flops")
                m = evaluate(adapter, schedule, config, progress=False).schedule.to_dict()
                used = sorted({a for row in schedule.decisions for a in row} & {"forecast", "forecast2"})
                m.update(model=model, budget=budget, set=label, uses=",".join(used) or "-")
                rows.append(m)
                print(f"{model:<14} b={budget:.2f} {label:<11} uses {m['uses']:<19} PSNR {m['psnr']:.2f} "
                      f"relL2 {m['rel_l2']:.4f} pred {m['predicted_rel_l2']:.4f} speedup {m['speedup']:.2f}x", flush=True)
    lines = ["| model | budget | decision set | forecasts used | PSNR dB | rel L2 | predicted rel L2 | speedup | ideal |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['budget']:.2f} | {r['set']} | {r['uses']} | {r['psnr']:.2f} | {r['rel_l2']:.4f} | "
              f"{r['predicted_rel_l2']:.4f} | {r['speedup']:.2f}x | {r['ideal_speedup']:.2f}x |" for r in rows]
    table = "\n".join(lines)
    out = ROOT / "bench" / "results" / "forecast2"
    atomic_write_text(out.with_suffix(".md"), table + "\n")
    atomic_write_text(out.with_suffix(".json"), json.dumps(rows, indent=1))
    print(table)


if __name__ == "__main__":
    main()

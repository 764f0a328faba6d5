"""How many DDIM steps does plain step reduction need to match a schedule's quality? (no timing)

    python bench/bench_fewer_steps.py [--results bench/results/budgets.json]

Quality of n-step sampling vs the 50-step full-compute sample on the held-out seeds, for every n.
Timing-free, so it is immune to this machine's noise: if n steps are needed to reach the PSNR a
schedule at cost c reaches, step reduction needs n/50 of the compute where the schedule needs c.
Writes bench/results/fewer_steps.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schedc.atomic import atomic_write_text  # noqa: E402
from schedc.evaluate import EVAL_SEED_START  # noqa: E402
from schedc.metrics import quality  # noqa: E402
from schedc.models.reference import ReferenceAdapter  # noqa: E402
from schedc.sampling import SamplerConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--results", default=str(ROOT / "bench" / "results" / "budgets.json"))
    args = parser.parse_args()
    adapter = ReferenceAdapter()
    base = adapter.default_sampler
    inputs = adapter.make_inputs(range(EVAL_SEED_START, EVAL_SEED_START + args.samples))
    full = adapter.generate(inputs, base)
    curve = {}
    for n in range(10, base.steps):
        out = adapter.generate(inputs, SamplerConfig(**{**base.to_dict(), "steps": n}))
        curve[n] = quality(out, full)["psnr"]
    lines = ["| steps | cost | PSNR vs 50-step full (dB) |", "|---|---|---|"]
    lines += [f"| {n} | {n / base.steps:.2f} | {p:.2f} |" for n, p in curve.items()]
    results = Path(args.results)
    if results.exists():
        rows = [r for r in json.loads(results.read_text())["rows"] if r["variant"] == "schedc-dp"]
        lines += ["", "| dp budget | dp PSNR | fewest steps reaching it | their cost |", "|---|---|---|---|"]
        for r in rows:
            need = next((n for n, p in curve.items() if p >= r["psnr"]), None)
            lines.append(f"| {r['budget']:.2f} | {r['psnr']:.2f} | {need or '> ' + str(base.steps - 1)} | "
                         f"{(need or base.steps) / base.steps:.2f} |")
    lines.append("")
    lines.append(f"Held-out seeds {EVAL_SEED_START}..{EVAL_SEED_START + args.samples - 1}, guidance {base.guidance_scale}.")
    table = "\n".join(lines)
    atomic_write_text(ROOT / "bench" / "results" / "fewer_steps.md", table + "\n")
    print(table)


if __name__ == "__main__":
    main()

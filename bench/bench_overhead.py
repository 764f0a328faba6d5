"""Runtime hook overhead: a model with an all-compute schedule vs the bare model (target <= 2%).

    python bench/bench_overhead.py [--models reference-dit,digits-dit] [--rounds 15]

Whole 50-step generations (16 samples, batched CFG: 32 rows per call, held-out seeds 1000000..15),
bare and hooked interleaved (order alternating), median of per-round hooked/bare ratios. The hooked
run attaches the schedule each round, as a deployment would per pipeline call.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schedc.atomic import atomic_write_text  # noqa: E402
from schedc.models import ModelAdapter, load_model  # noqa: E402
from schedc.schedule import decisions_from_compute  # noqa: E402
from schedc_runtime import ModelInfo, Schedule, apply_schedule  # noqa: E402


def all_compute_schedule(adapter: ModelAdapter) -> Schedule:
    sampler = adapter.default_sampler
    compute = np.ones((sampler.steps, len(adapter.block_names)), dtype=bool)
    info = ModelInfo(name=adapter.name, fingerprint=adapter.fingerprint(), blocks=adapter.block_names,
                     steps=sampler.steps, timesteps=tuple(adapter.model_timesteps(sampler)), cfg=sampler.cfg,
                     block_outputs=tuple(adapter.block_outputs))
    return Schedule(model=info, decisions=decisions_from_compute(compute), sampling=sampler.to_dict())


def overhead(adapter: ModelAdapter, rounds: int) -> dict:
    schedule = all_compute_schedule(adapter)
    inputs = adapter.make_inputs(range(1_000_000, 1_000_016))
    sampler = adapter.default_sampler

    def bare() -> float:
        start = time.perf_counter()
        adapter.generate(inputs, sampler)
        return time.perf_counter() - start

    def hooked() -> float:
        with apply_schedule(adapter.model, schedule):
            start = time.perf_counter()
            adapter.generate(inputs, sampler)
            return time.perf_counter() - start

    bare(), hooked()  # warm-up
    ratios, bare_times = [], []
    for r in range(rounds):
        if r % 2:
            b, h = bare(), hooked()
        else:
            h, b = hooked(), bare()
        ratios.append(h / b)
        bare_times.append(b)
    return {"model": adapter.name, "blocks": len(adapter.block_names), "steps": sampler.steps, "cfg": sampler.cfg,
            "rounds": rounds, "bare_seconds": statistics.median(bare_times),
            "overhead_pct": 100 * (statistics.median(ratios) - 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="reference-dit,digits-dit")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "overhead"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = []
    for name in args.models.split(","):
        row = overhead(load_model(name), args.rounds)
        print(f"{row['model']}: 50-step generation of 16 samples, bare {row['bare_seconds']:.3f} s, "
              f"all-compute schedule attached: overhead {row['overhead_pct']:+.2f}% (median of {row['rounds']} rounds)")
        rows.append(row)
    lines = ["# Runtime overhead with an all-compute schedule", "",
             f"`python bench/bench_overhead.py --models {args.models} --rounds {args.rounds}` (torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads; seeds 1000000-1000015)", "",
             "| model | blocks | steps | CFG | bare s / generation | overhead |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['blocks']} | {r['steps']} | {r['cfg']} | {r['bare_seconds']:.3f} | {r['overhead_pct']:+.2f}% |"
              for r in rows]
    atomic_write_text(Path(args.out).with_suffix(".md"), "\n".join(lines) + "\n")
    atomic_write_text(Path(args.out).with_suffix(".json"), json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

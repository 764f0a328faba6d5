"""A schedule on compiled blocks: speed vs compiled full compute, outputs vs eager, recompilations (issue #13).

    python bench/bench_compile.py                                  # reference-dit, its bundled b=0.40 schedule
    python bench/bench_compile.py --model digits-dit --schedule schedules/digits-dit-b0.40.yaml --backend inductor

Four variants timed in turn within each round (interleaved, one warm-up generation each first; speedups
are the median over rounds of the per-round ratio): eager full compute, eager scheduled, compiled full
compute (every block compiled in place with `block.compile()`), compiled scheduled
(`apply_schedule(..., compile=...)`). Also: the largest difference between compiled-scheduled and
eager-scheduled samples, and the frames dynamo compiled during generations 2 and 3 (0 = no recompile).
The ideal speedup is the schedule's own prediction (1 / (o + (1 - o) c), o measured here with every block
skipped). CPU figures on this machine; never read them as GPU figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch._dynamo.utils import counters

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schedc.atomic import atomic_write_text  # noqa: E402
from schedc.evaluate import EVAL_SEED_START, blocks_skipped, sampler_of  # noqa: E402
from schedc.metrics import ideal_speedup  # noqa: E402
from schedc.models import load_model  # noqa: E402
from schedc.schedule import read_schedule  # noqa: E402
from schedc_runtime import apply_schedule  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="reference-dit")
    parser.add_argument("--schedule", default=str(ROOT / "schedules" / "reference-dit-b0.40.yaml"))
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "compile.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    adapter = load_model(args.model)
    schedule = read_schedule(args.schedule)
    sampler = sampler_of(schedule)
    inputs = adapter.make_inputs(list(range(EVAL_SEED_START, EVAL_SEED_START + args.batch)))
    options = {"backend": args.backend}

    def run(compiled: bool, scheduled: bool, skip: bool = False) -> tuple[float, torch.Tensor]:
        in_place = compiled and not scheduled
        if in_place:
            for b in adapter.blocks():
                b.compile(**options)
        try:
            if skip:
                with blocks_skipped(adapter):
                    started = time.perf_counter()
                    out = adapter.generate(inputs, sampler)
                    return time.perf_counter() - started, out
            handle = apply_schedule(adapter.model, schedule, compile=options if compiled else False) if scheduled else None
            try:
                started = time.perf_counter()
                out = adapter.generate(inputs, sampler)
                return time.perf_counter() - started, out
            finally:
                if handle is not None:
                    handle.remove()
        finally:
            if in_place:
                for b in adapter.blocks():
                    b._compiled_call_impl = None

    variants = {"eager full": (False, False), "eager scheduled": (False, True),
                "compiled full": (True, False), "compiled scheduled": (True, True)}
    torch._dynamo.reset()
    counters.clear()
    first = {name: run(*v)[1] for name, v in variants.items()}  # warm-up: compiles
    frames = counters["frames"]["total"]
    for name, v in variants.items():
        run(*v)
    recompiled = counters["frames"]["total"] - frames
    times: dict[str, list[float]] = {n: [] for n in [*variants, "skip"]}
    names = list(times)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            times[name].append(run(False, False, skip=True)[0] if name == "skip" else run(*variants[name])[0])
    ratio = lambda a, b: statistics.median(x / y for x, y in zip(times[a], times[b]))  # noqa: E731
    o = 1.0 / ratio("eager full", "skip")
    cost = float(schedule.provenance.get("predicted", {}).get("cost", 1.0))
    diff = float((first["compiled scheduled"] - first["eager scheduled"]).abs().max())
    rows = {
        "scheduled vs full, eager": ratio("eager full", "eager scheduled"),
        "scheduled vs full, compiled": ratio("compiled full", "compiled scheduled"),
        "compiled vs eager, full compute": ratio("eager full", "compiled full"),
        "compiled scheduled vs eager full": ratio("eager full", "compiled scheduled"),
    }
    ideal = ideal_speedup(cost, o)
    lines = [f"# Compiled blocks under a schedule ({args.model}, {Path(args.schedule).name}, backend {args.backend})", "",
             f"{args.batch} samples per generation (seeds {EVAL_SEED_START}..), {sampler.steps} steps, {args.repeats} interleaved "
             f"rounds, {args.threads} threads, torch {torch.__version__}, CPU. Ideal speedup of the schedule {ideal:.2f}x "
             f"(cost {cost:.3f}, o = {o:.3f}).", "", "| ratio (median of per-round ratios) | value |", "|---|---|"]
    lines += [f"| {k} | {v:.2f}x |" for k, v in rows.items()]
    lines += ["", f"- compiled-scheduled vs eager-scheduled samples: max abs difference {diff:.2e}",
              f"- frames dynamo compiled during the timed generations after the warm-up: {recompiled} (0 = no recompile)",
              f"- measured/ideal, compiled: {rows['scheduled vs full, compiled'] / ideal:.2f}"]
    text = "\n".join(lines) + "\n"
    atomic_write_text(Path(args.out), text)
    print(text)
    print(json.dumps({**rows, "ideal": ideal, "max_abs_diff": diff, "recompiled_frames": recompiled}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

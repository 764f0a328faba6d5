"""Span fusion: wall time and cache memory of one schedule replayed with spans vs per-block reuse.

    OMP_NUM_THREADS=1 python bench/bench_span.py [--models reference-dit,digits-dit] [--budgets 0.2,0.4] [--rounds 9]

Per model and budget, the DP schedule from the bundled profile, default decision set and residual-only
(`compile_schedule(...)`, spans on, against the same decisions without spans), plus a FirstBlockCache-shaped schedule (block 0 every step, the
rest every 4th step, cost ~0.31). Whole 50-step generations of 16 samples (held-out seeds 1000000..15,
batched CFG), the two variants interleaved with alternating order, median of per-round
fused/unfused time ratios; peak cache bytes from the handle; max |difference| of the samples.
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
from schedc.compile import compile_schedule  # noqa: E402
from schedc.models import ModelAdapter, load_model  # noqa: E402
from schedc.schedule import decisions_from_compute  # noqa: E402
from schedc.spans import span_stats, with_spans, without_spans  # noqa: E402
from schedc_runtime import ModelInfo, Schedule, apply_schedule  # noqa: E402

SEEDS = range(1_000_000, 1_000_016)


def fbcache_schedule(adapter: ModelAdapter, every: int = 4) -> Schedule:
    sampler = adapter.default_sampler
    compute = np.ones((sampler.steps, len(adapter.block_names)), dtype=bool)
    compute[[t for t in range(sampler.steps) if t % every], 1:] = False
    info = ModelInfo(name=adapter.name, fingerprint=adapter.fingerprint(), blocks=adapter.block_names,
                     steps=sampler.steps, timesteps=tuple(adapter.model_timesteps(sampler)), cfg=sampler.cfg,
                     block_outputs=tuple(adapter.block_outputs))
    return Schedule(model=info, decisions=decisions_from_compute(compute), sampling=sampler.to_dict())


def compare(adapter: ModelAdapter, label: str, fused: Schedule, rounds: int) -> dict:
    plain = without_spans(fused)
    inputs = adapter.make_inputs(SEEDS)
    sampler = adapter.default_sampler

    def run(schedule: Schedule) -> tuple[float, torch.Tensor, int]:
        with torch.inference_mode(), apply_schedule(adapter.model, schedule) as handle:
            start = time.perf_counter()
            out = adapter.generate(inputs, sampler)
            return time.perf_counter() - start, out, handle.peak_cache_bytes

    run(fused), run(plain)  # warm-up
    ratios, times_fused, times_plain = [], [], []
    for r in range(rounds):
        order = (fused, plain) if r % 2 else (plain, fused)
        results = {id(s): run(s) for s in order}
        (tf, out_f, bytes_f), (tp, out_p, bytes_p) = results[id(fused)], results[id(plain)]
        ratios.append(tf / tp)
        times_fused.append(tf)
        times_plain.append(tp)
    stats = span_stats(fused)
    return {
        "model": adapter.name, "schedule": label, "compute_fraction": round(fused.compute_fraction(), 3),
        "rounds": rounds, **stats, "reuses": sum(1 for row in fused.decisions for a in row if a != "native"),
        "seconds_plain": statistics.median(times_plain), "seconds_fused": statistics.median(times_fused),
        "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
        "cache_bytes_plain": bytes_p, "cache_bytes_fused": bytes_f,
        "max_abs_diff": float((out_f.float() - out_p.float()).abs().max()),
    }


def markdown(rows: list[dict], threads: int) -> str:
    lines = [
        "# Span fusion: one combined residual per run of reuses",
        "",
        "`python bench/bench_span.py` (OMP_NUM_THREADS=1, torch threads "
        f"{threads}); 50-step generations of 16 samples (batched CFG, 32 rows per call), held-out seeds "
        "1000000-1000015; fused and per-block variants of each schedule interleaved, order alternating; "
        "ratio = median of per-round fused/per-block wall time (min-max in brackets). The machine's 2 CPU "
        "cores were shared with other jobs while this ran: ratios within a few % of 1 are noise.",
        "",
        "| model | schedule | compute | spans | reuses fused / all | per-block s | fused s | ratio | cache MiB per-block -> fused | max abs diff |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if not r["spans"]:
            lines.append(f"| {r['model']} | {r['schedule']} | {r['compute_fraction']:.3f} | 0 (kept none: no cache saved) "
                         "| - | - | - | - | - | - |")
            continue
        lines.append(
            f"| {r['model']} | {r['schedule']} | {r['compute_fraction']:.3f} | {r['spans']} | {r['fused_reuses']} / {r['reuses']} "
            f"| {r['seconds_plain']:.3f} | {r['seconds_fused']:.3f} | {r['ratio']:.3f} [{r['ratio_min']:.3f}-{r['ratio_max']:.3f}] "
            f"| {r['cache_bytes_plain'] / 2**20:.2f} -> {r['cache_bytes_fused'] / 2**20:.2f} | {r['max_abs_diff']:.1e} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="reference-dit,digits-dit")
    parser.add_argument("--budgets", default="0.2,0.4")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "span"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.models.split(","):
        adapter = load_model(name)
        profile = ROOT / "profiles" / f"{name}.profile.npz"
        cases = [(f"dp b{float(b):.1f}{' residual-only' if allow else ''}", compile_schedule(profile, float(b), allow=allow))
                 for allow in (None, ("residual",)) for b in args.budgets.split(",")]
        cases.append(("FBCache-shaped (block 0 always, rest every 4th step)", with_spans(fbcache_schedule(adapter))))
        for label, schedule in cases:
            if not schedule.spans:  # the span pass kept none (they would only add cache): nothing to time
                print(f"{name} {label}: no spans (every run's blocks keep their own caches for forecasts)")
                rows.append({"model": name, "schedule": label, "compute_fraction": round(schedule.compute_fraction(), 3),
                             **span_stats(schedule)})
                continue
            row = compare(adapter, label, schedule, args.rounds)
            rows.append(row)
            print(f"{name} {label}: {row['spans']} spans fuse {row['fused_reuses']}/{row['reuses']} reuses; "
                  f"{row['seconds_plain']:.3f} s -> {row['seconds_fused']:.3f} s (ratio {row['ratio']:.3f}); cache "
                  f"{row['cache_bytes_plain'] / 2**20:.2f} -> {row['cache_bytes_fused'] / 2**20:.2f} MiB", flush=True)
    out = Path(args.out)
    atomic_write_text(out.with_suffix(".json"), json.dumps(rows, indent=1) + "\n")
    atomic_write_text(out.with_suffix(".md"), markdown(rows, args.threads))
    print(f"wrote {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
